"""The join kernels (:mod:`vstream.kernels.join`) against brute-force references.

- symmetric joins: ``probe_pairs`` (RANGE and WINDOWS; state rows in a
  ``sort_by_key_time`` index and in a scanned tail) against every pair of rows with the
  same key, and the matched bits it sets on both sides; ``evict_before`` and
  ``settle_windows`` (unmatched rows or windows, retired rows, alive flags, the smallest
  live time); the kernels together as ``SymmetricJoinOp`` runs them on interleaved
  batches: every pair exactly once, and exactly the rows (windows) without a partner
  reported unmatched at the end;
- ``first_window`` against the definition of the window grid;
- as-of joins: ``sort_by_key_time`` against a stable ``np.lexsort``; ``asof_probe``
  against Polars' ``join_asof`` rules written out in Python, and against ``join_asof``
  itself; ``asof_keep`` against what a later left row can still match;
- lookup joins: ``dense_lookup`` over the whole int64 range.

The kernels are called with the dtypes ``vstream.ops.join`` gives them: int64 times,
bits, rows and scalars, int32 key ids, bool alive flags.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vstream.kernels.hashing import dense_lookup
from vstream.kernels.join import (
    BACKWARD,
    FORWARD,
    NEAREST,
    RANGE,
    WINDOWS,
    asof_keep,
    asof_probe,
    evict_before,
    first_window,
    probe_pairs,
    settle_windows,
    sort_by_key_time,
)

MIN = -(2**63)
MAX = 2**63 - 1
POLARS_STRATEGY = {BACKWARD: "backward", FORWARD: "forward", NEAREST: "nearest"}

#: (size, slide, offset): windows [s, s + size) with s = k * slide + offset
Grid = tuple[int, int, int]
#: (probe row, state row, window start; 0 for RANGE)
Pair = tuple[int, int, int]
Row = tuple[int, int]  # (key id, time)

_time = st.integers(-8, 8)  # a narrow range: equal times and partners are common
_alive = st.sampled_from([True, True, True, False])


def _clamp(x: int) -> int:
    return max(MIN, min(MAX, x))


# ---------------------------------------------------------------------- references
def _windows_of(t: int, grid: Grid) -> list[int]:
    """The starts of the windows holding ``t``, oldest first (every grid point near ``t``
    tried)."""
    size, slide, offset = grid
    top = (t - offset) // slide + 1
    starts = [k * slide + offset for k in range(top - size // slide - 3, top + 1)]
    return [s for s in starts if s <= t < s + size]


def _pairs_reference(
    probe: list[Row],
    state: list[Row],
    alive: list[bool],
    mode: int,
    bounds: tuple[int, int],
    grid: Grid,
    w_min: int = MIN,
) -> tuple[list[Pair], list[int], list[int]]:
    """Every (probe row, state row, window) with the same key (not -1), the state row alive,
    and ``lo <= state.t - probe.t <= hi`` (RANGE) or the window holding both times
    starting at ``w_min`` or later (WINDOWS); and the bits each row gets (bit j: its j-th
    window)."""
    lo, hi = bounds
    pairs: list[Pair] = []
    p_bits = [0] * len(probe)
    s_bits = [0] * len(state)
    for i, (k, t) in enumerate(probe):
        for r, (kr, u) in enumerate(state):
            if k < 0 or kr != k or not alive[r]:
                continue
            if mode == RANGE:
                if lo <= u - t <= hi:
                    pairs.append((i, r, 0))
                    p_bits[i] |= 1
                    s_bits[r] |= 1
                continue
            wt, wu = _windows_of(t, grid), _windows_of(u, grid)
            for s in sorted(set(wt) & set(wu)):
                if s < w_min:  # a closed window
                    continue
                pairs.append((i, r, s))
                p_bits[i] |= 1 << wt.index(s)
                s_bits[r] |= 1 << wu.index(s)
    return sorted(pairs), p_bits, s_bits


def _low(t: np.ndarray, alive: np.ndarray, n: int) -> int:
    live = [int(x) for x, a in zip(t[:n], alive[:n], strict=True) if a]
    return min(live, default=MAX)


def _asof_reference(left: list[Row], right: list[Row], strategy: int, tol: int) -> list[int]:
    """Polars' ``join_asof`` by key, in Python: backward takes the last row with time <= t
    (the latest arrival among equal times), forward the first with time >= t (the
    earliest), nearest the closer time (the later on a tie) and its latest arrival;
    a match further than ``tol`` (>= 0) is none. Key -1 matches nothing."""
    out = []
    for k, t in left:
        cands = [(u, r) for r, (kr, u) in enumerate(right) if k >= 0 and kr == k]
        back = max((c for c in cands if c[0] <= t), default=None)
        fwd = min((c for c in cands if c[0] >= t), default=None)
        if strategy == BACKWARD:
            best = back
        elif strategy == FORWARD:
            best = fwd
        elif fwd is None:
            best = back
        else:  # the closer time, the later one on a tie; among its rows, the last
            time = fwd[0] if back is None or fwd[0] - t <= t - back[0] else back[0]
            best = max(c for c in cands if c[0] == time)
        if best is not None and tol >= 0 and abs(best[0] - t) > tol:
            best = None
        out.append(-1 if best is None else best[1])
    return out


def _index(right: list[Row], n_keys: int) -> tuple[np.ndarray, ...]:
    """What ``sort_by_key_time`` returns, by a stable Python sort on (key, time, arrival);
    rows with key -1 left out."""
    order = sorted((r for r, (k, _) in enumerate(right) if k >= 0), key=lambda r: (*right[r], r))
    keys = np.array([right[r][0] for r in order], np.int64)
    return (
        np.array(order, np.int64),
        np.array([right[r][1] for r in order], np.int64),
        np.searchsorted(keys, np.arange(n_keys), "left").astype(np.int64),
        np.searchsorted(keys, np.arange(n_keys), "right").astype(np.int64),
    )


def _probe_asof(
    left: list[Row], index: tuple[np.ndarray, ...], strategy: int, tol: int
) -> list[int]:
    order, sorted_t, lo, hi = index
    l_kid, l_t = _arrays(left)
    # the per-key cursor only speeds searches up: start it anywhere (in range or not)
    # and carry it from one call to the next, as the operator does
    rng = np.random.default_rng(len(left))
    cursor = rng.integers(-2, len(sorted_t) + 2, size=lo.shape[0]).astype(np.int64)
    rows = np.stack([sorted_t, order], axis=1).astype(np.int64)
    keys = np.stack([lo, hi, cursor], axis=1).astype(np.int64)
    half = len(left) // 2
    parts = [
        asof_probe(l_t[s], l_kid[s], rows, keys, np.int64(strategy), np.int64(tol))
        for s in (slice(0, half), slice(half, None))
    ]
    got = np.concatenate(parts)
    assert got.dtype == np.int64
    return got.tolist()  # type: ignore[no-any-return]


def _arrays(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """Key ids (int32) and times (int64) of ``rows``."""
    kid = np.array([k for k, _ in rows], np.int32)
    t = np.array([t for _, t in rows], np.int64)
    return kid, t


class _Side:
    """One input's rows as ``SymmetricJoinOp`` keeps them: arrays in arrival order with
    room past ``n``, rows ``0..indexed`` in a (key, time) index of the rows alive when it
    was built, the rows added since scanned by the probe. The room past ``n`` holds live
    rows of key 0 at time 0, so a kernel reading past ``n`` shows."""

    def __init__(self, cap: int) -> None:
        self.n = 0
        self.t = np.zeros(cap, np.int64)
        self.kid = np.zeros(cap, np.int32)
        self.alive = np.ones(cap, np.bool_)
        self.bits = np.zeros(cap, np.int64)
        self.next_j = np.zeros(cap, np.int64)
        self.indexed = 0
        empty = np.zeros(0, np.int64)
        self.index: tuple[np.ndarray, ...] = (empty, empty, empty, empty)

    def append(self, kid: np.ndarray, t: np.ndarray, alive: np.ndarray, bits: np.ndarray) -> None:
        s = slice(self.n, self.n + kid.shape[0])
        self.t[s], self.kid[s], self.alive[s], self.bits[s] = t, kid, alive, bits
        self.n = s.stop

    def reindex(self, n_keys: int, *, kernel: bool) -> None:
        """Index the live rows, with ``sort_by_key_time`` as the operator does, or with
        the Python reference (to test a probe apart from the sort)."""
        kid = np.where(self.alive[: self.n], self.kid[: self.n], -1).astype(np.int32)
        if kernel:
            self.index = sort_by_key_time(kid, self.t[: self.n], np.int64(n_keys))
        else:
            self.index = _index(
                list(zip(kid.tolist(), self.t[: self.n].tolist(), strict=True)), n_keys
            )
        self.indexed = self.n

    def probe(
        self,
        kid: np.ndarray,
        t: np.ndarray,
        bits: np.ndarray,
        mode: int,
        bounds: tuple[int, int],
        grid: Grid,
        w_min: int = MIN,
    ) -> list[Pair]:
        lo, hi = bounds
        size, slide, offset = grid
        order, sorted_t, seg_lo, seg_hi = self.index
        pi, sr, ws = probe_pairs(
            t,
            kid,
            bits,
            order,
            sorted_t,
            seg_lo,
            seg_hi,
            self.t,
            self.kid,
            self.bits,
            np.int64(self.indexed),
            np.int64(self.n),
            np.int64(mode),
            np.int64(lo),
            np.int64(hi),
            np.int64(size),
            np.int64(slide),
            np.int64(offset),
            np.int64(w_min),
        )
        assert pi.dtype == sr.dtype == ws.dtype == np.int64
        return list(zip(pi.tolist(), sr.tolist(), ws.tolist(), strict=True))


# ---------------------------------------------------------------------- strategies
@st.composite
def grids(draw: st.DrawFn) -> Grid:
    """slide <= size (the planner refuses more), up to 5 windows per event, any offset."""
    slide = draw(st.integers(1, 6))
    size = slide * draw(st.integers(1, 4)) + draw(st.integers(0, slide - 1))
    return size, slide, draw(st.integers(-2 * slide, 2 * slide))


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int]:
    """lo <= hi; sometimes unbounded on one side (the operator clamps to int64)."""
    lo = draw(st.integers(-8, 8))
    hi = lo + draw(st.integers(0, 10))
    if draw(st.integers(0, 7)) == 0:
        lo = MIN
    if draw(st.integers(0, 7)) == 0:
        hi = MAX
    return lo, hi


def rows(
    n_keys: int,
    *,
    max_size: int,
    null_keys: bool = True,
    unknown: bool = False,
    time: st.SearchStrategy[int] = _time,
    unique: bool = False,
) -> st.SearchStrategy[list[Row]]:
    """(key id, time) rows; key -1 (a null key) if ``null_keys``, and with ``unknown``
    the id ``n_keys`` (a key the other side has never seen). The length is drawn first
    (:func:`_sized`): hypothesis' own lists are mostly short, and partners rare in them."""
    row = st.tuples(st.integers(-1 if null_keys else 0, n_keys if unknown else n_keys - 1), time)
    if unique:  # as many rows as there are distinct ones, at most
        return st.lists(row, max_size=max_size, unique=True)
    return _sized(row, max_size)


