"""Join kernels over sorted segments: each side's kept rows are indexed by (key, time)
(:func:`sort_by_key_time`); interval, windowed and regular joins probe a time range of
the key's segment (:func:`probe_pairs`), as-of joins the nearest time
(:func:`asof_probe`).

A symmetric join keeps each side's rows in arrival order (struct-of-arrays: event time,
key id, alive flag, matched bits); a batch of the other side probes them.

``mode`` of the predicate: :data:`RANGE` (``lo <= state.t - probe.t <= hi``) or
:data:`WINDOWS` (the pair shares one or more windows ``[s, s + size)``,
``s = k * slide + offset``; one output per shared window).
"""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit

__all__ = [
    "BACKWARD",
    "FORWARD",
    "NEAREST",
    "RANGE",
    "WINDOWS",
    "asof_keep",
    "asof_probe",
    "evict_before",
    "first_window",
    "probe_pairs",
    "settle_windows",
    "sort_by_key_time",
]

RANGE = 0
WINDOWS = 1
BACKWARD = 0
FORWARD = 1
NEAREST = 2


@njit(cache=True, nogil=True)
def _floordiv(a: np.int64, b: np.int64) -> np.int64:
    q = a // b
    return q


@njit(cache=True, nogil=True)
def first_window(t: np.int64, size: np.int64, slide: np.int64, offset: np.int64) -> np.int64:
    """The start of the first (earliest) window ``[s, s + size)`` that contains ``t``."""
    return _floordiv(t - size - offset, slide) * slide + offset + slide


@njit(cache=True, nogil=True)
def _n_windows(t: np.int64, size: np.int64, slide: np.int64, offset: np.int64) -> np.int64:
    last = _floordiv(t - offset, slide) * slide + offset
    return (last - first_window(t, size, slide, offset)) // slide + 1


