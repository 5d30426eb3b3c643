"""The live view of a background job: re-rendered in place a few times a second.

A daemon thread renders the job's metrics and newest results (:mod:`.render`) and
replaces one output: a Jupyter display updated in place, or, in a terminal, a status
line now and then and the whole dashboard as text at the end. It reads snapshots only
(``job.metrics`` is a copy, ``job.results`` a new frame), so a slow frontend never
holds up the pipeline; when the job ends it renders once more and stops, leaving the
last state in the output (a saved notebook shows it).

The first rendering (in :meth:`LiveView.start`, on the caller's thread) has no plot: the
plotting libraries take seconds to import in a fresh process, so the view's thread imports
them and draws the plot at once after. Frames while the job runs carry the live chart
only; the last one adds its static SVG (:mod:`.bundle`), which a saved notebook keeps.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

import polars as pl

from vstream._jupyter import in_notebook
from vstream.notebook.bundle import Dashboard, PlotMode, dashboard, load_chart_libraries
from vstream.notebook.render import as_datetimes, check_altair, dashboard_text

if TYPE_CHECKING:
    from vstream._duration import TimeUnit
    from vstream.api.job import Job

__all__ = ["LiveView"]

#: the view waits at least this many times its last rendering's duration
_SHARE = 20


class LiveView:
    """Renders ``job`` every ``every`` seconds until it ends (see :meth:`Job.display`),
    or less often when rendering is slow: it waits at least 20 times its last rendering.
    The wait ends early when the job ends, for the last rendering.

    ``sink`` takes each rendering; by default an IPython display handle updated in
    place in a notebook, else text lines on ``out`` (stdout): a status line every
    ``text_every`` seconds and the dashboard as text at the end.
    """

    def __init__(
        self,
        job: Job,
        *,
        y: str | None = None,
        by: str | None = None,
        x: str = "window_start",
        top: int = 5,
        rows: int = 20,
        every: float = 0.5,
        text_every: float = 5.0,
        out: IO[str] | None = None,
        sink: Callable[[str], None] | None = None,
        html: bool | None = None,
        time_unit: TimeUnit | None = None,
        time_columns: Mapping[str, TimeUnit] | None = None,
    ) -> None:
        self.job = job
        self.time_unit = time_unit  # of an integer x: plotted as dates
        #: integer columns of event time (window bounds, the event-time column) and their
        #: unit: shown as UTC datetimes in the table and the text (the data keep theirs)
        self.time_columns = dict(time_columns or {})
        self.y, self.by, self.x, self.top, self.rows = y, by, x, top, rows
        self.every = every
        self.text_every = text_every
        self.html = in_notebook() if html is None else html
        #: whether the view draws a plot (its libraries are imported in the view's thread)
        self.plots = self.html and y is not None
        if self.plots:  # here, not in the rendering thread; finds Altair, imports nothing
            check_altair("display")
        self.out = out
        self._sink = sink
        self._handle: Any = None
        self.renders = 0
        #: the last HTML rendering (its mime bundle: HTML, text, the plot's SVG)
        self.last: Dashboard | None = None
        self._took = 0.0  # seconds the last rendering took
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="vstream-display", daemon=True)

    def start(self) -> LiveView:
        """Render once now (so the output cell shows the job at once), then keep going
        in the background. The first rendering has no plot and imports nothing: the
        view's thread imports the plotting libraries and draws it, even when the job has
        already ended (its last rendering then has the plot)."""
        final = not self.job.running and not self.plots
        self.render(final=final, plot_mode="pending" if self.plots else None)
        if not final:  # even if the job ended meanwhile: the thread renders its end
            self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait for the last rendering (after the job ended)."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _results(self) -> pl.DataFrame:
        try:
            return self.job.results
        except AttributeError:  # a job writing to sinks only keeps no rows
            return pl.DataFrame()

    def render(self, *, final: bool = False, plot_mode: PlotMode | None = None) -> str:
        """Render the job as it is now and hand the rendering on; returns it (HTML or
        text). The plot is drawn as ``plot_mode`` says (:func:`.bundle.dashboard`); by
        default with its static SVG in the last rendering only (vl-convert holds the GIL
        0.05-0.1 s for 100 points, 0.15-0.25 s for 1,000: too much for every refresh)."""
        t = time.perf_counter()
        metrics, results = self.job.metrics, self._results()
        shown: Dashboard | None = None
        if self.html:
            plot = self.y if self.y is not None and self.y in results.columns else None
            shown = self.last = dashboard(
                metrics,
                results,
                y=plot,
                by=self.by,
                x=self.x,
                top=self.top,
                max_rows=self.rows,
                time_unit=self.time_unit,
                time_columns=self.time_columns,
                plot_mode=plot_mode or ("static" if final else "live"),
            )
            text = shown.html
        elif final:
            shown_rows = as_datetimes(results, self.time_columns)
            text = dashboard_text(metrics, shown_rows, max_rows=self.rows)
        else:
            text = metrics.summary()
        # what the pipeline may feel (Python holding the GIL); the frontend's time in
        # _emit is its own
        self._took = time.perf_counter() - t
        self._emit(text, shown)
        self.renders += 1
        return text

    def _emit(self, text: str, shown: Dashboard | None) -> None:
        if self._sink is not None:
            self._sink(text)
        elif shown is not None:
            # the whole bundle: a saved notebook keeps the SVG and the text beside the HTML
            from IPython import display as ipd

            if self._handle is None:
                self._handle = ipd.display(shown, display_id=True)  # type: ignore[no-untyped-call]
            else:
                self._handle.update(shown)
        else:
            print(text, file=self.out or sys.stdout, flush=True)

    def _wait_for_job(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the job ends (``stop()`` included): the last
        rendering then comes at once, not after the rest of the refresh interval."""
        try:
            self.job.join(seconds)
        except BaseException as exc:
            if exc is not self.job.error:
                raise
            # the job failed: the error is the job's to report; the view shows it ended

    def _loop(self) -> None:
        last_text = time.monotonic()
        try:
            if self.plots:
                load_chart_libraries()  # seconds in a fresh process: not on the caller's
                if self.job.running:
                    self.render()  # the first plot, without waiting for the refresh
            while self.job.running:
                # rendering is Python holding the GIL (Altair builds the plot): keep it
                # to 1/20 of the time whatever the refresh asked for
                self._wait_for_job(max(self.every, _SHARE * self._took))
                if not self.job.running:
                    break
                now = time.monotonic()
                if self.html or now - last_text >= self.text_every:
                    self.render()
                    last_text = now
            self.render(final=True)
        except BaseException as exc:  # a failed rendering must not pass unnoticed
            self.error = exc