def _sized(elem: st.SearchStrategy[Any], max_size: int) -> st.SearchStrategy[list[Any]]:
    """Lists of a length drawn first, uniform in ``[0, max_size]``."""
    return st.integers(0, max_size).flatmap(lambda n: st.lists(elem, min_size=n, max_size=n))


@st.composite
def asof_inputs(draw: st.DrawFn, n_keys: int, *, unique: bool = False) -> tuple[list[Row], ...]:
    """Left rows (keys -1 and ``n_keys`` included) and right rows (one per (key, time) if
    ``unique``). In half the examples the right times are multiples of 4 in [-8, 8]: many
    left rows halfway between two right rows (the tie of nearest)."""
    if draw(st.booleans()):
        r_time, l_time = st.integers(-2, 2).map(lambda x: 4 * x), st.integers(-10, 10)
    else:
        r_time, l_time = _time, st.integers(-10, 10)
    right = draw(rows(n_keys, max_size=30, null_keys=False, time=r_time, unique=unique))
    left = draw(rows(n_keys, max_size=30, unknown=True, time=l_time))
    return left, right


# ---------------------------------------------------------------------- probes
@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    mode=st.sampled_from([RANGE, WINDOWS]),
    grid=grids(),
    bounds=ranges(),
    n_keys=st.integers(1, 3),
)
def test_probe_pairs_matches_all_pairs(
    data: st.DataObject, mode: int, grid: Grid, bounds: tuple[int, int], n_keys: int
) -> None:
    """State rows ``0..indexed`` in the index (those alive when it was built), the others
    scanned; probe keys -1 and unknown to the index (new since, or to the whole side);
    windowed, the windows before a grid point ``w_min`` closed (or none).
    The pairs come out exactly once; matched bits are OR-ed into both sides' bits."""
    state = data.draw(rows(n_keys, max_size=40))
    indexed = data.draw(st.integers(0, len(state)))
    # rows retired before the index was built are left out of it; the scanned rows are
    # live (the kernel does not read alive flags: the operator never asks it to match a
    # row retired since, as no probe row can be its partner any more)
    alive = data.draw(st.lists(_alive, min_size=indexed, max_size=indexed))
    alive += [True] * (len(state) - indexed)
    # the index knows the keys of its rows, perhaps more
    index_keys = max([k + 1 for k, _ in state[:indexed]], default=0)
    index_keys = data.draw(st.integers(index_keys, n_keys))
    probe = data.draw(rows(n_keys, max_size=30, unknown=True))
    bits = st.integers(0, 2**20)
    s_bits0 = data.draw(st.lists(bits, min_size=len(state), max_size=len(state)))
    p_bits0 = data.draw(st.lists(bits, min_size=len(probe), max_size=len(probe)))

    side = _Side(len(state) + 3)
    s_kid, s_t = _arrays(state)
    s_alive = np.array(alive, np.bool_)
    s_bits = np.array(s_bits0, np.int64)
    side.append(s_kid[:indexed], s_t[:indexed], s_alive[:indexed], s_bits[:indexed])
    # the index from the Python reference: a sort bug shows in the sort's own test
    side.reindex(index_keys, kernel=False)
    side.append(s_kid[indexed:], s_t[indexed:], s_alive[indexed:], s_bits[indexed:])
    p_kid, p_t = _arrays(probe)
    p_bits = np.array(p_bits0, np.int64)
    _, slide, offset = grid
    w_min = data.draw(
        st.one_of(st.just(MIN), st.integers(-4, 4).map(lambda k: k * slide + offset))
    )
    got = side.probe(p_kid, p_t, p_bits, mode, bounds, grid, w_min)

    want, want_p, want_s = _pairs_reference(probe, state, alive, mode, bounds, grid, w_min)
    assert sorted(got) == want
    assert p_bits.tolist() == [a | b for a, b in zip(p_bits0, want_p, strict=True)]
    assert side.bits[: side.n].tolist() == [a | b for a, b in zip(s_bits0, want_s, strict=True)]
    assert side.alive[: side.n].tolist() == alive  # probing retires nothing


