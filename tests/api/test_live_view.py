"""The live view of a job (Job.display): renders while the job runs, a last time when it
ends, in HTML or as text, and never holds the job up."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl

import vstream as vs
from vstream.notebook.live import LiveView

#: a failure guard only: how long a gated batch waits for the view before going on
PATIENCE_S = 60.0
#: how the static SVG of a plot starts in the HTML
STATIC = '<div class="vstream-static"><svg'
ROOT = Path(__file__).resolve().parents[2]


def _slow_job(
    telemetry: pl.DataFrame,
    delay: float = 0.02,
    *,
    gate: threading.Event | None = None,
    at_batch: int = 5,
) -> vs.Job:
    """A window job over ~30 batches that takes ~30 x ``delay`` seconds; with ``gate``,
    batch ``at_batch`` waits until the gate is set (so the job is still running then)."""
    batches = itertools.count()

    def crawl(df: pl.DataFrame) -> pl.DataFrame:
        # (the empty frame map_batches infers the schema with is not a batch)
        if gate is not None and df.height and next(batches) == at_batch:
            gate.wait(PATIENCE_S)
        time.sleep(delay)
        return df

    return (
        vs.from_polars(telemetry, batch_size=700)
        .map_batches(crawl)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="region")
        .agg(pl.len(), pl.col("cpu").mean())
        .start()
    )


def test_html_view_renders_while_running_and_once_more_at_the_end(
    telemetry_small: pl.DataFrame,
) -> None:
    """The job waits (mid-run) until the view has rendered from its loop, so the count
    does not depend on how fast rendering is on a busy machine."""
    seen: list[str] = []
    rendered_in_loop = threading.Event()

    def sink(text: str) -> None:
        seen.append(text)
        if len(seen) >= 2:  # the one at start() and one from the view's loop
            rendered_in_loop.set()

    job = _slow_job(telemetry_small, gate=rendered_in_loop)
    view = LiveView(job, y="cpu", by="region", every=0.05, html=True, sink=sink).start()
    job.join(timeout=PATIENCE_S)
    view.join(timeout=PATIENCE_S)
    assert view.error is None
    assert rendered_in_loop.is_set()
    assert len(seen) >= 3  # the first rendering, some while running, the last one
    assert "running" in seen[0]
    assert "running" in seen[1]  # rendered while the job waited for it
    last = seen[-1]
    assert "finished" in last
    assert f"{telemetry_small.height:,}" in last  # events in, as people read numbers
    assert "vega" in last.lower()  # the plot of cpu per region
    # only the last rendering carries the plot's static SVG (the one a notebook keeps)
    assert all(STATIC not in text for text in seen[:-1])
    assert STATIC in last
    assert view.last is not None
    assert view.last.svg is not None
    assert view.last.svg in last
    assert "batch latency" in last
    assert 0 < job.metrics.max_batch_latency_s < PATIENCE_S
    assert job.metrics.max_batch_latency_s >= 0.02  # each batch sleeps 0.02 s
    assert "us-east-1" in last  # a region in the plot data or the table


class _Lines(io.StringIO):
    """Text output that sets ``twice`` once two status lines were written."""

    def __init__(self) -> None:
        super().__init__()
        self.twice = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.getvalue().count("events in") >= 2:
            self.twice.set()
        return n


def test_text_view_prints_status_lines_then_the_dashboard(telemetry_small: pl.DataFrame) -> None:
    out = _Lines()
    job = _slow_job(telemetry_small, gate=out.twice)
    view = LiveView(job, every=0.05, text_every=0.1, html=False, out=out).start()
    job.join(timeout=PATIENCE_S)
    view.join(timeout=PATIENCE_S)
    assert out.twice.is_set()  # a status line at start() and one from the loop
    text = out.getvalue()
    assert text.count("events in") >= 3  # status lines (Metrics.summary), the final table
    assert "finished" in text  # the last rendering: the job had ended
    assert "window_start" in text  # the newest rows, as a text table


def test_stop_ends_the_view_without_waiting_out_its_refresh(
    telemetry_small: pl.DataFrame,
) -> None:
    """The view refreshes once an hour here: only an interruptible wait lets it render
    the end and stop within the test's patience."""
    seen: list[str] = []
    job = _slow_job(telemetry_small, delay=0.2)
    view = LiveView(job, every=3600, html=True, sink=seen.append).start()
    assert "running" in seen[0]
    job.stop()
    view.join(timeout=PATIENCE_S)
    assert not view._thread.is_alive()
    assert view.error is None
    assert not job.running
    assert len(seen) == 2
    assert "stopped" in seen[-1]  # stopped with input left (not finished)


