"""Window kernels: panes (slices) of tumbling and hopping windows.

Time is cut into panes of ``gcd(size, slide)``; window ``k`` covers panes
``[k*s, k*s + n)`` (``s`` = slide / pane, ``n`` = size / pane; pane 0 starts at the
offset). Each event updates the slot of its (pane, key) (:func:`pane_slots`); panes whose
windows are all past their lateness are dropped (:func:`compact_panes`).
"""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit
from vstream.kernels.aggregate import copy_slot, fold_float
from vstream.kernels.window.slots import _NO_PANE, _claim_row, _find_or_insert

__all__ = ["compact_panes", "count_below", "pane_of", "pane_slots", "take_panes"]


_EXACT = np.int64(1) << np.int64(52)


@njit(cache=True, nogil=True)
def pane_of(t, offset, pane, inv):  # type: ignore[no-untyped-def]
    """``(t - offset) // pane`` through a float multiply by ``inv = 1 / pane``, corrected
    to the exact floor; the integer division only where floats are not exact (|t -
    offset| >= 2**52) or the product landed off by one.

    Events arrive nearly but not quite in time order: stepping from the previous row's
    pane mispredicts a branch on every disordered row (the panes of 10 M slide-sweep
    events, 0.5 s panes and 2 s of disorder: stepping 72 ms, ``//`` 21 ms, this 5 ms).
    """
    d = t - offset
    if -_EXACT < d < _EXACT:
        q = np.int64(np.floor(d * inv))
        rem = d - q * pane
        if 0 <= rem < pane:
            return q
    return d // pane


