"""Joins: as-of, interval, windowed and lookup, against Polars on the same data.

Every timed pipeline reads in-memory data: vstream gets the rows as 65,536-row Arrow
batches in Polars' own layout (string_view, converting them copies nothing; as in
``test_windows.py``; ``from_polars`` would add its own cost, converting each slice to
large_string) and discards its output in a callback; the Polars peers run over the
same rows as DataFrames and return theirs. Peers are timed in the same test, in
alternating rounds (``_bench.compared``), after a warm-up run of each (numba JIT,
caches). Each workload's answer is checked against Polars once, outside the timing.

Workloads (full sizes; ``VSTREAM_BENCH_QUICK=1`` shrinks them ~100x):

- As-of: 10 M telemetry events (10 k hosts, 1000 events/s of event time, up to 2 s of
  disorder, a 2 s watermark bound) in arrival order, each joined to the latest earlier
  deploy of its host: 100 k deploys ``(ts, host | host_id, version)`` in time order over
  the same 10 000 s, unique times (one per 100 ms slot, so no (host, ts) ties). Keyed by
  ``host`` (String) and by ``host_id`` (Int32). Peers: Polars ``join_asof`` on events
  already sorted by time (target: vstream >= 1.0x), and the same with the sort included.
- Interval: two 5 M-event telemetry streams (10 k hosts, seeds 1 and 2, 2 s disorder
  and bound), inner join on the host where ``left.ts - 1 s <= right.ts <= left.ts + 1 s``
  (~3.3 M pairs). A plain Polars join on the host alone would build ~8e9 candidate pairs
  (hot hosts hold 50 k events a side), so the peer joins on (host, 2 s time bucket), each
  left row in the two buckets its interval touches, then filters on the interval: the
  same pairs, about twice as many candidates. It is checked against the plain
  join + filter on a prefix.
- Windowed: the same two streams, inner join on (host, 1 s tumbling window) (~1.6 M
  pairs); peer Polars ``join`` on (host, ts // 1000).
- Lookup: 10 M events (110 k hosts) left-joined to a static 100 k-row table of hosts
  (~4.6 % of the events find no row); peer Polars ``join(how="left")``. Target >= 1.0x.

For the stream-stream joins the summary also gives the join step's peak state
(``metrics.steps[...].peak_state_rows``), which should stay far below the input size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from _bench import compared, note, size
from polars.testing import assert_frame_equal

import vstream as vs

BATCH = 65_536
SECOND = 1_000  # ms
ROUNDS = 4  # for the 10 M-event cases: the full module has to run in minutes

N_ASOF = size(10_000_000, 100_000)
N_DEPLOYS = size(100_000, 1_000)
ASOF_HOSTS = 10_000

N_PAIR = size(5_000_000, 50_000)  # per side
PAIR_HOSTS = 10_000
LOWER, UPPER = -SECOND, SECOND  # interval bounds, ms
INTERVAL = {"lower": "-1s", "upper": "1s"}
WINDOW = SECOND  # tumbling window, ms

N_LOOKUP = size(10_000_000, 100_000)
TABLE_ROWS = 100_000
LOOKUP_HOSTS = 110_000  # events from hosts the table lacks: the left join has nulls

# Targets (checked by reading the summary, not asserted: the VM's speed varies).
TARGET_ASOF = 1.0  # vstream / Polars join_asof on presorted data
TARGET_LOOKUP = 1.0  # vstream / Polars left join

KEYS = ["host", "host_id"]


# ---------------------------------------------------------------- shared helpers
def _batches(frame: pl.DataFrame) -> list[pa.RecordBatch]:
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return table.to_batches(max_chunksize=BATCH)


def _source(batches: list[pa.RecordBatch], bound: str = "2s") -> vs.Stream:
    return vs.from_arrow(batches).with_watermark("ts", bound, time_unit="ms")


def _drain(stream: vs.Stream) -> vs.Metrics:
    return stream.sink_callback(lambda df: None)  # type: ignore[no-any-return]


def _collect(stream: vs.Stream) -> pl.DataFrame:
    """The stream's rows; asserts the run dropped no event as late (the data has none)."""
    out, metrics = stream.collect(return_metrics=True)
    assert metrics.late_events == 0
    return out  # type: ignore[no-any-return]


