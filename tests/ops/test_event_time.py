"""Event time and watermarks (DESIGN.md "Semantics": Time, Watermark), seen through the
public API: ``metrics.behind_watermark``, ``metrics.watermark``, ``metrics.dead_letters``
and the metrics of background jobs.

The expected values come from a reference model of the contract, never from vstream:
per split, the watermark after a micro-batch is ``max(event time seen) - bound`` (never
decreasing), and an event is behind the watermark when its time is below the watermark
from before its micro-batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import strategies
import vstream as vs

DISORDER_MS = 1_500


def behind_model(batches: list[list[int | None]], bound: int) -> int:
    """Events below the watermark from before their batch, for one split."""
    wm: int | None = None
    behind = 0
    for batch in batches:
        times = [t for t in batch if t is not None]
        if not times:
            continue
        if wm is not None:
            behind += sum(t < wm for t in times)
        top = max(times) - bound
        wm = top if wm is None else max(wm, top)
    return behind


def batches_of(ts: pl.Series, batch_size: int) -> list[list[int | None]]:
    values = ts.to_physical().to_list()
    return [values[k : k + batch_size] for k in range(0, len(values), batch_size)]


def sort_rows(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            msg = f"condition not met within {timeout} s"
            raise AssertionError(msg)
        time.sleep(0.02)


# ------------------------------------------------------------------ the model, exactly


@settings(max_examples=40, deadline=None)
@given(batches=strategies.event_time_batches(), bound=st.integers(0, 3_000))
def test_behind_watermark_follows_the_contract(batches: list[list[int]], bound: int) -> None:
    arrow = [pa.record_batch({"ts": pa.array(b, pa.int64())}) for b in batches]
    out, m = vs.from_arrow(arrow).with_watermark("ts", bound).collect(return_metrics=True)
    assert m.behind_watermark == behind_model(batches, bound)
    assert out["ts"].to_list() == [t for b in batches for t in b]  # nobody is dropped
    assert m.late_events == 0


# ------------------------------------------------------------------ (a) telemetry disorder

TELEMETRY = vs.datasets.telemetry(4_000, hosts=20, seed=21, max_disorder=DISORDER_MS)


@pytest.mark.parametrize("bound", [DISORDER_MS, "1500ms", "2s"])
def test_bound_covering_the_disorder_one_row_per_batch(bound: int | str) -> None:
    df = TELEMETRY.head(1_200)
    out, m = (
        vs.from_polars(df, batch_size=1)
        .with_watermark("ts", bound, time_unit="ms")
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0
    assert_frame_equal(out, df)


def test_bound_covering_the_disorder_one_batch() -> None:
    big = vs.datasets.telemetry(100_000, hosts=100, seed=22, max_disorder=DISORDER_MS)
    out, m = (
        vs.from_polars(big, batch_size=strategies.WHOLE)
        .with_watermark("ts", DISORDER_MS)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0
    assert m.events_in == big.height
    assert_frame_equal(out, big)


@settings(max_examples=15, deadline=None)
@given(
    df=strategies.telemetry_frames(max_n=4_000, max_hosts=30, max_disorder=DISORDER_MS),
    batch_size=strategies.random_batch_sizes(),
)
def test_bound_covering_the_disorder_random_batches(df: pl.DataFrame, batch_size: int) -> None:
    out, m = (
        vs.from_polars(df, batch_size=batch_size)
        .with_watermark("ts", DISORDER_MS)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0
    assert_frame_equal(out, df)


@settings(max_examples=10, deadline=None)
@given(batch_size=st.one_of(st.just(1), st.integers(2, 300)), bound=st.integers(0, 30))
def test_bound_much_smaller_than_the_disorder(batch_size: int, bound: int) -> None:
    df = TELEMETRY.head(800) if batch_size == 1 else TELEMETRY
    out, m = (
        vs.from_polars(df, batch_size=batch_size)
        .with_watermark("ts", bound)
        .collect(return_metrics=True)
    )
    expected = behind_model(batches_of(df["ts"], batch_size), bound)
    assert expected > 0
    assert m.behind_watermark == expected
    assert_frame_equal(out, df)  # behind the watermark is not dropped by stateless steps


def test_whole_input_in_one_batch_is_never_behind() -> None:
    """Rows are judged against the watermark from before their micro-batch."""
    _, m = (
        vs.from_polars(TELEMETRY, batch_size=strategies.WHOLE)
        .with_watermark("ts", 0)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0


# ------------------------------------------------------------------ (b) Parquet files


def write_by_host(
    df: pl.DataFrame, folder: Path, *, statistics: bool, row_group_size: int = 700
) -> list[Path]:
    paths = []
    for k in range(3):
        path = folder / f"part-{k}.parquet"
        df.filter(pl.col("host_id") % 3 == k).write_parquet(
            path, statistics=statistics, row_group_size=row_group_size
        )
        paths.append(path)
    return paths


def has_min_max(path: Path, column: str) -> bool:
    md = pq.ParquetFile(path).metadata
    idx = md.schema.names.index(column)
    stats = md.row_group(0).column(idx).statistics
    return stats is not None and stats.has_min_max


@pytest.mark.parametrize("statistics", [True, False], ids=["stats", "no-stats"])
@pytest.mark.parametrize("time_type", ["int", "datetime"])
@pytest.mark.parametrize("batch_size", [97, strategies.WHOLE])
def test_parquet_files_split_by_host(
    tmp_path: Path, statistics: bool, time_type: str, batch_size: int
) -> None:
    df = vs.datasets.telemetry(
        6_000,
        hosts=9,
        seed=23,
        max_disorder=DISORDER_MS,
        time_type=time_type,  # type: ignore[arg-type]
    )
    paths = write_by_host(df, tmp_path, statistics=statistics)
    assert has_min_max(paths[0], "ts") == statistics
    out, m = (
        vs.from_parquet(tmp_path, batch_size=batch_size)
        .with_watermark("ts", "1500ms", time_unit="ms" if time_type == "int" else None)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0
    # files are read one after the other, each in its own order
    assert_frame_equal(out, pl.concat([pl.read_parquet(p) for p in paths]))
    assert m.events_in == df.height


@pytest.mark.parametrize("statistics", [True, False], ids=["stats", "no-stats"])
def test_parquet_files_in_reverse_time_order(tmp_path: Path, statistics: bool) -> None:
    """The later file comes first: the earlier one, not started, holds the watermark back."""
    df = vs.datasets.telemetry(3_000, hosts=4, seed=24, max_disorder=200)
    df.slice(1_500).write_parquet(tmp_path / "a.parquet", statistics=statistics)
    df.slice(0, 1_500).write_parquet(tmp_path / "b.parquet", statistics=statistics)
    out, m = (
        vs.from_parquet(tmp_path, batch_size=100)
        .with_watermark("ts", 200)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0
    assert_frame_equal(out, pl.concat([df.slice(1_500), df.slice(0, 1_500)]))


@pytest.mark.parametrize("statistics", [True, False], ids=["stats", "no-stats"])
@pytest.mark.parametrize(
    "prepare",
    [
        lambda s: s.filter(pl.col("cpu") > 20),
        lambda s: s.with_columns(ts=pl.col("ts") - 5_000),
        lambda s: s.select(pl.col("ts") - 5_000, "host", "cpu"),
        lambda s: s.rename({"ts": "raw"}).with_columns(ts=pl.col("raw") - 5_000),
    ],
    ids=["filter", "with_columns-shift", "select-shift", "rename-and-compute"],
)
def test_parquet_event_time_prepared_before_with_watermark(
    tmp_path: Path, statistics: bool, prepare: Callable[[vs.Stream], vs.Stream]
) -> None:
    """DESIGN: compute the event-time column before with_watermark. The files' statistics
    describe the column as stored, not as computed, so they cannot bound it."""
    df = vs.datasets.telemetry(4_000, hosts=6, seed=25, max_disorder=DISORDER_MS)
    paths = write_by_host(df, tmp_path, statistics=statistics)
    out, m = (
        prepare(vs.from_parquet(tmp_path, batch_size=250))
        .with_watermark("ts", DISORDER_MS)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == 0
    expected = prepare(vs.from_polars(pl.concat([pl.read_parquet(p) for p in paths])))
    assert_frame_equal(out, expected.collect())


# ------------------------------------------------------------------ (c) concat


@pytest.mark.parametrize(("size_a", "size_b"), [(1, 1), (13, 250), (strategies.WHOLE, 7)])
def test_concat_of_sources_over_the_same_time_range(size_a: int, size_b: int) -> None:
    n = 600 if 1 in (size_a, size_b) else 5_000
    df = vs.datasets.telemetry(n, hosts=8, seed=26, max_disorder=DISORDER_MS)
    a, b = df.filter(pl.col("host_id") % 2 == 0), df.filter(pl.col("host_id") % 2 == 1)
    stream = vs.concat(
        [
            vs.from_polars(a, batch_size=size_a).with_watermark("ts", DISORDER_MS),
            vs.from_polars(b, batch_size=size_b).with_watermark("ts", DISORDER_MS),
        ]
    )
    assert stream.event_time == "ts"
    out, m = stream.collect(return_metrics=True)
    assert m.behind_watermark == 0
    assert_frame_equal(sort_rows(out), sort_rows(df))


@pytest.mark.parametrize(("size_a", "size_b"), [(1, 1), (13, 250), (strategies.WHOLE, 7)])
def test_watermark_after_concat(size_a: int, size_b: int) -> None:
    """One watermark over two sources: each is a split that holds it back."""
    n = 600 if 1 in (size_a, size_b) else 5_000
    df = vs.datasets.telemetry(n, hosts=8, seed=27, max_disorder=DISORDER_MS)
    a, b = df.filter(pl.col("host_id") % 2 == 0), df.filter(pl.col("host_id") % 2 == 1)
    stream = vs.concat(
        [vs.from_polars(a, batch_size=size_a), vs.from_polars(b, batch_size=size_b)]
    ).with_watermark("ts", DISORDER_MS)
    out, m = stream.collect(return_metrics=True)
    assert m.behind_watermark == 0
    assert_frame_equal(sort_rows(out), sort_rows(df))


# ------------------------------------------------------------------ (d) time types


DT = vs.datasets.telemetry(3_000, hosts=10, seed=28, max_disorder="2s", time_type="datetime")


@pytest.mark.parametrize(
    ("bound", "bound_ms"),
    [
        ("2s", 2_000),
        ("1s500ms", 1_500),
        (timedelta(seconds=2), 2_000),
        (timedelta(milliseconds=250), 250),
        ("40ms", 40),
        ("0s", 0),
    ],
)
def test_datetime_event_time(bound: str | timedelta, bound_ms: int) -> None:
    out, m = (
        vs.from_polars(DT, batch_size=64).with_watermark("ts", bound).collect(return_metrics=True)
    )
    assert m.behind_watermark == behind_model(batches_of(DT["ts"], 64), bound_ms)
    assert_frame_equal(out, DT)


@pytest.mark.parametrize("unit", ["us", "ns"])
def test_datetime_event_time_in_finer_units(unit: str) -> None:
    df = DT.with_columns(pl.col("ts").cast(pl.Datetime(unit)))  # type: ignore[arg-type]
    scale = 1_000 if unit == "us" else 1_000_000
    _, m = (
        vs.from_polars(df, batch_size=64)
        .with_watermark("ts", "250ms")
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == behind_model(batches_of(df["ts"], 64), 250 * scale)


@pytest.mark.parametrize(
    ("bound", "unit", "bound_in_unit"),
    [
        ("2s", "ms", 2_000),
        ("250ms", "ms", 250),
        ("1m", "ms", 60_000),
        (timedelta(milliseconds=300), "ms", 300),
        (300, "ms", 300),
        ("3s", "s", 3),
    ],
)
def test_integer_event_time_with_a_unit(bound: Any, unit: str, bound_in_unit: int) -> None:
    df = TELEMETRY if unit == "ms" else TELEMETRY.with_columns(pl.col("ts") // 1_000)
    out, m = (
        vs.from_polars(df, batch_size=50)
        .with_watermark("ts", bound, time_unit=unit)  # type: ignore[arg-type]
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == behind_model(batches_of(df["ts"], 50), bound_in_unit)
    assert_frame_equal(out, df)


def test_integer_event_time_without_a_unit_takes_integers() -> None:
    _, m = (
        vs.from_polars(TELEMETRY, batch_size=50)
        .with_watermark("ts", 250)
        .collect(return_metrics=True)
    )
    assert m.behind_watermark == behind_model(batches_of(TELEMETRY["ts"], 50), 250)


@pytest.mark.parametrize("dtype", [pl.Int32, pl.UInt32, pl.UInt64, pl.Int16])
def test_other_integer_types(dtype: pl.DataType) -> None:
    df = pl.DataFrame({"ts": [5, 9, 3, 20, 12, 30, 1]}, schema={"ts": dtype})
    out, m = vs.from_polars(df, batch_size=2).with_watermark("ts", 4).collect(return_metrics=True)
    assert m.behind_watermark == behind_model(batches_of(df["ts"], 2), 4)
    assert_frame_equal(out, df)


def test_watermark_is_none_once_bounded_input_ended() -> None:
    _, m = (
        vs.from_polars(DT, batch_size=500).with_watermark("ts", "1s").collect(return_metrics=True)
    )
    assert m.watermark is None


# ------------------------------------------------------------------ (e) null event times


def with_null_times(df: pl.DataFrame) -> pl.DataFrame:
    # blank the event time wherever cpu is null (about null_fraction of the rows)
    return df.with_columns(ts=pl.when(pl.col("cpu").is_null()).then(None).otherwise(pl.col("ts")))


@pytest.mark.parametrize("time_type", ["int", "datetime"])
def test_null_event_times_go_to_dead_letters(run_everywhere: Any, time_type: str) -> None:
    df = with_null_times(
        vs.datasets.telemetry(
            300,
            hosts=5,
            seed=29,
            null_fraction=0.1,
            time_type=time_type,  # type: ignore[arg-type]
        )
    )
    nulls = df.filter(pl.col("ts").is_null())
    assert nulls.height > 0
    unit = "ms" if time_type == "int" else None

    def build(s: vs.Stream) -> list[vs.Stream]:
        stream = s.with_watermark("ts", "2s", time_unit=unit)
        return [stream, stream.dead_letters()]

    def counted(m: vs.Metrics) -> None:
        assert m.dead_letters == nulls.height

    main, dead = run_everywhere(build, df, metrics=counted, ordered=True)
    assert_frame_equal(main, df.filter(pl.col("ts").is_not_null()))
    assert dead.height == nulls.height
    assert dead.columns == ["record", "reason", "step"]
    assert all("'ts'" in r and "null" in r for r in dead["reason"])
    assert all(s.startswith("with_watermark('ts'") for s in dead["step"])
    # the dead letters are the refused records themselves, in order
    records = pl.read_ndjson("\n".join(dead["record"]).encode(), schema=df.schema)
    assert_frame_equal(records, nulls)


def test_null_event_times_from_records() -> None:
    rows = [{"ts": t, "v": k} for k, t in enumerate([5, None, 7, 6, None, 9])]
    stream = vs.from_records(rows, schema={"ts": pl.Int64, "v": pl.Int64}).with_watermark("ts", 2)
    (main, dead), m = vs.collect_all([stream, stream.dead_letters()], return_metrics=True)
    assert main["v"].to_list() == [r["v"] for r in rows if r["ts"] is not None]
    assert m.dead_letters == dead.height == 2
    assert all("'ts'" in r for r in dead["reason"])


def test_null_event_times_not_collected_are_not_silent() -> None:
    df = with_null_times(vs.datasets.telemetry(500, hosts=3, seed=30, null_fraction=0.2))
    stream = vs.from_polars(df, batch_size=50).with_watermark("ts", 100)
    with pytest.warns(UserWarning, match="dead letters"):
        out, m = stream.collect(return_metrics=True)
    assert m.dead_letters == df["ts"].null_count()
    assert out.height == df.height - m.dead_letters


# ------------------------------------------------------------------ jobs over generators


class Feed:
    """An unbounded source the test controls: batches are yielded as they are put; the
    generator blocks (no data) in between."""

    def __init__(self, first: pa.RecordBatch) -> None:
        self.queue: queue.Queue[pa.RecordBatch | None] = queue.Queue()
        self.queue.put(first)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self.queue.get(timeout=60)
            if item is None:
                return
            yield item

    def put(self, batch: pa.RecordBatch) -> None:
        self.queue.put(batch)

    def close(self) -> None:
        self.queue.put(None)


def int_batch(times: list[int]) -> pa.RecordBatch:
    return pa.record_batch({"ts": pa.array(times, pa.int64()), "v": pa.array(times, pa.int64())})


Jobs = list[tuple[vs.Job, list[Feed]]]


@pytest.fixture
def jobs() -> Iterator[Jobs]:
    """Jobs a test started, with their feeds: closed and stopped when it ends."""
    started: Jobs = []
    yield started
    for job, feeds in started:
        for feed in feeds:
            feed.close()
        job.stop(timeout=10)


def test_job_watermark_is_max_seen_minus_bound_and_never_decreases(jobs: Jobs, clock: Any) -> None:
    feed = Feed(int_batch([1_000, 1_400, 1_200]))
    job = vs.from_arrow(feed).with_watermark("ts", 300, time_unit="ms").start()
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.watermark == 1_400 - 300)
    feed.put(int_batch([5_000, 4_100]))
    wait_until(lambda: job.metrics.watermark == 5_000 - 300)
    # an older batch does not move the watermark back; its events are behind it
    feed.put(int_batch([3_000, 4_800, 4_699, 4_700]))
    wait_until(lambda: job.metrics.events_in == 9)
    clock.step()  # the metrics of a step after that batch
    assert job.metrics.watermark == 4_700
    assert job.metrics.behind_watermark == 2
    assert job.running
    assert job.error is None


def test_job_watermark_on_a_datetime_column(jobs: Jobs) -> None:
    base = datetime(2024, 5, 1, 12, 0, 0)

    def batch(offsets_ms: list[int]) -> pa.RecordBatch:
        times = [base + timedelta(milliseconds=o) for o in offsets_ms]
        return pa.record_batch({"ts": pa.array(times, pa.timestamp("ms"))})

    feed = Feed(batch([0, 2_500, 1_000]))
    job = vs.from_arrow(feed).with_watermark("ts", "1s").start()
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.watermark == base + timedelta(milliseconds=1_500))
    feed.put(batch([9_000]))
    wait_until(lambda: job.metrics.watermark == base + timedelta(milliseconds=8_000))


def test_concat_watermark_is_the_minimum_of_its_inputs(jobs: Jobs) -> None:
    fast, slow = Feed(int_batch([10_000, 12_000])), Feed(int_batch([3_000]))
    stream = vs.concat(
        [
            vs.from_arrow(fast).with_watermark("ts", 500, time_unit="ms"),
            vs.from_arrow(slow).with_watermark("ts", 500, time_unit="ms"),
        ]
    )
    job = stream.start()
    jobs.append((job, [fast, slow]))
    wait_until(lambda: job.metrics.events_in == 3)
    wait_until(lambda: job.metrics.watermark == 3_000 - 500)
    slow.put(int_batch([20_000]))
    wait_until(lambda: job.metrics.watermark == 12_000 - 500)
    assert job.results.height == 4


def test_side_outputs_do_not_hold_the_job_watermark(jobs: Jobs) -> None:
    """A late-events branch (and what follows it) keeps its watermark at -inf until its
    input ends, as its rows come at any time: the job's watermark gauge is the main
    branch's, not None for the whole run."""
    feed = Feed(int_batch([1_000, 1_400, 1_200]))
    windowed = (
        vs.from_arrow(feed)
        .with_watermark("ts", 300, time_unit="ms")
        .window(vs.tumbling(1_000), late="side")
        .agg(pl.len())
    )
    out: list[pl.DataFrame] = []
    late: list[pl.DataFrame] = []
    job = vs.start_all(
        [
            windowed.sink_callback(out.append, lazy=True),
            windowed.late_events().filter(pl.col("v") >= 0).sink_callback(late.append, lazy=True),
        ]
    )
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.watermark == 1_400 - 300)
    # 100 is late: its window [0, 1000) fired at the watermark 1100
    feed.put(int_batch([5_000, 100]))
    wait_until(lambda: job.metrics.watermark == 5_000 - 300)
    wait_until(lambda: sum(f.height for f in late) == 1)
    assert job.metrics.late_events == 1
    assert job.error is None


