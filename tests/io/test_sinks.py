"""Sinks: Parquet part files and callbacks get every row, in order; several sinks of one
plan run as one job that reads its source once; a slow sink slows the source down."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import vstream as vs

#: generous wall-clock limit for anything that should take milliseconds
PATIENCE_S = 10.0


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def _read_parts(folder: Path) -> pl.DataFrame:
    """The part files concatenated in file-name order."""
    return pl.concat([pl.read_parquet(p) for p in _parts(folder)])


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


# ====================================================================== sink_parquet


@pytest.mark.parametrize(
    ("rows", "rows_per_file", "batch_size"),
    [(5_000, 1_000_000, 700), (5_000, 1_000, 700), (2_000, 333, 65_536), (30, 1, 7)],
)
def test_sink_parquet_writes_the_input(
    tmp_path: Path,
    telemetry_small: pl.DataFrame,
    same_rows: Any,
    rows: int,
    rows_per_file: int,
    batch_size: int,
) -> None:
    df = telemetry_small.head(rows)
    out = tmp_path / "out"
    metrics = vs.from_polars(df, batch_size=batch_size).sink_parquet(
        out, rows_per_file=rows_per_file
    )
    assert isinstance(metrics, vs.Metrics)
    assert metrics.events_in == metrics.events_out == rows
    same_rows(pl.read_parquet(out / "*.parquet"), df)
    assert_frame_equal(_read_parts(out), df)  # part order is row order
    sizes = [pl.read_parquet(p).height for p in _parts(out)]
    assert len(sizes) == -(-rows // rows_per_file)
    assert all(n == rows_per_file for n in sizes[:-1])
    assert 0 < sizes[-1] <= rows_per_file
    assert _hidden(out) == []


def test_sink_parquet_second_run_appends(tmp_path: Path, telemetry_small: pl.DataFrame) -> None:
    df = telemetry_small.head(3_000)
    out = tmp_path / "out"
    vs.from_polars(df.head(2_000), batch_size=500).sink_parquet(out, rows_per_file=1_000)
    first = {p.name: p.read_bytes() for p in _parts(out)}
    assert len(first) == 2
    vs.from_polars(df.tail(1_000), batch_size=500).sink_parquet(
        out, rows_per_file=1_000, mode="append"
    )
    after = {p.name: p.read_bytes() for p in _parts(out)}
    assert len(after) == 3
    assert {k: after[k] for k in first} == first  # earlier files untouched
    assert_frame_equal(_read_parts(out), df)  # new files sort after the old ones
    assert _hidden(out) == []


def test_sink_parquet_leaves_other_files_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.txt").write_text("keep me")
    pl.DataFrame({"x": [-1]}).write_parquet(out / "part-000041.parquet")
    vs.from_polars(pl.DataFrame({"x": [1, 2, 3]})).sink_parquet(out, mode="append")
    assert (out / "README.txt").read_text() == "keep me"
    assert pl.read_parquet(out / "part-000041.parquet")["x"].to_list() == [-1]
    new = [p for p in _parts(out) if p.name != "part-000041.parquet"]
    assert len(new) == 1
    assert new[0].name > "part-000041.parquet"
    assert pl.read_parquet(new[0])["x"].to_list() == [1, 2, 3]


def test_two_sinks_into_one_directory_do_not_clobber_each_other(
    tmp_path: Path, same_rows: Any
) -> None:
    df = pl.DataFrame({"x": range(10)})
    a = vs.from_polars(df, batch_size=3)
    b = a.filter(pl.col("x") > 4)
    out = tmp_path / "out"
    vs.collect_all([a.sink_parquet(out, lazy=True), b.sink_parquet(out, lazy=True)])
    same_rows(pl.read_parquet(out / "*.parquet"), pl.concat([df, df.filter(pl.col("x") > 4)]))


def test_failed_run_still_writes_the_rows_its_sink_accepted(tmp_path: Path) -> None:
    """Sink.close runs when a run ends "finished, stopped or failed": the rows that reached
    the sink before a later batch failed are written, not silently dropped."""

    def fail_late(batch: pl.DataFrame) -> pl.DataFrame:
        if batch.height and batch["x"].min() >= 200:  # type: ignore[operator]
            msg = "bad batch"
            raise ValueError(msg)
        return batch

    out = tmp_path / "out"
    s = vs.from_polars(pl.DataFrame({"x": range(300)}), batch_size=100).map_batches(fail_late)
    with pytest.raises(Exception, match="bad batch"):
        s.sink_parquet(out)
    assert out.is_dir()
    parts = _parts(out)
    assert parts, "the 200 rows accepted before the failure were not written"
    assert _read_parts(out)["x"].to_list() == list(range(200))
    assert _hidden(out) == []


def test_sink_parquet_round_trips_through_from_parquet(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    df = telemetry_small.head(4_000).with_columns(
        when=pl.col("ts").cast(pl.Datetime("ms")),
        tags=pl.concat_list("host", "region"),
        flag=pl.col("status") == 200,
    )
    vs.from_polars(df, batch_size=512).sink_parquet(tmp_path / "out", rows_per_file=1_500)
    back = vs.from_parquet(tmp_path / "out")
    assert back.schema == df.schema
    assert_frame_equal(back.collect(), df)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"rows_per_file": 0}, id="rows_per_file_0"),
        pytest.param({"rows_per_file": "10"}, id="rows_per_file_str"),
        pytest.param({"rows_per_file": 2.5}, id="rows_per_file_float"),
        pytest.param({"compression": "nope"}, id="compression"),
        pytest.param({"flush_interval": "soon"}, id="flush_interval"),
        pytest.param({"path_is_a_file": True}, id="path_is_a_file"),
    ],
)
def test_sink_parquet_bad_arguments_fail_when_built(
    tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    """A wrong sink is a wrong pipeline: refused with a PipelineError when it is built
    (lazy or not), before anything is read or written."""
    s = vs.from_polars(pl.DataFrame({"x": [1]}))
    target = tmp_path / "out"
    if kwargs.pop("path_is_a_file", False):
        target.write_text("x")
    for lazy in (True, False):
        with pytest.raises(vs.PipelineError):
            s.sink_parquet(target, lazy=lazy, **kwargs)
    assert not target.is_dir()  # nothing was created


def test_sink_parquet_flushes_on_time_and_on_stop(tmp_path: Path, endless: Any) -> None:
    """An unbounded run writes a partial file every flush_interval, and stopping it
    writes the rest: the files then hold exactly the rows delivered, in order."""
    out = tmp_path / "out"
    s = endless.stream("records", batch_size=50, delay=0.001)
    job = s.sink_parquet(out, flush_interval="100ms", lazy=True).start()
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not _parts(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _parts(out), "no part file was written while the job ran"
        assert job.running
    finally:
        job.stop()
    assert not job.running
    back = _read_parts(out)
    assert back.height == job.metrics.events_out > 0
    assert back["i"].to_list() == list(range(back.height))
    assert _hidden(out) == []


# ====================================================================== sink_callback


@pytest.mark.parametrize("batch_size", [1, 7, 65_536])
def test_sink_callback_gets_every_row_in_order(
    telemetry_small: pl.DataFrame, batch_size: int
) -> None:
    df = telemetry_small.head(1_000)
    seen: list[Any] = []
    metrics = vs.from_polars(df, batch_size=batch_size).sink_callback(seen.append)
    assert all(isinstance(b, pl.DataFrame) for b in seen)
    assert all(0 < b.height <= batch_size for b in seen)
    assert_frame_equal(pl.concat(seen), df)
    assert metrics.events_out == df.height


def test_sink_callback_refuses_a_non_callable() -> None:
    with pytest.raises(vs.PipelineError):
        vs.from_polars(pl.DataFrame({"x": [1]})).sink_callback("print")  # type: ignore[arg-type]


def test_sink_callback_error_fails_the_run() -> None:
    class Full(Exception):
        pass

    def fn(df: pl.DataFrame) -> None:
        raise Full("disk full")

    with pytest.raises(Full):
        vs.from_polars(pl.DataFrame({"x": [1, 2]})).sink_callback(fn)


def test_lazy_sink_callback_in_a_checkpointed_run_gets_the_epoch(tmp_path: Path) -> None:
    """The checkpoint_dir given to collect_all (not to the callback) makes the run
    at-least-once: the callback gets the epoch too, or is refused if it cannot take it."""
    s = vs.from_polars(pl.DataFrame({"x": range(10)}), batch_size=3)
    with pytest.raises(vs.PipelineError, match=r"fn\(df, epoch\)"):
        vs.collect_all(
            [s.sink_callback(lambda df: None, lazy=True)], checkpoint_dir=tmp_path / "a"
        )
    seen: list[tuple[int, int]] = []
    vs.collect_all(
        [s.sink_callback(lambda df, epoch: seen.append((epoch, df.height)), lazy=True)],
        checkpoint_dir=tmp_path / "b",
        checkpoint_interval=2,
    )
    assert sum(n for _, n in seen) == 10
    assert [e for e, _ in seen] == sorted(e for e, _ in seen)
    assert seen[-1][0] > seen[0][0] >= 1


# ====================================================================== several sinks


def test_several_sinks_run_as_one_job(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: Any
) -> None:
    df = telemetry_small
    rows_seen = [0]

    def count(batch: pl.DataFrame) -> pl.DataFrame:
        rows_seen[0] += batch.height
        return batch

    s = vs.from_polars(df, batch_size=1_000).map_batches(count)
    busy = s.filter(pl.col("cpu") > 50)
    seen: list[pl.DataFrame] = []
    results, metrics = vs.collect_all(
        [
            s.sink_parquet(tmp_path / "out", lazy=True),
            s.sink_callback(seen.append, lazy=True),
            busy,
        ],
        return_metrics=True,
    )
    assert results[0] is None
    assert results[1] is None
    assert_frame_equal(results[2], df.filter(pl.col("cpu") > 50))
    assert_frame_equal(_read_parts(tmp_path / "out"), df)
    assert_frame_equal(pl.concat(seen), df)
    # the source was read once and the shared step ran once, for all three outputs
    assert metrics.events_in == df.height
    assert rows_seen[0] == df.height


def test_lazy_sink_runs_alone(tmp_path: Path, telemetry_small: pl.DataFrame) -> None:
    df = telemetry_small.head(2_000)
    lazy = vs.from_polars(df).sink_parquet(tmp_path / "out", lazy=True)
    assert isinstance(lazy, vs.LazySink)
    assert not (tmp_path / "out").exists() or not _parts(tmp_path / "out")  # nothing yet
    metrics = lazy.run()
    assert metrics.events_in == df.height
    assert_frame_equal(_read_parts(tmp_path / "out"), df)


# ====================================================================== backpressure

SLOW_S = 0.02  # per batch
BATCH = 100
#: the source may run ahead by its queue (4 batches), the batch being built, one blocked
#: in put and the one in the sink; 20 batches is a generous bound that still catches a
#: source that is not held back at all
MAX_AHEAD = 20 * BATCH


@pytest.mark.parametrize("kind", ["records", "ndjson", "arrow"])
def test_slow_sink_holds_back_an_unbounded_source(endless: Any, kind: str) -> None:
    """How far the source is ahead, sampled at every delivery (no wall-clock window: a
    busy machine only makes the run longer); the timeouts are failure guards."""
    delivered: list[int] = []
    ahead: list[int] = []
    enough = threading.Event()

    def slow(batch: pl.DataFrame) -> None:
        time.sleep(SLOW_S)  # time for a source that is not held back to run away
        done = len(delivered)  # read before produced: errs on the large side
        ahead.append(endless.produced - done)
        delivered.extend(batch["i"].to_list())
        if len(delivered) >= 15 * BATCH:
            enough.set()

    job = endless.stream(kind, batch_size=BATCH).sink_callback(slow, lazy=True).start()
    try:
        assert enough.wait(PATIENCE_S), f"the sink got {len(delivered)} rows"
        assert job.running
    finally:
        job.stop(timeout=PATIENCE_S)
    assert not job.running  # stop() is not held up by a source blocked on a full queue
    assert max(ahead) < MAX_AHEAD, f"the source ran {max(ahead)} rows ahead of the sink"
    assert delivered == list(range(len(delivered)))


@pytest.mark.parametrize("how", ["run", "start"])
def test_slow_sink_loses_nothing_on_bounded_input(how: str) -> None:
    n = 2_000
    produced = [0]

    def gen() -> Any:
        for i in range(n):
            produced[0] += 1
            yield {"i": i}

    delivered: list[int] = []

    def slow(batch: pl.DataFrame) -> None:
        time.sleep(SLOW_S)
        delivered.extend(batch["i"].to_list())

    s = vs.from_records(gen(), schema={"i": pl.Int64}, batch_size=BATCH, bounded=True)
    if how == "run":
        metrics = s.sink_callback(slow)
    else:
        job = s.sink_callback(slow, lazy=True).start()
        job.join(timeout=PATIENCE_S)
        assert not job.running
        metrics = job.metrics
    assert delivered == list(range(n))
    assert metrics.events_in == metrics.events_out == n


def test_backpressure_thread_ends_with_the_job(endless: Any) -> None:
    """After stop(), nothing keeps the source's reader thread alive."""
    before = set(threading.enumerate())
    job = (
        endless.stream("arrow", batch_size=BATCH)
        .sink_callback(lambda b: time.sleep(SLOW_S), lazy=True)
        .start()
    )
    time.sleep(0.3)
    job.stop()
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            break
        time.sleep(0.05)
    assert extra == []
