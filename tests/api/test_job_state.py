"""Job.state(): the open windows of a running job, read between micro-batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest

import vstream as vs

SameRows = Any

ROWS = [{"ts": t, "k": "ab"[t % 2], "x": t} for t in range(50)]
SCHEMA = {"ts": pl.Int64, "k": pl.String, "x": pl.Int64}


def _live(done: threading.Event) -> Any:
    """50 rows, then nothing until ``done``: a live source whose windows stay open."""

    def rows() -> Iterator[dict[str, Any]]:
        yield from ROWS
        done.wait(30)

    return rows


def _wait_for(job: vs.Job, events: int) -> None:
    deadline = time.monotonic() + 30
    while job.metrics.events_in < events:
        assert time.monotonic() < deadline, "the job did not read its input"
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session"])
def test_state_is_the_open_windows_and_leaves_the_output_alone(
    kind: str, same_rows: SameRows
) -> None:
    spec = {"tumbling": vs.tumbling(10), "hopping": vs.hopping(20, 10), "session": vs.session(3)}[
        kind
    ]
    frame = pl.DataFrame(ROWS, schema=SCHEMA)
    # a bound larger than the data: no window fires while the job runs
    expected = (
        vs.from_polars(frame)
        .with_watermark("ts", 1_000)
        .window(spec, by="k")
        .agg(pl.len(), pl.col("x").sum())
        .collect()
    )
    done = threading.Event()
    stream = (
        vs.from_records(_live(done), schema=SCHEMA, max_delay="5ms")
        .with_watermark("ts", 1_000)
        .window(spec, by="k")
        .agg(pl.len(), pl.col("x").sum())
    )
    job = stream.start()
    try:
        _wait_for(job, len(ROWS))
        open_now = job.state()
        same_rows(open_now, expected)  # every window is open, with all its rows
        same_rows(job.state("by='k'"), expected)  # by label; reading twice changes nothing
        assert job.results.height == 0
    finally:
        done.set()
        job.stop(drain=True)
    same_rows(job.results, expected)  # then emitted once, as if state() never ran


def test_state_of_a_finished_job_is_empty() -> None:
    df = pl.DataFrame({"ts": [1, 2, 12], "k": ["a", "b", "a"]})
    job = (
        vs.from_polars(df)
        .with_watermark("ts", 0)
        .window(vs.tumbling(10), by="k")
        .agg(pl.len())
        .start()
    )
    job.join(timeout=30)
    got = job.state(0)
    assert got.height == 0
    assert got.columns == ["k", "window_start", "window_end", "len"]


def test_state_needs_a_window_step() -> None:
    job = vs.from_polars(pl.DataFrame({"x": [1]})).start()
    job.join(timeout=30)
    with pytest.raises(vs.PipelineError, match="no window step"):
        job.state()


def test_state_names_the_window_steps_it_could_mean() -> None:
    s = vs.from_polars(pl.DataFrame({"ts": [1], "k": ["a"]})).with_watermark("ts", 0)
    a = s.window(vs.tumbling(10), by="k").agg(pl.len())
    b = s.window(vs.tumbling(20), by="k").agg(pl.len())
    job = vs.start_all([a, b])
    job.join(timeout=30)
    with pytest.raises(vs.PipelineError, match="2 window steps match"):
        job.state("tumbling")
    with pytest.raises(vs.PipelineError, match="has 2 window step"):
        job.state(2)
    assert job.state("tumbling(20)").height == 0