def test_idle_source_watermark_follows_the_wall_clock(jobs: Jobs, clock: Any) -> None:
    """Driven clock: idle exactly when idle_timeout has passed, then the watermark moves
    with the clock, never faster, and never back when data comes again."""
    feed = Feed(int_batch([1_000, 2_000, 1_500]))
    opts = {"time_unit": "ms", "idle_timeout": 30}
    job = vs.from_arrow(feed).with_watermark("ts", 100, **opts).start()  # type: ignore[arg-type]
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.watermark == 2_000 - 100)
    clock.step()
    assert job.metrics.watermark == 1_900  # 30 s have not passed: not idle
    marks = [1_900]
    idle_from = clock.now()
    clock.advance(30)  # quiet for idle_timeout: idle from the next step on
    clock.step()
    marks.append(job.metrics.watermark)
    clock.advance(5.01)
    clock.step()
    marks.append(job.metrics.watermark)
    moved = marks[-1] - 1_900
    assert moved >= 5_000  # it follows the clock (5.01 s and the steps' own time)
    # ...at most as fast as the clock: idle since after idle_from + 30 s, read before now
    assert moved <= (clock.now() - idle_from - 30) * 1_000 + 1
    # data arriving again does not move it back
    feed.put(int_batch([1_950]))
    wait_until(lambda: job.metrics.events_in == 4)
    clock.step()
    marks.append(job.metrics.watermark)
    assert marks == sorted(marks), f"the watermark went back: {marks}"
    assert job.error is None