_FAR = [-(2**61), -(2**61) + 1, -7, 0, 5, 2**61 - 1, 2**61]
_FAR_BOUNDS = [MIN, -(2**62) - 1, -(2**62), -(2**61), -(2**61) - 1, -3, 0, 2]
_FAR_BOUNDS += [2**61, 2**61 + 1, 2**62, 2**62 + 1, MAX]


@settings(max_examples=150, deadline=None)
@given(
    state=st.lists(st.tuples(st.integers(0, 1), st.sampled_from(_FAR)), max_size=12),
    probe=st.lists(st.tuples(st.integers(0, 1), st.sampled_from(_FAR)), max_size=12),
    bounds=st.lists(st.sampled_from(_FAR_BOUNDS), min_size=2, max_size=2).map(sorted),
)
def test_probe_range_with_far_apart_times_and_wide_bounds(
    state: list[Row], probe: list[Row], bounds: list[int]
) -> None:
    """Times as far as 2**62 apart (nanoseconds since 1970 stay below 2**61 until 2043)
    and bounds anywhere in int64, around the +-2**62 and +-2**61 edges."""
    lo, hi = bounds
    side = _Side(len(state) + 1)
    s_kid, s_t = _arrays(state)
    cut = len(state) // 2  # half in the index, half scanned
    one, zero = np.ones(len(state), np.bool_), np.zeros(len(state), np.int64)
    side.append(s_kid[:cut], s_t[:cut], one[:cut], zero[:cut])
    side.reindex(2, kernel=False)
    side.append(s_kid[cut:], s_t[cut:], one[cut:], zero[cut:])
    p_kid, p_t = _arrays(probe)
    got = side.probe(p_kid, p_t, np.zeros(len(probe), np.int64), RANGE, (lo, hi), (1, 1, 0))
    everyone = [True] * len(state)
    assert sorted(got) == _pairs_reference(probe, state, everyone, RANGE, (lo, hi), (1, 1, 0))[0]


