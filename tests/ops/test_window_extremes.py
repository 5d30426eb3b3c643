"""Event times at the int64 limits (issue 16, item 3; DESIGN.md "Bad input" and
"Semantics": Watermark).

An event whose windows cannot be represented in the event-time column's type (their
bounds, or a window's end plus the allowed lateness, past the int64 limits, or, for a
``Datetime`` in ms or us, past the calendar Polars can format) goes to the dead letters
with a reason that names the column; nothing wraps around. ``INT64_MAX`` is the watermark
of the end of the input, so an event there is bad input too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vstream as vs
import window_reference as ref
from vstream.errors import DurationError
from vstream.kernels.window import time_bounds
from vstream.ops.watermark import datetime_range

SameRows = Any
MIN = -(2**63)
MAX = 2**63 - 1
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def frame(ts: list[int], dtype: pl.DataType | None = None) -> pl.DataFrame:
    """Rows ``ts`` (physical values of ``dtype``) numbered by ``i`` in arrival order."""
    df = pl.DataFrame({"ts": ts, "i": range(len(ts))}, schema={"ts": pl.Int64, "i": pl.Int64})
    return df if dtype is None else df.with_columns(pl.col("ts").cast(dtype))


def run(
    df: pl.DataFrame, spec: Any, *, bound: Any = 0, lateness: Any = 0, batch_size: int = 65_536
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, Any]:
    """The window's output, its late events, the dead letters and the metrics."""
    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", bound)
    w = stream.window(spec, allowed_lateness=lateness, late="side").agg(
        pl.len(), pl.col("i").sum()
    )
    (out, late, dead), m = vs.collect_all(
        [w, w.late_events(), w.dead_letters()], return_metrics=True
    )
    return out, late, dead, m


SPECS = {
    "tumbling": vs.tumbling(100),
    "tumbling_offset": vs.tumbling(100, offset=-37),
    "hopping": vs.hopping(100, 10),
    "hopping_uneven": vs.hopping(100, 30, offset=7),
    "session": vs.session(100),
}


# ------------------------------------------------------------------ the cases


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_an_event_at_int64_min_is_a_dead_letter_not_a_wrapped_window(spec: Any) -> None:
    # it gave window_start = 9223372036854775616 (tumbling) or windows that wrapped
    out, late, dead, m = run(frame([MIN, 5, MIN + 3]), spec)
    assert out["i"].unique().to_list() == [1]  # only the event at 5, in each window
    assert (out["window_start"] <= 5).all()
    assert (out["window_end"] > 5).all()
    assert dead["record"].to_list() == [f'{{"ts":{MIN},"i":0}}', f'{{"ts":{MIN + 3},"i":2}}']
    assert all("column 'ts'" in r and "represent" in r for r in dead["reason"])
    assert m.dead_letters == 2
    assert late.height == 0


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_an_event_near_int64_max_is_a_dead_letter_not_a_memory_error(spec: Any) -> None:
    # a hopping window near INT64_MAX raised MemoryError; the others wrapped around
    out, late, dead, m = run(frame([5, MAX - 1, MAX - 150]), spec)
    assert out.height > 0
    assert (out["i"] == 0).all()  # only the event at 5, in each window
    assert (out["window_start"] <= 5).all()
    assert (out["window_end"] > 5).all()
    assert sorted(dead["record"].to_list()) == sorted(
        [f'{{"ts":{MAX - 1},"i":1}}', f'{{"ts":{MAX - 150},"i":2}}']
    )
    assert m.dead_letters == 2
    assert late.height == 0


def test_an_event_at_int64_max_is_reserved_for_the_end_of_the_input() -> None:
    # the watermark would become INT64_MAX (the end of the input): [0, 10) would fire
    # and every later event would be late. Refused where event time is assigned.
    df = frame([5, MAX, 7, 12, 25])
    out, late, dead, m = run(df, vs.tumbling(10), batch_size=2)
    assert sorted(out.rows()) == [(0, 10, 2, 2), (10, 20, 1, 3), (20, 30, 1, 4)]
    assert late.height == 0
    assert dead["record"].to_list() == [f'{{"ts":{MAX},"i":1}}']
    assert "reserved for the end of the input" in dead["reason"][0]
    assert "column 'ts'" in dead["reason"][0]
    assert dead["step"][0].startswith("with_watermark")
    assert m.dead_letters == 1


def test_a_watermark_below_int64_min_is_no_watermark() -> None:
    # max(event time) - bound below the int64 range: no watermark yet, not an overflow
    lo = MIN + 10_000
    df = frame([lo, lo + 5, lo + 20_000, lo + 1])
    out, late, dead, _ = run(df, vs.tumbling(10), bound=50_000, batch_size=1)
    start = lo // 10 * 10
    assert sorted(out.rows()) == [
        (start, start + 10, 3, 4),
        (start + 20_000, start + 20_010, 1, 2),
    ]
    assert late.height == dead.height == 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (vs.tumbling(1), [(100, 101, 1), (101, 102, 1)]),
        (vs.hopping(4, 2), [(98, 102, 2), (100, 104, 2)]),
        (vs.session(1), [(100, 102, 2)]),
    ],
    ids=["tumbling", "hopping", "session"],
)
def test_a_watermark_just_above_int64_min_with_allowed_lateness(
    spec: Any, expected: list[tuple[int, int, int]]
) -> None:
    # watermark MIN + 2, lateness 25: the panes to free were computed below int64's
    # minimum (a numba typing error in the tumbling step)
    df = frame([MIN + 100, MIN + 101])
    out, _, dead, _ = run(df, spec, bound=98, lateness=25, batch_size=1)
    got = sorted((s - MIN, e - MIN, n) for s, e, _, n, _ in out.rows())
    assert got == expected
    assert dead.height == 0


