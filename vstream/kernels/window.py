"""Window kernels: panes (slices) for tumbling and hopping windows, sessions.

Panes: time is cut into panes of ``gcd(size, slide)``; window ``k`` covers panes
``[k*s, k*s + n)`` (``s`` = slide / pane, ``n`` = size / pane; pane 0 starts at the
offset). State is one slot per (pane, key) that has data, found through an open-addressing
table. When windows fire, the live slots they cover are sorted by (key, pane) and each
window is combined from at most two partials per key: the panes are cut into blocks of
``n``; a window of ``n`` consecutive panes is the suffix of one block plus the prefix of
the next, so a window costs O(1) combines whatever ``size / slide`` is. The partials are
kept per slot from one firing to the next, so each is computed once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vstream.kernels.aggregate import apply_rows, combine_slot, copy_slot, fold_float, init_slot
from vstream.kernels.hashing import add_u64, mul_u64

__all__ = [
    "compact_panes",
    "count_below",
    "fire_hopping",
    "pane_of",
    "pane_slots",
    "rebuild_index",
    "rebuild_table",
    "take_final",
    "take_panes",
    "time_bounds",
]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)


@njit(cache=True, nogil=True)
def _slot_hash(p, k, mask):  # type: ignore[no-untyped-def]
    # multiply-xorshift finalizer: neighbouring panes and keys land far apart; arithmetic
    # modulo 2**64 through the explicit wrapping helpers (compiled: the bare machine
    # operations; NUMBA_DISABLE_JIT=1: Python ints masked, where numpy scalars would raise)
    h = add_u64(mul_u64(p, _M1), k)
    h ^= h >> np.uint64(32)
    h = mul_u64(h, _M2)
    h ^= h >> np.uint64(29)
    return np.int64(h & np.uint64(mask))


# The (pane, key) -> slot table holds slot + 1 (0: empty) as int32 and compares against
# the slot arrays: 4 bytes an entry keep a batch's table in L2 (Q1, 65,536-row batches:
# 16-byte entries 35 ns a row, three arrays 58 ns).
@njit(cache=True, nogil=True)
def _find_or_insert(tab, slot_pane, slot_key, p, k, n_slots):  # type: ignore[no-untyped-def]
    """The slot of (p, k); a new slot ``n_slots`` is inserted if absent (returns -1 - slot).

    The caller writes ``slot_pane`` / ``slot_key`` of a new slot."""
    mask = tab.shape[0] - 1
    h = _slot_hash(p, k, mask)
    while True:
        v = tab[h]
        if v == 0:
            tab[h] = n_slots + 1
            return -1 - n_slots
        j = v - 1
        if slot_pane[j] == p and slot_key[j] == k:
            return j
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def find_slot(tab, slot_pane, slot_key, p, k, dir_rows, dir_pane):  # type: ignore[no-untyped-def]
    """The slot of (p, k) or -1, through the pane directory, then the table."""
    n_rows = dir_pane.shape[0]
    if n_rows:
        row = p & (n_rows - 1)
        if dir_pane[row] == p:
            return dir_rows[row, k] - 1
    mask = tab.shape[0] - 1
    h = _slot_hash(p, k, mask)
    while True:
        v = tab[h]
        if v == 0:
            return -1
        j = v - 1
        if slot_pane[j] == p and slot_key[j] == k:
            return j
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def rebuild_table(tab, slot_pane, slot_key, n_slots):  # type: ignore[no-untyped-def]
    tab[:] = 0
    for j in range(n_slots):
        _find_or_insert(tab, slot_pane, slot_key, slot_pane[j], slot_key[j], j)


_NO_PANE = np.int64(-9223372036854775808)


@njit(cache=True, nogil=True)
def _claim_row(dir_rows, dir_pane, row, p):  # type: ignore[no-untyped-def]
    dir_pane[row] = p
    dir_rows[row, :] = 0


@njit(cache=True, nogil=True)
def rebuild_index(tab, dir_rows, dir_pane, slot_pane, slot_key, n_slots, clear_tab):  # type: ignore[no-untyped-def]
    """Index the live slots again: each (pane, key) goes to its pane's directory row if
    the pane owns one (rows are handed out in slot order), else to the table, which is
    cleared first if ``clear_tab`` (False: it holds no entries). Returns how many slots
    went to the table.

    Claiming a row clears it, which also brings it into the cache: leaving rows to be
    zeroed entry by entry made Q1's pane_slots ~3x slower (~130 -> ~380 ms), each first
    touch of a row's lines a miss."""
    if clear_tab:
        tab[:] = 0
    n_rows = dir_pane.shape[0]
    dir_pane[:] = _NO_PANE
    in_table = 0
    for j in range(n_slots):
        p = slot_pane[j]
        if n_rows:
            row = p & (n_rows - 1)
            if dir_pane[row] == _NO_PANE:
                _claim_row(dir_rows, dir_pane, row, p)
            if dir_pane[row] == p:
                dir_rows[row, slot_key[j]] = j + 1
                continue
        _find_or_insert(tab, slot_pane, slot_key, p, slot_key[j], j)
        in_table += 1
    return in_table


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
    w = 0
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