@pytest.mark.parametrize("idle_timeout", [30, None], ids=["idle", "no-idle"])
def test_an_idle_split_leaves_the_minimum(
    jobs: Jobs, clock: Any, idle_timeout: float | None
) -> None:
    """Two generators under one watermark: the one that stopped yielding holds it back
    only until idle_timeout (on a driven clock: the busy one stays active)."""
    busy, quiet = Feed(int_batch([100_000])), Feed(int_batch([1_000]))
    options = {} if idle_timeout is None else {"idle_timeout": idle_timeout}
    job = (
        vs.concat([vs.from_arrow(busy), vs.from_arrow(quiet)])
        .with_watermark("ts", 100, time_unit="ms", **options)  # type: ignore[arg-type]
        .start()
    )
    jobs.append((job, [busy, quiet]))
    wait_until(lambda: job.metrics.events_in == 2)
    clock.step()
    assert job.metrics.watermark == 1_000 - 100  # the minimum of both
    clock.advance(20)
    top = 100_100
    busy.put(int_batch([top]))  # busy is active 20 s after quiet's last batch
    wait_until(lambda: job.metrics.events_in == 3)
    clock.advance(15)  # quiet has been quiet for 35 s, busy for 15 s
    clock.step()
    if idle_timeout is None:
        assert job.metrics.watermark == 1_000 - 100  # quiet holds it, however long
    else:
        assert job.metrics.watermark == top - 100  # busy's alone