@pytest.mark.parametrize("indexed", [True, False])
def test_probe_pairs_examples(indexed: bool) -> None:
    # windows [s, s + 10), s = 5k: 7 is in [0, 10) and [5, 15), 12 in [5, 15) and [10, 20)
    side = _Side(4)
    side.append(
        np.array([0, 0, 1], np.int32),
        np.array([12, 30, 12], np.int64),
        np.ones(3, np.bool_),
        np.zeros(3, np.int64),
    )
    if indexed:
        side.reindex(2, kernel=True)
    kid, t = np.array([0, 0], np.int32), np.array([7, -3], np.int64)
    bits = np.zeros(2, np.int64)
    assert side.probe(kid, t, bits, WINDOWS, (0, 0), (10, 5, 0)) == [(0, 0, 5)]
    # [5, 15) is the probe row's second window and the state row's first
    assert bits.tolist() == [0b10, 0]
    assert side.bits[:3].tolist() == [0b01, 0, 0]
    # RANGE: -2 <= state.t - probe.t <= 5 (12 - 7 = 5: the bound is included)
    bits[:] = 0
    assert side.probe(kid, t, bits, RANGE, (-2, 5), (10, 5, 0)) == [(0, 0, 0)]
    assert bits.tolist() == [1, 0]


@pytest.mark.parametrize("indexed", [True, False])
def test_probe_pairs_with_more_windows_than_bits(indexed: bool) -> None:
    """An inner windowed join may put an event in more than 63 windows (the bits are then
    meaningless, but every shared window still gives one pair)."""
    side = _Side(1)
    one = np.ones(1, np.bool_)
    side.append(np.zeros(1, np.int32), np.array([30], np.int64), one, np.zeros(1, np.int64))
    if indexed:
        side.reindex(1, kernel=True)
    kid, t, bits = np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1, np.int64)
    got = side.probe(kid, t, bits, WINDOWS, (0, 0), (100, 1, 0))
    assert sorted(got) == [(0, 0, s) for s in range(-69, 1)]  # the 70 windows of 0 and 30


