"""Terminal calls: collect, head, timeout, iter_batches, collect_all and background jobs;
unbounded input is refused where it would never end, and stopping really stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import vstream as vs

#: generous wall-clock limit for anything that should take milliseconds
PATIENCE_S = 10.0
KINDS = ["records", "ndjson", "arrow"]


def _wait_for(cond: Callable[[], bool], timeout: float = PATIENCE_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# ====================================================================== unbounded input


@pytest.mark.parametrize("kind", KINDS)
def test_collect_refuses_unbounded_input(endless: Any, kind: str) -> None:
    s = endless.stream(kind)
    assert not s.is_bounded
    with pytest.raises(vs.UnboundedError) as info:
        s.collect()
    message = str(info.value)
    assert "head" in message
    assert "timeout" in message
    with pytest.raises(vs.UnboundedError):
        vs.collect_all([s.filter(pl.col("i") > 0)])
    with pytest.raises(vs.UnboundedError):
        s.sink_callback(lambda b: None)


def test_unbounded_reader_is_refused(endless: Any) -> None:
    reader = pa.RecordBatchReader.from_batches(pa.schema([("i", pa.int64())]), endless.batches(10))
    with pytest.raises(vs.UnboundedError):
        vs.from_arrow(reader, bounded=False).collect()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 250])
def test_head_bounds_an_unbounded_stream(endless: Any, kind: str, n: int) -> None:
    s = endless.stream(kind, batch_size=100).head(n)
    assert s.is_bounded
    out = s.collect()
    assert out.schema == pl.Schema({"i": pl.Int64})
    assert out["i"].to_list() == list(range(n))


@pytest.mark.parametrize("kind", KINDS)
def test_collect_with_timeout_returns_what_arrived(endless: Any, kind: str) -> None:
    s = endless.stream(kind, batch_size=10, delay=0.001)
    t0 = time.monotonic()
    out = s.collect(timeout=0.5)
    took = time.monotonic() - t0
    assert took < 0.5 + PATIENCE_S / 2
    assert out.height > 0
    assert out["i"].to_list() == list(range(out.height))  # a prefix, in order


def test_collect_with_timeout_on_a_blocked_generator(endless: Any) -> None:
    s = vs.from_records(endless.blocked(), schema={"i": pl.Int64})
    t0 = time.monotonic()
    out = s.collect(timeout="300ms")
    assert time.monotonic() - t0 < PATIENCE_S / 2
    assert_frame_equal(out, pl.DataFrame(schema={"i": pl.Int64}))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["break_iter_batches", "head", "timeout", "job_stop"])
def test_source_is_not_read_after_the_run_ends(endless: Any, kind: str, how: str) -> None:
    """Once a run is over, its reader thread stops pulling from the user's iterator (an
    endless generator must not be drained by a thread nobody listens to)."""
    s = endless.stream(kind, batch_size=100)
    if how == "break_iter_batches":
        batches = s.iter_batches()
        for k, _ in enumerate(batches):
            if k == 2:
                break
        batches.close()
    elif how == "head":
        assert s.head(150).collect().height == 150
    elif how == "timeout":
        s.collect(timeout=0.2)
    else:
        job = s.start()
        assert _wait_for(lambda: job.metrics.events_in > 0)
        job.stop()
        assert not job.running
    time.sleep(0.15)  # let the reader notice
    before = endless.produced
    time.sleep(0.2)
    after = endless.produced
    assert after - before <= 100, f"the source went on reading: {before} -> {after} rows"


# ====================================================================== iter_batches


@pytest.mark.parametrize("batch_size", [1, 7, 65_536])
def test_iter_batches_concat_equals_collect(
    telemetry_small: pl.DataFrame, batch_size: int
) -> None:
    df = telemetry_small.head(1_000)
    s = vs.from_polars(df, batch_size=batch_size).filter(pl.col("cpu") > 30)
    batches = list(s.iter_batches())
    assert batches
    assert all(isinstance(b, pl.DataFrame) for b in batches)
    assert all(b.schema == s.schema for b in batches)
    assert_frame_equal(pl.concat(batches), s.collect())
    assert_frame_equal(s.collect(), df.filter(pl.col("cpu") > 30))


@pytest.mark.parametrize("kind", KINDS)
def test_iter_batches_on_unbounded_input_can_be_left_early(endless: Any, kind: str) -> None:
    s = endless.stream(kind, batch_size=50)
    t0 = time.monotonic()
    got: list[int] = []
    for batch in s.iter_batches():
        got.extend(batch["i"].to_list())
        if len(got) >= 120:
            break
    assert time.monotonic() - t0 < PATIENCE_S
    assert got == list(range(len(got)))
    # and the same stream object cannot silently replay a one-shot generator
    with pytest.raises(vs.SourceError):
        s.head(1).collect()


def test_iter_batches_with_timeout_on_unbounded_input(endless: Any) -> None:
    s = endless.stream("records", batch_size=10, delay=0.001)
    t0 = time.monotonic()
    rows = sum(b.height for b in s.iter_batches(timeout=0.3))
    assert time.monotonic() - t0 < PATIENCE_S / 2
    assert rows > 0


# ====================================================================== collect_all


def test_collect_all_one_frame_per_stream_shared_steps_once(
    telemetry_small: pl.DataFrame,
) -> None:
    df = telemetry_small
    calls = [0]
    rows = [0]

    def count(batch: pl.DataFrame) -> pl.DataFrame:
        if batch.height:  # the schema probe at build time sees an empty frame
            calls[0] += 1
            rows[0] += batch.height
        return batch.with_columns(load=pl.col("cpu") / 100)

    base = vs.from_polars(df, batch_size=1_000).map_batches(count)
    hot = base.filter(pl.col("load") > 0.8)
    cold = base.filter(pl.col("load") < 0.2).select("ts", "host")
    out, metrics = vs.collect_all([base, hot, cold], return_metrics=True)
    assert isinstance(out, list)
    assert len(out) == 3
    expected = df.with_columns(load=pl.col("cpu") / 100)
    assert_frame_equal(out[0], expected)
    assert_frame_equal(out[1], expected.filter(pl.col("load") > 0.8))
    assert_frame_equal(out[2], expected.filter(pl.col("load") < 0.2).select("ts", "host"))
    assert calls[0] == -(-df.height // 1_000)  # once per input batch, not per branch
    assert rows[0] == df.height
    assert metrics.events_in == df.height


def test_collect_all_same_stream_twice(telemetry_small: pl.DataFrame) -> None:
    s = vs.from_polars(telemetry_small.head(100))
    a, b = vs.collect_all([s, s])
    assert_frame_equal(a, telemetry_small.head(100))
    assert_frame_equal(b, telemetry_small.head(100))


def test_collect_all_needs_streams() -> None:
    with pytest.raises(vs.PipelineError):
        vs.collect_all([])
    with pytest.raises(vs.PipelineError):
        vs.collect_all([pl.DataFrame({"x": [1]})])  # type: ignore[list-item]


def test_collect_with_metrics(telemetry_small: pl.DataFrame) -> None:
    df = telemetry_small.head(3_000)
    out, metrics = vs.from_polars(df, batch_size=1_000).collect(return_metrics=True)
    assert_frame_equal(out, df)
    assert isinstance(metrics, vs.Metrics)
    assert metrics.events_in == metrics.events_out == df.height
    assert metrics.batches_in == 3
    assert metrics.dead_letters == 0
    assert not metrics.running


# ====================================================================== background jobs


def test_job_results_grow_while_an_unbounded_source_runs(endless: Any) -> None:
    job = endless.stream("records", batch_size=20, delay=0.001).start()
    try:
        assert _wait_for(lambda: job.results.height > 0)
        first = job.results.height
        assert _wait_for(lambda: job.results.height > first)
        metrics = job.metrics
        assert metrics.events_in > 0
        assert metrics.running
        assert job.running
        t0 = time.monotonic()
    finally:
        job.stop()
    assert time.monotonic() - t0 < 5
    assert not job.running
    results = job.results
    assert results["i"].to_list() == list(range(results.height))
    assert job.metrics.events_out == results.height


def test_job_stop_while_the_source_is_blocked(endless: Any) -> None:
    job = vs.from_records(endless.blocked(), schema={"i": pl.Int64}).start()
    time.sleep(0.1)
    assert job.running
    t0 = time.monotonic()
    job.stop()
    assert time.monotonic() - t0 < 5
    assert not job.running
    assert job.results.height == 0


def test_job_stop_with_drain(endless: Any) -> None:
    job = endless.stream("records", batch_size=20, delay=0.001).start()
    assert _wait_for(lambda: job.results.height > 0)
    t0 = time.monotonic()
    job.stop(drain=True)
    assert time.monotonic() - t0 < 5
    assert not job.running
    assert job.error is None
    results = job.results
    assert results["i"].to_list() == list(range(results.height))


def test_start_on_a_consumed_one_shot_source_fails_at_once() -> None:
    s = vs.from_records((r for r in [{"i": 1}]), bounded=True)
    assert s.collect().height == 1
    with pytest.raises(vs.SourceError):
        s.start()


def test_job_keeps_the_newest_rows(telemetry_small: pl.DataFrame) -> None:
    df = telemetry_small.head(1_000)
    job = vs.from_polars(df, batch_size=64).start(keep=100)
    job.join(timeout=PATIENCE_S)
    assert not job.running
    assert_frame_equal(job.results, df.tail(100))


def test_job_on_bounded_input_finishes_by_itself(telemetry_small: pl.DataFrame) -> None:
    df = telemetry_small.head(2_000)
    job = vs.from_polars(df, batch_size=300).filter(pl.col("status") == 200).start()
    assert _wait_for(lambda: not job.running)
    job.join()
    assert job.error is None
    assert_frame_equal(job.results, df.filter(pl.col("status") == 200))
    assert job.metrics.events_in == df.height
    assert not job.metrics.running


class Boom(Exception):
    pass


@pytest.mark.parametrize("bounded", [True, False])
def test_job_join_reraises_an_error_from_map_batches(endless: Any, bounded: bool) -> None:
    def explode(batch: pl.DataFrame) -> pl.DataFrame:
        if batch.height and batch["i"].max() >= 300:  # type: ignore[operator]
            msg = "kaboom at 300"
            raise Boom(msg)
        return batch

    if bounded:
        s = vs.from_records([{"i": i} for i in range(1_000)], batch_size=50)
    else:
        s = endless.stream("records", batch_size=50)
    job = s.map_batches(explode).start()
    assert _wait_for(lambda: not job.running)
    with pytest.raises(Exception, match="kaboom at 300") as info:
        job.join(timeout=PATIENCE_S)
    err = info.value
    assert isinstance(err, Boom) or isinstance(err.__cause__, Boom)
    assert job.error is err
    # what came before the failure was delivered
    assert job.results["i"].to_list() == list(range(job.results.height))
    assert 0 < job.results.height <= 300


def test_start_all_runs_branches_as_one_job(telemetry_small: pl.DataFrame) -> None:
    df = telemetry_small.head(2_000)
    s = vs.from_polars(df, batch_size=128)
    seen: list[pl.DataFrame] = []
    job = vs.start_all([s.filter(pl.col("cpu") > 50), s.sink_callback(seen.append, lazy=True)])
    job.join(timeout=PATIENCE_S)
    assert not job.running
    assert_frame_equal(job.results_of(0), df.filter(pl.col("cpu") > 50))
    assert_frame_equal(pl.concat(seen), df)
    assert job.metrics.events_in == df.height
    with pytest.raises(IndexError):
        job.results_of(1)


def test_job_of_sinks_only_has_no_results(telemetry_small: pl.DataFrame) -> None:
    job = vs.from_polars(telemetry_small.head(10)).sink_callback(lambda b: None, lazy=True).start()
    job.join(timeout=PATIENCE_S)
    with pytest.raises(AttributeError):
        _ = job.results


def test_no_threads_left_behind(telemetry_small: pl.DataFrame, endless: Any) -> None:
    before = set(threading.enumerate())
    vs.from_polars(telemetry_small.head(500), batch_size=50).collect()
    job = endless.stream("arrow", batch_size=50).start()
    _wait_for(lambda: job.metrics.events_in > 0)
    job.stop()
    assert _wait_for(lambda: not [t for t in threading.enumerate() if t not in before])


@pytest.mark.parametrize("drain", [False, True])
def test_a_stopped_job_says_stopped_not_finished(endless: Any, drain: bool) -> None:
    """Issue 22: after stop() with input left the state is "stopped"; a job whose
    input ended is "finished"."""
    from vstream.notebook import metrics_text

    job = endless.stream("records", batch_size=20, delay=0.001).start()
    assert _wait_for(lambda: job.results.height > 0)
    job.stop(drain=drain)
    assert not job.running
    assert job.metrics.stopped
    assert repr(job).startswith("<vstream.Job stopped:")
    assert metrics_text(job.metrics).splitlines()[0].split() == ["state", "stopped"]
    done = vs.from_records([{"i": 1}, {"i": 2}]).start()
    done.join(timeout=PATIENCE_S)
    assert not done.metrics.stopped
    assert repr(done).startswith("<vstream.Job finished:")
    assert metrics_text(done.metrics).splitlines()[0].split() == ["state", "finished"]
