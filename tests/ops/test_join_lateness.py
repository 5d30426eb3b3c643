"""Lateness in joins (DESIGN.md "Lateness in joins", issue 16 item 12).

A join's watermark ``W`` is the minimum of its inputs'. A row is late for a join only
when ``W`` has passed the last time at which the row could still match: its last
window's end for a windowed join; ``t + max(upper, 0)`` for a left row of an interval
(or TTL) join, ``t + max(-lower, 0)`` for a right row; never merely because the row is
behind its own input's watermark while the other input lags. As-of joins: a left row is
late once ``W`` has passed it, a right row once the right watermark has (the left rows
before it have had their answers).

Here: Flink's window-join example (a row behind its own watermark pairs in a window the
other input keeps open), row by row in a pipeline and in every interleaving of the two
inputs' one-row batches; and a property test driving the join operator with rows behind
their own input's watermark, cut into batches of one row, random sizes or a few large
ones, interleaved at random: the rows sent to the late output are exactly those the rule
above makes late, the other rows give exactly the Polars reference
(``join_reference.py``) on them, and no output row is behind the watermark the join had
already given when it comes out.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import join_reference as ref
import vstream as vs
from vstream.ops.base import MAX_WM, MIN_WM, Chunk, Operator
from vstream.runtime.lower import build_op

SameRows = Callable[..., None]
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


# ------------------------------------------------------------------ Flink's example
def _at(minute: int, second: int = 0) -> datetime:
    return datetime(2024, 1, 1, 12, minute, second)


def _one_row_batches(rows: list[tuple[datetime, str]]) -> vs.Stream:
    """A bounded stream of one-row batches ``(ts, k)`` with a watermark bound of 0."""
    schema = {"ts": pl.Datetime("ms"), "k": pl.String}
    batches = [pl.DataFrame({"ts": [t], "k": [k]}, schema=schema).to_arrow() for t, k in rows]
    return vs.from_arrow(batches, bounded=True).with_watermark("ts", "0s")


# the row behind its own input's watermark: 12:03 after 12:04 (bound 0); the other
# input's rows stay before 12:05 until both rows of the pair have come, so the window
# [12:00, 12:05) is open for the join when each of them arrives, whatever the order
BEHIND = [(_at(1), "x"), (_at(4), "x"), (_at(3), "a"), (_at(8), "x")]
OTHER = [(_at(2), "y"), (_at(4), "a"), (_at(9), "y")]


@pytest.mark.parametrize("behind", ["left", "right"])
def test_flink_window_join_example_row_behind_its_own_watermark(behind: str) -> None:
    """L3 at 12:03 pairs with R3 at 12:04 in [12:00, 12:05) with one row per batch,
    though 12:03 comes after its own input's watermark reached 12:04 (Flink's window
    join example); mirrored: the right row is the one behind its watermark."""
    left, right = _one_row_batches(BEHIND), _one_row_batches(OTHER)
    if behind == "right":
        left, right = right, left
    joined = left.join(right, on="k", window=vs.tumbling("5m"), how="left")
    got, metrics = joined.collect(return_metrics=True)
    assert metrics.late_events == 0
    pairs = got.filter(pl.col("ts_right").is_not_null())
    want = (_at(3), _at(4)) if behind == "left" else (_at(4), _at(3))
    assert pairs.select("ts", "ts_right", "window_start", "window_end").rows() == [
        (*want, _at(0), _at(5))
    ]
    # every left row is in the output once (key "x"/"y" rows have no partner)
    assert got.height == len(BEHIND if behind == "left" else OTHER)


@pytest.mark.parametrize("behind", ["left", "right"])
def test_interval_join_row_behind_its_own_watermark(behind: str) -> None:
    """The interval-join form: a row at 12:03 after its input reached 12:04 still pairs
    with the other input's row at 12:04 within [-2 min, +2 min]."""
    left, right = _one_row_batches(BEHIND), _one_row_batches(OTHER)
    if behind == "right":
        left, right = right, left
    joined = left.join_interval(right, on="k", lower="-2m", upper="2m")
    got, metrics = joined.collect(return_metrics=True)
    assert metrics.late_events == 0
    want = (_at(3), _at(4)) if behind == "left" else (_at(4), _at(3))
    assert got.select("ts", "ts_right").rows() == [want]