# ---------------------------------------------------------------------- retiring rows
@settings(max_examples=200, deadline=None)
@given(
    state=_sized(st.tuples(_time, _alive, st.sampled_from([0, 0, 0, 1, 6])), 60),
    spare=st.integers(0, 3),
    thresh=st.one_of(st.integers(-10, 10), st.sampled_from([MIN, MAX])),
    outer=st.booleans(),
)
def test_evict_before_matches_reference(
    state: list[tuple[int, bool, int]], spare: int, thresh: int, outer: bool
) -> None:
    n = len(state)
    # rows past n (alive, early) must be left alone
    t = np.array([r[0] for r in state] + [-99] * spare, np.int64)
    alive = np.array([r[1] for r in state] + [True] * spare, np.bool_)
    bits = np.array([r[2] for r in state] + [0] * spare, np.int64)
    gone = [r for r in range(n) if alive[r] and t[r] < thresh]
    want_alive = alive.copy()
    want_alive[gone] = False
    want_rows = [r for r in gone if bits[r] == 0] if outer else []
    bits0 = bits.copy()

    got, dead, low = evict_before(t, alive, bits, np.int64(n), np.int64(thresh), outer)
    assert got.dtype == np.int64
    assert got.tolist() == want_rows
    assert dead == len(gone)
    assert alive.tolist() == want_alive.tolist()
    assert low == _low(t, want_alive, n)
    assert bits.tolist() == bits0.tolist()


@st.composite
def settle_states(draw: st.DrawFn) -> tuple[Grid, list[tuple[int, bool, int, int]]]:
    """A grid and rows (t, alive, bits, next_j): a live row has windows left to settle."""
    grid = draw(grids())
    out = []
    for t, alive in draw(_sized(st.tuples(_time, _alive), 40)):
        count = len(_windows_of(t, grid))
        next_j = draw(st.integers(0, count - 1))
        out.append((t, alive, draw(st.integers(0, 2**count - 1)), next_j))
    return grid, out


def _settle_reference(
    t: np.ndarray,
    alive: np.ndarray,
    bits: np.ndarray,
    next_j: np.ndarray,
    n: int,
    wm: int,
    grid: Grid,
    outer: bool,
) -> tuple[list[tuple[int, int]], int]:
    """Updates ``alive`` and ``next_j``; returns the unmatched (row, window) and the dead."""
    size = grid[0]
    unmatched = []
    dead = 0
    for r in range(n):
        if not alive[r]:
            continue
        starts = _windows_of(int(t[r]), grid)
        ended = sum(s + size <= wm for s in starts)  # windows end in order: a prefix
        j = max(int(next_j[r]), ended)
        if outer:
            unmatched += [(r, starts[i]) for i in range(next_j[r], j) if not bits[r] >> i & 1]
        next_j[r] = j
        if j == len(starts):
            alive[r] = False
            dead += 1
    return unmatched, dead


@settings(max_examples=200, deadline=None)
@given(
    state=settle_states(),
    wms=st.lists(st.one_of(st.integers(-20, 40), st.just(MAX)), min_size=2, max_size=2),
    spare=st.integers(0, 3),
    outer=st.booleans(),
)
def test_settle_windows_matches_reference(
    state: tuple[Grid, list[tuple[int, bool, int, int]]],
    wms: list[int],
    spare: int,
    outer: bool,
) -> None:
    """Two rising watermarks: the second call resumes where the first stopped (next_j)."""
    grid, rows_ = state
    n = len(rows_)
    t = np.array([r[0] for r in rows_] + [-99] * spare, np.int64)
    alive = np.array([r[1] for r in rows_] + [True] * spare, np.bool_)
    bits = np.array([r[2] for r in rows_] + [0] * spare, np.int64)
    next_j = np.array([r[3] for r in rows_] + [0] * spare, np.int64)
    want_alive, want_next = alive.copy(), next_j.copy()
    size, slide, offset = grid
    for wm in sorted(wms):
        want, want_dead = _settle_reference(t, want_alive, bits, want_next, n, wm, grid, outer)
        got_rows, got_starts, dead, low = settle_windows(
            t,
            alive,
            bits,
            next_j,
            np.int64(n),
            np.int64(wm),
            np.int64(size),
            np.int64(slide),
            np.int64(offset),
            outer,
        )
        assert got_rows.dtype == got_starts.dtype == np.int64
        assert list(zip(got_rows.tolist(), got_starts.tolist(), strict=True)) == want
        assert dead == want_dead
        assert alive.tolist() == want_alive.tolist()
        assert next_j.tolist() == want_next.tolist()
        assert low == _low(t, want_alive, n)


