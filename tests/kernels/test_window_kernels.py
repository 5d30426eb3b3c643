"""The window kernels against numpy / Polars references on random input.

- aggregate kernels (:mod:`vstream.kernels.aggregate`): ``apply_rows`` and ``update_row``
  against Polars' ``group_by().agg()``; ``combine_slot`` / ``copy_slot`` over a random
  split of the rows against the single pass (associativity, arrival order of first/last);
- pane kernels: ``pane_slots`` (slot per (pane, key), late and dirty rows, resuming after
  the table grows), ``fire_hopping`` and ``windows_of`` against a brute-force merge of the
  panes of each window;
- session kernels: ``session_update`` / ``session_fire`` against sessions cut in Polars,
  and ``_order_by_key_time`` against ``np.lexsort``.
"""

from __future__ import annotations

import inspect
import itertools
import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import strategies
from vstream.kernels.aggregate import (
    apply_rows,
    combine_slot,
    copy_slot,
    final_mean,
    update_row,
)
from vstream.kernels.window import (
    compact_panes,
    count_below,
    fire_hopping,
    pane_of,
    pane_slots,
    rebuild_index,
    rebuild_table,
    session_fire,
    session_live,
    session_update,
    take_final,
    take_panes,
    windows_of,
)
from vstream.kernels.window.sessions import _order_by_key_time
from vstream.ops.window.finalize import _final_leaves, _finalize, _fused_finalize
from vstream.ops.window.inputs import _init_values, _Inputs
from vstream.plan import aggregates as A
from vstream.plan.aggregates import NULLS, AggPlan, plan_aggregations

MIN = -(2**63)
MAX = 2**63 - 1
REL = 1e-9
ABS = 1e-9

x, i, b = pl.col("x"), pl.col("i"), pl.col("b")

#: every incremental kind: len, count, sum (float, int, bool), mean, min/max (float with
#: NaN, int, bool), first/last (float, int, bool), var/std with ddof 0 and 1
AGGS = [
    pl.len().alias("len"),
    x.count().alias("x_count"),
    i.count().alias("i_count"),
    x.sum().alias("x_sum"),
    i.sum().alias("i_sum"),
    b.sum().alias("b_sum"),
    x.mean().alias("x_mean"),
    i.mean().alias("i_mean"),
    x.min().alias("x_min"),
    x.max().alias("x_max"),
    i.min().alias("i_min"),
    i.max().alias("i_max"),
    b.min().alias("b_min"),
    b.max().alias("b_max"),
    x.first().alias("x_first"),
    x.last().alias("x_last"),
    i.first().alias("i_first"),
    i.last().alias("i_last"),
    b.first().alias("b_first"),
    b.last().alias("b_last"),
    x.var().alias("x_var"),
    x.std().alias("x_std"),
    x.var(ddof=0).alias("x_var0"),
    x.std(ddof=0).alias("x_std0"),
    i.var(ddof=0).alias("i_var0"),
    i.std().alias("i_std"),
    (x.sum() / pl.len()).alias("x_per_row"),
]

#: fewer aggregates for the window kernels, still one of every combine path
WINDOW_AGGS = [
    pl.len().alias("len"),
    x.count().alias("x_count"),
    x.sum().alias("x_sum"),
    i.sum().alias("i_sum"),
    x.mean().alias("x_mean"),
    x.min().alias("x_min"),
    x.max().alias("x_max"),
    i.min().alias("i_min"),
    i.max().alias("i_max"),
    x.first().alias("x_first"),
    x.last().alias("x_last"),
    i.first().alias("i_first"),
    i.last().alias("i_last"),
    x.var().alias("x_var"),
    x.std(ddof=0).alias("x_std0"),
]
WINDOW_SCHEMA = pl.Schema({"x": pl.Float64, "i": pl.Int64})

INT_TYPES = [pl.Int16, pl.Int32, pl.Int64]


# ---------------------------------------------------------------------- helpers
# vstream.ops.window and the window kernels are being extended (value stores for first /
# last of strings, merged sessions for n_unique, a per-key pane cache in pane_slots):
# pass the newer arguments only where the signature has them
def _params(f: Any) -> set[str]:
    return set(inspect.signature(getattr(f, "py_func", f)).parameters)


_BUILD_STORES = "stores" in _params(_Inputs.build)
_SESSION_MERGED = "merged_into" in _params(session_update)
_PANE_KEY_PANE = "key_pane" in _params(pane_slots)
NO_DIR = (np.zeros((0, 0), np.int32), np.zeros(0, np.int64))  # pane directory off
NO_DENSE = (np.zeros(0, np.int32), np.zeros(0, np.int64))  # pane_slots: the keys are ids


def _build(plan: AggPlan, df: pl.DataFrame) -> tuple[np.ndarray, ...]:
    """``_Inputs(plan).build(df)``: Xf, Xi, M, vmap."""
    inputs = _Inputs(plan)
    return inputs.build(df, {}) if _BUILD_STORES else inputs.build(df)  # type: ignore[call-arg]


_PLANS: dict[tuple[int, tuple[tuple[str, pl.DataType], ...]], Any] = {}


def _plan(
    aggs: list[pl.Expr], schema: pl.Schema
) -> tuple[AggPlan, np.ndarray, np.ndarray, np.ndarray]:
    """plan_aggregations and _init_values (cached: a few schemas serve every example;
    callers copy ``init_f`` / ``init_i`` into their state, never write them)."""
    key = (id(aggs), tuple(schema.items()))
    if key not in _PLANS:
        plan = plan_aggregations(aggs, schema, "t", [])
        _PLANS[key] = (plan, *_init_values(plan))
    plan, prog, init_f, init_i = _PLANS[key]
    return plan, prog, init_f, init_i


