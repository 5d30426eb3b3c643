"""A progress bar for bounded foreground runs (``collect``, ``sink_*``, ``collect_all``).

The executor hands it the run's ``events_in`` on its metrics tick (every ~50 ms), never
per batch, and the bar is only created once a run has lasted ``delay`` seconds, so short
runs (tests, doctests) print nothing and pay nothing but one comparison a tick.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from vstream._jupyter import in_notebook
from vstream.plan.nodes import Node, SourceNode, ancestors

__all__ = ["Progress", "run_total", "wants_progress"]

_DELAY = 0.5  # seconds a run lasts before its bar appears
_MAX_DESC = 40  # characters of a target's label shown as the bar's description


def wants_progress(progress: bool | None) -> bool:
    """Whether a run shows a bar: ``progress`` if given, else when someone is watching.

    Automatic (``None``) means stderr is a terminal or the process is a Jupyter kernel
    (where ``tqdm.auto`` renders a widget); a pytest or CI process shows nothing.

    Examples
    --------
    >>> from vstream.runtime.progress import wants_progress
    >>> wants_progress(False), wants_progress(True)
    (False, True)
    """
    if progress is not None:
        return bool(progress)
    if in_notebook():
        return True
    stderr = sys.stderr
    return stderr is not None and stderr.isatty()


def run_total(outputs: Sequence[Node]) -> int | None:
    """The rows the sources of ``outputs`` hold, or None if any source does not know.

    Examples
    --------
    >>> from vstream.runtime.progress import run_total
    >>> import polars as pl
    >>> import vstream as vs
    >>> s = vs.from_polars(pl.DataFrame({"x": range(7)}))
    >>> run_total([s.filter(pl.col("x") > 2)._node])
    7
    """
    total = 0
    for node in ancestors(list(outputs)):
        if isinstance(node, SourceNode):
            rows = node.source.total_rows()
            if rows is None:
                return None
            total += rows
    return total


def describe(outputs: Sequence[Node]) -> str:
    """The bar's description: the output's label, or how many outputs a run has."""
    if len(outputs) != 1:
        return f"{len(outputs)} outputs"
    label = outputs[0].label
    return label if len(label) <= _MAX_DESC else label[: _MAX_DESC - 1] + "…"


class Progress:
    """Rows read of the sources' total, shown with ``tqdm.auto`` once a run is slow.

    Parameters
    ----------
    total
        The rows the sources hold, or None when unknown (the bar then counts).
    desc
        What the bar is labelled with (the run's output).
    delay
        Seconds of running before the bar appears; a shorter run shows nothing.
    file
        Where a text bar is written; None for tqdm's default (stderr).

    Examples
    --------
    >>> from vstream.runtime.progress import Progress
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(10, "demo", delay=0.0, file=out)
    >>> p.update(10, elapsed=0.1)
    >>> p.close()
    >>> "100%" in out.getvalue()
    True
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        delay: float = _DELAY,
        file: TextIO | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.delay = delay
        self.file = file
        self._bar: Any = None
        self._n = 0

    def update(self, n: int, elapsed: float) -> None:
        """Show ``n`` rows read after ``elapsed`` seconds (creating the bar if due)."""
        self._n = n
        if self._bar is None:
            if elapsed < self.delay:
                return
            self._bar = _make_bar(self.total, self.desc, self.file)
            # date the bar from the run's start, so its elapsed time and rate are the run's
            self._bar.start_t -= elapsed
            self._bar.last_print_t -= elapsed
        self._bar.update(n - self._bar.n)

    def close(self) -> None:
        """Show the final count and leave the bar (a no-op if it never appeared)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.update(self._n - bar.n)
            bar.close()


@functools.cache
def _bar_class() -> Any:
    from tqdm.auto import tqdm  # imported on a slow run's first bar only

    class Bar(tqdm):  # type: ignore[misc]
        # updates come on the executor's tick already: no monitor thread to adjust them
        monitor_interval = 0

    return Bar


def _make_bar(total: int | None, desc: str, file: TextIO | None) -> Any:
    return _bar_class()(
        total=total,
        desc=desc,
        unit=" events",
        unit_scale=True,
        leave=True,
        mininterval=0.1,
        file=file,
    )