def _same(ours: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Same columns in the same order, same rows up to row order."""
    assert ours.columns == expected.columns
    assert_frame_equal(ours.sort(ours.columns), expected.sort(expected.columns))


def _host_names(hosts: int) -> pl.Expr:
    """``host`` of ``vs.datasets.telemetry(..., hosts=hosts)`` from ``host_id``."""
    width = max(5, len(str(hosts - 1)))
    return pl.concat_str(pl.lit("host-"), pl.col("host_id").cast(pl.String).str.zfill(width))


def _ratio_line(label: str, ours: float, peer: float, target: float) -> str:
    met = "met" if peer / ours >= target else "NOT met"
    return f"{label}: {peer / ours:.2f}x (target >= {target}x: {met})"


def _is_join(label: str) -> bool:
    """Step labels read ``[<node id>] join...(...)``."""
    return label.split("] ", 1)[-1].startswith("join")


def _peak_state(metrics: vs.Metrics) -> int | None:
    """The join step's ``peak_state_rows`` (None if the run reports no join step)."""
    peaks = [step.peak_state_rows for label, step in metrics.steps.items() if _is_join(label)]
    return max(peaks) if peaks else None


def _state_line(label: str, metrics: vs.Metrics, events: int) -> str:
    peak = _peak_state(metrics)
    if peak is None:
        return f"{label}: peak state not reported (no join step in {list(metrics.steps)})"
    return f"{label}: peak state {peak:,} rows for {events:,} input events ({peak / events:.2%})"


def test_host_names_match_telemetry() -> None:
    for hosts in (ASOF_HOSTS, LOOKUP_HOSTS):
        df = vs.datasets.telemetry(2_000, hosts=hosts)
        assert df["host"].equals(df.select(_host_names(hosts).alias("host"))["host"])


# ---------------------------------------------------------------- as-of
@pytest.fixture(scope="module")
def asof_events() -> pl.DataFrame:
    return vs.datasets.telemetry(
        N_ASOF, hosts=ASOF_HOSTS, events_per_second=1_000, max_disorder="2s"
    )


@pytest.fixture(scope="module")
def deploys(asof_events: pl.DataFrame) -> pl.DataFrame:
    """N_DEPLOYS deploys in time order over the events' span, one per equal time slot
    (so all times differ), each of a uniformly drawn host."""
    lo, hi = (
        int(x) for x in asof_events.select(lo=pl.col("ts").min(), hi=pl.col("ts").max()).row(0)
    )
    slot = (hi - lo + 1) // N_DEPLOYS
    assert slot >= 1
    rng = np.random.default_rng(7)
    ts = lo + np.arange(N_DEPLOYS, dtype=np.int64) * slot + rng.integers(0, slot, N_DEPLOYS)
    return pl.DataFrame(
        {
            "ts": ts,
            "host_id": rng.integers(0, ASOF_HOSTS, N_DEPLOYS).astype(np.int32),
            "version": np.arange(N_DEPLOYS, dtype=np.int32),
        }
    ).select("ts", _host_names(ASOF_HOSTS).alias("host"), "host_id", "version")


def _deploys_by(deploys: pl.DataFrame, by: str) -> pl.DataFrame:
    return deploys.select("ts", by, "version")


def _asof(events: list[pa.RecordBatch], deploys: list[pa.RecordBatch], by: str) -> vs.Stream:
    return _source(events).join_asof(_source(deploys, "0s"), on="ts", by=by)


def _asof_polars(events: pl.DataFrame, deploys: pl.DataFrame, by: str) -> pl.DataFrame:
    # with `by`, Polars cannot check the sortedness and would warn on every call
    return events.join_asof(deploys, on="ts", by=by, check_sortedness=False)


@pytest.mark.parametrize("by", KEYS)
def test_asof_same_answer_as_polars(
    asof_events: pl.DataFrame, deploys: pl.DataFrame, by: str
) -> None:
    """On the first 1 M events (all deploys), against Polars on the time-sorted data."""
    events = asof_events.head(size(1_000_000, N_ASOF))
    right = _deploys_by(deploys, by)
    ours = _collect(_asof(_batches(events), _batches(right), by))
    _same(ours, _asof_polars(events.sort("ts"), right, by))


@pytest.mark.parametrize("by", KEYS)
def test_asof(benchmark, asof_events: pl.DataFrame, deploys: pl.DataFrame, by: str) -> None:  # type: ignore[no-untyped-def]
    """As-of join of 10 M events in arrival order to 100 k deploys of their host."""
    right = _deploys_by(deploys, by)
    left_b, right_b = _batches(asof_events), _batches(right)
    presorted = asof_events.sort("ts")
    ours = f"vstream join_asof, by {by}"
    sorted_peer = f"polars join_asof presorted, by {by}"
    sorting_peer = f"polars sort + join_asof, by {by}"
    runs = {
        ours: lambda: _drain(_asof(left_b, right_b, by)),
        sorted_peer: lambda: _asof_polars(presorted, right, by),
        sorting_peer: lambda: _asof_polars(asof_events.sort("ts"), right, by),
    }
    pairs = ((ours, sorted_peer), (ours, sorting_peer))
    best = compared(benchmark, runs, events=N_ASOF, pairs=pairs, rounds=ROUNDS)
    if best:
        note(
            f"as-of by {by}: {N_ASOF / best[ours] / 1e6:.1f} M events/s; "
            + _ratio_line("vstream / polars presorted", best[ours], best[sorted_peer], TARGET_ASOF)
            + f"; vstream / polars sort + join_asof: {best[sorting_peer] / best[ours]:.2f}x"
        )


# ---------------------------------------------------------------- interval and windowed
@pytest.fixture(scope="module")
def pair_left() -> pl.DataFrame:
    return vs.datasets.telemetry(N_PAIR, hosts=PAIR_HOSTS, max_disorder="2s", seed=1).select(
        "ts", "host", "host_id", "cpu", "latency_ms"
    )


@pytest.fixture(scope="module")
def pair_right() -> pl.DataFrame:
    return vs.datasets.telemetry(N_PAIR, hosts=PAIR_HOSTS, max_disorder="2s", seed=2).select(
        "ts", "host", "host_id", "mem", "status"
    )


def _side(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The frame with one key column (the other would clash as ``*_right``)."""
    return frame.drop("host_id" if key == "host" else "host")


def _interval(left: list[pa.RecordBatch], right: list[pa.RecordBatch], key: str) -> vs.Stream:
    return _source(left).join_interval(_source(right), on=key, **INTERVAL, how="inner")


def _interval_polars(left: pl.DataFrame, right: pl.DataFrame, key: str) -> pl.DataFrame:
    """Join on (key, bucket of UPPER - LOWER ms), then filter on the interval.

    ``[ts + LOWER, ts + UPPER]`` spans exactly two buckets, so each left row goes in
    twice (concat beats ``concat_list + explode`` here by ~2x) and each pair is found once.
    """
    width = UPPER - LOWER
    first = (pl.col("ts") + LOWER) // width
    both = pl.concat([left.with_columns(__b=first), left.with_columns(__b=first + 1)])
    return (
        both.join(right.with_columns(__b=pl.col("ts") // width), on=[key, "__b"])
        .filter(pl.col("ts_right").is_between(pl.col("ts") + LOWER, pl.col("ts") + UPPER))
        .drop("__b")
    )


def _windowed(left: list[pa.RecordBatch], right: list[pa.RecordBatch], key: str) -> vs.Stream:
    return _source(left).join(_source(right), on=key, window=vs.tumbling("1s"), how="inner")


def _windowed_polars(left: pl.DataFrame, right: pl.DataFrame, key: str) -> pl.DataFrame:
    w = pl.col("ts") // WINDOW
    return (
        left.with_columns(__w=w)
        .join(right.with_columns(__w=w), on=[key, "__w"])
        .with_columns(window_start=pl.col("__w") * WINDOW, window_end=(pl.col("__w") + 1) * WINDOW)
        .drop("__w")
    )


def test_interval_peer_is_join_and_filter(
    pair_left: pl.DataFrame, pair_right: pl.DataFrame
) -> None:
    """The bucketed peer equals the plain join on the key + filter (on a prefix, where
    the plain join's candidates still fit in memory)."""
    left, right = _side(pair_left.head(50_000), "host"), _side(pair_right.head(50_000), "host")
    plain = left.join(right, on="host").filter(
        pl.col("ts_right").is_between(pl.col("ts") + LOWER, pl.col("ts") + UPPER)
    )
    _same(_interval_polars(left, right, "host"), plain)


@pytest.mark.parametrize("key", KEYS)
def test_interval_same_answer_as_polars(
    pair_left: pl.DataFrame, pair_right: pl.DataFrame, key: str
) -> None:
    """On the first 1 M events of each side."""
    n = size(1_000_000, N_PAIR)
    left, right = _side(pair_left.head(n), key), _side(pair_right.head(n), key)
    ours = _collect(_interval(_batches(left), _batches(right), key))
    _same(ours, _interval_polars(left, right, key))


@pytest.mark.parametrize("key", KEYS)
def test_windowed_same_answer_as_polars(
    pair_left: pl.DataFrame, pair_right: pl.DataFrame, key: str
) -> None:
    """On the first 1 M events of each side."""
    n = size(1_000_000, N_PAIR)
    left, right = _side(pair_left.head(n), key), _side(pair_right.head(n), key)
    ours = _collect(_windowed(_batches(left), _batches(right), key))
    _same(ours, _windowed_polars(left, right, key))


def _stream_stream(  # type: ignore[no-untyped-def]
    benchmark,
    kind: str,
    pipeline: Callable[[list[pa.RecordBatch], list[pa.RecordBatch], str], vs.Stream],
    peer: Callable[[pl.DataFrame, pl.DataFrame, str], pl.DataFrame],
    left: pl.DataFrame,
    right: pl.DataFrame,
    key: str,
) -> None:
    left, right = _side(left, key), _side(right, key)
    left_b, right_b = _batches(left), _batches(right)
    events = left.height + right.height
    last: dict[str, vs.Metrics] = {}
    ours = f"vstream {kind} join, by {key}"
    theirs = f"polars {kind} peer, by {key}"
    runs = {
        ours: lambda: last.update(metrics=_drain(pipeline(left_b, right_b, key))),
        theirs: lambda: peer(left, right, key),
    }
    best = compared(benchmark, runs, events=events, pairs=((ours, theirs),), rounds=ROUNDS)
    if not best:
        return
    metrics = last["metrics"]
    peak = _peak_state(metrics)
    if peak is not None:
        benchmark.extra_info["peak_state_rows"] = peak
    note(
        f"{kind} by {key}: {events / best[ours] / 1e6:.1f} M events/s "
        f"({metrics.events_out:,} pairs); vstream / polars {best[theirs] / best[ours]:.2f}x"
    )
    note(_state_line(f"{kind} by {key}", metrics, events))


@pytest.mark.parametrize("key", KEYS)
def test_interval(benchmark, pair_left: pl.DataFrame, pair_right: pl.DataFrame, key: str) -> None:  # type: ignore[no-untyped-def]
    """Interval join, -1 s..+1 s, of two 5 M-event streams over 10 k hosts."""
    _stream_stream(benchmark, "interval", _interval, _interval_polars, pair_left, pair_right, key)


@pytest.mark.parametrize("key", KEYS)
def test_windowed(benchmark, pair_left: pl.DataFrame, pair_right: pl.DataFrame, key: str) -> None:  # type: ignore[no-untyped-def]
    """Tumbling 1 s windowed join of the same two streams."""
    _stream_stream(benchmark, "windowed", _windowed, _windowed_polars, pair_left, pair_right, key)


# ---------------------------------------------------------------- lookup
@pytest.fixture(scope="module")
def lookup_events() -> pl.DataFrame:
    return vs.datasets.telemetry(N_LOOKUP, hosts=LOOKUP_HOSTS)


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """One row per host id 0..TABLE_ROWS - 1: name, team, tier and a weight."""
    return pl.DataFrame({"host_id": np.arange(TABLE_ROWS, dtype=np.int32)}).select(
        _host_names(LOOKUP_HOSTS).alias("host"),
        "host_id",
        team=pl.format("team-{}", pl.col("host_id") % 50),
        tier=(pl.col("host_id") % 3).cast(pl.Int8),
        weight=pl.col("host_id") / TABLE_ROWS,
    )


def _table_by(table: pl.DataFrame, key: str) -> pl.DataFrame:
    return table.select(key, "team", "tier", "weight")


def _lookup(events: list[pa.RecordBatch], table: pl.DataFrame, key: str) -> vs.Stream:
    return vs.from_arrow(events).join(table, on=key, how="left")


@pytest.mark.parametrize("key", KEYS)
def test_lookup_same_answer_as_polars(
    lookup_events: pl.DataFrame, table: pl.DataFrame, key: str
) -> None:
    """On the first 1 M events."""
    events = lookup_events.head(size(1_000_000, N_LOOKUP))
    by_key = _table_by(table, key)
    ours = _collect(_lookup(_batches(events), by_key, key))
    expected = events.join(by_key, on=key, how="left")
    assert expected["team"].null_count() > 0  # the left join's nulls are exercised
    _same(ours, expected)


@pytest.mark.parametrize("key", KEYS)
def test_lookup(benchmark, lookup_events: pl.DataFrame, table: pl.DataFrame, key: str) -> None:  # type: ignore[no-untyped-def]
    """Left join of 10 M events to a static 100 k-row table."""
    by_key = _table_by(table, key)
    batches = _batches(lookup_events)
    ours = f"vstream lookup join (left), by {key}"
    peer = f"polars left join, by {key} [lookup]"
    runs = {
        ours: lambda: _drain(_lookup(batches, by_key, key)),
        peer: lambda: lookup_events.join(by_key, on=key, how="left"),
    }
    best = compared(benchmark, runs, events=N_LOOKUP, pairs=((ours, peer),), rounds=ROUNDS)
    if best:
        note(
            f"lookup by {key}: {N_LOOKUP / best[ours] / 1e6:.1f} M events/s; "
            + _ratio_line("vstream / polars left join", best[ours], best[peer], TARGET_LOOKUP)
        )