def test_without_idle_timeout_a_blocked_source_holds_the_watermark(jobs: Jobs, clock: Any) -> None:
    feed = Feed(int_batch([1_000, 2_000, 1_500]))
    job = vs.from_arrow(feed).with_watermark("ts", 100, time_unit="ms").start()
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.watermark == 2_000 - 100)
    clock.advance(3_600)  # an hour without data
    clock.step()
    assert job.metrics.watermark == 2_000 - 100
    assert job.running


def test_iter_batches_over_an_unbounded_source_yields_as_data_comes() -> None:
    feed = Feed(int_batch([1, 2, 3]))
    stream = vs.from_arrow(feed).with_watermark("ts", 1).filter(pl.col("v") % 2 == 1)
    it = stream.iter_batches()
    got: list[int] = []
    try:
        got.extend(next(it)["v"].to_list())
        feed.put(int_batch([4, 5]))
        while len(got) < 3:
            got.extend(next(it)["v"].to_list())
    finally:
        feed.close()
        it.close()  # type: ignore[attr-defined]
    assert got == [1, 3, 5]


def test_stop_with_drain_ends_the_job(jobs: Jobs) -> None:
    feed = Feed(int_batch([10, 20]))
    job = vs.from_arrow(feed).with_watermark("ts", 5).start()
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.events_in == 2)
    threading.Thread(target=lambda: (time.sleep(0.2), feed.close()), daemon=True).start()
    job.stop(drain=True, timeout=10)
    assert not job.running
    assert job.results["v"].to_list() == [10, 20]