@njit(cache=True, nogil=True)
def pane_slots(  # type: ignore[no-untyped-def]
    ts,
    kid,
    geom,
    tab,
    slot_pane,
    slot_key,
    F,
    In,
    init_f,
    init_i,
    slots,
    late,
    dirty_p,
    dirty_k,
    counts,
    start,
    key_slot,
    key_pane,
    dir_rows,
    dir_pane,
    fold,
    Xf,
    dense,
    deferred,
):
    """The slot of every row of a batch from row ``start`` on (new (pane, key) pairs get
    new slots, written to ``slots`` if ``geom[6]``). ``geom`` = (pane, offset,
    late_below, dirty_below, ways, rows field, keep slots, dense base);
    ``counts`` = [slots in use, late rows, dirty rows, rows that went through the table
    (and the per-key cache), the highest pane of a row that is not late, deferred rows]
    is updated in place.

    With a ``dense`` id array (empty: ``kid`` are the key ids), ``kid`` are the keys
    themselves and a row's id is ``dense[key - geom[7]]``: a key without an id (-1, or
    outside the array) defers its row, listed in ``deferred`` and counted in
    ``counts[5]``, for a second call once the key has an id (the ids of a batch of
    known integer keys without a pass of their own: Q1 ~283 -> ~270 ms). A late row is
    late whatever its key.

    Where a row's slot is found, the simplest aggregates are folded in too, so that
    they need no pass of their own: the slots' rows (the LEN field ``In[geom[5]]``, -1:
    none) and up to three float sums, means, mins or maxes without nulls, ``fold``'s
    rows ``(kind, float field, column of Xf)``. A new slot takes the row's value as it
    is (what folding it into the initial state gives), so those fields skip the
    initialisation after the loop (Q1: pane_slots + apply_rows ~155 -> ~120 ms).

    Panes below ``late_below`` have every window past its lateness: their rows get slot
    -1 and are marked in ``late``. Panes below ``dirty_below`` belong to a window that
    already fired (kept for lateness): their rows are reported as (pane, key) in
    ``dirty_*``. Stops early, returning the row to resume from, when the table is half
    full (the caller grows it); else returns len(ts). ``key_slot`` / ``key_pane`` cache
    the slots of each key's recent panes (``R`` = len / keys ways, pane mod R; slot -1:
    none): out-of-order events of a key mostly hit one of its last few panes, which skips
    the table (slide sweep with 0.5 s panes: 20 -> 12 ns a row).

    ``dir_rows`` / ``dir_pane`` are the pane directory (no rows: not used): row
    ``p mod rows`` maps the keys of pane ``p`` to slot + 1 while ``p`` owns the row. A
    new pane claims a free row; panes whose row is taken go through the cache and the
    table. Events come nearly in pane order, so the rows in use stay in cache, where a
    table insert for a sparse workload misses it (Q1 end to end, alternating runs:
    6.2-6.9 -> 12.6-13.1 M events/s).
    """
    pane, offset, late_below, dirty_below = geom[0], geom[1], geom[2], geom[3]
    n_rows = dir_pane.shape[0]
    n_slots, n_late, n_dirty, n_table = counts[0], counts[1], counts[2], counts[3]
    top = counts[4]
    n_def = counts[5]
    n_dense = dense.shape[0]
    dbase = geom[7]
    limit = tab.shape[0] // 2
    ways = geom[4]
    rf = geom[5]
    keep_slots = geom[6] != 0
    inv = 1.0 / pane
    m = fold.shape[0]
    ka, fa, xa = fold[0, 0] if m > 0 else 0, fold[0, 1] if m > 0 else -1, Xf[0]
    kb, fb, xb = fold[1, 0] if m > 1 else 0, fold[1, 1] if m > 1 else -1, Xf[0]
    kc, fc, xc = fold[2, 0] if m > 2 else 0, fold[2, 1] if m > 2 else -1, Xf[0]
    if m > 0:
        xa = Xf[fold[0, 2]]
    if m > 1:
        xb = Xf[fold[1, 2]]
    if m > 2:
        xc = Xf[fold[2, 2]]
    r = start
    while r < ts.shape[0]:
        p = pane_of(ts[r], offset, pane, inv)
        if p < late_below:
            late[r] = True
            n_late += 1
            if keep_slots:
                slots[r] = -1
            r += 1
            continue
        if n_slots >= limit:
            break
        top = max(top, p)
        if n_dense:
            d = np.int64(kid[r]) - dbase
            k = dense[d] if 0 <= d < n_dense else -1
            if k < 0:
                deferred[n_def] = r
                n_def += 1
                r += 1
                continue
        else:
            k = kid[r]
        if p < dirty_below:
            dirty_p[n_dirty] = p
            dirty_k[n_dirty] = k
            n_dirty += 1
        slot = -1
        new = False
        if n_rows:
            row = p & (n_rows - 1)
            owner = dir_pane[row]
            if owner == _NO_PANE:
                _claim_row(dir_rows, dir_pane, row, p)
                owner = p
            if owner == p:
                v = dir_rows[row, k]
                if v > 0:
                    slot = v - 1
                else:
                    slot = n_slots
                    slot_pane[slot] = p
                    slot_key[slot] = k
                    n_slots += 1
                    dir_rows[row, k] = slot + 1
                    new = True
        if slot < 0:
            n_table += 1
            cell = k * ways + (p & (ways - 1))
            slot = key_slot[cell]
            if slot < 0 or key_pane[cell] != p:
                slot = _find_or_insert(tab, slot_pane, slot_key, p, k, n_slots)
                if slot < 0:
                    slot = -1 - slot
                    slot_pane[slot] = p
                    slot_key[slot] = k
                    n_slots += 1
                    new = True
                key_slot[cell] = slot
                key_pane[cell] = p
        if new:
            if rf >= 0:
                In[rf, slot] = 1
            if m > 0:
                F[fa, slot] = xa[r]
            if m > 1:
                F[fb, slot] = xb[r]
            if m > 2:
                F[fc, slot] = xc[r]
        else:
            if rf >= 0:
                In[rf, slot] += 1
            if m > 0:
                fold_float(F, fa, slot, ka, xa[r])
            if m > 1:
                fold_float(F, fb, slot, kb, xb[r])
            if m > 2:
                fold_float(F, fc, slot, kc, xc[r])
        if keep_slots:
            slots[r] = slot
        r += 1
    # the other fields of new slots start from the initial state, set field by field
    # after the loop: a store per field and slot in the loop cost 11 ns a new slot (Q1:
    # 110 of pane_slots' 183 ms)
    for f in range(F.shape[0]):
        if f != fa and f != fb and f != fc:
            F[f, counts[0] : n_slots] = init_f[f]
    for i in range(In.shape[0]):
        if i != rf:
            In[i, counts[0] : n_slots] = init_i[i]
    counts[0], counts[1], counts[2], counts[3] = n_slots, n_late, n_dirty, n_table
    counts[4], counts[5] = top, n_def
    return r