def _interleavings(n_left: int, n_right: int) -> list[list[int]]:
    """Every order of ``n_left`` left (0) and ``n_right`` right (1) arrivals that keeps
    each input's own order."""
    out = []
    for pos in itertools.combinations(range(n_left + n_right), n_right):
        order = [0] * (n_left + n_right)
        for p in pos:
            order[p] = 1
        out.append(order)
    return out


def _op(build: Callable[[vs.Stream, vs.Stream], vs.Stream], left: pl.DataFrame) -> Operator:
    """The join operator of ``build`` over two inputs shaped like ``left`` / its right
    counterpart (fed by hand, so the test decides the interleaving)."""
    a = vs.from_polars(left.head(0)).with_watermark("ts", 0)
    b = vs.from_polars(_right_of(left.head(0))).with_watermark("ts", 0)
    return build_op(build(a, b)._node)


def _right_of(df: pl.DataFrame) -> pl.DataFrame:
    return df.rename({"v": "w"})


def _minutes(rows: list[tuple[datetime, str]], col: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": [t.hour * 60 + t.minute for t, _ in rows], "k": [k for _, k in rows]},
        schema={"ts": pl.Int64, "k": pl.String},
    ).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(col))


@pytest.mark.parametrize("kind", ["window", "interval"])
def test_every_interleaving_of_one_row_batches(kind: str) -> None:
    """The example's rows (minutes) in every interleaving of the two inputs, one row per
    batch, each input's watermark its newest time: the pair (12:03, 12:04) comes out
    every time, nothing is late, and the join's output watermark never passes it
    before it comes out."""
    left = _minutes(BEHIND, "v")
    right = _right_of(_minutes(OTHER, "v"))

    def build(a: vs.Stream, b: vs.Stream) -> vs.Stream:
        if kind == "window":
            return a.join(b, on="k", window=vs.tumbling(5, offset=0))
        return a.join_interval(b, on="k", lower=-2, upper=2)

    for order in _interleavings(left.height, right.height):
        op = _op(build, left)
        rows = [0, 0]
        wms = [MIN_WM, MIN_WM]
        out: list[pl.DataFrame] = []
        for port in order:
            df = (left, right)[port].slice(rows[port], 1)
            rows[port] += 1
            wms[port] = max(wms[port], int(df["ts"][0]))
            before = op._out_wm
            chunks, _ = op.process(port, Chunk(df), wms[port])
            for c in chunks:
                assert c.df.select(pl.max_horizontal("ts", "ts_right").min()).item() >= before
                out.append(c.df)
        for port in (0, 1):
            out.extend(c.df for c in op.process(port, None, MAX_WM)[0])
        assert op.late_events == 0, order
        got = pl.concat(out).select("ts", "ts_right").rows()
        assert got == [(12 * 60 + 3, 12 * 60 + 4)], order


