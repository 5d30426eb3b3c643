"""Window kernels: the slot table, (pane, key) -> slot.

State is one slot per (pane, key) that has data, found through an open-addressing table
(and, in front of it, the pane directory: one row of slots per recent pane, indexed by
key id; see :func:`~vstream.kernels.window.panes.pane_slots`).
"""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit
from vstream.kernels.hashing import add_u64, mul_u64

__all__ = ["find_slot", "rebuild_index", "rebuild_table"]


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
        # the key as int64, as pane_slots passes it: one compiled _find_or_insert, not two
        _find_or_insert(tab, slot_pane, slot_key, slot_pane[j], np.int64(slot_key[j]), j)


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
        _find_or_insert(tab, slot_pane, slot_key, p, np.int64(slot_key[j]), j)
        in_table += 1
    return in_table
