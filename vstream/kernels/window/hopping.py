"""Window kernels: firing hopping windows from their panes.

When windows fire, the live slots they cover are sorted by (key, pane) and each window is
combined from at most two partials per key: the panes are cut into blocks of ``n``; a
window of ``n`` consecutive panes is the suffix of one block plus the prefix of the next,
so a window costs O(1) combines whatever ``size / slide`` is. The partials are kept per
slot from one firing to the next, so each is computed once.
"""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit
from vstream.kernels.aggregate import combine_slot, copy_slot, init_slot
from vstream.kernels.window.order import _sort_by_key_value
from vstream.kernels.window.slots import find_slot

__all__ = ["fire_hopping", "windows_of"]


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