# finalize codes of take_final: what a leaf's output is made of. ``nn`` is the leaf's
# non-null rows, In[rows] - In[n0] (In[rows]: the slot's rows; n0 -1: no nulls seen)
FIN_INT = 0  # In[i0]: integer sum (and len of another dtype than UInt32)
FIN_FLOAT = 1  # F[f0]: float sum
FIN_MEAN = 2  # F[f0] / nn; null where nn == 0
FIN_MINMAX_F = 3  # F[f0] (NaN where only NaNs were seen); null where nn == 0
FIN_MINMAX_I = 4  # In[i0]; null where nn == 0
FIN_U32 = 5  # In[i0] as UInt32 (wrapping as numpy's astype): len
FIN_COUNT = 6  # nn as UInt32: count


@njit(cache=True, nogil=True, inline="always")
def _non_null(In, rows, n0, j):  # type: ignore[no-untyped-def]
    return In[rows, j] - In[n0, j] if n0 >= 0 else In[rows, j]


@njit(cache=True, nogil=True, error_model="numpy")
def take_final(slot_pane, slot_key, F, In, n_slots, p_lo, p_hi, fin, geom, buf, key_values):  # type: ignore[no-untyped-def]
    """Tumbling windows: the slots of panes in [p_lo, p_hi] (slot order), finalized.

    ``fin`` has a row ``(code, f0, i0, out, n0)`` per aggregate: ``code`` a ``FIN_*``
    above, ``out`` its row in the float (``FIN_FLOAT``, ``FIN_MEAN``, ``FIN_MINMAX_F``),
    int (``FIN_INT``, ``FIN_MINMAX_I``) or UInt32 (``FIN_U32``, ``FIN_COUNT``) output,
    ``n0`` its input's NULLS field (-1: none, or no nulls seen). ``geom`` = (pane
    length, offset, window size, the slots' rows field). Returns keys, window starts
    and ends, the float, int and UInt32 outputs, the nulls per aggregate and a null flag
    per aggregate and row (no columns when no aggregate has a null). Gathering the state fields and
    finalizing them in one pass skips the field copies of ``take_panes`` and the numpy
    passes after it (Q1: 7 fields gathered, then read again to finalize, bounds
    computed, len cast). ``buf`` (int32, at least ``n_slots``) is scratch for the
    selected slots: one pass to find them instead of two (count, then fill).

    ``key_values`` (empty: not used) are the key of each key id: the keys returned are
    then ``key_values[id]``, of its dtype, instead of the ids (a pass of their own in
    the key index, ~8 ms of Q1's 10 M events)."""
    m = 0
    for j in range(n_slots):
        p = slot_pane[j]
        buf[m] = j
        m += (p_lo <= p) & (p <= p_hi)
    sel = buf[:m]
    length, offset, size, rows = geom[0], geom[1], geom[2], geom[3]
    out_key = np.empty(m, key_values.dtype)
    start = np.empty(m, np.int64)
    end = np.empty(m, np.int64)
    keyed = key_values.shape[0] > 0
    for w in range(m):
        j = sel[w]
        out_key[w] = key_values[slot_key[j]] if keyed else slot_key[j]
        t = slot_pane[j] * length + offset
        start[w] = t
        end[w] = t + size
    n_f = 0
    n_i = 0
    n_u = 0
    for a in range(fin.shape[0]):
        code = fin[a, 0]
        if code == FIN_INT or code == FIN_MINMAX_I:
            n_i = max(n_i, fin[a, 3] + 1)
        elif code == FIN_U32 or code == FIN_COUNT:
            n_u = max(n_u, fin[a, 3] + 1)
        else:
            n_f = max(n_f, fin[a, 3] + 1)
    Of = np.empty((n_f, m), np.float64)
    Oi = np.empty((n_i, m), np.int64)
    Ou = np.empty((n_u, m), np.uint32)
    nulls = np.zeros(fin.shape[0], np.int64)
    for a in range(fin.shape[0]):
        code, f0, i0, o, n0 = fin[a, 0], fin[a, 1], fin[a, 2], fin[a, 3], fin[a, 4]
        c = 0
        if code == FIN_U32:
            for w in range(m):
                Ou[o, w] = np.uint32(In[i0, sel[w]])
        elif code == FIN_COUNT:
            for w in range(m):
                Ou[o, w] = np.uint32(_non_null(In, rows, n0, sel[w]))
        elif code == FIN_INT:
            for w in range(m):
                Oi[o, w] = In[i0, sel[w]]
        elif code == FIN_FLOAT:
            for w in range(m):
                Of[o, w] = F[f0, sel[w]]
        elif code == FIN_MEAN:
            for w in range(m):
                j = sel[w]
                cnt = _non_null(In, rows, n0, j)
                Of[o, w] = F[f0, j] / cnt
                c += cnt == 0
        elif code == FIN_MINMAX_F:
            for w in range(m):
                j = sel[w]
                Of[o, w] = F[f0, j]
                c += _non_null(In, rows, n0, j) == 0
        else:  # FIN_MINMAX_I
            for w in range(m):
                j = sel[w]
                Oi[o, w] = In[i0, j]
                c += _non_null(In, rows, n0, j) == 0
        nulls[a] = c
    # the null flags only when there are nulls (rare: a window whose rows are all null)
    null = np.zeros((fin.shape[0], m if nulls.sum() else 0), np.bool_)
    for a in range(fin.shape[0]):
        if nulls[a]:
            n0 = fin[a, 4]
            for w in range(m):
                null[a, w] = _non_null(In, rows, n0, sel[w]) == 0
    return out_key, start, end, Of, Oi, Ou, nulls, null