@pytest.mark.parametrize("slide", [33, 34, 25])
def test_a_watermark_near_int64_min_then_the_end_fires_every_window(slide: int) -> None:
    # the first firing (watermark MIN + 2) leaves the last fired window near
    # MIN // slide; the next one (end of input) started from there, and window * slide
    # overflowed int64 in the hopping kernel: no output, no late row, no dead letter
    df = frame([0])
    out, late, dead, _ = run(df, vs.hopping(100, slide), bound=MAX - 1, batch_size=1)
    starts = sorted(s for s, *_ in out.rows())
    assert starts == [k * slide for k in range(-(99 // slide), 1)]
    assert late.height == dead.height == 0


def test_a_key_with_events_far_apart_fires_without_a_huge_allocation() -> None:
    # hopping 1000 / 1: the output was sized by the windows between a key's first and
    # last pane (10**12 here: a MemoryError), not by the windows that have data
    df = frame([0, 10**15])
    out, _, _, _ = run(df, vs.hopping(1_000, 1), bound=10**16)
    assert out.height == 2_000
    assert out["len"].sum() == 2_000


def test_sessions_far_apart_do_not_wrap_into_one() -> None:
    # next - prev of times 2**63 apart wrapped below the gap: one session of both
    a, b = -(3 * 2**61), 3 * 2**61
    out, _, dead, _ = run(frame([a, b]), vs.session(10), bound=MAX)
    assert sorted(out.rows()) == [(a, a + 10, 1, 0), (b, b + 10, 1, 1)]
    assert dead.height == 0


def test_a_window_too_long_for_any_event_time_is_refused() -> None:
    stream = vs.from_polars(frame([0])).with_watermark("ts", 0)
    with pytest.raises(DurationError, match="too long for any event time"):
        stream.window(vs.tumbling(2**62), allowed_lateness=2**62).agg(pl.len())


# ------------------------------------------------------------------ the property


def _fits(t: int, spec: Any, lateness: int, lo: int = MIN, hi: int = MAX) -> bool:
    """Whether every window of ``t`` (and its end + lateness) is strictly inside (lo, hi),
    in Python integers."""
    if isinstance(spec, vs.Session):
        return lo < t and t + spec.gap + lateness < hi
    size, slide = spec.size, getattr(spec, "slide", spec.size)
    off = spec.offset % slide
    first = ((t - off - size) // slide + 1) * slide + off
    last = (t - off) // slide * slide + off
    return lo < first and last + size + lateness < hi


def _spare(spec: Any, lateness: int) -> int:
    """How far from the limits an event may still be refused (the kernels' headroom)."""
    if isinstance(spec, vs.Session):
        return 3 * spec.gap + lateness + 2
    return 3 * spec.size + 2 * getattr(spec, "slide", spec.size) + lateness + 2


@st.composite
def extreme_times(draw: st.DrawFn, reach: int) -> list[int]:
    near_min = st.integers(MIN, MIN + reach)
    near_max = st.integers(MAX - reach, MAX - 1)
    middle = st.integers(-reach, reach)
    anywhere = st.integers(MIN, MAX - 1)
    return draw(st.lists(st.one_of(near_min, near_max, middle, anywhere), min_size=1, max_size=40))


SPEC_STRATEGY = st.one_of(
    st.builds(vs.tumbling, st.sampled_from([1, 7, 100]), offset=st.integers(-50, 50)),
    st.builds(
        lambda size, k, off: vs.hopping(size, size // k, offset=off),
        st.sampled_from([12, 100]),
        st.sampled_from([1, 2, 3, 4]),
        st.integers(-50, 50),
    ),
    st.builds(vs.session, st.sampled_from([1, 10, 100])),
)


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), spec=SPEC_STRATEGY, lateness=st.sampled_from([0, 0, 25]))
def test_events_near_the_limits_are_windowed_or_dead_letters(
    same_rows: SameRows, data: st.DataObject, spec: Any, lateness: int
) -> None:
    """One batch (no event is late): the events whose windows fit are windowed exactly as
    the reference does; the others are dead letters, only ever near the limits, and
    every event is one or the other."""
    ts = data.draw(extreme_times(600))
    df = frame(ts)
    out, late, dead, m = run(df, spec, lateness=lateness, bound=MAX - 1)
    refused = pl.DataFrame({"record": dead["record"]}).with_columns(
        pl.col("record").str.json_decode(pl.Struct({"ts": pl.Int64, "i": pl.Int64}))
    )
    gone = set(refused["record"].struct.field("i").to_list())
    assert len(gone) == dead.height == m.dead_letters
    assert late.height == 0
    spare = _spare(spec, lateness)
    for i, t in enumerate(ts):
        if i in gone:
            assert t < MIN + spare or t > MAX - spare, (t, spec)
        else:
            assert _fits(t, spec, lateness), (t, spec)
    kept = df.filter(~pl.col("i").is_in(list(gone)))
    aggs = [pl.len(), pl.col("i").sum()]
    if isinstance(spec, vs.Session):
        expected = ref.session(kept, spec.gap, aggs=aggs)
    elif isinstance(spec, vs.Hopping):
        expected = ref.hopping(kept, spec.size, spec.slide, spec.offset % spec.slide, aggs=aggs)
    else:
        expected = ref.tumbling(kept, spec.size, spec.offset % spec.size, aggs=aggs)
    if lateness:
        expected = expected.with_columns(revision=pl.lit(0, pl.UInt32)).select(out.columns)
    same_rows(out, expected)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    ts=extreme_times(400),
    spec=st.sampled_from([vs.tumbling(50), vs.session(50)]),
    bound=st.sampled_from([0, 100, MAX - 1]),
    batch_size=st.integers(1, 8),
)
def test_every_event_near_the_limits_is_counted_once(
    ts: list[int], spec: Any, bound: int, batch_size: int
) -> None:
    """In micro-batches: each event is in exactly one window's count, late, or a dead
    letter."""
    out, late, dead, m = run(frame(ts), spec, bound=bound, batch_size=batch_size)
    assert out["len"].sum() + late.height + dead.height == len(ts)
    assert m.late_events == late.height
    assert (out["window_start"] < out["window_end"]).all()


@given(st.lists(st.integers(MIN, MAX), min_size=1, max_size=300))
def test_time_bounds_is_numpys_min_and_max(values: list[int]) -> None:
    ts = np.array(values, np.int64)
    assert time_bounds(ts) == (ts.min(), ts.max())


# ------------------------------------------------------------------ Datetime columns


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
@pytest.mark.parametrize(
    "spec",
    [vs.tumbling("1s"), vs.hopping("1s", "250ms"), vs.session("1s")],
    ids=["tumbling", "hopping", "session"],
)
def test_datetime_columns_refuse_windows_past_their_range(unit: str, spec: Any) -> None:
    """In ms and us, the windows must stay inside the calendar Polars can format (years
    -262143 to 262142: beyond it printing the result panics); in ns that is the int64
    range. The refused records are still written (as integers past the calendar)."""
    dtype = pl.Datetime(unit)  # type: ignore[arg-type]
    lo, hi = datetime_range(dtype)
    per_s = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    inside = [lo + 5 * per_s, 0, hi - 5 * per_s]
    outside = [MIN, lo, hi, MAX - 1]
    if unit == "ns":  # the calendar covers int64: lo, hi are the int64 limits
        outside = [MIN, MIN + 5, MAX - 5, MAX - 1]
    df = frame(inside + outside, dtype)
    out, late, dead, m = run(df, spec, bound="1s")
    str(out)  # formats: every window is inside the calendar
    # each kept event is in one window, or in 4 hopping ones (1s / 250ms)
    assert out["len"].sum() == len(inside) * (4 if isinstance(spec, vs.Hopping) else 1)
    assert out["i"].sum() == sum(range(len(inside))) * (4 if isinstance(spec, vs.Hopping) else 1)
    assert dead.height == len(outside) == m.dead_letters
    assert late.height == 0
    assert all("column 'ts'" in r for r in dead["reason"])
    assert out.schema["window_start"] == dtype


def test_the_dead_letter_of_a_datetime_past_the_calendar_is_its_integer() -> None:
    dtype = pl.Datetime("ms")
    df = frame([MIN, 0], dtype)
    out, _, dead, _ = run(df, vs.tumbling("1s"))
    assert out.height == 1
    assert dead["record"].to_list() == [f'{{"ts":{MIN},"i":0}}']


def test_refused_rows_reach_dead_letters_of_a_later_step() -> None:
    # the dead letters of a stream downstream of the window include the window's
    df = frame([MIN, 5])
    w = vs.from_polars(df).with_watermark("ts", 0).window(vs.tumbling(10)).agg(pl.len())
    later = w.filter(pl.col("len") > 0)
    out, dead = vs.collect_all([later, later.dead_letters()])
    assert out.rows() == [(0, 10, 1)]
    assert dead.height == 1


def test_arrow_input_at_the_limits() -> None:
    batch = pa.record_batch(
        {"ts": pa.array([MIN, 0, MAX - 1], pa.int64()), "i": pa.array([0, 1, 2], pa.int64())}
    )
    stream = vs.from_arrow([batch]).with_watermark("ts", 0)
    w = stream.window(vs.hopping(10, 5)).agg(pl.len())
    out, dead = vs.collect_all([w, w.dead_letters()])
    assert sorted(out.rows()) == [(-5, 5, 1), (0, 10, 1)]
    assert dead.height == 2
