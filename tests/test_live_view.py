"""The live view of a job (Job.display): renders while the job runs, a last time when it
ends, in HTML or as text, and never holds the job up."""

from __future__ import annotations

import io
import time

import polars as pl

import vstream as vs
from vstream.notebook.live import LiveView


def _slow_job(telemetry: pl.DataFrame, delay: float = 0.02) -> vs.Job:
    """A window job over ~30 batches that takes ~30 x ``delay`` seconds."""

    def crawl(df: pl.DataFrame) -> pl.DataFrame:
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
    seen: list[str] = []
    job = _slow_job(telemetry_small)
    view = LiveView(job, y="cpu", by="region", every=0.05, html=True, sink=seen.append).start()
    job.join(timeout=60)
    view.join(timeout=5)
    assert view.error is None
    assert len(seen) >= 3  # the first rendering, some while running, the last one
    assert "running" in seen[0]
    last = seen[-1]
    assert "finished" in last
    assert f"{telemetry_small.height:,}" in last  # events in, as people read numbers
    assert "vega" in last.lower()  # the plot of cpu per region
    assert "batch latency" in last
    assert 0 < job.metrics.max_batch_latency_s < 10  # each batch sleeps 0.02 s
    assert job.metrics.max_batch_latency_s >= 0.02
    assert "us-east-1" in last  # a region in the plot data or the table


def test_text_view_prints_status_lines_then_the_dashboard(telemetry_small: pl.DataFrame) -> None:
    out = io.StringIO()
    job = _slow_job(telemetry_small)
    view = LiveView(job, every=0.05, text_every=0.1, html=False, out=out).start()
    job.join(timeout=60)
    view.join(timeout=5)
    text = out.getvalue()
    assert text.count("events in") >= 2  # status lines (Metrics.summary) and the final table
    assert "finished" in text  # the last rendering: the job had ended
    assert "window_start" in text  # the newest rows, as a text table


def test_stop_ends_the_job_and_the_view_within_a_second(telemetry_small: pl.DataFrame) -> None:
    seen: list[str] = []
    job = _slow_job(telemetry_small, delay=0.2)
    view = LiveView(job, every=0.05, html=True, sink=seen.append).start()
    time.sleep(0.3)
    t = time.perf_counter()
    job.stop()
    view.join(timeout=5)
    assert time.perf_counter() - t < 1.0
    assert not job.running
    assert "finished" in seen[-1]


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
    LiveView(job, y="len", by="region", html=True, sink=seen.append).start()
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


def test_display_returns_at_once(telemetry_small: pl.DataFrame) -> None:
    job = _slow_job(telemetry_small)
    t = time.perf_counter()
    job.display(every=0.05)  # not in a notebook: text on stdout
    assert time.perf_counter() - t < 0.5
    assert job.view is not None
    job.stop()
    job.view.join(timeout=5)
    assert job.view.error is None