# ---------------------------------------------------------------------- kernels together
@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    mode=st.sampled_from([RANGE, WINDOWS]),
    grid=grids(),
    bounds=ranges(),
    n_keys=st.integers(1, 3),
)
def test_streamed_join_pairs_once_and_reports_the_unmatched(
    data: st.DataObject, mode: int, grid: Grid, bounds: tuple[int, int], n_keys: int
) -> None:
    """Batches of both sides as SymmetricJoinOp feeds them (each probes the other side's
    rows, sorted by sort_by_key_time now and then and scanned since, then joins its own
    side): every pair of the whole input comes out once, whatever the arrival order; at
    the end (watermark MAX) evict_before / settle_windows report exactly the rows (RANGE)
    or (row, window)s (WINDOWS) that found no partner."""
    batch = st.tuples(st.integers(0, 1), st.booleans(), rows(n_keys, max_size=8))
    batches = data.draw(_sized(batch, 8))
    inputs: tuple[list[Row], list[Row]] = ([], [])
    for port, _, rows_ in batches:
        inputs[port].extend(rows_)
    sides = (_Side(len(inputs[0]) + 1), _Side(len(inputs[1]) + 1))
    lower, upper = bounds
    got: list[Pair] = []
    for port, reindex, rows_ in batches:
        mine, other = sides[port], sides[1 - port]
        kid, t = _arrays(rows_)
        bits = np.zeros(len(rows_), np.int64)
        if reindex:
            other.reindex(n_keys, kernel=True)
        # right.t - left.t in [lower, upper]; the right side probes with state = left
        lo_hi = bounds if port == 0 else (_clamp(-upper), _clamp(-lower))
        for i, r, w in other.probe(kid, t, bits, mode, lo_hi, grid):
            got.append((mine.n + i, r, w) if port == 0 else (r, mine.n + i, w))
        mine.append(kid, t, np.ones(len(rows_), np.bool_), bits)

    everyone = [True] * len(inputs[1])
    want, _, _ = _pairs_reference(inputs[0], inputs[1], everyone, mode, bounds, grid)
    assert sorted(got) == want

    size, slide, offset = grid
    for s, side in enumerate(sides):
        partnered = {(p[s], p[2]) for p in want}
        if mode == RANGE:
            out, dead, low = evict_before(
                side.t, side.alive, side.bits, np.int64(side.n), np.int64(MAX), True
            )
            partnered_rows = {r for r, _ in partnered}
            assert out.tolist() == [r for r in range(side.n) if r not in partnered_rows]
        else:
            out_rows, out_starts, dead, low = settle_windows(
                side.t,
                side.alive,
                side.bits,
                side.next_j,
                np.int64(side.n),
                np.int64(MAX),
                np.int64(size),
                np.int64(slide),
                np.int64(offset),
                True,
            )
            lonely = [
                (r, w)
                for r, (_, t_r) in enumerate(inputs[s])
                for w in _windows_of(t_r, grid)
                if (r, w) not in partnered
            ]
            assert list(zip(out_rows.tolist(), out_starts.tolist(), strict=True)) == lonely
        assert dead == side.n
        assert not side.alive[: side.n].any()
        assert low == MAX


# ---------------------------------------------------------------------- window grid
@settings(max_examples=200, deadline=None)
@given(
    t=st.integers(-(2**62), 2**62),
    slide=st.one_of(st.integers(1, 10), st.integers(1, 10**12)),
    extra=st.one_of(st.integers(0, 30), st.integers(0, 10**12)),
    offset=st.integers(-(10**12), 10**12),
)
def test_first_window_is_the_oldest_window_holding_t(
    t: int, slide: int, extra: int, offset: int
) -> None:
    size = slide + extra
    s = int(first_window(np.int64(t), np.int64(size), np.int64(slide), np.int64(offset)))
    assert (s - offset) % slide == 0  # on the grid
    assert s <= t < s + size  # holds t
    assert s - slide + size <= t  # the window before ends at or before t
    if size // slide < 40:
        assert s == _windows_of(t, (size, slide, offset))[0]