@njit(cache=True, nogil=True)
def _sort_by_key_value(key, value, n_keys):  # type: ignore[no-untyped-def]
    """Indices sorting rows by (key, value): a counting sort by key when the key range is
    small next to the rows (else a merge sort), then an insertion sort by value inside
    each key (values mostly arrive in order: panes, event times)."""
    n = key.shape[0]
    if n_keys <= 4 * n + 1024:
        counts = np.zeros(n_keys + 1, np.int64)
        for r in range(n):
            counts[key[r] + 1] += 1
        for b in range(n_keys):
            counts[b + 1] += counts[b]
        order = np.empty(n, np.int64)
        for r in range(n):
            order[counts[key[r]]] = r
            counts[key[r]] += 1
    else:
        order = np.argsort(key, kind="mergesort")
    g0 = 0
    while g0 < n:
        k = key[order[g0]]
        g1 = g0 + 1
        while g1 < n and key[order[g1]] == k:
            g1 += 1
        for a in range(g0 + 1, g1):
            r = order[a]
            v = value[r]
            b = a - 1
            while b >= g0 and value[order[b]] > v:
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = r
        g0 = g1
    return order


@njit(cache=True, nogil=True)
def _sorted_by_key_pane(slot_pane, slot_key, n_slots, p_lo, p_hi, n_keys):  # type: ignore[no-untyped-def]
    """Slots with pane in [p_lo, p_hi), sorted by (key, pane)."""
    m = 0
    for j in range(n_slots):
        if p_lo <= slot_pane[j] < p_hi:
            m += 1
    sel = np.empty(m, np.int64)
    m = 0
    for j in range(n_slots):
        if p_lo <= slot_pane[j] < p_hi:
            sel[m] = j
            m += 1
    order = _sort_by_key_value(slot_key[sel], slot_pane[sel], n_keys)
    return sel[order]