@njit(cache=True, nogil=True)
def _grow_pairs(
    out_p: np.ndarray, out_s: np.ndarray, out_w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = out_p.shape[0]
    return (
        np.concatenate((out_p, np.empty(m, np.int64))),
        np.concatenate((out_s, np.empty(m, np.int64))),
        np.concatenate((out_w, np.empty(m, np.int64))),
    )


@njit(cache=True, nogil=True)
def evict_before(
    t: np.ndarray, alive: np.ndarray, bits: np.ndarray, n: np.int64, thresh: np.int64, outer: bool
) -> tuple[np.ndarray, int, int]:
    """Retire the live rows with ``t < thresh``.

    Returns the retired rows that never matched (when ``outer``), how many rows were
    retired, and the smallest event time among the rows still alive (``2**63 - 1`` if
    none).
    """
    out = np.empty(16, np.int64)
    m = 0
    dead = 0
    low = np.iinfo(np.int64).max
    for r in range(n):
        if not alive[r]:
            continue
        if t[r] < thresh:
            alive[r] = False
            dead += 1
            if outer and bits[r] == 0:
                if m == out.shape[0]:
                    out = np.concatenate((out, np.empty(m, np.int64)))
                out[m] = r
                m += 1
        elif t[r] < low:
            low = t[r]
    return out[:m], dead, low


@njit(cache=True, nogil=True)
def settle_windows(
    t: np.ndarray,
    alive: np.ndarray,
    bits: np.ndarray,
    next_j: np.ndarray,
    n: np.int64,
    wm: np.int64,
    size: np.int64,
    slide: np.int64,
    offset: np.int64,
    outer: bool,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Settle the windows that end at or before ``wm`` (the other side's watermark: no
    partner can come for them any more).

    Returns the (row, window start) of settled windows in which the row found no partner
    (when ``outer``), how many rows had all their windows settled (they are retired), and
    the smallest event time among the rows still alive.
    """
    rows = np.empty(16, np.int64)
    starts = np.empty(16, np.int64)
    m = 0
    dead = 0
    low = np.iinfo(np.int64).max
    for r in range(n):
        if not alive[r]:
            continue
        first = first_window(t[r], size, slide, offset)
        count = _n_windows(t[r], size, slide, offset)
        j = next_j[r]
        while j < count and first + j * slide + size <= wm:
            if outer and (bits[r] >> j) & 1 == 0:
                if m == rows.shape[0]:
                    rows = np.concatenate((rows, np.empty(m, np.int64)))
                    starts = np.concatenate((starts, np.empty(m, np.int64)))
                rows[m] = r
                starts[m] = first + j * slide
                m += 1
            j += 1
        next_j[r] = j
        if j >= count:
            alive[r] = False
            dead += 1
        elif t[r] < low:
            low = t[r]
    return rows[:m], starts[:m], dead, low


@njit(cache=True, nogil=True)
def sort_by_key_time(
    kid: np.ndarray, t: np.ndarray, n_keys: np.int64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (key, time, arrival), rows with key -1 left out: a counting sort by
    key, then a stable sort by time of each key's rows that are not in order already
    (rows arrive nearly in time order, so most keys need no sorting).

    Returns the order, the times in that order, and each key's ``[lo, hi)`` positions.
    """
    n = kid.shape[0]
    lo = np.zeros(n_keys, np.int64)
    hi = np.zeros(n_keys, np.int64)
    for i in range(n):
        if kid[i] >= 0:
            hi[kid[i]] += 1
    acc = 0
    for k in range(n_keys):
        lo[k] = acc
        acc += hi[k]
        hi[k] = lo[k]
    order = np.empty(acc, np.int64)
    for i in range(n):
        k = kid[i]
        if k >= 0:
            order[hi[k]] = i
            hi[k] += 1
    st = np.empty(acc, np.int64)
    for p in range(acc):
        st[p] = t[order[p]]
    for k in range(n_keys):
        a, b = lo[k], hi[k]
        in_order = True
        for p in range(a + 1, b):
            if st[p] < st[p - 1]:
                in_order = False
                break
        if not in_order:
            perm = np.argsort(st[a:b], kind="mergesort")
            seg_o = order[a:b][perm]
            seg_t = st[a:b][perm]
            order[a:b] = seg_o
            st[a:b] = seg_t
    return order, st, lo, hi


@njit(cache=True, nogil=True)
def _lower_bound(st: np.ndarray, a: int, b: int, x: int) -> int:
    while a < b:
        mid = (a + b) >> 1
        if st[mid] < x:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True, nogil=True)
def _emit(
    i: int,
    r: int,
    t: np.int64,
    u: np.int64,
    mode: np.int64,
    size: np.int64,
    slide: np.int64,
    offset: np.int64,
    w_min: np.int64,
    p_bits: np.ndarray,
    s_bits: np.ndarray,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
    m: int,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """Append the pair (i, r) (once per shared window starting at ``w_min`` or later) and
    set both sides' bits."""
    if mode == RANGE:
        if m == out[0].shape[0]:
            out = _grow_pairs(out[0], out[1], out[2])
        out[0][m] = i
        out[1][m] = r
        out[2][m] = 0
        p_bits[i] |= 1
        s_bits[r] |= 1
        return out, m + 1
    w = max(first_window(max(t, u), size, slide, offset), w_min)
    fp = first_window(t, size, slide, offset)
    fs = first_window(u, size, slide, offset)
    top = min(t, u)
    while w <= top:
        if m == out[0].shape[0]:
            out = _grow_pairs(out[0], out[1], out[2])
        out[0][m] = i
        out[1][m] = r
        out[2][m] = w
        m += 1
        p_bits[i] |= np.int64(1) << ((w - fp) // slide)
        s_bits[r] |= np.int64(1) << ((w - fs) // slide)
        w += slide
    return out, m


@njit(cache=True, nogil=True)
def probe_pairs(
    p_t: np.ndarray,
    p_kid: np.ndarray,
    p_bits: np.ndarray,
    order: np.ndarray,
    sorted_t: np.ndarray,
    seg_lo: np.ndarray,
    seg_hi: np.ndarray,
    s_t: np.ndarray,
    s_kid: np.ndarray,
    s_bits: np.ndarray,
    tail: np.int64,
    n: np.int64,
    mode: np.int64,
    lo: np.int64,
    hi: np.int64,
    size: np.int64,
    slide: np.int64,
    offset: np.int64,
    w_min: np.int64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs (probe row, state row, window start) of probe rows with state rows.

    State rows ``0..tail`` are indexed by :func:`sort_by_key_time` (``order``,
    ``sorted_t``, ``seg_lo``/``seg_hi`` per key): a binary search per probe row finds the
    first one of its key late enough, and the walk visits partners only. Rows
    ``tail..n``, added since, are scanned.

    :data:`RANGE`: ``lo <= state.t - probe.t <= hi``. :data:`WINDOWS`: every window
    ``[s, s + size)`` both rows are in with ``s >= w_min`` (a grid point: the first window
    still open; the earlier ones are closed for the join). Matched bits are set on both
    sides: bit 0 for :data:`RANGE`; bit j for a row's j-th window (counted from its first
    window).
    """
    cap = max(16, p_t.shape[0])
    out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64))
    m = 0
    n_keys = seg_lo.shape[0]
    i64_min = np.iinfo(np.int64).min
    i64_max = np.iinfo(np.int64).max
    for i in range(p_t.shape[0]):
        k = p_kid[i]
        if k < 0:
            continue
        t = p_t[i]
        if mode == RANGE:  # [t + lo, t + hi], saturated; empty if it lies beyond int64
            if (lo > 0 and t > i64_max - lo) or (hi < 0 and t < i64_min - hi):
                continue
            a = i64_min if lo < 0 and t < i64_min - lo else t + lo
            b = i64_max if hi > 0 and t > i64_max - hi else t + hi
        else:  # the partner's time lies in one of the windows of t
            a = first_window(t, size, slide, offset)
            b = _floordiv(t - offset, slide) * slide + offset + size - 1
            a = max(a, w_min)  # a partner in an open window is at or after its start
        if k < n_keys:
            end = seg_hi[k]
            pos = _lower_bound(sorted_t, seg_lo[k], end, a)
            while pos < end and sorted_t[pos] <= b:
                out, m = _emit(
                    i, order[pos], t, sorted_t[pos], mode, size, slide, offset, w_min,
                    p_bits, s_bits, out, m,
                )  # fmt: skip
                pos += 1
        for r in range(tail, n):
            u = s_t[r]
            if s_kid[r] == k and a <= u <= b:
                out, m = _emit(
                    i, r, t, u, mode, size, slide, offset, w_min, p_bits, s_bits, out, m
                )
    return out[0][:m], out[1][:m], out[2][:m]


@njit(cache=True, nogil=True)
def asof_probe(
    l_t: np.ndarray,
    l_kid: np.ndarray,
    rows: np.ndarray,
    keys: np.ndarray,
    strategy: np.int64,
    tolerance: np.int64,
) -> np.ndarray:
    """For each left row, the right row of its as-of match, or -1.

    ``rows[p]`` is (time, right row) of the right rows sorted by (key, time, arrival);
    ``keys[k]`` is (first position, end position, cursor) of key ``k``: what a probe
    reads sits in one or two cache lines. The cursor (kept between calls on the same
    sorted rows) is where the key's last search ended. As in Polars: backward takes the
    last row with time <= t, forward the first with time >= t, nearest the closer of the
    two times (the later on a tie) and its last row. ``tolerance`` < 0: none.
    """
    n = l_t.shape[0]
    out = np.full(n, -1, np.int64)
    n_keys = keys.shape[0]
    for i in range(n):
        k = l_kid[i]
        if k < 0 or k >= n_keys:
            continue
        lo = keys[k, 0]
        hi = keys[k, 1]
        if lo >= hi:
            continue
        t = l_t[i]
        # a = first position with time > t; a key's rows arrive nearly in time order, so
        # the key's previous answer (or the next position) is usually it already
        a = keys[k, 2]
        if a < lo or a > hi:
            a = lo
        if a < hi and rows[a, 0] <= t and (a + 1 == hi or rows[a + 1, 0] > t):
            a += 1
        if not ((a == lo or rows[a - 1, 0] <= t) and (a == hi or rows[a, 0] > t)):
            a, b = lo, hi
            while a < b:
                mid = (a + b) >> 1
                if rows[mid, 0] <= t:
                    a = mid + 1
                else:
                    b = mid
        keys[k, 2] = a
        back = a - 1 if a > lo else -1
        if strategy == BACKWARD:
            best = back
        else:
            # f = first position with time >= t
            f = back + 1 if back >= 0 else lo
            if back >= 0 and rows[back, 0] == t:
                f = back
                while f > lo and rows[f - 1, 0] == t:
                    f -= 1
            fwd = f if f < hi else -1
            if strategy == FORWARD:
                best = fwd
            elif fwd < 0:
                best = back
            elif back < 0 or rows[fwd, 0] - t <= t - rows[back, 0]:
                # the later time wins a tie; among rows with that time, the last
                best = fwd
                while best + 1 < hi and rows[best + 1, 0] == rows[fwd, 0]:
                    best += 1
            else:
                best = back
        if best >= 0 and tolerance >= 0 and abs(rows[best, 0] - t) > tolerance:
            best = -1
        out[i] = rows[best, 1] if best >= 0 else -1
    return out


@njit(cache=True, nogil=True)
def asof_keep(
    sorted_t: np.ndarray,
    seg_lo: np.ndarray,
    seg_hi: np.ndarray,
    bound: np.int64,
    backward: bool,
    floor: np.int64,
) -> np.ndarray:
    """Which sorted right rows a future left row (time >= ``bound``) may still match:
    every row with time >= ``bound``, and with ``backward`` (backward and nearest) also the
    last row of each key before it, unless it is older than ``floor`` (``bound`` minus
    the tolerance: too old for any future row)."""
    keep = np.zeros(sorted_t.shape[0], np.bool_)
    for k in range(seg_lo.shape[0]):
        lo = seg_lo[k]
        hi = seg_hi[k]
        last_before = -1
        for p in range(lo, hi):
            if sorted_t[p] >= bound:
                keep[p] = True
            else:
                last_before = p
        if backward and last_before >= 0 and sorted_t[last_before] >= floor:
            keep[last_before] = True
    return keep
