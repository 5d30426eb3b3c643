"""Session-wide settings for every test, doctest and notebook pytest runs here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem

# one numba cache for the whole run, inherited by the processes tests start (notebook
# kernels, subprocesses), so kernels compile once per run rather than once per process
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "vstream-numba-cache"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Each docstring's examples run in a fresh namespace, as when pasted into a new
    interpreter: only what the examples themselves import, not the module's globals
    (an example using ``pl`` or a module function without importing it fails here)."""
    yield
    if isinstance(item, DoctestItem) and item.dtest is not None:
        item.dtest.globs.clear()
        item.dtest.globs["__name__"] = "__main__"
