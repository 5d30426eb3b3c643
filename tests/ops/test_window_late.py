"""Late data, allowed lateness, side outputs, chained windows, early firing, processing
time and build-time errors of windowed aggregation (DESIGN.md "Semantics": Firing, Late
events and allowed lateness, Downstream of a window, Side outputs; "Bad input").

Most cases are tiny frames fed as explicit micro-batches (``vs.from_arrow`` of a list of
record batches), with the expected rows written out by hand. The property tests model the
watermark of one split (``window_reference.watermarks_before``) to predict exactly which
events are late.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
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

FLOAT = {"check_exact": False, "rel_tol": 1e-9, "abs_tol": 1e-9}
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
SCHEMA = pl.Schema({"ts": pl.Int64, "i": pl.Int64})


def source(*batches: list[int]) -> vs.Stream:
    """One micro-batch per list of event times; ``i`` numbers the events in arrival order."""
    ids = itertools.count()
    return vs.from_arrow(
        [
            pa.record_batch(
                {"ts": pa.array(b, pa.int64()), "i": pa.array([next(ids) for _ in b], pa.int64())}
            )
            for b in batches
        ]
    )


def rows_of(*batches: list[int]) -> pl.DataFrame:
    """The rows :func:`source` makes, as one frame."""
    ts = [t for b in batches for t in b]
    return pl.DataFrame({"ts": ts, "i": range(len(ts))}, schema=SCHEMA)


def sorted_rows(df: pl.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(df.rows(), key=lambda r: tuple((v is None, v) for v in r))


# ------------------------------------------------------------------ dropping late events

# Tumbling(10), bound 0: after [1, 5, 12] the watermark is 12 and [0, 10) has fired, so 3
# is late; 15 is on time.
LATE_CASE = ([1, 5, 12], [3, 15], [25])


def test_a_late_event_is_dropped_and_counted() -> None:
    w = source(*LATE_CASE).with_watermark("ts", 0).window(vs.tumbling(10)).agg(pl.len())
    out, m = w.collect(return_metrics=True)
    assert out.columns == ["window_start", "window_end", "len"]
    assert sorted_rows(out) == [(0, 10, 2), (10, 20, 2), (20, 30, 1)]
    assert m.late_events == 1


def test_late_side_output_has_exactly_the_late_rows() -> None:
    stream = source(*LATE_CASE).with_watermark("ts", 0)
    w = stream.window(vs.tumbling(10), late="side").agg(pl.len(), pl.col("i").sum())
    (out, late), m = vs.collect_all([w, w.late_events()], return_metrics=True)
    assert sorted_rows(out) == [(0, 10, 2, 1), (10, 20, 2, 6), (20, 30, 1, 5)]
    assert late.schema == SCHEMA
    assert late.rows() == [(3, 3)]
    assert m.late_events == 1


def test_late_rows_keep_the_window_input_schema() -> None:
    df = pl.DataFrame(
        {"ts": [10, 20, 1], "host": ["a", "b", None], "cpu": [1.0, None, 3.0]},
        schema={"ts": pl.Int64, "host": pl.String, "cpu": pl.Float64},
    )
    stream = (
        vs.from_polars(df, batch_size=2)
        .with_watermark("ts", 0)
        .with_columns(hot=pl.col("cpu") > 2)
    )
    w = stream.window(vs.tumbling(5), by="host", late="side").agg(pl.col("cpu").max())
    out, late = vs.collect_all([w, w.late_events()])
    assert late.schema == stream.schema
    assert late.rows() == [(1, None, 3.0, True)]
    assert sorted_rows(out) == [("a", 10, 15, 1.0), ("b", 20, 25, None)]


def test_an_event_late_for_some_hopping_windows_goes_to_the_others() -> None:
    # hopping(10, 5), bound 0: after [1, 12] the watermark is 12. 8 is in [0, 10) (fired)
    # and [5, 15) (open): it counts in [5, 15) only and is not late. 3 is in [-5, 5) and
    # [0, 10), both fired: late.
    stream = source([1, 12], [8, 3], [30]).with_watermark("ts", 0)
    w = stream.window(vs.hopping(10, 5), late="side").agg(pl.len(), pl.col("i").sum())
    (out, late), m = vs.collect_all([w, w.late_events()], return_metrics=True)
    assert sorted_rows(out) == [
        (-5, 5, 1, 0),
        (0, 10, 1, 0),
        (5, 15, 2, 3),
        (10, 20, 1, 1),
        (25, 35, 1, 4),
        (30, 40, 1, 4),
    ]
    assert late.rows() == [(3, 3)]
    assert m.late_events == 1


def test_a_late_event_opens_no_window_that_has_already_ended() -> None:
    # hopping(10, 5), bound 0: after [17] the watermark is 17. 12 is in [5, 15) and
    # [10, 20); [5, 15) never opened but its end is behind the watermark, so 12 is late
    # for it (emitting [5, 15) now would be a late result); it counts in [10, 20) only.
    stream = source([17], [12]).with_watermark("ts", 0)
    w = stream.window(vs.hopping(10, 5)).agg(pl.len(), pl.col("i").sum())
    out, m = w.collect(return_metrics=True)
    assert sorted_rows(out) == [(10, 20, 2, 1), (15, 25, 1, 0)]
    assert m.late_events == 0


def test_a_late_event_for_a_fired_session_is_dropped() -> None:
    # session(10), bound 0: after [0, 50] the watermark is 50 and [0, 10) has fired.
    # 5 would make [5, 15), which ends before the watermark: late. 45 joins 50's session.
    stream = source([0, 50], [5, 45]).with_watermark("ts", 0)
    w = stream.window(vs.session(10), late="side").agg(pl.len(), pl.col("i").sum())
    (out, late), m = vs.collect_all([w, w.late_events()], return_metrics=True)
    assert sorted_rows(out) == [(0, 10, 1, 0), (45, 60, 2, 4)]
    assert late.rows() == [(5, 2)]
    assert m.late_events == 1


def test_empty_batches_change_nothing() -> None:
    expected = [(0, 10, 2), (10, 20, 2), (20, 30, 1)]
    stream = source([], [1, 5], [], [12], [], [3, 15], [], [25], [])
    out, m = (
        stream.with_watermark("ts", 0)
        .window(vs.tumbling(10))
        .agg(pl.len())
        .collect(return_metrics=True)
    )
    assert sorted_rows(out) == expected
    assert m.late_events == 1


def test_an_empty_input_gives_an_empty_result() -> None:
    w = source([]).with_watermark("ts", 0).window(vs.tumbling(10), late="side").agg(pl.len())
    out, late = vs.collect_all([w, w.late_events()])
    assert out.schema == pl.Schema(
        {"window_start": pl.Int64, "window_end": pl.Int64, "len": pl.UInt32}
    )
    assert out.height == 0
    assert late.schema == SCHEMA
    assert late.height == 0


def test_a_single_event() -> None:
    w = source([7]).with_watermark("ts", 0).window(vs.tumbling(10), by=None).agg(pl.len())
    assert w.collect().rows() == [(0, 10, 1)]


def test_every_event_after_the_first_batch_is_late() -> None:
    stream = source([100], [1, 2, 3], [50, 60]).with_watermark("ts", 0)
    w = stream.window(vs.tumbling(10), late="side").agg(pl.len())
    (out, late), m = vs.collect_all([w, w.late_events()], return_metrics=True)
    assert out.rows() == [(100, 110, 1)]
    assert late.rows() == [(1, 1), (2, 2), (3, 3), (50, 4), (60, 5)]
    assert m.late_events == 5


# ------------------------------------------------------------------ the watermark model


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(min_n=1, max_n=1_500, max_hosts=10),
    bound=st.integers(0, 1_500),
    size=st.sampled_from([50, 250, 1_000]),
    by=st.sampled_from([None, "host"]),
    batch_size=st.integers(1, 300),
)
def test_late_events_follow_the_watermark_model(
    same_rows: SameRows, df: pl.DataFrame, bound: int, size: int, by: Any, batch_size: int
) -> None:
    """An event is late iff the watermark from before its batch is >= its window's end;
    the output is the reference over the other events, and every event is accounted for."""
    if batch_size < 10:
        df = df.head(300)
    aggs = [pl.len(), pl.col("cpu").sum(), pl.col("bytes").max(), pl.col("cpu").last().alias("c")]
    t = df["ts"].to_numpy()
    wm = ref.watermarks_before(t, ref.fixed_batches(df.height, batch_size), bound)
    late = ref.late_mask(t // size * size + size, wm)

    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", bound)
    w = stream.window(vs.tumbling(size), by=by, late="side").agg(*aggs)
    (out, late_rows), m = vs.collect_all([w, w.late_events()], return_metrics=True)

    assert m.late_events == int(late.sum())
    same_rows(late_rows, df.filter(pl.Series(late)))
    same_rows(out, ref.tumbling(df.filter(pl.Series(~late)), size, by=by, aggs=aggs), **FLOAT)
    assert out["len"].sum() + late_rows.height == df.height


#: 300 events over 5 hosts, up to 2 s out of order: late under a bound of 400 ms when
#: read in small micro-batches
LATE_DATA = vs.datasets.telemetry(300, hosts=5, seed=41, null_fraction=0.05, max_disorder="2s")


@pytest.mark.parametrize("kind", ["tumbling", "hopping"])
def test_late_events_under_every_executor(same_rows: SameRows, executor: Any, kind: str) -> None:
    """Each executor cuts the input its own way, so its late events are its own: the ones
    the watermark model predicts from its micro-batches (``executor.cuts``); the output
    is the reference over the others."""
    df, bound, size, slide = LATE_DATA, 400, 250, 100 if kind == "hopping" else 250
    aggs = [pl.len(), pl.col("cpu").sum(), pl.col("cpu").last().alias("c")]
    t = df["ts"].to_numpy()
    wm = ref.watermarks_before(t, executor.cuts(df.height, 0), bound)
    late = ref.late_mask(t // slide * slide + size, wm)
    marked = df.with_columns(__wm=pl.Series(wm))

    def build(s: vs.Stream) -> list[vs.Stream]:
        spec = vs.tumbling(size) if kind == "tumbling" else vs.hopping(size, slide)
        w = s.with_watermark("ts", bound).window(spec, by="host", late="side").agg(*aggs)
        return [w, w.late_events()]

    run = executor.outputs(build, df)
    out, late_rows = run.frames
    assert run.metrics.late_events == int(late.sum())
    same_rows(late_rows, df.filter(pl.Series(late)))
    expected = ref.hopping(
        marked, size, slide, by="host", aggs=aggs, where=pl.col("window_end") > pl.col("__wm")
    )
    same_rows(out, expected, **FLOAT)
    if executor.name == "batch-1":
        assert late.sum() > 0  # the case shows something


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(min_n=1, max_n=1_000, max_hosts=5),
    bound=st.integers(0, 1_500),
    hop=st.sampled_from([(1_000, 250), (500, 200), (300, 300)]),
    batch_size=st.integers(2, 300),
)
def test_hopping_late_events_follow_the_watermark_model(
    same_rows: SameRows, df: pl.DataFrame, bound: int, hop: tuple[int, int], batch_size: int
) -> None:
    """An event goes to each of its windows whose end is above the watermark from before
    its batch; it is late when that holds for none of them."""
    size, slide = hop
    aggs = [pl.len(), pl.col("i").sum(), pl.col("cpu").first()]
    df = df.with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
    t = df["ts"].to_numpy()
    wm = ref.watermarks_before(t, ref.fixed_batches(df.height, batch_size), bound)
    late = ref.late_mask(t // slide * slide + size, wm)
    marked = df.with_columns(__wm=pl.Series(wm))

    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", bound)
    w = stream.window(vs.hopping(size, slide), by="host", late="side").agg(*aggs)
    (out, late_rows), m = vs.collect_all([w, w.late_events()], return_metrics=True)

    expected = ref.hopping(
        marked, size, slide, by="host", aggs=aggs, where=pl.col("window_end") > pl.col("__wm")
    )
    assert m.late_events == int(late.sum())
    same_rows(late_rows, df.filter(pl.Series(late)))
    same_rows(out, expected, **FLOAT)


SESSION_SCHEMA = pl.Schema({"ts": pl.Int64, "k": pl.Int64, "i": pl.Int64})


@st.composite
def session_cases(draw: st.DrawFn) -> tuple[pl.DataFrame, int, int, int, int]:
    """``(events, bound, gap, lateness, batch_size)``: few events of small integer times
    over up to three keys, some of them moved onto the boundaries of the watermark model
    (a run that ends exactly at ``watermark - lateness``, or one off; a session that
    ends exactly where a later watermark frees it), which random times rarely hit."""
    n = draw(st.integers(1, 60))
    span = draw(st.sampled_from([20, 60, 150]))
    n_keys = draw(st.integers(1, 3))
    ts = draw(st.lists(st.integers(0, span), min_size=n, max_size=n))
    keys = draw(st.lists(st.integers(0, n_keys - 1), min_size=n, max_size=n))
    bound = draw(st.integers(0, 12))
    gap = draw(st.integers(1, 12))
    lateness = draw(st.sampled_from([0, 0, 3, 10]))
    batch_size = draw(st.integers(1, 12))
    sizes = ref.fixed_batches(n, batch_size)
    batch_of = [b for b, size in enumerate(sizes) for _ in range(size)]
    for _ in range(draw(st.integers(0, 6))):
        r = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(["late", "freed"]))
        wm = ref.watermarks_before(ts, sizes, bound)
        first = batch_of.index(batch_of[r])
        if kind == "late":
            if wm[r] == ref.NO_WATERMARK:
                continue
            ts[r] = int(wm[r]) - lateness - gap + draw(st.integers(-1, 1))
        else:
            # the watermark after a later batch, unless r holds its own batch's maximum
            later = [int(w) for w in wm[first:] if w != ref.NO_WATERMARK and w > wm[r]]
            top = max(ts[first : first + sizes[batch_of[r]]])
            if not later or ts[r] == top:
                continue
            ts[r] = draw(st.sampled_from(later)) - lateness - gap
    df = pl.DataFrame({"ts": ts, "k": keys, "i": range(n)}, schema=SESSION_SCHEMA)
    return df, bound, gap, lateness, batch_size


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE_OK)
@given(case=session_cases())
def test_session_late_events_follow_the_watermark_model(
    same_rows: SameRows, case: tuple[pl.DataFrame, int, int, int, int]
) -> None:
    """Sessions against the row-by-row model of ``ref.session_stream``: which events are
    late (a run that joins no kept session and ends at or before ``watermark -
    lateness``), and every emission (a changed session fires when the watermark reaches
    its end, exactly at it included), with its revisions."""
    df, bound, gap, lateness, batch_size = case
    aggs = [
        pl.len(),
        pl.col("i").sum(),
        pl.col("i").min().alias("i_min"),
        pl.col("i").last().alias("i_last"),
    ]
    batches = ref.fixed_batches(df.height, batch_size)
    emitted, late = ref.session_stream(
        df["ts"].to_numpy(), df["k"].to_list(), batches, bound, gap, lateness
    )
    expected = ref.session_emissions(df, emitted, by="k", aggs=aggs)
    if lateness:
        expected = expected.with_columns(pl.col("revision").cast(pl.UInt32))
    else:
        expected = expected.drop("revision")

    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", bound)
    w = stream.window(vs.session(gap), by="k", allowed_lateness=lateness, late="side").agg(*aggs)
    (out, late_rows), m = vs.collect_all([w, w.late_events()], return_metrics=True)

    assert m.late_events == int(late.sum())
    same_rows(late_rows, df.filter(pl.Series(late)))
    same_rows(out, expected)


# ------------------------------------------------------------------ allowed lateness

# Tumbling(10), bound 0, allowed_lateness 5: [0, 10) fires after the first batch
# (watermark 12) and keeps its state until the watermark reaches 15.
LATENESS_CASE = (
    [1, 5, 12],  # i 0-2; watermark 12: [0, 10) fires (2 events)
    [3, 13],  # i 3-4; 3 is within lateness: [0, 10) revision 1 (3 events)
    [7, 14],  # i 5-6; 7 is within lateness: [0, 10) revision 2 (4 events)
    [22],  # i 7; watermark 22: [10, 20) fires (12, 13, 14); [0, 10) is dropped
    [2, 16],  # i 8-9; 2 is beyond lateness (late); 16: [10, 20) revision 1
    [40],  # i 10; watermark 40: [20, 30) fires
)


def test_allowed_lateness_reemits_the_window_with_a_revision() -> None:
    stream = source(*LATENESS_CASE).with_watermark("ts", 0)
    w = stream.window(vs.tumbling(10), allowed_lateness=5, late="side").agg(
        pl.len(), pl.col("i").max()
    )
    (out, late), m = vs.collect_all([w, w.late_events()], return_metrics=True)
    assert out.columns == ["window_start", "window_end", "revision", "len", "i"]
    assert out.schema["revision"] == pl.UInt32
    assert sorted_rows(out) == [
        (0, 10, 0, 2, 1),
        (0, 10, 1, 3, 3),
        (0, 10, 2, 4, 5),
        (10, 20, 0, 3, 6),
        (10, 20, 1, 4, 9),
        (20, 30, 0, 1, 7),
        (40, 50, 0, 1, 10),
    ]
    assert late.rows() == [(2, 8)]
    assert m.late_events == 1


def test_revisions_come_out_in_firing_order() -> None:
    stream = source(*LATENESS_CASE).with_watermark("ts", 0)
    out = stream.window(vs.tumbling(10), allowed_lateness=5).agg(pl.len()).collect()
    first = out.filter(pl.col("window_start") == 0)
    assert first["revision"].to_list() == [0, 1, 2]
    assert first["len"].to_list() == [2, 3, 4]


def test_a_session_past_its_lateness_takes_no_more_events() -> None:
    # session(2), allowed lateness 15, bound 0. [0, 2) fires at watermark 16 and is kept
    # until 2 + 15 <= watermark: freed at 17 although no session is due then, so the
    # last 0 is late (it used to update the freed session and emit a revision)
    stream = source([0], [0], [16], [17], [0]).with_watermark("ts", 0)
    w = stream.window(vs.session(2), allowed_lateness=15, late="side").agg(pl.len())
    (out, late), m = vs.collect_all([w, w.late_events()], return_metrics=True)
    assert sorted_rows(out) == [(0, 2, 0, 2), (16, 19, 0, 2)]
    assert late.rows() == [(0, 4)]
    assert m.late_events == 1


def test_allowed_lateness_with_a_key_and_string_durations() -> None:
    df = pl.DataFrame(
        {
            "ts": [100, 1_200, 900, 2_600, 1_500],
            "host": ["a", "a", "a", "b", "a"],
        }
    )
    # batches of 2. [100, 1200]: watermark 1200, a's [0, 1s) fires. [900, 2600]: 900 is
    # within lateness (1200 < 1000 + 500): a's [0, 1s) revision 1; watermark 2600, a's
    # [1s, 2s) fires. [1500]: 2600 >= 2000 + 500, beyond lateness: late.
    stream = vs.from_polars(df, batch_size=2).with_watermark("ts", 0, time_unit="ms")
    w = stream.window(vs.tumbling("1s"), by="host", allowed_lateness="500ms").agg(pl.len())
    out, m = w.collect(return_metrics=True)
    assert out.columns == ["host", "window_start", "window_end", "revision", "len"]
    assert sorted_rows(out) == [
        ("a", 0, 1_000, 0, 1),
        ("a", 0, 1_000, 1, 2),
        ("a", 1_000, 2_000, 0, 1),
        ("b", 2_000, 3_000, 0, 1),
    ]
    assert m.late_events == 1


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(min_n=1, max_n=1_000, max_hosts=5),
    bound=st.integers(0, 1_000),
    lateness=st.sampled_from([1, 200, 1_000]),
    size=st.sampled_from([100, 500]),
    batch_size=st.integers(2, 200),
)
def test_final_revisions_follow_the_watermark_model(
    same_rows: SameRows, df: pl.DataFrame, bound: int, lateness: int, size: int, batch_size: int
) -> None:
    """With lateness L an event is late iff watermark >= end + L; each window's last
    revision is the reference over the events that were not late, and revisions count
    0, 1, 2, ... in firing order."""
    aggs = [pl.len(), pl.col("cpu").mean(), pl.col("bytes").sum()]
    t = df["ts"].to_numpy()
    wm = ref.watermarks_before(t, ref.fixed_batches(df.height, batch_size), bound)
    late = ref.late_mask(t // size * size + size, wm, lateness)

    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", bound)
    w = stream.window(vs.tumbling(size), by="host", allowed_lateness=lateness).agg(*aggs)
    out, m = w.collect(return_metrics=True)

    assert m.late_events == int(late.sum())
    keys = ["host", "window_start"]
    revisions = out.group_by(keys, maintain_order=True).agg(pl.col("revision"), pl.col("len"))
    for revs, lens in zip(revisions["revision"], revisions["len"], strict=True):
        assert revs.to_list() == list(range(len(revs)))
        assert lens.to_list() == sorted(lens.to_list())
    final = out.filter(pl.col("revision") == pl.col("revision").max().over(keys)).drop("revision")
    same_rows(
        final, ref.tumbling(df.filter(pl.Series(~late)), size, by="host", aggs=aggs), **FLOAT
    )


# ------------------------------------------------------------------ chained windows


@pytest.mark.parametrize(("second", "second_ms"), [("1s", 1_000), ("3s", 3_000)])
def test_a_window_over_window_results(same_rows: SameRows, second: str, second_ms: int) -> None:
    df = vs.datasets.telemetry(4_000, hosts=15, events_per_second=300, max_disorder="2s", seed=9)
    per_host = (
        vs.from_polars(df, batch_size=333)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.len())
    )
    busiest = per_host.window(vs.tumbling(second)).agg(pl.col("len").max())
    out, m = busiest.collect(return_metrics=True)
    assert m.late_events == 0

    stage1 = ref.tumbling(df, 1_000, by="host", aggs=[pl.len()])
    # downstream of a window, a row's event time is window_end - 1
    expected = ref.tumbling(
        stage1.with_columns(ts=pl.col("window_end") - 1),
        second_ms,
        aggs=[pl.col("len").max()],
    )
    assert out.schema == expected.schema
    same_rows(out, expected)


# ------------------------------------------------------------------ early firing


def test_early_firing_emits_partial_rows_then_the_full_answer() -> None:
    n, size = 120, 60

    def slow() -> Iterator[dict[str, Any]]:
        for k in range(n):
            time.sleep(0.003)
            yield {"ts": k, "host": "a", "v": float(k)}

    stream = vs.from_records(
        slow(),
        schema={"ts": pl.Int64, "host": pl.String, "v": pl.Float64},
        batch_size=4,
        max_delay="5ms",
        bounded=True,
    ).with_watermark("ts", 0)
    w = stream.window(vs.tumbling(size), by="host", early="10ms").agg(pl.len(), pl.col("v").sum())
    out = w.collect()
    assert out.columns == ["host", "window_start", "window_end", "revision", "len", "v"]
    assert out.schema["revision"] == pl.UInt32

    emissions = out.group_by("window_start", maintain_order=True).agg(
        pl.col("revision"), pl.col("len"), pl.col("v")
    )
    assert sorted(emissions["window_start"].to_list()) == [0, 60]
    for row in emissions.iter_rows(named=True):
        revs, lens = row["revision"], row["len"]
        assert revs == sorted(set(revs)), "revisions increase in firing order"
        assert lens == sorted(lens), "each emission holds at least what the previous held"
        start = row["window_start"]
        assert lens[-1] == size
        assert row["v"][-1] == float(sum(range(start, start + size)))
    # the first window stays open for ~180 ms of input: it is emitted early at least once
    assert max(len(revs) for revs in emissions["revision"]) > 1


# ------------------------------------------------------------------ processing time


def test_processing_time_windows_count_every_row_once() -> None:
    df = vs.datasets.telemetry(3_000, hosts=5, seed=3)
    before = time.time()
    stream = vs.from_polars(df, batch_size=100)
    w = stream.window(vs.tumbling("50ms"), by="host", time="processing").agg(
        pl.len(), pl.col("bytes").sum()
    )
    out = w.collect()
    after = time.time()

    assert out.columns == ["host", "window_start", "window_end", "len", "bytes"]
    assert isinstance(out.schema["window_start"], pl.Datetime)
    assert out.schema["window_end"] == out.schema["window_start"]
    assert (out["window_end"] - out["window_start"] == timedelta(milliseconds=50)).all()
    starts = out["window_start"].dt.epoch("ms")
    assert starts.min() >= (before - 1) * 1_000
    assert starts.max() <= (after + 1) * 1_000
    per_host = out.group_by("host").agg(pl.col("len").sum(), pl.col("bytes").sum())
    expected = df.group_by("host").agg(pl.len().cast(pl.Int64), pl.col("bytes").sum())
    assert sorted(per_host.with_columns(pl.col("len").cast(pl.Int64)).rows()) == sorted(
        expected.rows()
    )


# ------------------------------------------------------------------ build-time errors

DF = pl.DataFrame(
    {"ts": [1, 2, 3], "host": ["a", "b", "a"], "cpu": [1.0, 2.0, 3.0]},
)


def timed() -> vs.Stream:
    return vs.from_polars(DF).with_watermark("ts", 0)


def test_a_window_needs_event_time() -> None:
    with pytest.raises(vs.EventTimeError):
        vs.from_polars(DF).window(vs.tumbling(10)).agg(pl.len())


@pytest.mark.parametrize(
    ("expr", "named"),
    [
        (pl.col("cpu").median(), "median"),
        (pl.col("cpu").quantile(0.9), "quantile"),
        (pl.col("cpu").implode(), "implode"),
        (pl.col("cpu"), 'col("cpu")'),
        (pl.col("cpu") + 1, 'col("cpu")'),
    ],
    ids=["median", "quantile", "implode", "bare_column", "row_wise"],
)
def test_an_aggregation_that_is_not_incremental_is_refused(expr: pl.Expr, named: str) -> None:
    with pytest.raises(vs.ExpressionError) as info:
        timed().window(vs.tumbling(10)).agg(pl.len(), expr)
    assert named in str(info.value)


def test_an_unknown_key_column_is_refused() -> None:
    with pytest.raises(vs.ColumnNotFoundError, match="nope"):
        timed().window(vs.tumbling(10), by=["host", "nope"]).agg(pl.len())


def test_an_unknown_aggregated_column_is_refused() -> None:
    with pytest.raises(vs.ColumnNotFoundError, match="nope"):
        timed().window(vs.tumbling(10), by="host").agg(pl.col("nope").sum())


@pytest.mark.parametrize(
    "make",
    [
        lambda: vs.tumbling(0),
        lambda: vs.tumbling(-5),
        lambda: vs.tumbling("0s"),
        lambda: vs.hopping(10, 0),
        lambda: vs.hopping(10, -2),
        lambda: vs.hopping(0, 0),
        lambda: vs.hopping(5, 10),
        lambda: vs.session(0),
        lambda: vs.session(-1),
    ],
    ids=[
        "tumbling_0",
        "tumbling_negative",
        "tumbling_0s",
        "slide_0",
        "slide_negative",
        "hopping_0",
        "slide_above_size",
        "gap_0",
        "gap_negative",
    ],
)
def test_a_bad_window_size_is_refused(make: Callable[[], Any]) -> None:
    stream = vs.from_polars(DF).with_watermark("ts", 0, time_unit="ms")
    with pytest.raises(vs.PipelineError):
        stream.window(make()).agg(pl.len())


def test_a_string_duration_needs_the_time_unit_of_an_int_column() -> None:
    with pytest.raises(vs.DurationError):
        timed().window(vs.tumbling("1s")).agg(pl.len())


def test_group_by_points_to_window() -> None:
    with pytest.raises(vs.PipelineError, match=r"\.window\("):
        timed().group_by("host")