# ---------------------------------------------------------------------- as-of joins
@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n_keys=st.integers(1, 8),
    n=st.integers(0, 60),
    shape=st.sampled_from(["random", "sorted", "reversed"]),
)
def test_sort_by_key_time_matches_stable_lexsort(
    data: st.DataObject, n_keys: int, n: int, shape: str
) -> None:
    """Sorted and reversed times: the best and worst case of a sort within keys; rows with
    key -1 are left out."""
    kid = np.array(
        data.draw(st.lists(st.integers(-1, n_keys - 1), min_size=n, max_size=n)), np.int32
    )
    t = np.array(data.draw(st.lists(_time, min_size=n, max_size=n)), np.int64)
    if shape != "random":
        t = np.sort(t)[:: 1 if shape == "sorted" else -1].copy()
    order, sorted_t, lo, hi = sort_by_key_time(kid, t, np.int64(n_keys))
    assert order.dtype == sorted_t.dtype == lo.dtype == hi.dtype == np.int64
    ref = np.lexsort((t, kid))  # stable: equal (key, time) keep their arrival order
    ref = ref[kid[ref] >= 0]
    assert order.tolist() == ref.tolist()
    assert sorted_t.tolist() == t[ref].tolist()
    keys = kid[ref]
    assert lo.tolist() == np.searchsorted(keys, np.arange(n_keys), "left").tolist()
    assert hi.tolist() == np.searchsorted(keys, np.arange(n_keys), "right").tolist()
    want = _index(list(zip(kid.tolist(), t.tolist(), strict=True)), n_keys)
    assert [a.tolist() for a in want] == [
        order.tolist(),
        sorted_t.tolist(),
        lo.tolist(),
        hi.tolist(),
    ]


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n_keys=st.integers(1, 4),
    strategy=st.sampled_from([BACKWARD, FORWARD, NEAREST]),
    tol=st.one_of(st.just(-1), st.integers(0, 6)),
)
def test_asof_probe_matches_reference(
    data: st.DataObject, n_keys: int, strategy: int, tol: int
) -> None:
    """Equal times on the right, left keys -1 and unknown to the right side, empty sides."""
    left, right = data.draw(asof_inputs(n_keys))
    got = _probe_asof(left, _index(right, n_keys), strategy, tol)
    assert got == _asof_reference(left, right, strategy, tol)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    n_keys=st.integers(1, 4),
    strategy=st.sampled_from([BACKWARD, FORWARD, NEAREST]),
    tol=st.one_of(st.just(-1), st.integers(0, 6)),
)
def test_asof_probe_matches_polars_join_asof(
    data: st.DataObject, n_keys: int, strategy: int, tol: int
) -> None:
    """Against ``join_asof`` itself, on an index built by ``sort_by_key_time`` as the
    operator builds it (one right row per (key, time): ties within a time are the
    reference's business)."""
    left, right = data.draw(asof_inputs(n_keys, unique=True))
    r_kid, r_t = _arrays(right)
    got = _probe_asof(left, sort_by_key_time(r_kid, r_t, np.int64(n_keys)), strategy, tol)

    schema = {"k": pl.Int32, "t": pl.Int64, "row": pl.Int64}
    rdf = pl.DataFrame([(k, t, r) for r, (k, t) in enumerate(right)], schema=schema, orient="row")
    ldf = pl.DataFrame(
        [(k if k >= 0 else None, t, i) for i, (k, t) in enumerate(left)],
        schema=schema,
        orient="row",
    )
    joined = ldf.sort("t").join_asof(
        rdf.sort("t"),
        on="t",
        by="k",
        strategy=POLARS_STRATEGY[strategy],  # type: ignore[arg-type]
        tolerance=tol if tol >= 0 else None,
        check_sortedness=False,  # sorted by t: every key's rows are sorted too
    )
    want = joined.sort("row").get_column("row_right").fill_null(-1).to_list()
    assert got == want