# ------------------------------------------------------------------ watermarks at the extremes

EXTREME_DTYPES = [
    pl.Datetime("ms"),
    pl.Datetime("us"),
    pl.Datetime("ns"),
    pl.Datetime("ms", "Europe/Berlin"),
    pl.Datetime("us", "Asia/Kathmandu"),
    pl.Datetime("ns", "UTC"),
    pl.Int64(),
]
I64 = (-(2**63), 2**63 - 1)
# year 10000 and year 0 in ms (Python's datetime ends there), 2**62 (far beyond Polars'
# calendar in ms and us), the watermarks next to -inf / +inf
EXTREMES = [2**62, -(2**62), 2**63 - 2, -(2**63) + 1, 253_402_300_800_000]
EXTREMES += [253_402_300_799_999, -62_135_596_800_001, -62_135_596_800_000, 8_210_266_876_799_999]


@pytest.mark.parametrize("dtype", EXTREME_DTYPES, ids=str)
def test_watermark_to_python_never_raises_at_the_extremes(dtype: pl.DataType) -> None:
    from vstream.plan.nodes import EventTime

    et = EventTime("ts", dtype, "ms", 0, None)
    assert et.to_python(I64[0]) is None  # before any event
    assert et.to_python(I64[1]) is None  # the end of the input
    for value in EXTREMES:
        got = et.to_python(value)
        if isinstance(got, datetime):
            # where Python can hold it, it is what Polars says the value is
            expected = pl.Series([value], dtype=pl.Int64).cast(dtype).item()
            assert got == expected
            assert str(got.tzinfo) == str(expected.tzinfo)
        else:
            assert got == value


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(EXTREME_DTYPES[:-1]),
    value=st.integers(-(2**63) + 1, 2**63 - 2),
)
def test_watermark_to_python_is_polars_within_pythons_calendar(
    dtype: pl.DataType, value: int
) -> None:
    from vstream.plan.nodes import EventTime

    got = EventTime("ts", dtype, "ms", 0, None).to_python(value)
    assert isinstance(dtype, pl.Datetime)
    per_s = {"ms": 10**3, "us": 10**6, "ns": 10**9}[dtype.time_unit or "us"]
    # Python's datetime: years 1-9999 (a day to spare for the zone's offset)
    inside = -62_135_596_800 + 86_400 < value / per_s < 253_402_300_800 - 86_400
    if inside:
        expected = pl.Series([value], dtype=pl.Int64).cast(dtype).item()
        assert got == expected
        assert str(got.tzinfo) == str(expected.tzinfo)
    else:
        assert isinstance(got, datetime | int)
        assert not isinstance(got, int) or got == value


