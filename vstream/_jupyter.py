"""Whether this process is a Jupyter kernel (where HTML output and widgets render)."""

from __future__ import annotations

import sys

__all__ = ["in_notebook"]


def in_notebook() -> bool:
    """True inside a running Jupyter kernel; False in a terminal, a script or pytest (even
    with ipykernel imported, as nbmake does)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel always brings IPython
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