def _state(
    plan: AggPlan, init_f: np.ndarray, init_i: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` slots, every one initialised."""
    F = np.repeat(init_f[:, None], m, axis=1).astype(np.float64)
    In = np.repeat(init_i[:, None], m, axis=1).astype(np.int64)
    assert F.shape == (plan.n_float, m)
    assert In.shape == (plan.n_int, m)
    return F, In


def _finalized(plan: AggPlan, F: np.ndarray, In: np.ndarray) -> pl.DataFrame:
    """The output columns of the slots (the columns of ``F`` / ``In``), as WindowOp."""
    leaves = [_finalize(lf, F, In, None, {}, plan.len_field) for lf in plan.outputs]
    return pl.DataFrame(leaves).select(plan.final)


def _assert_state_close(F: np.ndarray, In: np.ndarray, F2: np.ndarray, In2: np.ndarray) -> None:
    """Integer fields (counts, arrival numbers, integer values) exact; floats close."""
    np.testing.assert_array_equal(In, In2)
    np.testing.assert_allclose(F, F2, rtol=REL, atol=ABS, equal_nan=True)


_value = st.integers(-200, 200)


def float_value(*, nulls: bool, nans: bool) -> st.SearchStrategy[float | None]:
    """Quarters in [-50, 50] (exact sums in any order), some nulls and NaNs if asked."""

    def make(cv: tuple[int, int]) -> float | None:
        code, v = cv
        if nulls and code == 0:
            return None
        if nans and code == 1:
            return math.nan
        return v / 4

    return st.tuples(st.integers(0, 9), _value).map(make)


def int_value(*, nulls: bool) -> st.SearchStrategy[int | None]:
    return st.tuples(st.integers(0, 7), _value).map(
        lambda cv: None if nulls and cv[0] == 0 else cv[1]
    )


@st.composite
def float_values(draw: st.DrawFn, n: int) -> list[float | None]:
    value = float_value(nulls=draw(st.booleans()), nans=draw(st.booleans()))
    return draw(st.lists(value, min_size=n, max_size=n))


@st.composite
def int_values(draw: st.DrawFn, n: int) -> list[int | None]:
    return draw(st.lists(int_value(nulls=draw(st.booleans())), min_size=n, max_size=n))


@st.composite
def agg_frames(draw: st.DrawFn, max_rows: int = 80) -> tuple[pl.DataFrame, int]:
    """Rows of groups 0..G-1 (and -1: rows no slot takes) with x, i and b, and G."""
    G = draw(st.integers(1, 6))
    skip = draw(st.booleans())
    row = st.tuples(
        st.integers(-1 if skip else 0, G - 1),
        float_value(nulls=draw(st.booleans()), nans=draw(st.booleans())),
        int_value(nulls=draw(st.booleans())),
        st.one_of(st.booleans(), st.none()),
    )
    rows = draw(st.lists(row, max_size=max_rows))
    g, xs, ints, bools = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
    df = pl.DataFrame(
        {
            "g": pl.Series(g, dtype=pl.Int32),
            "x": pl.Series(xs, dtype=pl.Float64),
            "i": pl.Series(ints, dtype=draw(st.sampled_from(INT_TYPES))),
            "b": pl.Series(bools, dtype=pl.Boolean),
        }
    )
    return df, G


def _polars_groups(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("g") >= 0).group_by("g", maintain_order=True).agg(AGGS)


def _kernel_groups(
    plan: AggPlan, F: np.ndarray, In: np.ndarray, groups: pl.Series
) -> pl.DataFrame:
    cols = groups.to_numpy().astype(np.int64)
    return pl.DataFrame([groups]).hstack(_finalized(plan, F[:, cols], In[:, cols]))


def _apply(
    plan: AggPlan,
    prog: np.ndarray,
    init_f: np.ndarray,
    init_i: np.ndarray,
    df: pl.DataFrame,
    G: int,
    seq0: int,
) -> tuple[np.ndarray, np.ndarray]:
    F, In = _state(plan, init_f, init_i, G)
    Xf, Xi, M, vmap = _build(plan, df)
    slots = df.get_column("g").to_numpy().astype(np.int32)
    apply_rows(prog, F, In, slots, Xf, Xi, M, vmap, seq0)
    return F, In


# ---------------------------------------------------------------------- aggregates
@settings(max_examples=80, deadline=None)
@given(frame=agg_frames(), seq0=st.integers(0, 10_000))
def test_apply_rows_matches_polars_group_by(frame: tuple[pl.DataFrame, int], seq0: int) -> None:
    df, G = frame
    plan, prog, init_f, init_i = _plan(AGGS, df.schema)
    F, In = _apply(plan, prog, init_f, init_i, df, G, seq0)
    expected = _polars_groups(df)
    got = _kernel_groups(plan, F, In, expected.get_column("g"))
    assert_frame_equal(got, expected, rel_tol=REL, abs_tol=ABS)
    # the slots no row reached keep their initial state
    untouched = sorted(set(range(G)) - set(expected.get_column("g").to_list()))
    _assert_state_close(
        F[:, untouched], In[:, untouched], *_state(plan, init_f, init_i, len(untouched))
    )


@settings(max_examples=60, deadline=None)
@given(
    frame=agg_frames(),
    seq0=st.integers(0, 10_000),
    data=st.data(),
)
def test_combine_of_parts_equals_single_pass(
    frame: tuple[pl.DataFrame, int], seq0: int, data: st.DataObject
) -> None:
    df, G = frame
    plan, prog, init_f, init_i = _plan(AGGS, df.schema)
    F1, I1 = _apply(plan, prog, init_f, init_i, df, G, seq0)
    # 2-4 parts (cuts may coincide: a part may be empty)
    cuts = data.draw(st.lists(st.integers(0, df.height), min_size=1, max_size=3).map(sorted))
    bounds = [0, *cuts, df.height]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        # first / last: a part's rows arrive from its starting row on
        parts.append(_apply(plan, prog, init_f, init_i, df.slice(lo, hi - lo), G, seq0 + lo))
    order = data.draw(st.permutations(range(len(parts))))
    # (1) every part merged into initialised slots
    Fm, Im = _state(plan, init_f, init_i, G)
    for p in order:
        Fp, Ip = parts[p]
        for j in range(G):
            combine_slot(prog, Fm, Im, j, Fp, Ip, j)
    _assert_state_close(Fm, Im, F1, I1)
    # (2) the first part copied into fresh slots (G..2G-1), then the others merged in
    Fc = np.full((plan.n_float, 2 * G), -7.5)
    Ic = np.full((plan.n_int, 2 * G), -7, np.int64)
    F0, I0 = parts[order[0]]
    for j in range(G):
        copy_slot(Fc, Ic, G + j, F0, I0, j)
    for p in order[1:]:
        Fp, Ip = parts[p]
        for j in range(G):
            combine_slot(prog, Fc, Ic, G + j, Fp, Ip, j)
    _assert_state_close(Fc[:, G:], Ic[:, G:], F1, I1)


@settings(max_examples=60, deadline=None)
@given(frame=agg_frames(), seq0=st.integers(0, 10_000))
def test_update_row_equals_apply_rows(frame: tuple[pl.DataFrame, int], seq0: int) -> None:
    df, G = frame
    plan, prog, init_f, init_i = _plan(AGGS, df.schema)
    F1, I1 = _apply(plan, prog, init_f, init_i, df, G, seq0)
    F, In = _state(plan, init_f, init_i, G)
    Xf, Xi, M, vmap = _build(plan, df)
    for r, g in enumerate(df.get_column("g").to_list()):
        if g >= 0:
            update_row(prog, F, In, g, Xf, Xi, M, vmap, r, seq0 + r)
    # same operations in the same order: bit for bit
    np.testing.assert_array_equal(F, F1)
    np.testing.assert_array_equal(In, I1)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64)),
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        max_size=40,
    )
)
def test_final_mean_matches_numpy(rows: list[tuple[float, int, int]]) -> None:
    """The mean finalize kernel against numpy: total / count, null where count is 0."""
    value = np.array([r[0] for r in rows], np.float64)
    count = np.array([r[1] for r in rows], np.int64)
    mean, empty = final_mean(value, count)
    assert empty == bool((count == 0).any())
    ok = count > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        np.testing.assert_array_equal(mean[ok], value[ok] / count[ok])


def test_min_max_nan_only_groups_and_skipped_rows() -> None:
    """NaN is ignored by min/max unless a group has only NaNs; slot -1 rows are skipped."""
    nan = math.nan
    df = pl.DataFrame(
        {
            "g": pl.Series([0, 0, 1, 1, 2, -1, 2], dtype=pl.Int32),
            "x": [nan, 2.0, nan, nan, None, -100.0, None],
            "i": pl.Series([1, None, None, None, 3, -100, None], dtype=pl.Int64),
            "b": [True, None, False, None, None, False, None],
        }
    )
    plan, prog, init_f, init_i = _plan(AGGS, df.schema)
    F, In = _apply(plan, prog, init_f, init_i, df, 3, 0)
    expected = _polars_groups(df)
    got = _kernel_groups(plan, F, In, expected.get_column("g"))
    assert_frame_equal(got, expected, rel_tol=REL, abs_tol=ABS)
    x_min, x_max = got.get_column("x_min"), got.get_column("x_max")
    assert x_min[0] == x_max[0] == 2.0
    assert math.isnan(x_min[1])
    assert math.isnan(x_max[1])
    assert x_min[2] is None
    assert x_max[2] is None


# ---------------------------------------------------------------------- panes
def _pane_of(t: int, pane: int, offset: int) -> int:
    return (t - offset) // pane


def _pow2_at_least(m: int) -> int:
    size = 1
    while size < m:
        size *= 2
    return size


def _window_end(k: int, pane: int, offset: int, s: int, n: int) -> int:
    """Window k covers panes [k*s, k*s + n)."""
    return (k * s + n) * pane + offset


def _is_late(p: int, g: dict[str, int], wm: int) -> bool:
    """Every window of pane p (the last is k = p // s) is past its lateness."""
    if wm == MIN:
        return False
    end = _window_end(p // g["s"], g["pane"], g["offset"], g["s"], g["n"])
    return end + g["lateness"] <= wm


def _is_dirty(p: int, g: dict[str, int], wm: int) -> bool:
    """Pane p is in a window that already fired (its first, k = ceil((p-n+1)/s))."""
    if wm == MIN or g["lateness"] == 0:
        return False
    first = -((-(p - g["n"] + 1)) // g["s"])
    return _window_end(first, g["pane"], g["offset"], g["s"], g["n"]) <= wm


def _first_pane_not(pred: Any, g: dict[str, int], wm: int) -> int:
    """The smallest pane for which ``pred`` is false (pred holds on a prefix of panes)."""
    if wm == MIN:
        return MIN + 1
    p = (wm - g["lateness"] - g["offset"]) // g["pane"] - g["n"] - 2 * g["s"] - 2
    assert pred(p, g, wm)
    while pred(p, g, wm):
        p += 1
    assert not any(pred(q, g, wm) for q in range(p, p + 3 * g["n"] + 3))
    return max(p, MIN + 1)


class _PaneRun:
    """pane_slots over batches, growing the table whenever the kernel asks."""

    def __init__(
        self,
        g: dict[str, int],
        wm: int,
        n: int,
        tab_size: int,
        n_keys: int,
        ways: int,
        dir_rows: int = 0,
        count_rows: bool = False,
        fold: np.ndarray | None = None,
        keep_slots: bool = True,
    ) -> None:
        plan, _, self.init_f, self.init_i = _plan(WINDOW_AGGS, WINDOW_SCHEMA)
        # the aggregates pane_slots folds: rows (kind, float field, column), none by default
        self.fold = np.zeros((0, 3), np.int64) if fold is None else fold
        late_below = _first_pane_not(_is_late, g, wm)
        dirty_below = _first_pane_not(_is_dirty, g, wm) if g["lateness"] else MIN + 1
        # geom = (pane, offset, late_below, dirty_below, ways of the per-key pane cache,
        # the LEN field pane_slots counts the slots' rows in, -1: none)
        self.rows = plan.len_field if count_rows else -1
        assert not count_rows or self.rows >= 0
        self.geom = np.array(
            [g["pane"], g["offset"], late_below, dirty_below, ways, self.rows, keep_slots, 0],
            np.int64,
        )
        cap = n + 4
        self.tab = np.zeros(tab_size, np.int32)
        self.slot_pane = np.full(cap, -999, np.int64)
        self.slot_key = np.full(cap, -9, np.int32)
        # each key's recently used slots (-1: none) and their panes
        self.key_slot = np.full(n_keys * ways, -1, np.int32)
        self.key_pane = np.full(n_keys * ways, -77, np.int64)
        self.key_cache = (self.key_slot, self.key_pane) if _PANE_KEY_PANE else (self.key_slot,)
        # the pane directory: rows x keys, off (no rows) or with rows panes may claim
        self.dir = (
            (np.full((dir_rows, n_keys), -7, np.int32), np.full(dir_rows, MIN, np.int64))
            if dir_rows
            else NO_DIR
        )
        self.F = np.full((self.init_f.shape[0], cap), -3.5)
        self.In = np.full((self.init_i.shape[0], cap), -3, np.int64)
        self.slots: list[int] = []
        self.late: list[bool] = []
        self.dirty: list[tuple[int, int]] = []
        # slots in use, late rows, dirty rows, rows through the table, top pane (not late),
        # deferred rows (none: the keys are ids)
        self.counts = np.array([0, 0, 0, 0, MIN, 0], np.int64)
        self.calls = 0

    def batch(
        self,
        ts: np.ndarray,
        kid: np.ndarray,
        *,
        forget_keys: bool,
        x: np.ndarray | None = None,
        dense: tuple[np.ndarray, int] | None = None,
    ) -> None:
        """One batch; with ``dense`` = (id array, base), ``kid`` are the keys themselves
        and rows of keys without an id are listed in ``self.deferred``."""
        n = ts.shape[0]
        ids = NO_DENSE if dense is None else (dense[0], np.full(n, -1, np.int64))
        self.geom[7] = 0 if dense is None else dense[1]
        self.counts[5] = 0
        Xf = (np.zeros(n), np.zeros(n)) if x is None else (x[0], x[1])
        slots = np.full(n, -5, np.int32)
        late = np.zeros(n, np.bool_)
        dirty_p = np.full(n, -1, np.int64)
        dirty_k = np.full(n, -1, np.int32)
        self.counts[1:4] = 0
        r = 0
        while True:
            r = pane_slots(
                ts, kid, self.geom, self.tab, self.slot_pane, self.slot_key, self.F,
                self.In, self.init_f, self.init_i, slots, late, dirty_p, dirty_k,
                self.counts, r, *self.key_cache, *self.dir, self.fold, Xf, *ids,
            )  # fmt: skip
            self.calls += 1
            # the table is never loaded past one half
            assert self.counts[0] <= self.tab.shape[0] // 2
            if r == n:
                break
            assert 0 <= r < n
            assert self.counts[0] >= self.tab.shape[0] // 2  # stopped: half full
            self.tab = np.zeros(2 * self.tab.shape[0], np.int32)
            used = int(self.counts[0])
            rebuild_index(self.tab, *self.dir, self.slot_pane, self.slot_key, used, False)
            if forget_keys:  # (slot numbers survive a rebuild: the cache may stay)
                self.key_slot[:] = -1
        assert int(self.counts[1]) == int(late.sum())
        self.deferred = ids[1][: self.counts[5]].tolist()
        self.slots += slots.tolist()
        self.late += late.tolist()
        nd = int(self.counts[2])
        self.dirty += list(zip(dirty_p[:nd].tolist(), dirty_k[:nd].tolist(), strict=True))

    @property
    def n_slots(self) -> int:
        return int(self.counts[0])


@st.composite
def pane_batches(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(1, 24))
    slide = draw(st.integers(1, size))
    pane = math.gcd(size, slide)
    n_keys = draw(st.integers(1, 5))
    rows = draw(
        st.lists(
            st.tuples(st.integers(-100, 300), st.integers(0, n_keys - 1)), min_size=1, max_size=120
        )
    )
    m = len(rows)
    if draw(st.booleans()):  # in time order: the kernel steps between neighbouring panes
        rows.sort()
    return {
        "geom": {
            "pane": pane,
            "s": slide // pane,
            "n": size // pane,
            "offset": draw(st.integers(-30, 30)),
            "lateness": draw(st.one_of(st.just(0), st.integers(1, 60))),
        },
        "wm": draw(st.one_of(st.just(MIN), st.integers(-150, 350))),
        "ts": np.array([t for t, _ in rows], np.int64),
        "kid": np.array([k for _, k in rows], np.int32),
        "n_keys": n_keys,
        "points": draw(strategies.split_points(m, max_chunks=3)),
        "tab_size": draw(st.sampled_from([2, 4, 8, 16])),
        "forget_keys": draw(st.booleans()),
        "ways": draw(st.sampled_from([1, 2, 8])),
        # pane directory rows (0: off); few rows make panes fall back to the table
        "dir_rows": draw(st.sampled_from([0, 1, 2, 4, 64])),
        "count_rows": draw(st.booleans()),
        # values of the folded aggregates (quarters: exact sums; NaNs for min / max)
        "x": np.array(
            draw(st.lists(float_value(nulls=False, nans=True), min_size=2 * m, max_size=2 * m))
        ).reshape(2, m),
        "fold": draw(st.permutations(["x_sum", "x_mean", "x_min", "x_max"])),
        "columns": draw(st.lists(st.integers(0, 1), min_size=3, max_size=3)),
        "n_fold": draw(st.integers(0, 3)),
    }


@settings(max_examples=300, deadline=None)
@given(
    t=st.one_of(st.integers(-(2**40), 2**40), st.integers(MIN // 2, MAX // 2)),
    offset=st.one_of(st.integers(-1000, 1000), st.integers(-(2**40), 2**40)),
    pane=st.one_of(st.integers(1, 10_000), st.integers(1, 2**40), st.sampled_from([3, 7, 1000])),
    near=st.integers(-2, 2),
)
def test_pane_of_is_floor_division(t: int, offset: int, pane: int, near: int) -> None:
    """The float-reciprocal pane equals ``//`` everywhere, pane boundaries included."""
    for value in (t, (t // pane) * pane + offset + near):
        assert pane_of(value, offset, pane, 1.0 / pane) == (value - offset) // pane


@settings(max_examples=100, deadline=None)
@given(
    panes=st.lists(st.integers(-5, 5), max_size=40),
    used=st.integers(0, 45),
    below=st.integers(-6, 6),
)
def test_count_below_matches_numpy(panes: list[int], used: int, below: int) -> None:
    """The dead slots of the first ``used`` (those past the array are not counted)."""
    arr = np.array(panes, np.int64)
    used = min(used, len(panes))
    assert count_below(arr, used, below) == int(np.count_nonzero(arr[:used] < below))


@settings(max_examples=100, deadline=None)
@given(d=pane_batches(), known=st.sets(st.integers(0, 4)), base=st.integers(-3, 3))
def test_pane_slots_looks_up_dense_keys(d: dict[str, Any], known: set[int], base: int) -> None:
    """With the keys themselves and a dense id array, the rows of keys with an id go as
    with the ids, and the others (not late) are deferred, in order."""
    g, wm, ts, kid = d["geom"], d["wm"], d["ts"], d["kid"]
    n = ts.shape[0]
    keys = kid.astype(np.int64) + 10  # key = id + 10
    dense = np.full(d["n_keys"] + 10 - base - (n % 2), -1, np.int32)  # the last may not fit
    for i in known:
        if 0 <= i + 10 - base < dense.shape[0]:
            dense[i + 10 - base] = i
    has_id = np.array([0 <= k - base < dense.shape[0] and dense[k - base] >= 0 for k in keys])
    late = np.array([_is_late(_pane_of(t, g["pane"], g["offset"]), g, wm) for t in ts.tolist()])
    run = _PaneRun(g, wm, n, _pow2_at_least(2 * n + 2), d["n_keys"], 1, d["dir_rows"])
    run.batch(ts, keys, forget_keys=False, dense=(dense, base))
    assert run.deferred == np.flatnonzero(~has_id & ~late).tolist()
    # the other rows: as with their ids, in a batch of them alone
    rest = np.flatnonzero(has_id | late)
    ref = _PaneRun(g, wm, n, _pow2_at_least(2 * n + 2), d["n_keys"], 1, d["dir_rows"])
    ref.batch(ts[rest], kid[rest], forget_keys=False)
    assert [run.slots[r] for r in rest.tolist()] == ref.slots
    assert [run.late[r] for r in rest.tolist()] == ref.late
    assert run.late == late.tolist()
    assert run.dirty == ref.dirty
    assert run.n_slots == ref.n_slots
    np.testing.assert_array_equal(run.slot_key[: run.n_slots], ref.slot_key[: ref.n_slots])
    np.testing.assert_array_equal(run.slot_pane[: run.n_slots], ref.slot_pane[: ref.n_slots])


@settings(max_examples=100, deadline=None)
@given(d=pane_batches())
def test_pane_slots_matches_reference(d: dict[str, Any]) -> None:
    g, wm, ts, kid = d["geom"], d["wm"], d["ts"], d["kid"]
    n = ts.shape[0]
    # in batches with a small table that grows, and in one call with a big table
    count, x = d["count_rows"], d["x"]
    plan, prog, _, _ = _plan(WINDOW_AGGS, WINDOW_SCHEMA)
    leaf = {lf.name: a for a, lf in enumerate(plan.leaves)}
    names = {e.meta.output_name(): plan.final[k].meta.undo_aliases().meta.output_name()
             for k, e in enumerate(WINDOW_AGGS)}  # fmt: skip
    folded = [prog[leaf[names[name]]] for name in d["fold"][: d["n_fold"]]]
    # each folded aggregate reads one of two columns
    fold = np.array(
        [(p[0], p[3], c) for p, c in zip(folded, d["columns"], strict=False)], np.int64
    ).reshape(-1, 3)
    run = {"count_rows": count, "fold": fold}
    small = _PaneRun(g, wm, n, d["tab_size"], d["n_keys"], d["ways"], d["dir_rows"], **run)
    for lo, hi in itertools.pairwise([0, *d["points"], n]):
        small.batch(ts[lo:hi], kid[lo:hi], forget_keys=d["forget_keys"], x=x[:, lo:hi])
    big = _PaneRun(g, wm, n, _pow2_at_least(2 * n + 2), d["n_keys"], 1, **run)
    big.batch(ts, kid, forget_keys=False, x=x)
    # without the rows' slots (nothing left for apply_rows): the same state, no slots
    quiet = _PaneRun(g, wm, n, _pow2_at_least(2 * n + 2), d["n_keys"], 1, keep_slots=False, **run)
    quiet.batch(ts, kid, forget_keys=False, x=x)
    assert quiet.slots == [-5] * n
    assert quiet.late == big.late
    _assert_state_close(quiet.F, quiet.In, big.F, big.In)
    assert big.calls == 1
    assert small.slots == big.slots
    assert small.late == big.late
    assert small.dirty == big.dirty
    assert small.n_slots == big.n_slots
    np.testing.assert_array_equal(small.slot_pane[: small.n_slots], big.slot_pane[: big.n_slots])
    np.testing.assert_array_equal(small.slot_key[: small.n_slots], big.slot_key[: big.n_slots])

    # reference, row by row: (pane, key) pairs numbered in order of first appearance
    pairs: dict[tuple[int, int], int] = {}
    for r, (t, k) in enumerate(zip(ts.tolist(), kid.tolist(), strict=True)):
        p = _pane_of(t, g["pane"], g["offset"])
        late = _is_late(p, g, wm)
        assert small.late[r] == late
        if late:
            assert small.slots[r] == -1
            continue
        j = pairs.setdefault((p, k), len(pairs))
        assert small.slots[r] == j
        assert small.slot_pane[j] == p
        assert small.slot_key[j] == k
    expected_dirty = [
        (_pane_of(t, g["pane"], g["offset"]), k)
        for t, k in zip(ts.tolist(), kid.tolist(), strict=True)
        if not _is_late(_pane_of(t, g["pane"], g["offset"]), g, wm)
        and _is_dirty(_pane_of(t, g["pane"], g["offset"]), g, wm)
    ]
    assert small.dirty == expected_dirty
    assert small.n_slots == len(pairs)
    live_panes = [p for p, _ in pairs]
    assert small.counts[4] == big.counts[4] == max(live_panes, default=MIN)
    # new slots start from the initial state; the rows field (if asked) counts their
    # rows, the folded aggregates are their rows' values folded in arrival order
    m = small.n_slots
    expected_i = np.repeat(small.init_i[:, None], m, 1)
    if small.rows >= 0:
        expected_i[small.rows] = np.bincount([j for j in small.slots if j >= 0], minlength=m)[:m]
    expected_f = np.repeat(small.init_f[:, None], m, 1)
    for kind, f, c in fold.tolist():
        for j in range(m):
            vals = [v for v, s in zip(x[c].tolist(), small.slots, strict=True) if s == j]
            numbers = [v for v in vals if not math.isnan(v)]
            if kind in (A.SUM_F, A.MEAN):
                expected_f[f, j] = sum(vals)
            else:
                pick = min if kind == A.MIN_F else max
                expected_f[f, j] = pick(numbers) if numbers else math.nan
    _assert_state_close(small.F[:, :m], small.In[:, :m], expected_f, expected_i)
    _assert_state_close(big.F[:, :m], big.In[:, :m], small.F[:, :m], small.In[:, :m])


# ---------------------------------------------------------------------- hopping fires
@st.composite
def pane_states(draw: st.DrawFn) -> dict[str, Any]:
    """Slots of random (pane, key) sets, each folded from 1+ rows arriving shuffled."""
    size = draw(st.integers(1, 24))
    slide = draw(st.integers(1, size))
    pane = math.gcd(size, slide)  # s == n (tumbling), n a multiple of s or not
    s, n = slide // pane, size // pane
    n_keys = draw(st.integers(1, 4))
    pairs = [
        (p, k)
        for k in range(n_keys)
        for p in sorted(draw(st.sets(st.integers(-6, 30), max_size=10)))
    ]
    pairs = list(draw(st.permutations(pairs)))
    m = len(pairs)
    extra = draw(st.lists(st.integers(0, max(m - 1, 0)), max_size=2 * m)) if m else []
    row_slots = list(draw(st.permutations(list(range(m)) + extra)))
    k_lo = draw(st.integers((-6 - n) // s - 1, 30 // s + 1))
    k_hi = k_lo + draw(st.integers(-1, 12))
    return {
        "s": s,
        "n": n,
        "n_keys": n_keys,
        "pairs": pairs,
        "rows": row_slots,
        "x": draw(float_values(len(row_slots))),
        "i": draw(int_values(len(row_slots))),
        "k_lo": k_lo,
        "k_hi": k_hi,
        "garbage": draw(st.integers(0, 3)),
        "cuts": draw(st.lists(st.integers(k_lo, k_hi + 1), max_size=4)),
        "queries": draw(
            st.lists(st.tuples(st.integers(k_lo - 3, k_hi + 3), st.integers(0, n_keys - 1)))
        ),
    }


class _Panes:
    """Pane slots built from ``pane_states``, plus ``garbage`` slots past ``n_slots``."""

    def __init__(self, d: dict[str, Any]) -> None:
        pairs = d["pairs"]
        rows = d["rows"]
        garbage = d["garbage"]
        self.plan, self.prog, self.init_f, self.init_i = _plan(WINDOW_AGGS, WINDOW_SCHEMA)
        self.m = len(pairs)
        cap = self.m + garbage
        self.slot_pane = np.array([p for p, _ in pairs] + [0] * garbage, np.int64)
        self.slot_key = np.array([k for _, k in pairs] + [0] * garbage, np.int32)
        self.F, self.In = _state(self.plan, self.init_f, self.init_i, cap)
        self.F[:, self.m :] = 1e6  # state past n_slots must never be read
        self.In[:, self.m :] = 10**6
        df = pl.DataFrame(
            {"x": pl.Series(d["x"], dtype=pl.Float64), "i": pl.Series(d["i"], dtype=pl.Int64)}
        )
        Xf, Xi, M, vmap = _build(self.plan, df)
        apply_rows(self.prog, self.F, self.In, np.array(rows, np.int32), Xf, Xi, M, vmap, 0)

    def cache(self) -> tuple[np.ndarray, ...]:
        """Empty window partials for fire_hopping (Pf, Pi, Sf, Si, valid), garbage-filled:
        only what ``valid`` flags may be read."""
        cap = self.F.shape[1]
        nf, ni = self.F.shape[0], self.In.shape[0]
        return (
            np.full((nf, cap), 1e6), np.full((ni, cap), 10**6, np.int64),
            np.full((nf, cap), 1e6), np.full((ni, cap), 10**6, np.int64),
            np.zeros(cap, np.uint8),
        )  # fmt: skip

    def brute(self, s: int, n: int, k: int, key: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Window ``k`` of ``key``: its panes combined one by one into an initialised slot."""
        Fo, Io = _state(self.plan, self.init_f, self.init_i, 1)
        js = sorted(
            (int(self.slot_pane[j]), j)
            for j in range(self.m)
            if self.slot_key[j] == key and k * s <= self.slot_pane[j] < k * s + n
        )
        for _, j in js:
            combine_slot(self.prog, Fo, Io, 0, self.F, self.In, j)
        return Fo[:, 0], Io[:, 0], bool(js)


@settings(max_examples=100, deadline=None)
@given(d=pane_states())
def test_fire_hopping_matches_brute_force(d: dict[str, Any]) -> None:
    s, n, n_keys, k_lo, k_hi = (d[name] for name in ("s", "n", "n_keys", "k_lo", "k_hi"))
    P = _Panes(d)
    args = (P.slot_pane, P.slot_key, P.F, P.In, P.m, P.prog, s, n)
    expected = {}
    for key in range(n_keys):
        for k in range(k_lo, k_hi + 1):
            Fb, Ib, has_data = P.brute(s, n, k, key)
            if has_data:
                expected[(key, k)] = (Fb, Ib)

    def check(fired: list[tuple[np.ndarray, ...]]) -> None:
        got: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for out_key, out_k, Fo, Io in fired:
            for c, (key, k) in enumerate(zip(out_key.tolist(), out_k.tolist(), strict=True)):
                assert (key, k) not in got, "a window is emitted twice"
                got[(key, k)] = (Fo[:, c], Io[:, c])
        assert sorted(got) == sorted(expected)
        for w, (Fb, Ib) in expected.items():
            _assert_state_close(*got[w], Fb, Ib)

    # all at once with empty partials, then again with the partials that call left
    cache = P.cache()
    check([fire_hopping(*args, k_lo, k_hi, n_keys, *cache)])
    check([fire_hopping(*args, k_lo, k_hi, n_keys, *cache)])
    # in consecutive ranges, as successive firings do, sharing the partials
    cache = P.cache()
    cuts = sorted({k_lo, k_hi + 1, *(c for c in d["cuts"] if k_lo < c <= k_hi)})
    check([fire_hopping(*args, a, b - 1, n_keys, *cache) for a, b in itertools.pairwise(cuts)])


@settings(max_examples=60, deadline=None)
@given(d=pane_states())
def test_windows_of_matches_brute_force(d: dict[str, Any]) -> None:
    s, n, k_lo, k_hi, n_keys = (d[name] for name in ("s", "n", "k_lo", "k_hi", "n_keys"))
    queries = d["queries"]
    P = _Panes(d)
    tab = np.zeros(_pow2_at_least(2 * P.m + 2), np.int32)
    rebuild_table(tab, P.slot_pane, P.slot_key, P.m)
    # every window the range has data for, and random ones (maybe empty: initial state)
    wanted = [(k, key) for key in range(n_keys) for k in range(k_lo, k_hi + 1)] + queries
    ks = np.array([k for k, _ in wanted], np.int64)
    keys = np.array([key for _, key in wanted], np.int32)
    Fo, Io = windows_of(
        tab,
        P.slot_pane,
        P.slot_key,
        P.F,
        P.In,
        P.prog,
        P.init_f,
        P.init_i,
        s,
        n,
        ks,
        keys,
        *NO_DIR,
    )
    for c, (k, key) in enumerate(wanted):
        Fb, Ib, _ = P.brute(s, n, k, key)
        _assert_state_close(Fo[:, c], Io[:, c], Fb, Ib)
    # the same through a pane directory of two rows (the other panes in the table)
    tab2 = np.zeros_like(tab)
    pane_dir = (np.zeros((2, n_keys), np.int32), np.zeros(2, np.int64))
    rebuild_index(tab2, *pane_dir, P.slot_pane, P.slot_key, P.m, False)
    args = (P.F, P.In, P.prog, P.init_f, P.init_i, s, n, ks, keys)
    Fo2, Io2 = windows_of(tab2, P.slot_pane, P.slot_key, *args, *pane_dir)
    np.testing.assert_array_equal(Fo2, Fo)
    np.testing.assert_array_equal(Io2, Io)


def test_fire_hopping_windows_across_two_blocks() -> None:
    """size 5, slide 2 (s=2, n=5): windows combine a block suffix and the next prefix."""
    d = {
        "pairs": [(p, 0) for p in range(12)] + [(3, 1), (9, 1)],
        "rows": list(range(14)),
        "x": [float(p) for p in range(12)] + [100.0, 200.0],
        "i": list(range(14)),
        "garbage": 0,
    }
    P = _Panes(d)
    out_key, out_k, Fo, Io = fire_hopping(
        P.slot_pane, P.slot_key, P.F, P.In, P.m, P.prog, 2, 5, -2, 6, 2, *P.cache()
    )
    got = _finalized(P.plan, Fo, Io).with_columns(key=pl.Series(out_key), k=pl.Series(out_k))
    got = got.sort("key", "k")
    # key 0: window k covers panes [2k, 2k+5) within 0..11
    k0 = got.filter(pl.col("key") == 0)
    assert k0.get_column("k").to_list() == list(range(-2, 6))
    for k, x_sum, length in k0.select("k", "x_sum", "len").iter_rows():
        panes = [p for p in range(2 * k, 2 * k + 5) if 0 <= p < 12]
        assert (x_sum, length) == (float(sum(panes)), len(panes))
    # key 1: panes 3 and 9 -> windows 0..1 hold pane 3, 3..4 hold pane 9
    k1 = got.filter(pl.col("key") == 1)
    assert k1.select("k", "x_sum").rows() == [
        (0, 100.0),
        (1, 100.0),
        (3, 200.0),
        (4, 200.0),
    ]


# ---------------------------------------------------------------------- sessions
class _Sessions:
    """Session state arrays, sized for ``capacity`` slots."""

    def __init__(self, n_keys: int, capacity: int) -> None:
        self.plan, self.prog, self.init_f, self.init_i = _plan(WINDOW_AGGS, WINDOW_SCHEMA)
        self.n_keys = n_keys
        self.head = np.full(n_keys, -1, np.int32)
        self.nxt = np.full(capacity, -1, np.int32)
        self.s_key = np.full(capacity, -1, np.int32)
        self.s_start = np.zeros(capacity, np.int64)
        self.s_end = np.zeros(capacity, np.int64)
        self.s_rev = np.full(capacity, -1, np.int64)
        self.s_final = np.zeros(capacity, np.bool_)
        self.s_dirty = np.zeros(capacity, np.bool_)
        self.free = np.full(capacity, -1, np.int32)
        self.counters = np.zeros(3, np.int64)
        self.F, self.In = _state(self.plan, self.init_f, self.init_i, capacity)
        self.seq = 0

    def update(
        self, batch: pl.DataFrame, gap: int, lateness: int = 0, wm: int = MIN
    ) -> np.ndarray:
        ts = batch.get_column("ts").to_numpy().astype(np.int64)
        kid = batch.get_column("key").to_numpy().astype(np.int32)
        Xf, Xi, M, vmap = _build(self.plan, batch)
        late = np.zeros(batch.height, np.bool_)
        cap = self.nxt.shape[0]
        merged = np.full(cap, -1, np.int32)
        extra = (merged,) if _SESSION_MERGED else ()
        res = session_update(
            ts, kid, self.n_keys, gap, lateness, wm, self.head, self.nxt, self.s_key,
            self.s_start, self.s_end, self.s_rev, self.s_final, self.s_dirty, self.free,
            self.counters, self.F, self.In, self.init_f, self.init_i, self.prog, Xf, Xi, M,
            vmap, self.seq, late, *extra,
        )  # fmt: skip
        self.seq += batch.height
        if isinstance(res, tuple):  # (smallest end, each row's session slot)
            _, slots = res
            live = {j for k in range(self.n_keys) for j in self._chain(k)}
            for r in range(batch.height):
                if late[r]:
                    continue
                j = self._resolve(int(slots[r]), merged, live)
                assert self.s_key[j] == kid[r]
                assert self.s_start[j] <= ts[r] < self.s_end[j]
        if _SESSION_MERGED:
            # a session merged into another points (maybe through a chain) at a live one
            live = {j for k in range(self.n_keys) for j in self._chain(k)}
            for j in np.flatnonzero(merged >= 0).tolist():
                assert self.s_key[self._resolve(j, merged, live)] == self.s_key[j]
        return late

    @staticmethod
    def _resolve(j: int, merged: np.ndarray, live: set[int]) -> int:
        """The live session slot ``j`` is (or was merged into, maybe through a chain)."""
        for _ in range(merged.shape[0] + 1):
            if j in live:
                return j
            assert j >= 0, "a merged session leads nowhere"
            j = int(merged[j])
        raise AssertionError("merged sessions form a cycle")

    def _chain(self, k: int) -> list[int]:
        out = []
        j = int(self.head[k])
        while j >= 0:
            out.append(j)
            j = int(self.nxt[j])
        return out

    def live(self) -> list[tuple[int, int, int]]:
        """(key, start, end) of the live sessions, walking each key's list."""
        out = []
        for k in range(self.n_keys):
            j = int(self.head[k])
            while j >= 0:
                assert self.s_key[j] == k
                out.append((k, int(self.s_start[j]), int(self.s_end[j])))
                j = int(self.nxt[j])
        return sorted(out)

    def fire(
        self, wm: int, lateness: int = 0, *, early: bool = False
    ) -> tuple[pl.DataFrame, np.ndarray, int]:
        res = session_fire(
            self.head, self.nxt, self.s_key, self.s_start, self.s_end, self.s_rev,
            self.s_final, self.s_dirty, self.free, self.counters, self.F, self.In,
            self.n_keys, wm, lateness, early,
        )  # fmt: skip
        if len(res) == 8:  # with the slot of each emitted session
            out_key, out_start, out_end, out_rev, _, Fo, Io, next_end = res
        else:
            out_key, out_start, out_end, out_rev, Fo, Io, next_end = res
        frame = pl.DataFrame(
            {
                "key": pl.Series(out_key, dtype=pl.Int32),
                "window_start": pl.Series(out_start, dtype=pl.Int64),
                "window_end": pl.Series(out_end, dtype=pl.Int64),
            }
        ).hstack(_finalized(self.plan, Fo, Io))
        return frame, out_rev, int(next_end)


def _session_reference(events: pl.DataFrame, gap: int) -> pl.DataFrame:
    """Sessions per key: sorted by time, cut where next - prev > gap (windows that touch
    merge, DESIGN.md); [first, last + gap); aggregates over the session's events in
    arrival order."""
    key, ts = pl.col("key"), pl.col("ts")
    new = ((key != key.shift()) | (ts - ts.shift() > gap)).fill_null(True)
    cut = events.sort("key", "ts").with_columns(sid=new.cum_sum())
    return (
        cut.sort("row")
        .group_by("sid", maintain_order=True)
        .agg(
            key.first(),
            ts.min().alias("window_start"),
            (ts.max() + gap).alias("window_end"),
            *WINDOW_AGGS,
        )
        .drop("sid")
    )


@st.composite
def session_events(draw: st.DrawFn) -> tuple[pl.DataFrame, list[int], int, int]:
    """Events (row, key, ts, x, i) in arrival order, batch cut points, gap, key count."""
    n_keys = draw(st.integers(1, 3))
    row = st.tuples(
        st.integers(0, n_keys - 1),
        st.integers(0, 150),
        float_value(nulls=draw(st.booleans()), nans=draw(st.booleans())),
        int_value(nulls=draw(st.booleans())),
    )
    rows = draw(st.lists(row, min_size=1, max_size=60))
    keys, ts, xs, ints = (list(c) for c in zip(*rows, strict=True))
    m = len(rows)
    events = pl.DataFrame(
        {
            "row": pl.Series(range(m), dtype=pl.Int64),
            "key": pl.Series(keys, dtype=pl.Int32),
            "ts": pl.Series(ts, dtype=pl.Int64),
            "x": pl.Series(xs, dtype=pl.Float64),
            "i": pl.Series(ints, dtype=pl.Int64),
        }
    )
    points = draw(strategies.split_points(m, max_chunks=8))
    return events, points, draw(st.integers(1, 25)), n_keys


def _sort_sessions(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("key", "window_start")


@settings(max_examples=100, deadline=None)
@given(ev=session_events())
def test_sessions_match_reference(ev: tuple[pl.DataFrame, list[int], int, int]) -> None:
    events, points, gap, n_keys = ev
    S = _Sessions(n_keys, events.height + 8)
    bounds = [0, *points, events.height]
    for lo, hi in itertools.pairwise(bounds):
        late = S.update(events.slice(lo, hi - lo).drop("row"), gap)
        assert not late.any()
    assert S.counters[2] == 0
    assert S.counters[1] <= events.height  # slots are reused once merged
    expected = _sort_sessions(_session_reference(events, gap))
    assert S.live() == sorted(expected.select("key", "window_start", "window_end").rows())
    got, rev, next_end = S.fire(MAX)
    assert_frame_equal(_sort_sessions(got), expected, rel_tol=REL, abs_tol=ABS)
    assert (rev == 0).all()  # the first emission of each session
    # every session closed and past its lateness: all freed
    assert next_end == MAX
    assert (S.head == -1).all()
    assert S.counters[0] == S.counters[1]
    assert sorted(S.free[: S.counters[0]].tolist()) == list(range(int(S.counters[1])))
    again, _, _ = S.fire(MAX)
    assert again.height == 0


def test_sessions_exactly_gap_apart_merge() -> None:
    """next - prev == gap: one session (touching windows merge, as in Flink, Spark and
    Bytewax), within a batch and across batches; one more is a new session."""
    gap = 10
    batches = [
        pl.DataFrame({"key": [0, 0, 1], "ts": [0, 10, 0], "x": [1.0, 2.0, 4.0]}),
        pl.DataFrame({"key": [0, 1], "ts": [20, 11], "x": [8.0, 16.0]}),
    ]
    rows = [b.with_columns(pl.lit(None, pl.Int64).alias("i")) for b in batches]
    S = _Sessions(2, 16)
    S.update(rows[0], gap)
    assert S.live() == [(0, 0, 20), (1, 0, 10)]
    S.update(rows[1], gap)
    assert S.live() == [(0, 0, 30), (1, 0, 10), (1, 11, 21)]


def test_session_bridged_by_a_later_event() -> None:
    """Two sessions of one batch, merged by an event of a later batch that falls between."""
    gap = 10
    batches = [
        pl.DataFrame({"key": [0, 0, 0, 1], "ts": [0, 5, 20, 7], "x": [1.0, 2.0, 4.0, 8.0]}),
        pl.DataFrame({"key": [0], "ts": [12], "x": [16.0]}),
    ]
    rows = [b.with_columns(pl.lit(None, pl.Int64).alias("i")) for b in batches]
    S = _Sessions(2, 16)
    S.update(rows[0], gap)
    assert S.live() == [(0, 0, 15), (0, 20, 30), (1, 7, 17)]
    S.update(rows[1], gap)
    assert S.live() == [(0, 0, 30), (1, 7, 17)]
    got, rev, _ = S.fire(MAX)
    got = _sort_sessions(got)
    assert got.select(
        "key", "window_start", "window_end", "len", "x_sum", "x_first", "x_last"
    ).rows() == [
        (0, 0, 30, 4, 23.0, 1.0, 16.0),
        (1, 7, 17, 1, 8.0, 8.0, 8.0),
    ]
    events = pl.concat(rows).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"))
    events = events.with_columns(pl.col("key").cast(pl.Int32), pl.col("x").cast(pl.Float64))
    expected = _sort_sessions(_session_reference(events, gap))
    assert_frame_equal(got, expected, rel_tol=REL, abs_tol=ABS)
    assert (rev == 0).all()


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 80),
    big=st.booleans(),
)
def test_order_by_key_time_matches_lexsort(data: st.DataObject, n: int, big: bool) -> None:
    # few keys: counting sort; many keys next to the batch (> 4n + 1024): merge sort
    n_keys = data.draw(st.integers(2000, 5000) if big else st.integers(1, 6))
    kid = np.array(
        data.draw(st.lists(st.integers(0, n_keys - 1), min_size=n, max_size=n)), np.int32
    )
    ts = np.array(data.draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n)), np.int64)
    order = _order_by_key_time(ts, kid, n_keys)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    ref = np.lexsort((ts, kid))
    # ties in time may come in any order: compare the sorted (key, time) pairs
    np.testing.assert_array_equal(kid[order], kid[ref])
    np.testing.assert_array_equal(ts[order], ts[ref])


@pytest.mark.parametrize("dtype", [pl.Int8, pl.Int16, pl.Int32, pl.UInt16, pl.UInt32, pl.Int64])
def test_integer_results_of_an_all_null_group_are_null(dtype: pl.DataType) -> None:
    """min / max / first / last of a group whose values are all null is null, whatever the
    integer width (a narrow result dtype must not turn the null into 0 or garbage)."""
    df = pl.DataFrame(
        {
            "g": pl.Series([0, 1, 0], dtype=pl.Int32),
            "x": [1.0, 2.0, 3.0],
            "i": pl.Series([None, 5, None], dtype=dtype),
            "b": [True, False, None],
        }
    )
    plan, prog, init_f, init_i = _plan(AGGS, df.schema)
    F, In = _apply(plan, prog, init_f, init_i, df, 2, 0)
    expected = _polars_groups(df)
    got = _kernel_groups(plan, F, In, expected.get_column("g"))
    cols = ["g", "i_min", "i_max", "i_first", "i_last"]
    assert got.select(cols).rows() == [(0, None, None, None, None), (1, 5, 5, 5, 5)]
    assert_frame_equal(got, expected, rel_tol=REL, abs_tol=ABS)


@settings(max_examples=60, deadline=None)
@given(
    panes=st.lists(st.integers(-5, 20), max_size=60),
    n_slots=st.integers(0, 60),
    lo=st.integers(-6, 21),
    width=st.integers(0, 10),
)
def test_take_panes_matches_numpy_selection(
    panes: list[int], n_slots: int, lo: int, width: int
) -> None:
    """Tumbling fires take the slots of panes in [lo, hi] in slot order; slots past
    ``n_slots`` are never read."""
    cap = len(panes) + 3
    slot_pane = np.array([*panes, 99, 99, 99], np.int64)
    slot_key = np.arange(cap, dtype=np.int32) * 7
    F = np.arange(2 * cap, dtype=np.float64).reshape(2, cap) / 4
    In = np.arange(3 * cap, dtype=np.int64).reshape(3, cap) * 3
    n = min(n_slots, len(panes))
    hi = lo + width
    key, pane, Fo, Io = take_panes(slot_pane, slot_key, F, In, n, lo, hi)
    live = slot_pane[:n]
    idx = np.flatnonzero((live >= lo) & (live <= hi))
    np.testing.assert_array_equal(key, slot_key[idx])
    np.testing.assert_array_equal(pane, live[idx])
    np.testing.assert_array_equal(Fo, F[:, idx])
    np.testing.assert_array_equal(Io, In[:, idx])


#: the aggregates take_final finalizes itself (first / last and var / std go through
#: take_panes and the generic finalize)
FUSED_AGGS = [
    e for e in AGGS if not any(k in e.meta.output_name() for k in ("first", "last", "var", "std"))
]


@settings(max_examples=80, deadline=None)
@given(
    frame=agg_frames(),
    panes=st.lists(st.integers(-5, 20), min_size=6, max_size=6),
    lo=st.integers(-6, 21),
    width=st.integers(0, 10),
    geom=st.tuples(st.integers(1, 1000), st.integers(-500, 500), st.integers(1, 1000)),
)
def test_take_final_matches_take_panes_and_finalize(
    frame: tuple[pl.DataFrame, int],
    panes: list[int],
    lo: int,
    width: int,
    geom: tuple[int, int, int],
) -> None:
    """The fused take-and-finalize of tumbling fires gives the rows, bounds and columns
    (values, nulls, NaNs, dtypes) of take_panes followed by the generic finalize."""
    df, G = frame
    plan, prog, init_f, init_i = _plan(FUSED_AGGS, df.schema)
    fin = _fused_finalize(plan)
    assert fin is not None
    F, In = _apply(plan, prog, init_f, init_i, df, G, 0)
    slot_pane = np.array(panes[:G], np.int64)
    slot_key = np.arange(G, dtype=np.int32) * 3
    hi = lo + width
    length, offset, size = geom
    g = np.array([*geom, plan.len_field], np.int64)
    buf = np.full(G + 3, -5, np.int32)  # scratch for the selected slots, with garbage
    ids = np.zeros(0, np.int32)  # no key values: the key ids come back
    key, start, end, *outputs = take_final(slot_pane, slot_key, F, In, G, lo, hi, fin, g, buf, ids)
    key_ref, pane_ref, Fo, Io = take_panes(slot_pane, slot_key, F, In, G, lo, hi)
    np.testing.assert_array_equal(key, key_ref)
    # with the key of each id: those keys, in their dtype
    values = (np.arange(3 * G) * 7 - 50).astype(np.int16)
    keyed = take_final(slot_pane, slot_key, F, In, G, lo, hi, fin, g, buf, values)[0]
    assert keyed.dtype == np.int16
    np.testing.assert_array_equal(keyed, values[key_ref])
    np.testing.assert_array_equal(start, pane_ref * length + offset)
    np.testing.assert_array_equal(end, pane_ref * length + offset + size)
    leaves = _final_leaves(plan, fin, tuple(outputs))
    got = pl.DataFrame([leaves[lf.name] for lf in plan.outputs]).select(plan.final)
    assert_frame_equal(got, _finalized(plan, Fo, Io))
    # before any null, the operator fires without reading the NULLS fields (n0 -1)
    nulls = [lf.i0 for lf in plan.leaves if lf.kind == NULLS]
    if not In[nulls].any():
        skip = fin.copy()
        skip[:, 4] = -1
        outputs2 = take_final(slot_pane, slot_key, F, In, G, lo, hi, skip, g, buf, ids)[3:]
        leaves2 = _final_leaves(plan, skip, tuple(outputs2))
        got2 = pl.DataFrame([leaves2[lf.name] for lf in plan.outputs]).select(plan.final)
        assert_frame_equal(got2, got)


@pytest.mark.parametrize("len_first", [True, False])
def test_counted_aggregates_share_the_rows_and_one_nulls_field_per_input(len_first: bool) -> None:
    """count / mean / min / max of one input share its NULLS field and the slots' rows
    (a LEN leaf, hidden unless pl.len() is asked for, before or after them); every leaf
    has its own name and only the asked-for ones are outputs."""
    schema = pl.Schema({"x": pl.Float64, "i": pl.Int64})
    aggs = [x.mean(), x.max().alias("m"), x.count().alias("c"), i.min().alias("i_min")]
    aggs = [pl.len(), *aggs] if len_first else [*aggs, pl.len()]
    plan = plan_aggregations(aggs, schema, "t", [])
    names = [lf.name for lf in plan.leaves]
    assert len(set(names)) == len(names)
    kinds = sorted(lf.kind for lf in plan.leaves)
    assert kinds == sorted([A.LEN, A.NULLS, A.NULLS, A.MEAN, A.MAX_F, A.COUNT, A.MIN_I])
    assert [lf.kind for lf in plan.leaves if lf.hidden] == [A.NULLS, A.NULLS]
    assert len(plan.outputs) == len(aggs)
    (rows,) = [lf for lf in plan.leaves if lf.kind == A.LEN]
    assert plan.len_field == rows.i0
    nulls = {lf.input: lf.i0 for lf in plan.leaves if lf.kind == A.NULLS}
    for lf in plan.leaves:
        if lf.kind in A.COUNTED:
            assert lf.n0 == nulls[lf.input]
    # one int field each for LEN, two NULLS and the int min; one float each for mean, max
    assert (plan.n_float, plan.n_int) == (2, 4)
    # without pl.len() the rows are counted by a hidden LEN leaf
    hidden = plan_aggregations([x.mean()], schema, "t", [])
    assert [lf.kind for lf in hidden.leaves if lf.hidden] == [A.LEN, A.NULLS]
    assert [lf.kind for lf in hidden.outputs] == [A.MEAN]


def test_take_final_is_only_for_aggregates_finalized_from_their_fields() -> None:
    """first / last, var / std and n_unique need more than their own fields: None."""
    schema = pl.Schema({"x": pl.Float64, "i": pl.Int64, "b": pl.Boolean})
    assert _fused_finalize(_plan(FUSED_AGGS, schema)[0]) is not None
    for agg in (x.first(), i.last(), x.var(), x.std(), i.n_unique()):
        assert _fused_finalize(plan_aggregations([pl.len(), agg], schema, "t", [])) is None


@settings(max_examples=60, deadline=None)
@given(
    panes=st.lists(st.integers(-5, 20), max_size=50),
    free_below=st.integers(-6, 21),
)
def test_compact_panes_keeps_the_live_slots_in_order(panes: list[int], free_below: int) -> None:
    """Slots of panes >= free_below move down, in order, with all their fields."""
    n = len(panes)
    slot_pane = np.array([*panes, 77], np.int64)
    slot_key = np.arange(n + 1, dtype=np.int32)
    F = np.arange(2 * (n + 1), dtype=np.float64).reshape(2, n + 1) + 0.5
    In = np.arange(3 * (n + 1), dtype=np.int64).reshape(3, n + 1) * 2
    keep = np.flatnonzero(slot_pane[:n] >= free_below)
    want = (slot_pane[keep].copy(), slot_key[keep].copy(), F[:, keep].copy(), In[:, keep].copy())
    # hopping partials: each slot has its prefix, suffix, both or none cached
    valid = (np.arange(n + 1) % 4).astype(np.uint8)
    Pf, Sf = F * 3, F * 5
    Pi, Si = In * 3, In * 5
    moved = [(valid[keep] & bit).astype(bool) for bit in (1, 2)]
    want_p = (Pf[:, keep].copy(), Pi[:, keep].copy())
    want_s = (Sf[:, keep].copy(), Si[:, keep].copy())
    m = compact_panes(slot_pane, slot_key, F, In, n, free_below, Pf, Pi, Sf, Si, valid)
    assert m == len(keep)
    np.testing.assert_array_equal(slot_pane[:m], want[0])
    np.testing.assert_array_equal(slot_key[:m], want[1])
    np.testing.assert_array_equal(F[:, :m], want[2])
    np.testing.assert_array_equal(In[:, :m], want[3])
    np.testing.assert_array_equal(valid[:m], (np.arange(n + 1) % 4)[keep])
    assert not valid[m:n].any()  # freed slots: nothing cached
    for got, exp, ok in ((Pf, want_p[0], moved[0]), (Sf, want_s[0], moved[1])):
        np.testing.assert_array_equal(got[:, :m][:, ok], exp[:, ok])
    for got, exp, ok in ((Pi, want_p[1], moved[0]), (Si, want_s[1], moved[1])):
        np.testing.assert_array_equal(got[:, :m][:, ok], exp[:, ok])
    # without partials (tumbling windows)
    m2 = compact_panes(
        want[0].copy(), want[1].copy(), want[2].copy(), want[3].copy(), m, free_below,
        F[:, :0], In[:, :0], F[:, :0], In[:, :0], valid[:0],
    )  # fmt: skip
    assert m2 == m


@settings(max_examples=60, deadline=None)
@given(lists=st.lists(st.lists(st.integers(0, 29), max_size=6, unique=True), max_size=5))
def test_session_live_marks_the_linked_slots(lists: list[list[int]]) -> None:
    """session_live marks exactly the slots reachable from the key heads."""
    cap = 30
    head = np.full(len(lists) + 1, -1, np.int32)
    nxt = np.full(cap, -1, np.int32)
    used: set[int] = set()
    for k, chain in enumerate(lists):
        chain = [j for j in chain if j not in used]
        used.update(chain)
        for a, b in itertools.pairwise(chain):
            nxt[a] = b
        if chain:
            head[k] = chain[0]
    live = session_live(head, nxt, len(head), cap)
    assert set(np.flatnonzero(live).tolist()) == used