def test_metrics_of_a_run_with_a_watermark_past_year_9999() -> None:
    # 2**62 ms is beyond every calendar: collecting gave a Polars PanicException (a
    # BaseException) from the metrics' watermark; the run now ends normally
    big = 2**62
    df = pl.DataFrame({"ts": pl.Series([0, big]).cast(pl.Datetime("ms")), "x": [1, 2]})
    out, m = vs.from_polars(df, batch_size=1).with_watermark("ts", 0).collect(return_metrics=True)
    assert out.height == 2
    assert m.watermark is None  # the end of the input
    assert "watermark -" in str(m)


def test_job_metrics_show_a_watermark_past_year_9999_as_its_integer(jobs: Jobs) -> None:
    from vstream.notebook.render import metrics_html, metrics_text

    big = 2**62

    def batch(times: list[int]) -> pa.RecordBatch:
        return pa.record_batch({"ts": pa.array(times, pa.int64()).cast(pa.timestamp("ms"))})

    feed = Feed(batch([1_000]))
    job = vs.from_arrow(feed).with_watermark("ts", 0).start()
    jobs.append((job, [feed]))
    wait_until(lambda: job.metrics.watermark == datetime(1970, 1, 1, 0, 0, 1))
    feed.put(batch([big]))
    wait_until(lambda: job.metrics.watermark == big)
    m = job.metrics
    assert f"watermark {big}" in str(m)
    assert f"{big:,}" in metrics_html(m)
    assert f"{big:,}" in metrics_text(m)
    assert repr(job).startswith("<vstream.Job running")
    assert job.error is None


def test_watermark_to_python_without_the_zone_in_pythons_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a zone Polars knows but Python's tz database lacks: Polars converts (inside the
    # calendar), beyond it the integer stays
    import zoneinfo

    from vstream.plan import nodes

    def missing(key: str) -> zoneinfo.ZoneInfo:
        raise zoneinfo.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(nodes, "ZoneInfo", missing)
    dtype = pl.Datetime("ms", "Europe/Berlin")
    et = nodes.EventTime("ts", dtype, "ms", 0, None)
    assert et.to_python(86_400_000) == pl.Series([86_400_000]).cast(dtype).item()
    assert et.to_python(2**62) == 2**62