# ------------------------------------------------------------------ the property test
@dataclass(frozen=True)
class Kind:
    """A join as the test builds it, its reference, and its lateness rule."""

    name: str
    how: str
    lower: int = 0
    upper: int = 0
    size: int = 0
    slide: int = 0
    offset: int = 0
    strategy: str = "backward"
    tolerance: int | None = None

    def build(self, a: vs.Stream, b: vs.Stream) -> vs.Stream:
        if self.name == "interval":
            return a.join_interval(b, on="k", lower=self.lower, upper=self.upper, how=self.how)
        if self.name == "ttl":
            return a.join(b, on="k", ttl=self.upper, how=self.how)
        if self.name == "window":
            spec = vs.hopping(self.size, self.slide, offset=self.offset)
            return a.join(b, on="k", window=spec, how=self.how)
        return a.join_asof(b, by="k", strategy=self.strategy, tolerance=self.tolerance)

    def late_before(self, port: int, wm_left: int, wm_right: int) -> int | None:
        """Rows of input ``port`` before this time are late (None: none are)."""
        w = min(wm_left, wm_right)
        if self.name == "asof":
            w = w if port == 0 else wm_right
            return None if w == MIN_WM else w
        if w == MIN_WM:
            return None
        if self.name == "window":  # the first window still open: it ends after w
            return ((w - self.offset - self.size) // self.slide + 1) * self.slide + self.offset
        reach = max(self.upper, 0) if port == 0 else max(-self.lower, 0)
        return w - reach

    def reference(self, left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
        how: Any = self.how
        if self.name == "interval":
            return ref.interval(left, right, on="k", lower=self.lower, upper=self.upper, how=how)
        if self.name == "ttl":
            return ref.ttl(left, right, on="k", ttl=self.upper, how=how)
        if self.name == "window":
            return ref.windowed(
                left,
                right,
                on="k",
                size=self.size,
                slide=self.slide,
                offset=self.offset,
                how=how,
                left_from="__from",
                right_from="__from",
            )
        return ref.asof(
            left.drop("__from"),
            right.drop("__from"),
            by="k",
            strategy=self.strategy,  # type: ignore[arg-type]
            tolerance=self.tolerance,
        )

    def time(self) -> pl.Expr:
        """An output row's event time."""
        if self.name == "asof":
            return pl.col("ts")
        return pl.max_horizontal("ts", "ts_right")


@st.composite
def kinds(draw: st.DrawFn, name: str) -> Kind:
    how = draw(st.sampled_from(["inner", "left", "full"]))
    if name == "interval":
        lower = draw(st.integers(-30, 20))
        upper = lower + draw(st.integers(0, 30))
        return Kind(name, how, lower=lower, upper=upper)
    if name == "ttl":  # lower <= right.t - left.t <= upper, lower = -ttl
        ttl = draw(st.integers(0, 30))
        return Kind(name, how, lower=-ttl, upper=ttl)
    if name == "window":  # tumbling or hopping
        slide = draw(st.integers(1, 15))
        size = slide * draw(st.integers(1, 4)) + draw(st.integers(0, slide - 1))
        return Kind(name, how, size=size, slide=slide, offset=draw(st.integers(-7, 7)))
    strategy = draw(st.sampled_from(["backward", "forward", "nearest"]))
    tolerance = draw(st.one_of(st.none(), st.integers(0, 20)))
    return Kind(name, "left", strategy=strategy, tolerance=tolerance)


def _frame(draw: st.DrawFn, col: str, max_n: int) -> pl.DataFrame:
    """Rows ``ts, k, <col>`` in arrival order, each up to 25 before the newest one before
    it (the watermark bounds drawn below are often smaller: rows behind their own
    input's watermark); some keys null."""
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    span = draw(st.sampled_from([20, 60, 150, 400]))
    ts = np.sort(rng.integers(0, span, n)) - rng.integers(0, draw(st.integers(0, 25)) + 1, n)
    keys = rng.integers(0, draw(st.integers(1, 3)), n)
    null = rng.random(n) < draw(st.sampled_from([0.0, 0.0, 0.2]))  # null keys match nothing
    return pl.DataFrame(
        {
            "ts": ts,
            "k": [None if z else f"k{k}" for k, z in zip(keys, null, strict=True)],
            col: np.arange(n),
        },
        schema={"ts": pl.Int64, "k": pl.String, col: pl.Int64},
    )


@st.composite
def cuts(draw: st.DrawFn, n: int) -> list[int]:
    """Batch boundaries: one row per batch, random sizes, or a few large batches."""
    kind = draw(st.sampled_from(["one", "random", "large"]))
    if kind == "one":
        return list(range(1, n))
    if kind == "large":
        return sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=2)) - {n})
    return sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=max(n // 2, 1))) - {n})


def _batches(df: pl.DataFrame, points: list[int]) -> list[pl.DataFrame]:
    edges = [0, *(p for p in points if 0 < p < df.height), df.height]
    return [df.slice(a, b - a) for a, b in itertools.pairwise(edges) if b > a]


@pytest.mark.parametrize("name", ["interval", "ttl", "window", "asof"])
@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_join_equals_the_reference_without_the_rows_the_rule_makes_late(
    data: st.DataObject, name: str, same_rows: SameRows
) -> None:
    kind = data.draw(kinds(name))
    left = _frame(data.draw, "v", 60)
    right = _frame(data.draw, "w", 60)
    if kind.name == "asof":  # unique (key, time): with ties the match depends on order
        right = right.unique(subset=["k", "ts"], keep="first", maintain_order=True)
        right = right.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("w"))
    bounds = (data.draw(st.integers(0, 25)), data.draw(st.integers(0, 25)))
    queues = [
        _batches(left, data.draw(cuts(left.height))),
        _batches(right, data.draw(cuts(right.height))),
    ]
    order = data.draw(st.permutations([0] * len(queues[0]) + [1] * len(queues[1])))
    op = _op(kind.build, left)
    if data.draw(st.booleans()):  # retire / evict on every step, not in batches
        op.retire_batch = 0  # type: ignore[attr-defined]

    seen = [MIN_WM, MIN_WM]  # each input's newest event time
    wms = [MIN_WM, MIN_WM]  # each input's watermark
    kept: list[list[pl.DataFrame]] = [[], []]
    late: list[list[pl.DataFrame]] = [[], []]
    out: list[pl.DataFrame] = []

    def take(chunks: list[Chunk], before: int) -> None:
        for c in chunks:
            # nothing comes out behind the watermark the join had already given
            assert c.df.select(kind.time().min()).item() >= before, "a late output row"
            out.append(c.df)

    for port in order:
        df = queues[port].pop(0)
        bound = kind.late_before(port, wms[0], wms[1])
        first = pl.lit(bound if bound is not None else MIN_WM, pl.Int64).alias("__from")
        is_late = pl.col("ts") < bound if bound is not None else pl.lit(False)
        late[port].append(df.filter(is_late))
        kept[port].append(df.filter(~is_late).with_columns(first))
        seen[port] = max(seen[port], int(df["ts"].max()))
        wms[port] = max(wms[port], seen[port] - bounds[port])
        before = op._out_wm
        take(op.process(port, Chunk(df), wms[port])[0], before)
    for port in data.draw(st.permutations([0, 1])):
        before = op._out_wm
        take(op.process(port, None, MAX_WM)[0], before)

    # the late outputs: exactly the rows the rule makes late
    for port, name in ((0, "late_events"), (1, "late_events.1")):
        want_late = pl.concat([(left, right)[port].clear(), *late[port]])
        got_late = op.side.get(name, [])
        same_rows(pl.concat(got_late) if got_late else want_late.clear(), want_late)
    # the join: the reference on the other rows
    schema = {"ts": pl.Int64, "k": pl.String, "__from": pl.Int64}
    lk = pl.concat(kept[0]) if kept[0] else left.clear().with_columns(pl.lit(0).alias("__from"))
    rk = pl.concat(kept[1]) if kept[1] else right.clear().with_columns(pl.lit(0).alias("__from"))
    lk, rk = lk.cast(schema), rk.cast(schema)  # type: ignore[arg-type]
    want = kind.reference(lk, rk)
    if kind.name != "window":
        want = want.drop([c for c in want.columns if c.startswith("__from")])
    got = pl.concat(out) if out else want.clear()
    same_rows(got.select(want.columns), want)
    assert got.columns == want.columns
    if kind.name != "asof":  # (an as-of join keeps each key's last right row)
        assert op.state_rows() == 0, "everything retired at the end of both inputs"