@pytest.mark.parametrize(
    ("strategy", "tol", "want"),
    [
        (BACKWARD, -1, [0, 2, 2, -1]),  # t=7: the later of the two rows at 7
        (FORWARD, -1, [1, 1, 3, -1]),  # t=5 and t=7: the earlier of the two rows at 7
        (NEAREST, -1, [2, 2, 3, -1]),  # t=5: 3 and 7 tie, 7 wins; t=8: 7 and 9, 9 wins
        (NEAREST, 1, [-1, 2, 3, -1]),
        (BACKWARD, 1, [-1, 2, 2, -1]),
        (FORWARD, 0, [-1, 1, -1, -1]),
    ],
)
def test_asof_probe_ties_as_in_polars(strategy: int, tol: int, want: list[int]) -> None:
    right: list[Row] = [(0, 3), (0, 7), (0, 7), (0, 9)]
    left: list[Row] = [(0, 5), (0, 7), (0, 8), (-1, 5)]
    assert _probe_asof(left, _index(right, 1), strategy, tol) == want
    assert _asof_reference(left, right, strategy, tol) == want
    rdf = pl.DataFrame({"k": [0] * 4, "t": [3, 7, 7, 9], "row": [0, 1, 2, 3]})
    ldf = pl.DataFrame({"k": [0, 0, 0, None], "t": [5, 7, 8, 5]})
    joined = ldf.join_asof(
        rdf,
        on="t",
        by="k",
        strategy=POLARS_STRATEGY[strategy],  # type: ignore[arg-type]
        tolerance=tol if tol >= 0 else None,
        check_sortedness=False,
    )
    assert joined.get_column("row").fill_null(-1).to_list() == want


def test_asof_nearest_without_an_earlier_row_takes_the_last_of_equal_times() -> None:
    """As in Polars: nearest takes the last row of the chosen time, also when no row lies
    before the left row's time."""
    right: list[Row] = [(0, 4), (0, 4)]
    left: list[Row] = [(0, 3)]
    assert _probe_asof(left, _index(right, 1), NEAREST, -1) == [1]
    assert _asof_reference(left, right, NEAREST, -1) == [1]
    rdf = pl.DataFrame({"t": [4, 4], "row": [0, 1]})
    assert pl.DataFrame({"t": [3]}).join_asof(rdf, on="t", strategy="nearest")["row"].item() == 1


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n_keys=st.integers(1, 4),
    bound=st.one_of(st.integers(-10, 10), st.sampled_from([MIN, MAX])),
    backward=st.booleans(),
    tol=st.one_of(st.just(-1), st.integers(0, 6)),
)
def test_asof_keep_keeps_what_later_left_rows_match(
    data: st.DataObject, n_keys: int, bound: int, backward: bool, tol: int
) -> None:
    """The kept rows: time >= bound, and (backward) each key's last row before it unless
    older than bound - tolerance; a left row with time >= bound matches the same right
    row among the kept rows as among all."""
    _, right = data.draw(asof_inputs(n_keys))
    index = _index(right, n_keys)
    order, sorted_t, lo, hi = index
    floor = max(bound - tol, MIN) if tol >= 0 else MIN
    keep = asof_keep(sorted_t, lo, hi, np.int64(bound), backward, np.int64(floor))
    want = [int(u) >= bound for u in sorted_t]
    if backward:
        for k in range(n_keys):
            before = [p for p in range(lo[k], hi[k]) if sorted_t[p] < bound]
            if before and sorted_t[before[-1]] >= floor:
                want[before[-1]] = True
    assert keep.tolist() == want

    kept = sorted(order[keep].tolist())
    sub = [right[r] for r in kept]
    later = st.integers(bound, min(bound + 12, MAX)) if bound > MIN else _time
    left = data.draw(st.lists(st.tuples(st.integers(-1, n_keys - 1), later), max_size=20))
    for strategy in [BACKWARD, NEAREST] if backward else [FORWARD]:
        on_kept = [-1 if r < 0 else kept[r] for r in _asof_reference(left, sub, strategy, tol)]
        assert on_kept == _asof_reference(left, right, strategy, tol)


# ---------------------------------------------------------------------- lookup joins
@st.composite
def dense_tables(draw: st.DrawFn) -> tuple[list[int], int, list[int]]:
    """(values, base, dense) with dense covering [base, base + len) inside int64; values
    anywhere in int64, many near the table."""
    dense = draw(st.lists(st.integers(-1, 2**31 - 1), max_size=20))
    base = draw(st.one_of(st.integers(-50, 50), st.integers(MIN, MAX - max(len(dense) - 1, 0))))
    near = st.integers(base - 3, base + len(dense) + 3).map(_clamp)
    values = draw(st.lists(st.one_of(near, st.integers(MIN, MAX), st.sampled_from([MIN, MAX]))))
    return values, base, dense


@settings(max_examples=200, deadline=None)
@given(table=dense_tables())
def test_dense_lookup_matches_reference(table: tuple[list[int], int, list[int]]) -> None:
    values, base, dense = table
    got = dense_lookup(np.array(values, np.int64), np.int64(base), np.array(dense, np.int32))
    assert got.dtype == np.int32  # the dense array's own dtype (ids or table rows)
    assert got.tolist() == [dense[v - base] if 0 <= v - base < len(dense) else -1 for v in values]