@njit(cache=True, nogil=True)
def count_below(slot_pane, n_slots, below):  # type: ignore[no-untyped-def]
    """How many of the first ``n_slots`` slots have a pane below ``below`` (numpy's
    compare and count_nonzero: a temporary mask a batch, ~5 ms of Q1)."""
    c = 0
    for j in range(n_slots):
        c += slot_pane[j] < below
    return c


@njit(cache=True, nogil=True)
def compact_panes(slot_pane, slot_key, F, In, n_slots, free_below, Pf, Pi, Sf, Si, valid):  # type: ignore[no-untyped-def]
    """Drop slots of panes < ``free_below`` (their windows are closed); keep order.

    The cached window partials of :func:`fire_hopping` (``valid`` empty: none) move with
    their slots; the flags of the slots freed at the end are cleared."""
    cached = valid.shape[0] > 0
    w = np.int64(0)  # a literal 0 made numba compile copy_slot for it too (~0.1 s)
    for j in range(n_slots):
        if slot_pane[j] >= free_below:
            if w != j:
                slot_pane[w] = slot_pane[j]
                slot_key[w] = slot_key[j]
                copy_slot(F, In, w, F, In, j)
                if cached:
                    v = valid[j]
                    valid[w] = v
                    if v & 1:
                        copy_slot(Pf, Pi, w, Pf, Pi, j)
                    if v & 2:
                        copy_slot(Sf, Si, w, Sf, Si, j)
            w += 1
    if cached:
        for j in range(w, n_slots):
            valid[j] = 0
    return w


@njit(cache=True, nogil=True)
def _slots_in(slot_pane, n_slots, p_lo, p_hi):  # type: ignore[no-untyped-def]
    """The live slots of panes in [p_lo, p_hi], in slot order."""
    m = 0
    for j in range(n_slots):
        p = slot_pane[j]
        m += (p_lo <= p) & (p <= p_hi)
    # counted first: a selection the size of every slot cost more than the gathers it
    # served (fresh memory a call)
    sel = np.empty(m, np.int32)
    w = 0
    for j in range(n_slots):
        p = slot_pane[j]
        if p_lo <= p <= p_hi:
            sel[w] = j
            w += 1
    return sel


@njit(cache=True, nogil=True)
def take_panes(slot_pane, slot_key, F, In, n_slots, p_lo, p_hi):  # type: ignore[no-untyped-def]
    """Tumbling windows: the slots of panes in [p_lo, p_hi], in slot order (one pass to
    find them, then a gather per field; a filtering pass per field took 70 ms of Q1,
    numpy's mask + nine gathers 3x that)."""
    sel = _slots_in(slot_pane, n_slots, p_lo, p_hi)
    m = sel.shape[0]
    out_key = np.empty(m, np.int32)
    out_pane = np.empty(m, np.int64)
    Fo = np.empty((F.shape[0], m), np.float64)
    Io = np.empty((In.shape[0], m), np.int64)
    for w in range(m):
        j = sel[w]
        out_key[w] = slot_key[j]
        out_pane[w] = slot_pane[j]
    for f in range(F.shape[0]):
        for w in range(m):
            Fo[f, w] = F[f, sel[w]]
    for i in range(In.shape[0]):
        for w in range(m):
            Io[i, w] = In[i, sel[w]]
    return out_key, out_pane, Fo, Io