def test_a_failed_job_ends_the_view_cleanly(telemetry_small: pl.DataFrame) -> None:
    """The job's error is the job's: the view waits on the job, renders the end and
    keeps no error of its own."""
    seen: list[str] = []
    batches = itertools.count()

    def fail_later(df: pl.DataFrame) -> pl.DataFrame:
        if df.height and next(batches) == 3:
            msg = "boom"
            raise ValueError(msg)
        return df

    job = vs.from_polars(telemetry_small, batch_size=700).map_batches(fail_later).start()
    view = LiveView(job, every=3600, html=True, sink=seen.append).start()
    view.join(timeout=PATIENCE_S)
    assert not view._thread.is_alive()
    assert view.error is None
    assert isinstance(job.error, vs.VStreamError)
    assert "boom" in str(job.error)
    assert "finished" in seen[-1]


def test_display_returns_at_once(telemetry_small: pl.DataFrame) -> None:
    """display() does not wait for the job: the job cannot end before it returns."""
    released = threading.Event()
    job = _slow_job(telemetry_small, gate=released, at_batch=0)
    try:
        job.display(every=0.05)  # not in a notebook: text on stdout
        assert job.running
        assert job.view is not None
    finally:
        released.set()
    job.stop()
    job.view.join(timeout=PATIENCE_S)
    assert job.view.error is None


def test_view_of_an_empty_stream_and_before_any_window(telemetry_small: pl.DataFrame) -> None:
    empty = telemetry_small.clear()
    seen: list[str] = []
    job = (
        vs.from_polars(empty)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="region")
        .agg(pl.len())
        .start()
    )
    job.join(timeout=30)
    LiveView(job, y="len", by="region", html=True, sink=seen.append).start().join(PATIENCE_S)
    assert "finished" in seen[-1]
    assert "window_start" in seen[-1]  # the empty table still shows its columns
    # a sink-only job keeps no results: gauges only
    seen.clear()
    job = (
        vs.from_polars(telemetry_small.head(10)).sink_callback(lambda df: None, lazy=True).start()
    )
    job.join(timeout=30)
    LiveView(job, html=True, sink=seen.append).start()
    assert "events in" in seen[-1]


class _EndsAfterFirstLook:
    """A job that is running at the view's first look and has ended at its second: the
    race of a job ending while the view starts, made deterministic."""

    def __init__(self) -> None:
        self.looks = 0
        self.error = None
        self.results = pl.DataFrame({"x": [1]})

    @property
    def running(self) -> bool:
        self.looks += 1
        return self.looks == 1

    @property
    def metrics(self) -> vs.Metrics:
        return vs.Metrics(events_in=1, running=self.looks <= 1)

    def join(self, timeout: float | None = None) -> None:
        return None


def test_a_job_ending_while_the_view_starts_still_gets_its_final_rendering() -> None:
    seen: list[str] = []
    view = LiveView(_EndsAfterFirstLook(), every=3600, html=False, sink=seen.append)  # type: ignore[arg-type]
    view.start()
    view.join(timeout=PATIENCE_S)
    assert len(seen) == 2, seen
    assert "finished" in seen[-1]


def test_a_job_that_ended_before_the_first_plot_shows_its_end_with_the_plot(
    telemetry_small: pl.DataFrame,
) -> None:
    """The first rendering has no plot (its libraries load in the view's thread); the
    view's thread then renders the end, with the plot and its SVG."""
    job = _slow_job(telemetry_small, delay=0)
    job.join(timeout=PATIENCE_S)
    seen: list[str] = []
    view = LiveView(job, y="cpu", by="region", html=True, sink=seen.append).start()
    view.join(timeout=PATIENCE_S)
    assert view.error is None
    assert len(seen) == 2
    first, last = seen
    assert "plot of cpu: loading" in first
    assert "vegaEmbed" not in first
    assert "finished" in first  # the gauges and rows show at once
    assert "us-east-1" in first
    assert "finished" in last
    assert "vegaEmbed" in last
    assert STATIC in last


# the gate holds Altair's import in any thread but the main one until the main thread
# has seen start() return; the main thread may look Altair up (find_spec) but not import it
_GATED_START = """
import sys, threading
import polars as pl
import vstream as vs
from vstream.notebook.live import LiveView

released = threading.Event()
importers = []

class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == "altair":
            importers.append(threading.current_thread().name)
            if threading.current_thread() is not threading.main_thread():
                released.wait(60)
        return None

sys.meta_path.insert(0, Gate())
job = vs.from_polars(pl.DataFrame({"window_start": [0, 10], "n": [1, 2]})).start()
job.join(timeout=60)
seen = []
view = LiveView(job, y="n", html=True, sink=seen.append).start()
returned = ("altair" in sys.modules, list(seen))
released.set()
view.join(timeout=60)
assert view.error is None, view.error
imported_first, first = returned
assert not imported_first, "start() imported altair"
assert len(first) == 1 and "plot of n: loading" in first[0], first
assert "vega-embed" not in first[0]
assert "vstream-plot" in seen[-1] and "<svg" in seen[-1] and "finished" in seen[-1]
assert any(name != "MainThread" for name in importers), importers
print("ok")
"""


def test_start_returns_before_the_plotting_library_is_imported() -> None:
    """Issue 22 item 3, in a fresh interpreter (this one has Altair loaded already): the
    view's thread imports Altair, held at a gate until start() has returned, and draws
    the plot after; the caller's thread never imports it."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _GATED_START],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