@njit(cache=True, nogil=True)
def _first_window(p, s, n):  # type: ignore[no-untyped-def]
    return -((-(p - n + 1)) // s)


@njit(cache=True, nogil=True)
def fire_hopping(  # type: ignore[no-untyped-def]
    slot_pane, slot_key, F, In, n_slots, prog, s, n, k_lo, k_hi, n_keys, Pf, Pi, Sf, Si, valid
):
    """Every window k in [k_lo, k_hi] with data, per key: (key, k, F, In) of each.

    Panes are cut into blocks of ``n``; window ``k`` is the suffix of one block from pane
    ``k*s`` plus the prefix of the next up to pane ``k*s + n - 1``. The partials are kept
    per slot between firings (``Pf``/``Pi`` the prefix of the slot's block up to its pane,
    ``Sf``/``Si`` the suffix from it; bits 1 and 2 of ``valid[slot]`` say which are
    computed), so each slot's partials are computed once, not once per firing that covers
    it: with 120 panes a window and 8 windows a firing, the firings recomputed 15 partials
    a pane (slide sweep, 0.5 s slide: fire_hopping 128 -> 43 ms). The caller clears
    ``valid`` when a pane of a fired window changes (rows behind the watermark), and passes
    scratch arrays for early firings, whose panes may still change.
    """
    lo_pane = k_lo * s
    hi_end = k_hi * s + n
    order = _sorted_by_key_pane(slot_pane, slot_key, n_slots, lo_pane, hi_end, n_keys)
    m = order.shape[0]
    nf = F.shape[0]
    ni = In.shape[0]
    sp = np.empty(m, np.int64)
    sk = np.empty(m, np.int32)
    blk = np.empty(m, np.int64)
    for c in range(m):
        j = order[c]
        sp[c] = slot_pane[j]
        sk[c] = slot_key[j]
        blk[c] = sp[c] // n
    # an upper bound of the output: per key, the windows from its first pane's first
    # window to its last pane's last one (windows without data are skipped below), and
    # at most ceil(n / s) windows a pane (a key's panes far apart in time: the span
    # alone asked for up to 2**63 / slide rows, a MemoryError)
    per_pane = (n + s - 1) // s
    bound = 0
    g0 = 0
    while g0 < m:
        g1 = g0 + 1
        while g1 < m and sk[g1] == sk[g0]:
            g1 += 1
        lo = max(k_lo, _first_window(sp[g0], s, n))
        hi = min(k_hi, sp[g1 - 1] // s)
        if hi >= lo:
            bound += min(hi - lo + 1, (g1 - g0) * per_pane)
        g0 = g1
    out_key = np.empty(bound, np.int32)
    out_k = np.empty(bound, np.int64)
    # where each window's state comes from: 0 one pane (F), 1 a prefix (P), 2 a suffix
    # (S), 3 a suffix combined with a prefix; i1 / i2 are slots. The states are copied
    # field by field after (tight loops instead of a call per window: Q2 30 -> 23 ns an
    # output row)
    src = np.empty(bound, np.int8)
    i1 = np.empty(bound, np.int64)
    i2 = np.empty(bound, np.int64)
    w = 0
    g0 = 0
    while g0 < m:
        key = sk[g0]
        g1 = g0 + 1
        while g1 < m and sk[g1] == key:
            g1 += 1
        if g1 - g0 > 1:
            # prefixes of the blocks that start in the range (earlier ones are not needed:
            # no window of the range starts before lo_pane)
            for c in range(g0, g1):
                j = order[c]
                if valid[j] & 1 or blk[c] * n < lo_pane:
                    continue
                copy_slot(Pf, Pi, j, F, In, j)
                if c > g0 and blk[c - 1] == blk[c]:
                    combine_slot(prog, Pf, Pi, j, Pf, Pi, order[c - 1])
                valid[j] |= 1
            # suffixes of the blocks that end in the range
            for c in range(g1 - 1, g0 - 1, -1):
                j = order[c]
                if valid[j] & 2 or (blk[c] + 1) * n > hi_end:
                    continue
                copy_slot(Sf, Si, j, F, In, j)
                if c < g1 - 1 and blk[c + 1] == blk[c]:
                    combine_slot(prog, Sf, Si, j, Sf, Si, order[c + 1])
                valid[j] |= 2
        a = g0
        b = g0
        k = max(k_lo, _first_window(sp[g0], s, n))
        while k <= k_hi:
            ws = k * s
            while a < g1 and sp[a] < ws:
                a += 1
            if a == g1:
                break
            if sp[a] >= ws + n:
                k = max(k + 1, _first_window(sp[a], s, n))
                continue
            if b < a:
                b = a
            while b < g1 and sp[b] < ws + n:
                b += 1
            out_key[w] = key
            out_k[w] = k
            last = b - 1
            if a == last:  # one pane: its own state (the common case of sparse keys)
                src[w] = 0
                i1[w] = order[a]
            elif blk[a] == blk[last]:
                # one block: the window's later block if it starts inside the window
                if blk[last] * n >= ws:
                    src[w] = 1
                    i1[w] = order[last]
                else:
                    src[w] = 2
                    i1[w] = order[a]
            else:
                src[w] = 3
                i1[w] = order[a]
                i2[w] = order[last]
            w += 1
            k += 1
        g0 = g1
    Fo = np.empty((nf, w), np.float64)
    Io = np.empty((ni, w), np.int64)
    for f in range(nf):
        for r in range(w):
            t = src[r]
            if t == 0:
                Fo[f, r] = F[f, i1[r]]
            elif t == 1:
                Fo[f, r] = Pf[f, i1[r]]
            else:
                Fo[f, r] = Sf[f, i1[r]]
    for i in range(ni):
        for r in range(w):
            t = src[r]
            if t == 0:
                Io[i, r] = In[i, i1[r]]
            elif t == 1:
                Io[i, r] = Pi[i, i1[r]]
            else:
                Io[i, r] = Si[i, i1[r]]
    for r in range(w):
        if src[r] == 3:
            combine_slot(prog, Fo, Io, r, Pf, Pi, i2[r])
    return out_key[:w], out_k[:w], Fo, Io


@njit(cache=True, nogil=True)
def windows_of(  # type: ignore[no-untyped-def]
    tab, slot_pane, slot_key, F, In, prog, init_f, init_i, s, n, ks, keys, dir_rows, dir_pane
):
    """The state of given windows (k, key), merged pane by pane (for re-emissions)."""
    m = ks.shape[0]
    Fo = np.empty((F.shape[0], m), np.float64)
    Io = np.empty((In.shape[0], m), np.int64)
    for c in range(m):
        init_slot(Fo, Io, c, init_f, init_i)
        for p in range(ks[c] * s, ks[c] * s + n):
            j = find_slot(tab, slot_pane, slot_key, p, keys[c], dir_rows, dir_pane)
            if j >= 0:
                combine_slot(prog, Fo, Io, c, F, In, j)
    return Fo, Io


# ---------------------------------------------------------------------- sessions
@njit(cache=True, nogil=True)
def _order_by_key_time(ts, kid, n_keys):  # type: ignore[no-untyped-def]
    """Row order sorted by (key, time)."""
    return _sort_by_key_value(kid, ts, n_keys)


@njit(cache=True, nogil=True)
def session_update(  # type: ignore[no-untyped-def]
    ts,
    kid,
    n_keys,
    gap,
    lateness,
    wm,
    head,
    nxt,
    s_key,
    s_start,
    s_end,
    s_rev,
    s_final,
    s_dirty,
    free,
    counters,
    F,
    In,
    init_f,
    init_i,
    prog,
    Xf,
    Xi,
    M,
    vmap,
    seq0,
    late,
    merged_into,
):
    """Fold a batch into per-key sessions, merging sessions an event bridges.

    Per key, the batch's events (in time order) form runs (next - prev <= gap); each run
    merges with every live session it overlaps or touches (windows ``[t, t + gap)`` that
    touch merge, as in Flink, Spark and Bytewax). A run that merges with nothing and whose
    session would end at or before ``wm - lateness`` is late: its rows are marked in
    ``late``. ``counters`` = [free slots, slots ever used, late rows]. A session merged
    into another gets ``merged_into[old] = new``. Returns the smallest end among the
    sessions touched (for the next firing) and each row's (run) slot.
    """
    order = _order_by_key_time(ts, kid, n_keys)
    n = ts.shape[0]
    min_end = np.int64(9223372036854775807)
    slots = np.empty(n, np.int32)
    c = 0
    while c < n:
        r0 = order[c]
        k = kid[r0]
        # one run: consecutive rows of key k at most gap apart
        e = c + 1
        # (not next - prev <= gap: the difference of times far apart would wrap)
        while e < n and kid[order[e]] == k and ts[order[e]] <= ts[order[e - 1]] + gap:
            e += 1
        # new slot for the run
        if counters[0] > 0:
            counters[0] -= 1
            slot = free[counters[0]]
        else:
            slot = counters[1]
            counters[1] += 1
        init_slot(F, In, slot, init_f, init_i)
        for a in range(c, e):
            slots[order[a]] = slot
        c = e
    apply_rows(prog, F, In, slots, Xf, Xi, M, vmap, seq0)
    # then merge each run with the live sessions it overlaps
    c = 0
    while c < n:
        r0 = order[c]
        k = kid[r0]
        slot = slots[r0]
        e = c + 1
        while e < n and slots[order[e]] == slot:
            e += 1
        start = ts[r0]
        end = ts[order[e - 1]] + gap
        merged = False
        rev = np.int64(-1)
        final = False
        prev = -1
        j = head[k]
        while j >= 0:
            jn = nxt[j]
            if s_start[j] <= end and start <= s_end[j]:  # overlap or touch
                merged = True
                combine_slot(prog, F, In, slot, F, In, j)
                start = min(start, s_start[j])
                end = max(end, s_end[j])
                rev = max(rev, s_rev[j])
                final = final or s_final[j]
                if merged_into.shape[0]:
                    merged_into[j] = slot
                # unlink and free j
                if prev < 0:
                    head[k] = jn
                else:
                    nxt[prev] = jn
                free[counters[0]] = j
                counters[0] += 1
                # a merge may now overlap sessions already passed: restart the scan
                prev = -1
                j = head[k]
                continue
            prev = j
            j = jn
        if not merged and wm > -9223372036854775807 and end + lateness <= wm:
            for a in range(c, e):
                late[order[a]] = True
            counters[2] += e - c
            free[counters[0]] = slot
            counters[0] += 1
        else:
            s_key[slot] = k
            s_start[slot] = start
            s_end[slot] = end
            s_rev[slot] = rev
            s_final[slot] = final
            s_dirty[slot] = True
            nxt[slot] = head[k]
            head[k] = slot
            min_end = min(min_end, end)
        c = e
    return min_end, slots


@njit(cache=True, nogil=True)
def session_fire(  # type: ignore[no-untyped-def]
    head,
    nxt,
    s_key,
    s_start,
    s_end,
    s_rev,
    s_final,
    s_dirty,
    free,
    counters,
    F,
    In,
    n_keys,
    wm,
    lateness,
    early,
):
    """Emit sessions: those the watermark closed (``end <= wm``) that are new or changed
    since their last emission, plus (``early``) every open changed session. Then free the
    sessions past their lateness. Returns the emitted rows (with their slots) and the
    next watermark at which a call has work (a session's end, or the end of a fired
    session's lateness)."""
    m = 0
    for rnd in range(2):
        if rnd == 1:
            out_key = np.empty(m, np.int32)
            out_start = np.empty(m, np.int64)
            out_end = np.empty(m, np.int64)
            out_rev = np.empty(m, np.int64)
            out_slot = np.empty(m, np.int64)
            Fo = np.empty((F.shape[0], m), np.float64)
            Io = np.empty((In.shape[0], m), np.int64)
        w = 0
        for k in range(n_keys):
            j = head[k]
            while j >= 0:
                due = s_end[j] <= wm
                if s_dirty[j] and (due or early):
                    if rnd == 1:
                        s_rev[j] += 1
                        out_key[w] = k
                        out_start[w] = s_start[j]
                        out_end[w] = s_end[j]
                        out_rev[w] = s_rev[j]
                        out_slot[w] = j
                        copy_slot(Fo, Io, w, F, In, j)
                        s_dirty[j] = False
                        if due:
                            s_final[j] = True
                    w += 1
                j = nxt[j]
        m = w
    # free what is past its lateness; find the next end to wait for
    next_end = np.int64(9223372036854775807)
    for k in range(n_keys):
        prev = -1
        j = head[k]
        while j >= 0:
            jn = nxt[j]
            if s_end[j] + lateness <= wm:
                if prev < 0:
                    head[k] = jn
                else:
                    nxt[prev] = jn
                free[counters[0]] = j
                counters[0] += 1
            else:
                # the next watermark with work: the session's end while it is still to
                # be emitted, else the end of its lateness, when it is freed (a session
                # kept past it would take events late beyond the lateness)
                if not s_final[j] or s_dirty[j]:
                    next_end = min(next_end, s_end[j])
                else:
                    next_end = min(next_end, s_end[j] + lateness)
                prev = j
            j = jn
    return out_key, out_start, out_end, out_rev, out_slot, Fo, Io, next_end


@njit(cache=True, nogil=True)
def session_live(head, nxt, n_keys, cap):  # type: ignore[no-untyped-def]
    """Which slots hold a live session."""
    live = np.zeros(cap, np.bool_)
    for k in range(n_keys):
        j = head[k]
        while j >= 0:
            live[j] = True
            j = nxt[j]
    return live


@njit(cache=True, nogil=True)
def session_order(head, nxt, n_keys, n_live):  # type: ignore[no-untyped-def]
    """The slots of the ``n_live`` live sessions, key by key, each key's list from its
    head (a snapshot's order: relinked backwards, every list comes back the same)."""
    out = np.empty(n_live, np.int64)
    w = 0
    for k in range(n_keys):
        j = head[k]
        while j >= 0 and w < n_live:
            out[w] = j
            w += 1
            j = nxt[j]
    return out[:w]


# ---------------------------------------------------------------------- event times
@njit(cache=True, nogil=True)
def time_bounds(ts):  # type: ignore[no-untyped-def]
    """The smallest and largest of ``ts`` (not empty) in one pass: whether a batch has
    event times outside the range a window step can represent costs ~5 µs a 65,536-row
    batch (numpy's min and max: two passes, ~12 µs)."""
    lo = ts[0]
    hi = ts[0]
    for i in range(1, ts.shape[0]):
        v = ts[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi
