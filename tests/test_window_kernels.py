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
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from vstream.kernels.aggregate import apply_rows, combine_slot, copy_slot, update_row
from vstream.kernels.window import (
    _order_by_key_time,
    fire_hopping,
    pane_slots,
    rebuild_table,
    session_fire,
    session_update,
    windows_of,
)
from vstream.ops.window import _finalize, _init_values, _Inputs
from vstream.plan.aggregates import AggPlan, plan_aggregations

sys.path.insert(0, str(Path(__file__).parent))
import strategies

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
# vstream.ops.window and the session kernels are being extended (value stores for first /
# last of strings, merged sessions for n_unique): call them with or without the new
# arguments so that these tests run against either version
def _params(f: Any) -> set[str]:
    return set(inspect.signature(getattr(f, "py_func", f)).parameters)


_BUILD_STORES = "stores" in _params(_Inputs.build)
_FINALIZE_STORES = "stores" in _params(_finalize)
_SESSION_MERGED = "merged_into" in _params(session_update)


def _build(plan: AggPlan, df: pl.DataFrame) -> tuple[np.ndarray, ...]:
    """``_Inputs(plan).build(df)``: Xf, Xi, M, vmap."""
    inputs = _Inputs(plan)
    return inputs.build(df, {}) if _BUILD_STORES else inputs.build(df)  # type: ignore[call-arg]


def _plan(
    aggs: list[pl.Expr], schema: pl.Schema
) -> tuple[AggPlan, np.ndarray, np.ndarray, np.ndarray]:
    plan = plan_aggregations(aggs, schema, "t", [])
    prog, init_f, init_i = _init_values(plan)
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
    extra = ({},) if _FINALIZE_STORES else ()
    leaves = [_finalize(lf, F, In, None, *extra) for lf in plan.leaves]
    return pl.DataFrame(leaves).select(plan.final)


def _assert_state_close(F: np.ndarray, In: np.ndarray, F2: np.ndarray, In2: np.ndarray) -> None:
    """Integer fields (counts, arrival numbers, integer values) exact; floats close."""
    np.testing.assert_array_equal(In, In2)
    np.testing.assert_allclose(F, F2, rtol=REL, atol=ABS, equal_nan=True)


_value = st.integers(-200, 200)


@st.composite
def float_values(draw: st.DrawFn, n: int) -> list[float | None]:
    """Quarters in [-50, 50] (exact sums in any order), with nulls and NaNs or not."""
    nulls = draw(st.booleans())
    nans = draw(st.booleans())
    out: list[float | None] = []
    for code, v in draw(st.lists(st.tuples(st.integers(0, 9), _value), min_size=n, max_size=n)):
        if nulls and code == 0:
            out.append(None)
        elif nans and code == 1:
            out.append(math.nan)
        else:
            out.append(v / 4)
    return out


@st.composite
def int_values(draw: st.DrawFn, n: int) -> list[int | None]:
    nulls = draw(st.booleans())
    vals = draw(st.lists(st.tuples(st.integers(0, 7), _value), min_size=n, max_size=n))
    return [None if nulls and c == 0 else v for c, v in vals]


@st.composite
def agg_frames(draw: st.DrawFn, max_rows: int = 80) -> tuple[pl.DataFrame, int]:
    """Rows of groups 0..G-1 (and -1: rows no slot takes) with x, i and b, and G."""
    n = draw(st.integers(0, max_rows))
    G = draw(st.integers(1, 6))
    skip = draw(st.booleans())
    g = draw(st.lists(st.integers(-1 if skip else 0, G - 1), min_size=n, max_size=n))
    bools = draw(st.lists(st.one_of(st.booleans(), st.none()), min_size=n, max_size=n))
    df = pl.DataFrame(
        {
            "g": pl.Series(g, dtype=pl.Int32),
            "x": pl.Series(draw(float_values(n)), dtype=pl.Float64),
            "i": pl.Series(draw(int_values(n)), dtype=draw(st.sampled_from(INT_TYPES))),
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
    expected = _polars_groups(df)
    got = _kernel_groups(plan, Fc[:, G:], Ic[:, G:], expected.get_column("g"))
    assert_frame_equal(got, expected, rel_tol=REL, abs_tol=ABS)


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


class _PaneRun:
    """pane_slots over one batch, growing the table whenever the kernel asks."""

    def __init__(self, ts, kid, geom, wm, tab_size, init_f, init_i) -> None:  # type: ignore[no-untyped-def]
        n = ts.shape[0]
        cap = n + 4
        self.tab = np.zeros(tab_size, np.int32)
        self.slot_pane = np.full(cap, -999, np.int64)
        self.slot_key = np.full(cap, -9, np.int32)
        self.F = np.full((init_f.shape[0], cap), -3.5)
        self.In = np.full((init_i.shape[0], cap), -3, np.int64)
        self.slots = np.full(n, -5, np.int32)
        self.late = np.zeros(n, np.bool_)
        self.dirty_p = np.full(n, -1, np.int64)
        self.dirty_k = np.full(n, -1, np.int32)
        self.counts = np.zeros(3, np.int64)
        self.calls = 0
        r = 0
        while True:
            r = pane_slots(
                ts, kid, geom, wm, self.tab, self.slot_pane, self.slot_key, self.F,
                self.In, init_f, init_i, self.slots, self.late, self.dirty_p,
                self.dirty_k, self.counts, r,
            )  # fmt: skip
            self.calls += 1
            # the table is never loaded past one half
            assert self.counts[0] <= self.tab.shape[0] // 2
            if r == n:
                break
            assert 0 <= r < n
            assert self.counts[0] >= self.tab.shape[0] // 2  # stopped: half full
            self.tab = np.zeros(2 * self.tab.shape[0], np.int32)
            rebuild_table(self.tab, self.slot_pane, self.slot_key, int(self.counts[0]))
        self.n_slots = int(self.counts[0])


@st.composite
def pane_batches(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(1, 24))
    slide = draw(st.integers(1, size))
    pane = math.gcd(size, slide)
    m = draw(st.integers(0, 120))
    n_keys = draw(st.integers(1, 5))
    rows = draw(
        st.lists(
            st.tuples(st.integers(-100, 300), st.integers(0, n_keys - 1)), min_size=m, max_size=m
        )
    )
    return {
        "pane": pane,
        "s": slide // pane,
        "n": size // pane,
        "offset": draw(st.integers(-30, 30)),
        "lateness": draw(st.one_of(st.just(0), st.integers(1, 60))),
        "wm": draw(st.one_of(st.just(MIN), st.integers(-150, 350))),
        "ts": np.array([t for t, _ in rows], np.int64),
        "kid": np.array([k for _, k in rows], np.int32),
        "tab_size": draw(st.sampled_from([2, 4, 8, 16])),
    }


@settings(max_examples=100, deadline=None)
@given(batch=pane_batches())
def test_pane_slots_matches_reference(batch: dict[str, Any]) -> None:
    pane, s, n = batch["pane"], batch["s"], batch["n"]
    offset, lateness, wm = batch["offset"], batch["lateness"], batch["wm"]
    ts, kid = batch["ts"], batch["kid"]
    geom = np.array([pane, offset, s, n, lateness], np.int64)
    _, _, init_f, init_i = _plan(WINDOW_AGGS, WINDOW_SCHEMA)
    small = _PaneRun(ts, kid, geom, wm, batch["tab_size"], init_f, init_i)
    big = _PaneRun(ts, kid, geom, wm, _pow2_at_least(2 * ts.shape[0] + 2), init_f, init_i)
    assert big.calls == 1
    # resuming after the table grew changes nothing
    np.testing.assert_array_equal(small.slots, big.slots)
    np.testing.assert_array_equal(small.late, big.late)
    np.testing.assert_array_equal(small.counts, big.counts)
    np.testing.assert_array_equal(small.slot_pane[: small.n_slots], big.slot_pane[: big.n_slots])
    np.testing.assert_array_equal(small.slot_key[: small.n_slots], big.slot_key[: big.n_slots])
    n_dirty = int(big.counts[2])
    np.testing.assert_array_equal(small.dirty_p[:n_dirty], big.dirty_p[:n_dirty])
    np.testing.assert_array_equal(small.dirty_k[:n_dirty], big.dirty_k[:n_dirty])

    # reference, row by row
    late_ref, dirty_ref, pairs = [], [], {}
    for t, k in zip(ts.tolist(), kid.tolist(), strict=True):
        p = _pane_of(t, pane, offset)
        last_end = ((p // s) * s + n) * pane + offset
        late = wm != MIN and last_end + lateness <= wm
        late_ref.append(late)
        if late:
            continue
        first = -((-(p - n + 1)) // s)
        if wm != MIN and lateness > 0 and (first * s + n) * pane + offset <= wm:
            dirty_ref.append((p, k))
        pairs.setdefault((p, k), len(pairs))  # slots in order of first appearance
    np.testing.assert_array_equal(small.late, np.array(late_ref, np.bool_))
    assert int(small.counts[1]) == sum(late_ref)
    assert small.n_slots == len(pairs)
    for r, (t, k) in enumerate(zip(ts.tolist(), kid.tolist(), strict=True)):
        if late_ref[r]:
            assert small.slots[r] == -1
        else:
            j = pairs[(_pane_of(t, pane, offset), k)]
            assert small.slots[r] == j
            assert small.slot_pane[j] == _pane_of(t, pane, offset)
            assert small.slot_key[j] == k
    assert (
        list(zip(small.dirty_p[:n_dirty].tolist(), small.dirty_k[:n_dirty].tolist(), strict=True))
        == dirty_ref
    )
    # new slots start from the initial state
    m = small.n_slots
    _assert_state_close(
        small.F[:, :m],
        small.In[:, :m],
        np.repeat(init_f[:, None], m, 1),
        np.repeat(init_i[:, None], m, 1),
    )


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
        Xf, Xi, M, vmap = _Inputs(self.plan).build(df)
        apply_rows(self.prog, self.F, self.In, np.array(rows, np.int32), Xf, Xi, M, vmap, 0)

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
    out_key, out_k, Fo, Io = fire_hopping(
        P.slot_pane, P.slot_key, P.F, P.In, P.m, P.prog, s, n, k_lo, k_hi, n_keys
    )
    got = {(int(key), int(k)): c for c, (key, k) in enumerate(zip(out_key, out_k, strict=True))}
    assert len(got) == len(out_key), "a window is emitted twice"
    expected = {}
    for key in range(n_keys):
        for k in range(k_lo, k_hi + 1):
            Fb, Ib, has_data = P.brute(s, n, k, key)
            if has_data:
                expected[(key, k)] = (Fb, Ib)
    assert sorted(got) == sorted(expected)
    for w, (Fb, Ib) in expected.items():
        c = got[w]
        _assert_state_close(Fo[:, c], Io[:, c], Fb, Ib)


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
        tab, P.slot_pane, P.slot_key, P.F, P.In, P.prog, P.init_f, P.init_i, s, n, ks, keys
    )
    for c, (k, key) in enumerate(wanted):
        Fb, Ib, _ = P.brute(s, n, k, key)
        _assert_state_close(Fo[:, c], Io[:, c], Fb, Ib)


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
        P.slot_pane, P.slot_key, P.F, P.In, P.m, P.prog, 2, 5, -2, 6, 2
    )
    got = _finalized(P.plan, Fo, Io).with_columns(key=pl.Series(out_key), k=pl.Series(out_k))
    got = got.sort("key", "k")
    # key 0: window k covers panes [2k, 2k+5) within 0..11
    k0 = got.filter(pl.col("key") == 0)
    assert k0.get_column("k").to_list() == list(range(-2, 6))
    for k, x_sum, length in k0.select("k", "x_sum", "len").iter_rows():
        panes = [p for p in range(2 * k, 2 * k + 5) if 0 <= p < 12]
        assert (x_sum, length) == (float(sum(panes)), len(panes))
    # key 1: panes 3 and 9 -> windows -1..1 hold pane 3, 3..4 hold pane 9
    k1 = got.filter(pl.col("key") == 1)
    assert k1.select("k", "x_sum").rows() == [
        (-1, 100.0),
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
                j = int(slots[r])
                assert j in live, "a row's slot is not a live session"
                assert self.s_key[j] == kid[r]
                assert self.s_start[j] <= ts[r] < self.s_end[j]
        if _SESSION_MERGED:
            # a session merged into another points (maybe through a chain) at a live one
            live = {j for k in range(self.n_keys) for j in self._chain(k)}
            for j in np.flatnonzero(merged >= 0).tolist():
                to = j
                for _ in range(cap):
                    if to in live:
                        break
                    to = int(merged[to])
                    assert to >= 0, f"merged session {j} leads nowhere"
                assert to in live
                assert self.s_key[to] == self.s_key[j]
        return late

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
    """Sessions per key: sorted by time, cut where next - prev >= gap; [first, last + gap);
    aggregates over the session's events in arrival order."""
    key, ts = pl.col("key"), pl.col("ts")
    new = ((key != key.shift()) | (ts - ts.shift() >= gap)).fill_null(True)
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
    m = draw(st.integers(1, 60))
    rows = draw(
        st.lists(
            st.tuples(st.integers(0, n_keys - 1), st.integers(0, 150)), min_size=m, max_size=m
        )
    )
    events = pl.DataFrame(
        {
            "row": pl.Series(range(m), dtype=pl.Int64),
            "key": pl.Series([k for k, _ in rows], dtype=pl.Int32),
            "ts": pl.Series([t for _, t in rows], dtype=pl.Int64),
            "x": pl.Series(draw(float_values(m)), dtype=pl.Float64),
            "i": pl.Series(draw(int_values(m)), dtype=pl.Int64),
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
