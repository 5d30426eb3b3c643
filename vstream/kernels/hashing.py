"""An open-addressing hash table from int64 keys to dense int32 ids, as numba kernels.

The table is three flat arrays (keys, ids, used) whose length is a power of two; the
Python owner grows it by doubling before an insert could push the load past one half.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["assign_ids", "assign_ids_reference", "find_ids", "insert_pairs", "rehash"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True)
def _slot(key: np.int64, mask: np.int64) -> np.int64:
    # Fibonacci hashing: multiply by 2**64 / phi, keep the high bits (spreads sequential ids)
    h = np.uint64(key) * _GOLDEN
    return np.int64((h >> np.uint64(29)) & np.uint64(mask))


@numba.njit(cache=True, nogil=True)
def _assign(
    table_keys: np.ndarray,
    table_ids: np.ndarray,
    used: np.ndarray,
    keys: np.ndarray,
    out: np.ndarray,
    next_id: np.int64,
) -> np.int64:
    mask = np.int64(table_keys.shape[0] - 1)
    for i in range(keys.shape[0]):
        k = keys[i]
        j = _slot(k, mask)
        while True:
            if not used[j]:
                used[j] = True
                table_keys[j] = k
                table_ids[j] = next_id
                out[i] = next_id
                next_id += 1
                break
            if table_keys[j] == k:
                out[i] = table_ids[j]
                break
            j = (j + 1) & mask
    return next_id


@numba.njit(cache=True, nogil=True)
def _insert(
    table_keys: np.ndarray,
    table_ids: np.ndarray,
    used: np.ndarray,
    keys: np.ndarray,
    ids: np.ndarray,
) -> None:
    mask = np.int64(table_keys.shape[0] - 1)
    for i in range(keys.shape[0]):
        j = _slot(keys[i], mask)
        while used[j]:
            j = (j + 1) & mask
        used[j] = True
        table_keys[j] = keys[i]
        table_ids[j] = ids[i]


@numba.njit(cache=True, nogil=True)
def _find(
    table_keys: np.ndarray, table_ids: np.ndarray, used: np.ndarray, keys: np.ndarray
) -> np.ndarray:
    mask = np.int64(table_keys.shape[0] - 1)
    out = np.empty(keys.shape[0], np.int32)
    for i in range(keys.shape[0]):
        k = keys[i]
        j = _slot(k, mask)
        out[i] = -1
        while used[j]:
            if table_keys[j] == k:
                out[i] = table_ids[j]
                break
            j = (j + 1) & mask
    return out


def find_ids(
    table_keys: np.ndarray, table_ids: np.ndarray, used: np.ndarray, keys: np.ndarray
) -> np.ndarray:
    """Ids of ``keys`` already in the table, -1 for the others (nothing is inserted).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.zeros(16, np.int64), np.zeros(16, np.int32), np.zeros(16, np.bool_)
    >>> _ = assign_ids(*t, np.array([7, 3]), 0)
    >>> find_ids(*t, np.array([3, 5, 7])).tolist()
    [1, -1, 0]
    """
    if keys.ndim != 1 or keys.dtype != np.int64:
        msg = f"find_ids takes a 1-D int64 array, got {keys.dtype} with shape {keys.shape}"
        raise TypeError(msg)
    return _find(table_keys, table_ids, used, np.ascontiguousarray(keys))


def insert_pairs(
    table_keys: np.ndarray,
    table_ids: np.ndarray,
    used: np.ndarray,
    keys: np.ndarray,
    ids: np.ndarray,
) -> None:
    """Put distinct ``keys`` not yet in the table with the given ``ids`` (a restore)."""
    _insert(
        table_keys,
        table_ids,
        used,
        np.ascontiguousarray(keys, np.int64),
        np.ascontiguousarray(ids, np.int32),
    )


def assign_ids(
    table_keys: np.ndarray,
    table_ids: np.ndarray,
    used: np.ndarray,
    keys: np.ndarray,
    next_id: int,
) -> tuple[np.ndarray, int]:
    """Ids of ``keys``; keys not in the table get the next ids in order of first sight.

    The table must have room: ``len(table) >= 2 * (next_id + len(keys))``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.zeros(16, np.int64), np.zeros(16, np.int32), np.zeros(16, np.bool_)
    >>> ids, n = assign_ids(*t, np.array([7, 3, 7, 9]), 0)
    >>> ids.tolist(), n
    ([0, 1, 0, 2], 3)
    """
    if keys.ndim != 1 or keys.dtype != np.int64:
        msg = f"assign_ids takes a 1-D int64 array, got {keys.dtype} with shape {keys.shape}"
        raise TypeError(msg)
    size = table_keys.shape[0]
    if size & (size - 1) or size < 2 * (next_id + keys.shape[0]):
        msg = f"the table (size {size}) needs a power-of-two size >= 2 x its keys; grow it first"
        raise ValueError(msg)
    out = np.empty(keys.shape[0], dtype=np.int32)
    n = _assign(table_keys, table_ids, used, np.ascontiguousarray(keys), out, np.int64(next_id))
    return out, int(n)


def rehash(
    table_keys: np.ndarray, table_ids: np.ndarray, used: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same table with ``size`` slots (a power of two)."""
    new = np.zeros(size, np.int64), np.zeros(size, np.int32), np.zeros(size, np.bool_)
    _insert(*new, table_keys[used], table_ids[used])
    return new


def assign_ids_reference(keys: np.ndarray, known: dict[int, int]) -> np.ndarray:
    """The Python reference of :func:`assign_ids` (updates ``known``)."""
    out = np.empty(len(keys), dtype=np.int32)
    for i, k in enumerate(keys.tolist()):
        out[i] = known.setdefault(k, len(known))
    return out