# ------------------------------------------------------------------ as-of semantics
def _asof_op(strategy: str = "backward") -> Operator:
    left = pl.DataFrame({"ts": [0], "k": ["a"], "v": [0]}).head(0)
    return _op(lambda a, b: a.join_asof(b, by="k", strategy=strategy), left)


def _rows(times: list[int], col: str, start: int = 0, key: str = "a") -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": times, "k": [key] * len(times), col: list(range(start, start + len(times)))},
        schema={"ts": pl.Int64, "k": pl.String, col: pl.Int64},
    )


def test_asof_left_row_behind_its_own_watermark_waits_for_a_lagging_right_input() -> None:
    """A left row behind its own input's watermark (10 after 20) while the right input is
    at 5 is not late: it waits for the right watermark and takes the right row at 8 that
    comes after it."""
    op = _asof_op()
    out = op.process(1, Chunk(_rows([1, 5], "w")), 5)[0]
    out += op.process(0, Chunk(_rows([20], "v")), 20)[0]
    out += op.process(0, Chunk(_rows([10], "v", start=1)), 20)[0]
    assert op.late_events == 0
    out += op.process(1, Chunk(_rows([8], "w", start=2)), 30)[0]
    out += op.process(0, None, MAX_WM)[0] + op.process(1, None, MAX_WM)[0]
    got = pl.concat(c.df for c in out).sort("ts")
    assert got.select("ts", "w").rows() == [(10, 2), (20, 2)]  # w = 2: the right row at 8


