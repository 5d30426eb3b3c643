"""Window kernels: a tumbling firing's slots taken and finalized in one pass."""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit

__all__ = [
    "FIN_COUNT",
    "FIN_FLOAT",
    "FIN_INT",
    "FIN_MEAN",
    "FIN_MINMAX_F",
    "FIN_MINMAX_I",
    "FIN_U32",
    "take_final",
]


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
