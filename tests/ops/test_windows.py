"""Windowed aggregation (DESIGN.md "Semantics": Windows, Output, Equality, Nulls) against
Polars references, on inputs whose disorder stays within the watermark bound (no event
is late).

The references live in ``window_reference.py``: ``group_by_dynamic`` for tumbling
windows, explicit window assignment for tumbling, hopping and session windows (in
arrival order, so ``first``/``last`` follow arrival order). Results are compared as
multisets of rows (firing order is unspecified within one firing); floats within 1e-9
relative. Late data is in ``test_window_late.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
import vstream as vs
import window_reference as ref

SameRows = Callable[..., None]

BOUND = "3s"  # >= every disorder strategies.disorders() draws: no event is late
ONE_ROW_CAP = 300  # batch size 1 costs ~0.5 ms a row
FLOAT = {"check_exact": False, "rel_tol": 1e-9, "abs_tol": 1e-9}
# same_rows is a stateless function fixture, safe to share between hypothesis examples
FIXTURE_OK = [HealthCheck.function_scoped_fixture]

Duration = str | int | timedelta
_MS = {"ms": 1, "s": 1_000, "m": 60_000}


def ms(value: Duration) -> int:
    """A duration as an integer of milliseconds (the unit of every ``ts`` here)."""
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return value // timedelta(milliseconds=1)
    number = value.rstrip("ms")
    return int(number) * _MS[value[len(number) :]]


def as_duration(value: Duration, datetime: bool) -> Duration:
    """Integer durations are in the unit of an integer column; a Datetime takes timedelta."""
    return timedelta(milliseconds=value) if datetime and isinstance(value, int) else value


def prepared(df: pl.DataFrame) -> pl.DataFrame:
    """Telemetry plus a Boolean key and a string key with nulls (null keys are a group)."""
    return df.with_columns(
        hot=pl.col("cpu") > 50,
        host_n=pl.when(pl.col("host_id") % 4 != 1).then(pl.col("host")),
    )


KEYS: dict[str, Any] = {
    "none": None,
    "string": "host",
    "int": "host_id",
    "two_strings": ["region", "host"],
    "bool": "hot",
    "null_string": "host_n",
    "bool_and_null_string": ["hot", "host_n"],
}

# Aggregates that do not depend on arrival order (group_by_dynamic sorts by time).
ORDER_FREE = [
    pl.len(),
    pl.col("cpu").count().alias("cpu_count"),
    pl.col("bytes").sum(),
    pl.col("latency_ms").sum().alias("lat_sum"),
    pl.col("cpu").mean(),
    pl.col("mem").min().alias("mem_min"),
    pl.col("mem").max().alias("mem_max"),
    pl.col("status").max().alias("status_max"),
    pl.col("latency_ms").var().alias("lat_var"),
    pl.col("status").n_unique().alias("statuses"),
]
# Polars 2.1 group_by_dynamic gives var/std(ddof=0) = 0.0 on a one-row frame whose value
# is null (group_by gives null, as for any group without values): ddof=0 is checked
# against the explicit references only.
ORDERED = [
    *ORDER_FREE,
    pl.col("latency_ms").std(ddof=0).alias("lat_std0"),
    pl.col("cpu").first().alias("cpu_first"),
    pl.col("cpu").last().alias("cpu_last"),
    pl.col("bytes").last().alias("bytes_last"),
]

# The same without n_unique: session windows are checked on n_unique separately
# (test_session_aggregates), so that its absence does not hide everything else.
ORDERED_NO_N_UNIQUE = [e for e in ORDERED if e.meta.output_name() != "statuses"]

AGGREGATES: dict[str, list[pl.Expr]] = {
    "len_count": [pl.len(), pl.col("cpu").count(), pl.col("status").count().alias("n_status")],
    "sum_int_float": [
        pl.col("bytes").sum(),
        pl.col("status").sum().alias("status_sum"),
        pl.col("cpu").sum(),
    ],
    "mean": [pl.col("latency_ms").mean(), pl.col("status").mean().alias("status_mean")],
    "min_max": [
        pl.col("cpu").min().alias("cpu_min"),
        pl.col("cpu").max().alias("cpu_max"),
        pl.col("bytes").min().alias("bytes_min"),
        pl.col("status").max().alias("status_max"),
    ],
    "min_max_time": [pl.col("ts").min().alias("ts_min"), pl.col("ts").max().alias("ts_max")],
    "first_last": [
        pl.col("cpu").first().alias("cpu_first"),
        pl.col("cpu").last().alias("cpu_last"),
        pl.col("bytes").first().alias("bytes_first"),
        pl.col("status").last().alias("status_last"),
    ],
    "first_last_string": [
        pl.col("host").first().alias("host_first"),
        pl.col("region").last().alias("region_last"),
    ],
    "var_std": [
        pl.col("cpu").var().alias("cpu_var"),
        pl.col("cpu").var(ddof=0).alias("cpu_var0"),
        pl.col("mem").std().alias("mem_std"),
        pl.col("mem").std(ddof=0).alias("mem_std0"),
    ],
    "n_unique": [pl.col("status").n_unique(), pl.col("cpu").n_unique().alias("cpus")],
    "n_unique_string": [pl.col("host").n_unique().alias("hosts")],
    "several_columns": [pl.col("cpu", "mem").mean()],
    "name_suffix": [pl.col("cpu", "mem").max().name.suffix("_x"), pl.len().alias("n")],
    "arithmetic": [pl.col("latency_ms").sum() / pl.len()],
}

#: 12 s of telemetry over 12 hosts, disorder 2 s, some nulls
DATA = prepared(
    vs.datasets.telemetry(
        3_000, hosts=12, events_per_second=250, max_disorder="2s", seed=5, null_fraction=0.1
    )
)


def watermarked(df: pl.DataFrame, batch_size: int = strategies.WHOLE) -> vs.Stream:
    unit = "ms" if df.schema["ts"].is_integer() else None
    return vs.from_polars(df, batch_size=batch_size).with_watermark("ts", BOUND, time_unit=unit)


def no_late_events(m: vs.Metrics) -> None:
    assert m.late_events == 0
    assert m.behind_watermark == 0


def run(stream: vs.Stream) -> pl.DataFrame:
    out, m = stream.collect(return_metrics=True)
    no_late_events(m)
    return out


def windowed(
    df: pl.DataFrame,
    spec: Any,
    *,
    by: Any = None,
    aggs: list[pl.Expr],
    batch_size: int = strategies.WHOLE,
) -> pl.DataFrame:
    return run(watermarked(df, batch_size).window(spec, by=by).agg(*aggs))


# ------------------------------------------------------------------ the references


def test_reference_tumbling_by_hand() -> None:
    df = pl.DataFrame(
        {"ts": [999, 0, 1000, 2500, -1, 1300], "x": [1, 2, 3, 4, 5, 6]},
    )
    aggs = [pl.len(), pl.col("x").sum()]
    expected = pl.DataFrame(
        {
            "window_start": [-1000, 0, 1000, 2000],
            "window_end": [0, 1000, 2000, 3000],
            "len": pl.Series([1, 2, 2, 1], dtype=pl.UInt32),
            "x": [5, 3, 9, 4],
        }
    )
    assert ref.tumbling(df, 1000, aggs=aggs).sort("window_start").equals(expected)
    assert ref.tumbling_dynamic(df, 1000, aggs=aggs).sort("window_start").equals(expected)
    # offset 300: [-700, 300) holds -1, 0; [300, 1300) holds 999, 1000; ...
    shifted = ref.tumbling(df, 1000, 300, aggs=[pl.col("x").first()]).sort("window_start")
    assert shifted.rows() == [(-700, 300, 2), (300, 1300, 1), (1300, 2300, 6), (2300, 3300, 4)]


def test_reference_first_last_follow_arrival_order() -> None:
    df = pl.DataFrame({"ts": [5, 1, 3, 12, 11], "x": ["a", "b", "c", "d", "e"]})
    aggs = [pl.col("x").first().alias("first"), pl.col("x").last().alias("last")]
    assert ref.tumbling(df, 10, aggs=aggs).sort("window_start").rows() == [
        (0, 10, "a", "c"),
        (10, 20, "d", "e"),
    ]
    assert ref.hopping(df, 10, 5, aggs=aggs).sort("window_start").rows() == [
        (-5, 5, "b", "c"),
        (0, 10, "a", "c"),
        (5, 15, "a", "e"),
        (10, 20, "d", "e"),
    ]
    assert ref.session(df, 3, aggs=aggs).sort("window_start").rows() == [
        (1, 8, "a", "c"),
        (11, 15, "d", "e"),
    ]


def test_reference_hopping_size_not_a_multiple_of_slide() -> None:
    # size 5, slide 2: t=0 is in the windows starting at -4, -2, 0; t=7 in those at 4, 6
    df = pl.DataFrame({"ts": [0, 7]}).with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    out = ref.hopping(df, 5, 2, aggs=[pl.len()]).sort("window_start")
    assert out.schema["window_start"] == pl.Datetime("ms")
    starts = out["window_start"].dt.epoch("ms").to_list()
    assert starts == [-4, -2, 0, 4, 6]


def test_reference_session_keys_and_null_keys() -> None:
    df = pl.DataFrame(
        {"ts": [0, 3, 5, 12, 4, 30], "k": ["a", None, "a", "a", None, None]},
    )
    out = ref.session(df, 7, by="k", aggs=[pl.len()]).sort("k", "window_start", nulls_last=True)
    # "a": 5 - 0 < 7 and 12 - 5 == 7 (windows that touch) share a session; nulls are a
    # key of their own, 30 - 4 > 7 starts one
    assert out.rows() == [("a", 0, 19, 3), (None, 3, 11, 2), (None, 30, 37, 1)]


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(max_n=2_000, max_hosts=20),
    size=st.sampled_from([7, 100, 250, 1_000]),
    offset=st.integers(0, 99),
    by=st.sampled_from(list(KEYS.values())),
    datetime=st.booleans(),
)
def test_references_agree_on_tumbling(
    same_rows: SameRows, df: pl.DataFrame, size: int, offset: int, by: Any, datetime: bool
) -> None:
    df = prepared(df)
    if datetime:
        df = df.with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    offset %= size
    dynamic = ref.tumbling_dynamic(df, size, offset, by=by, aggs=ORDER_FREE)
    assigned = ref.tumbling(df, size, offset, by=by, aggs=ORDER_FREE)
    same_rows(assigned, dynamic, **FLOAT)
    # a hopping window with slide == size is a tumbling window
    same_rows(ref.hopping(df, size, size, offset, by=by, aggs=ORDER_FREE), dynamic, **FLOAT)


# ------------------------------------------------------------------ tumbling


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(max_n=2_000, max_hosts=30),
    size=st.sampled_from(["250ms", "1s", 100, 50]),
    offset=st.sampled_from([0, "30ms", 3]),
    by=st.sampled_from(list(KEYS.values())),
    batch_size=strategies.random_batch_sizes(),
)
def test_tumbling_on_int_ms_time_matches_group_by_dynamic(
    same_rows: SameRows, df: pl.DataFrame, size: Any, offset: Any, by: Any, batch_size: int
) -> None:
    df = prepared(df)
    spec = vs.tumbling(size, offset=offset)
    out = windowed(df, spec, by=by, aggs=ORDER_FREE, batch_size=batch_size)
    expected = ref.tumbling_dynamic(df, ms(size), ms(offset), by=by, aggs=ORDER_FREE)
    same_rows(out, expected, **FLOAT)


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(max_n=2_000, max_hosts=30, time_type="datetime"),
    size=st.sampled_from(["250ms", "1s", timedelta(milliseconds=700)]),
    offset=st.sampled_from([0, "100ms", timedelta(milliseconds=50)]),
    by=st.sampled_from(list(KEYS.values())),
    batch_size=strategies.random_batch_sizes(),
)
def test_tumbling_on_datetime_time_matches_group_by_dynamic(
    same_rows: SameRows, df: pl.DataFrame, size: Any, offset: Any, by: Any, batch_size: int
) -> None:
    df = prepared(df)
    out = windowed(
        df, vs.tumbling(size, offset=offset), by=by, aggs=ORDER_FREE, batch_size=batch_size
    )
    expected = ref.tumbling_dynamic(df, ms(size), ms(offset), by=by, aggs=ORDER_FREE)
    assert out.schema["window_start"] == pl.Datetime("ms")
    same_rows(out, expected, **FLOAT)


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(max_n=2_000, max_hosts=30),
    size=st.sampled_from(["250ms", "1s", 100]),
    by=st.sampled_from(list(KEYS.values())),
    batch_size=strategies.random_batch_sizes(),
)
def test_tumbling_first_and_last_follow_arrival_order(
    same_rows: SameRows, df: pl.DataFrame, size: Any, by: Any, batch_size: int
) -> None:
    df = prepared(df)
    out = windowed(df, vs.tumbling(size), by=by, aggs=ORDERED, batch_size=batch_size)
    same_rows(out, ref.tumbling(df, ms(size), by=by, aggs=ORDERED), **FLOAT)


@pytest.mark.parametrize("by", KEYS.values(), ids=KEYS.keys())
def test_tumbling_keys(same_rows: SameRows, run_everywhere: Any, by: Any) -> None:
    df = DATA.head(2 * ONE_ROW_CAP)  # under every executor: 2.4 s of events, 3+ windows

    def build(s: vs.Stream) -> vs.Stream:
        return s.with_watermark("ts", BOUND, time_unit="ms").window(vs.tumbling("1s"), by=by)

    out = run_everywhere(lambda s: build(s).agg(*ORDERED), df, metrics=no_late_events)
    same_rows(out, ref.tumbling(df, 1_000, by=by, aggs=ORDERED), **FLOAT)


@pytest.mark.parametrize("aggs", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_tumbling_aggregates(same_rows: SameRows, aggs: list[pl.Expr]) -> None:
    out = windowed(DATA, vs.tumbling("1s"), by="host_n", aggs=aggs, batch_size=97)
    expected = ref.tumbling(DATA, 1_000, by="host_n", aggs=aggs)
    assert out.columns == expected.columns
    same_rows(out, expected, **FLOAT)


@pytest.mark.parametrize("aggs", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_aggregates_on_a_datetime_time(same_rows: SameRows, aggs: list[pl.Expr]) -> None:
    df = DATA.with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    out = windowed(df, vs.tumbling("1s"), by="region", aggs=aggs, batch_size=211)
    same_rows(out, ref.tumbling(df, 1_000, by="region", aggs=aggs), **FLOAT)


def test_tumbling_with_integer_durations_and_no_time_unit(same_rows: SameRows) -> None:
    stream = vs.from_polars(DATA, batch_size=500).with_watermark("ts", 3_000)
    out = run(stream.window(vs.tumbling(1_000, offset=250), by="host").agg(*ORDERED))
    same_rows(out, ref.tumbling(DATA, 1_000, 250, by="host", aggs=ORDERED), **FLOAT)


def test_output_columns_and_dtypes() -> None:
    aggs = [pl.len(), pl.col("cpu").mean(), pl.col("bytes").sum(), pl.col("status").n_unique()]
    for df in (DATA, DATA.with_columns(pl.col("ts").cast(pl.Datetime("ms")))):
        out = windowed(df, vs.tumbling("1s"), by=["region", "host"], aggs=aggs)
        expected = ref.tumbling(df, 1_000, by=["region", "host"], aggs=aggs)
        assert out.schema == expected.schema
        assert out.columns == [
            "region",
            "host",
            "window_start",
            "window_end",
            *expected.columns[4:],
        ]
        assert out.schema["window_start"] == df.schema["ts"]
        assert out.schema["window_end"] == df.schema["ts"]
        assert out.schema["len"] == pl.UInt32
        assert out.height == expected.height


@pytest.mark.parametrize(
    ("kind", "args"),
    [("tumbling", ("1s",)), ("hopping", ("1s", "250ms")), ("session", ("100ms",))],
)
def test_empty_input_gives_an_empty_frame_with_the_schema(kind: str, args: tuple[str]) -> None:
    empty = DATA.head(0)
    aggs = ORDERED_NO_N_UNIQUE if kind == "session" else ORDERED
    out = windowed(empty, getattr(vs, kind)(*args), by="host", aggs=aggs)
    expected = ref.tumbling(empty, 1_000, by="host", aggs=aggs)
    assert out.height == 0
    assert out.schema == expected.schema


def test_window_bounds_are_half_open(run_everywhere: Any) -> None:
    df = pl.DataFrame({"ts": [0, 999, 1_000, 1_999, 2_000], "x": [1, 2, 3, 4, 5]})
    out = run_everywhere(
        lambda s: (
            s.with_watermark("ts", 0, time_unit="ms")
            .window(vs.tumbling("1s"))
            .agg(pl.len(), pl.col("x").sum())
        ),
        df,
        metrics=no_late_events,
    )
    assert sorted(out.rows()) == [(0, 1_000, 2, 3), (1_000, 2_000, 2, 7), (2_000, 3_000, 1, 5)]


# ------------------------------------------------------------------ hopping

HOPS = [("1s", "500ms"), ("5s", "2s"), ("300ms", "100ms"), ("1s", "1s"), (700, 300)]


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    data=st.data(),
    hop=st.sampled_from(HOPS),
    offset=st.sampled_from([0, "50ms"]),
    by=st.sampled_from(list(KEYS.values())),
    datetime=st.booleans(),
    batch_size=strategies.random_batch_sizes(),
)
def test_hopping_matches_explicit_assignment(
    same_rows: SameRows,
    data: st.DataObject,
    hop: tuple[Any, Any],
    offset: Any,
    by: Any,
    datetime: bool,
    batch_size: int,
) -> None:
    time_type = "datetime" if datetime else "int"
    df = prepared(
        data.draw(strategies.telemetry_frames(max_n=1_500, max_hosts=20, time_type=time_type))
    )
    size, slide = (as_duration(d, datetime) for d in hop)
    spec = vs.hopping(size, slide, offset=offset)
    out = windowed(df, spec, by=by, aggs=ORDERED, batch_size=batch_size)
    expected = ref.hopping(df, ms(size), ms(slide), ms(offset), by=by, aggs=ORDERED)
    same_rows(out, expected, **FLOAT)


def test_hopping_includes_windows_that_start_before_the_first_event(run_everywhere: Any) -> None:
    df = pl.DataFrame({"ts": [0, 7], "x": [1, 2]})
    out = run_everywhere(
        lambda s: (
            s.with_watermark("ts", 0).window(vs.hopping(5, 2)).agg(pl.len(), pl.col("x").sum())
        ),
        df,
        metrics=no_late_events,
    )
    assert sorted(out.rows()) == [
        (-4, 1, 1, 1),
        (-2, 3, 1, 1),
        (0, 5, 1, 1),
        (4, 9, 1, 2),
        (6, 11, 1, 2),
    ]


@pytest.mark.parametrize("aggs", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_hopping_aggregates(same_rows: SameRows, aggs: list[pl.Expr]) -> None:
    out = windowed(DATA, vs.hopping("5s", "2s"), by="host_n", aggs=aggs, batch_size=97)
    same_rows(out, ref.hopping(DATA, 5_000, 2_000, by="host_n", aggs=aggs), **FLOAT)


# ------------------------------------------------------------------ session

GAPS = ["20ms", "100ms", 500, "2s"]


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    data=st.data(),
    gap=st.sampled_from(GAPS),
    by=st.sampled_from(list(KEYS.values())),
    datetime=st.booleans(),
    batch_size=strategies.random_batch_sizes(),
)
def test_session_matches_the_reference(
    same_rows: SameRows, data: st.DataObject, gap: Any, by: Any, datetime: bool, batch_size: int
) -> None:
    time_type = "datetime" if datetime else "int"
    df = prepared(
        data.draw(strategies.telemetry_frames(max_n=1_500, max_hosts=30, time_type=time_type))
    )
    aggs = ORDERED_NO_N_UNIQUE
    spec = vs.session(as_duration(gap, datetime))
    out = windowed(df, spec, by=by, aggs=aggs, batch_size=batch_size)
    same_rows(out, ref.session(df, ms(gap), by=by, aggs=aggs), **FLOAT)


def test_sessions_that_touch_merge(run_everywhere: Any) -> None:
    """``next - prev == gap`` stays in the session (windows ``[t, t + gap)`` that touch
    merge, as in Flink, Spark and Bytewax); ``gap + 1`` starts a new one. Under every
    executor: sessions that touch across micro-batches merge too."""
    rows = [  # arrival order, out of order by 25 at most (40, then 15): within the bound
        ("a", 10, 1.0),
        ("a", 0, 2.0),
        ("b", 5, 3.0),
        ("a", 19, 4.0),
        ("a", 40, 5.0),
        ("b", 15, 6.0),
        ("a", 29, 7.0),
    ]
    df = pl.DataFrame(rows, schema={"k": pl.String, "ts": pl.Int64, "v": pl.Float64}, orient="row")
    aggs = [pl.len(), pl.col("v").first(), pl.col("v").sum().alias("v_sum")]
    out = run_everywhere(
        lambda s: s.with_watermark("ts", 30).window(vs.session(10), by="k").agg(*aggs),
        df,
        metrics=no_late_events,
    )
    assert out.columns == ["k", "window_start", "window_end", "len", "v", "v_sum"]
    assert sorted(out.rows()) == [
        # 10 - 0 == gap, 19 - 10 < gap, and 29 (last row) touches [0, 29)
        ("a", 0, 39, 4, 1.0, 14.0),
        ("a", 40, 50, 1, 5.0, 5.0),  # 40 - 29 > gap
        ("b", 5, 25, 2, 3.0, 9.0),  # 15 - 5 == gap
    ]
    assert sorted(out.rows()) == sorted(ref.session(df, 10, by="k", aggs=aggs).rows())


def test_a_late_arriving_event_bridges_two_sessions() -> None:
    batches = [
        pa.record_batch({"ts": pa.array([0, 18], pa.int64()), "v": pa.array([1.0, 2.0])}),
        pa.record_batch({"ts": pa.array([9], pa.int64()), "v": pa.array([3.0])}),
        pa.record_batch({"ts": pa.array([100], pa.int64()), "v": pa.array([4.0])}),
    ]
    stream = vs.from_arrow(batches).with_watermark("ts", 50)
    aggs = [pl.len(), pl.col("v").first(), pl.col("v").last().alias("v_last")]
    out = run(stream.window(vs.session(10)).agg(*aggs))
    assert sorted(out.rows()) == [(0, 28, 3, 1.0, 3.0), (100, 110, 1, 4.0, 4.0)]


def test_a_late_event_that_touches_two_open_sessions_merges_them() -> None:
    # [0, 10) and [20, 30) are open (bound 50); 10 arrives later, exactly gap from both
    batches = [
        pa.record_batch({"ts": pa.array([0, 20], pa.int64()), "v": pa.array([1.0, 2.0])}),
        pa.record_batch({"ts": pa.array([10], pa.int64()), "v": pa.array([3.0])}),
        pa.record_batch({"ts": pa.array([31], pa.int64()), "v": pa.array([4.0])}),
    ]
    stream = vs.from_arrow(batches).with_watermark("ts", 50)
    aggs = [pl.len(), pl.col("v").first(), pl.col("v").last().alias("v_last")]
    out = run(stream.window(vs.session(10)).agg(*aggs))
    # 31 - 20 > gap: a session of its own
    assert sorted(out.rows()) == [(0, 30, 3, 1.0, 3.0), (31, 41, 1, 4.0, 4.0)]


@pytest.mark.parametrize("aggs", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_session_aggregates(same_rows: SameRows, aggs: list[pl.Expr]) -> None:
    out = windowed(DATA, vs.session("300ms"), by="host_n", aggs=aggs, batch_size=97)
    same_rows(out, ref.session(DATA, 300, by="host_n", aggs=aggs), **FLOAT)


# ------------------------------------------------------------------ batching independence

SPECS: list[tuple[str, Any, Any]] = [
    ("tumbling", ("1s",), ref.tumbling),
    ("tumbling", ("250ms",), ref.tumbling),
    ("hopping", ("1s", "300ms"), ref.hopping),
    ("session", ("50ms",), ref.session),
]


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(min_n=1, max_n=2_000, max_hosts=20),
    case=st.sampled_from(SPECS),
    by=st.sampled_from([None, "host", ["region", "host"], "host_n"]),
    batch_size=strategies.random_batch_sizes(),
    data=st.data(),
)
def test_same_result_for_every_batch_size_and_chunking(
    same_rows: SameRows,
    df: pl.DataFrame,
    case: tuple[str, Any, Any],
    by: Any,
    batch_size: int,
    data: st.DataObject,
) -> None:
    kind, args, reference = case
    df = prepared(df)

    aggs = ORDERED_NO_N_UNIQUE if kind == "session" else ORDERED

    def pipeline(stream: vs.Stream) -> pl.DataFrame:
        spec = getattr(vs, kind)(*args)
        watermarked = stream.with_watermark("ts", BOUND, time_unit="ms")
        return run(watermarked.window(spec, by=by).agg(*aggs))

    expected = reference(df, *(ms(a) for a in args), by=by, aggs=aggs)
    whole = pipeline(vs.from_polars(df, batch_size=strategies.WHOLE))
    same_rows(whole, expected, **FLOAT)
    same_rows(pipeline(vs.from_polars(df, batch_size=batch_size)), whole, **FLOAT)
    points = data.draw(strategies.split_points(df.height))
    chunked = pipeline(vs.from_arrow(strategies.split_frame(df, points)))
    same_rows(chunked, whole, **FLOAT)
    prefix = df.head(ONE_ROW_CAP)
    one_by_one = pipeline(vs.from_polars(prefix, batch_size=1))
    same_rows(one_by_one, pipeline(vs.from_polars(prefix, batch_size=strategies.WHOLE)), **FLOAT)
    same_rows(one_by_one, reference(prefix, *(ms(a) for a in args), by=by, aggs=aggs), **FLOAT)


def test_one_row_per_batch_equals_one_batch(same_rows: SameRows) -> None:
    df = DATA.head(ONE_ROW_CAP)
    no_n_unique = ORDERED_NO_N_UNIQUE
    for spec, aggs, expected in [
        (vs.tumbling("500ms"), ORDERED, ref.tumbling(df, 500, by="host", aggs=ORDERED)),
        (vs.hopping("1s", "200ms"), ORDERED, ref.hopping(df, 1_000, 200, by="host", aggs=ORDERED)),
        (vs.session("40ms"), no_n_unique, ref.session(df, 40, by="host", aggs=no_n_unique)),
    ]:
        for batch_size in (1, 7, strategies.WHOLE):
            out = windowed(df, spec, by="host", aggs=aggs, batch_size=batch_size)
            same_rows(out, expected, **FLOAT)


@pytest.mark.parametrize(
    ("size", "slide", "offset"),
    [
        (5_000, 2_000, 700),
        (3_000, 1_000, -400),
        (4_000, 4_000, "-1500ms"),
        (6_000, 1_500, "250ms"),
    ],
)
def test_hopping_offsets_shift_the_grid(
    same_rows: SameRows, size: int, slide: int, offset: int | str
) -> None:
    """Offsets may be negative or strings; windows start at k * slide + offset."""
    df = vs.datasets.telemetry(20_000, hosts=7, seed=5)
    aggs = [pl.len(), pl.col("cpu").max()]
    got = (
        vs.from_polars(df, batch_size=999)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.hopping(size, slide=slide, offset=offset), by="host")
        .agg(*aggs)
        .collect()
    )
    off = offset if isinstance(offset, int) else ms(offset)
    want = ref.hopping(df, size, slide, off % slide, by="host", aggs=aggs)
    same_rows(got, want.select(got.columns))


@pytest.mark.parametrize("zone", [None, "Europe/Berlin", "Asia/Kolkata"])
@pytest.mark.parametrize("every", ["1w", "2w", "3w"])
def test_weeks_start_on_monday_as_in_polars(same_rows: SameRows, every: str, zone: Any) -> None:
    days = pl.datetime_range(
        datetime(2024, 1, 1), datetime(2024, 12, 31), "7h", time_unit="ms", eager=True
    )
    df = pl.DataFrame({"ts": days, "x": range(len(days))})
    if zone is not None:
        df = df.with_columns(pl.col("ts").dt.replace_time_zone(zone))
    stream = vs.from_polars(df, batch_size=100).with_watermark("ts", "1h")
    out = stream.window(vs.tumbling(every)).agg(pl.len(), pl.col("x").sum()).collect()
    expected = (
        df.group_by_dynamic("ts", every=every, closed="left", label="left", start_by="window")
        .agg(pl.len(), pl.col("x").sum())
        .rename({"ts": "window_start"})
    )
    same_rows(out.drop("window_end"), expected)