def test_asof_right_row_behind_the_right_watermark_is_late_even_if_the_left_lags() -> None:
    """The left rows up to the right watermark have had their answers: a right row
    behind that watermark would change an answer already given, so it is late even
    though the left input lags behind it."""
    op = _asof_op()
    out = op.process(0, Chunk(_rows([6], "v")), 0)[0]  # left at 6, its watermark at 0
    out += op.process(1, Chunk(_rows([2, 9], "w")), 9)[0]  # settles the left row at 6
    assert [c.df.select("ts", "w").rows() for c in out] == [[(6, 0)]]  # the right row at 2
    out = op.process(1, Chunk(_rows([4], "w", start=2)), 9)[0]  # would be 6's answer
    assert op.late_events == 1
    assert op.side["late_events.1"][0]["ts"].to_list() == [4]
    out += op.process(0, Chunk(_rows([7], "v", start=1)), 7)[0]
    out += op.process(0, None, MAX_WM)[0] + op.process(1, None, MAX_WM)[0]
    got = pl.concat(c.df for c in out)
    assert got.select("ts", "w").rows() == [(7, 0)]


def test_asof_keeps_the_right_rows_a_left_row_behind_its_own_watermark_needs() -> None:
    """The right rows a left row may still need are kept down to the join watermark (the
    lagging right input's), not the left input's: the left row at 13, behind its input's
    watermark (30), finds the right row at 12 though the left row at 30 came first. The
    op evicts on every step here."""
    op = _asof_op()
    op.retire_batch = 0  # type: ignore[attr-defined]
    out = op.process(1, Chunk(_rows([0, 12, 14, 16], "w")), 6)[0]  # bound 10
    out += op.process(0, Chunk(_rows([30], "v")), 30)[0]
    out += op.process(0, Chunk(_rows([13], "v", start=1)), 30)[0]
    assert op.late_events == 0
    out += op.process(1, None, MAX_WM)[0] + op.process(0, None, MAX_WM)[0]
    got = pl.concat(c.df for c in out).sort("ts")
    assert got.select("ts", "w").rows() == [(13, 1), (30, 3)]  # the rows at 12 and 16


def test_asof_output_watermark_waits_for_a_lagging_right_input() -> None:
    """Left rows may still come down to the join watermark (the right's, when it lags):
    the output watermark stays there."""
    op = _asof_op()
    _, wm = op.process(0, Chunk(_rows([50], "v")), 50)
    assert wm == MIN_WM  # the right input has no watermark yet: any left row may come
    _, wm = op.process(1, Chunk(_rows([10], "w")), 10)
    assert wm == 10
    out, wm = op.process(0, Chunk(_rows([12], "v", start=1)), 50)  # behind its own: kept
    assert op.late_events == 0
    assert wm == 10
    out, wm = op.process(1, None, MAX_WM)
    assert sorted(pl.concat(c.df for c in out)["ts"].to_list()) == [12, 50]
    assert wm == 50


# ------------------------------------------------------------------ output watermark
@pytest.mark.parametrize(
    ("how", "lower", "upper", "outer"),
    [("left", 5, 10, 0), ("full", -10, -5, 1)],
)
def test_output_watermark_waits_for_unmatched_rows_still_to_come(
    how: str, lower: int, upper: int, outer: int
) -> None:
    """An outer interval join whose interval lies on one side of 0: a row of the outer
    side may come up to ``max(upper, 0)`` (left) / ``max(-lower, 0)`` (right) behind the
    join watermark and go unmatched, so the output watermark stays at or before it,
    though every pair still to come is later."""
    left = pl.DataFrame({"ts": [0], "k": ["a"], "v": [0]}).head(0)
    op = _op(lambda a, b: a.join_interval(b, on="k", lower=lower, upper=upper, how=how), left)
    other = 1 - outer
    # the outer side's row at 92 has a key of its own: it finds no partner
    steps = [(outer, 100, "a"), (other, 100, "a"), (outer, 92, "b"), (other, 200, "a")]
    out: list[pl.DataFrame] = []
    for i, (port, t, key) in enumerate(steps):
        before = op._out_wm
        for c in op.process(port, Chunk(_rows([t], ("v", "w")[port], i, key)), t)[0]:
            assert c.df.select(pl.max_horizontal("ts", "ts_right").min()).item() >= before
            out.append(c.df)
    for port in (other, outer):
        before = op._out_wm
        for c in op.process(port, None, MAX_WM)[0]:
            assert c.df.select(pl.max_horizontal("ts", "ts_right").min()).item() >= before
            out.append(c.df)
    assert op.late_events == 0
    got = pl.concat(out).select(pl.max_horizontal("ts", "ts_right")).to_series()
    assert 92 in got.to_list()  # the row at 92 came out, unmatched


# ------------------------------------------------------------------ downstream
def test_window_downstream_sees_no_late_row_from_rows_behind_their_own_watermark(
    same_rows: SameRows,
) -> None:
    """Rows behind their own input's watermark still pair (their pairs' times are behind
    that watermark too); the join holds its output watermark back, so a window over its
    output counts every pair."""
    rng = np.random.default_rng(7)
    n = 600
    base = np.sort(rng.integers(0, 60_000, n))

    def frame(col: str, seed: int) -> pl.DataFrame:
        r = np.random.default_rng(seed)
        return pl.DataFrame(
            {"ts": base - r.integers(0, 400, n), "k": r.integers(0, 4, n), col: np.arange(n)}
        )

    left, right = frame("v", 1), frame("w", 2)
    # bound 100 < disorder 400: rows behind their own watermark; none behind the join's
    # by more than the interval's reach (300): nothing late for the join
    a = vs.from_polars(left, batch_size=7).with_watermark("ts", 100)
    b = vs.from_polars(right, batch_size=11).with_watermark("ts", 100)
    joined = a.join_interval(b, on="k", lower=-300, upper=300)
    counted = joined.window(vs.tumbling(5_000), by="k").agg(pl.len())
    (pairs, got), metrics = vs.collect_all([joined, counted], return_metrics=True)
    window_steps = [s for label, s in metrics.steps.items() if "window" in label]
    assert [sum(s.late_events) for s in window_steps] == [0]
    assert metrics.late_events == 0
    assert pairs.height > 0
    want = (
        ref.interval(left, right, on="k", lower=-300, upper=300)
        .with_columns(t=pl.max_horizontal("ts", "ts_right"))
        .group_by("k", window_start=pl.col("t") // 5_000 * 5_000)
        .agg(pl.len())
        .with_columns(window_end=pl.col("window_start") + 5_000)
        .select("k", "window_start", "window_end", "len")
    )
    same_rows(got, want)


def test_behind_its_own_watermark_within_the_ttl_is_not_late() -> None:
    """A regular join's row may lag the join watermark by its TTL: right rows at 100 and
    200 after the right input reached 9,000 still pair with the left row at 0."""
    left = vs.from_polars(pl.DataFrame({"ts": [0, 10_000], "k": [1, 1]})).with_watermark("ts", 0)
    right_batches = [
        pl.DataFrame({"ts": [9_000], "k": [1]}).to_arrow(),
        pl.DataFrame({"ts": [100, 200], "k": [1, 1]}).to_arrow(),
    ]
    right = vs.from_arrow(right_batches, bounded=True).with_watermark("ts", 0)
    out, metrics = left.join(right, on="k", ttl=60_000).collect(return_metrics=True)
    assert metrics.late_events == 0
    assert sorted(out.select("ts", "ts_right").rows()) == [
        (0, 100),
        (0, 200),
        (0, 9_000),
        (10_000, 100),
        (10_000, 200),
        (10_000, 9_000),
    ]
