"""An open-addressing hash table from int64 keys to dense int32 ids, as numba kernels.

The table is one ``(size, 2)`` int64 array whose length is a power of two: row ``j`` is
(key, id + 1), and id + 1 == 0 marks an empty slot. Key and id share a cache line, so a
probe costs one memory access, not three. The Python owner grows the table by doubling
before an insert could push the load past one half.

Hashes are arithmetic modulo 2**64. Compiled, uint64 arithmetic wraps by itself; run as
plain Python (``NUMBA_DISABLE_JIT=1``, for coverage) numpy scalars would raise or warn
instead, so every wrapping step goes through :func:`as_u64`, :func:`mul_u64`,
:func:`add_u64` or :func:`sub_u64`, which wrap explicitly in Python and compile to the bare machine
operation: both modes give the same values (checkpoints and partitioning depend on them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vstream.kernels._jit import njit, on_load

__all__ = [
    "add_u64",
    "as_u64",
    "assign_from",
    "assign_ids",
    "assign_ids_reference",
    "dense_lookup",
    "find_ids",
    "first_rows",
    "first_rows_reference",
    "gather_keys",
    "gather_views",
    "insert_pairs",
    "mul_u64",
    "new_table",
    "rehash",
    "sub_u64",
    "views_equal",
    "views_hash",
]

_MASK64 = (1 << 64) - 1


def as_u64(x: Any) -> np.uint64:
    """``x`` (an integer) as uint64, two's complement: ``-1`` is ``2**64 - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from vstream.kernels.hashing import as_u64
    >>> int(as_u64(-1)) == 2**64 - 1, int(as_u64(np.int64(5)))
    (True, 5)
    """
    return np.uint64(int(x) & _MASK64)


def mul_u64(a: Any, b: Any) -> np.uint64:
    """``a * b`` modulo 2**64 (both taken as uint64).

    Examples
    --------
    >>> from vstream.kernels.hashing import mul_u64
    >>> int(mul_u64(2**63, 3)) == 2**63
    True
    """
    return np.uint64((int(a) & _MASK64) * (int(b) & _MASK64) & _MASK64)


def add_u64(a: Any, b: Any) -> np.uint64:
    """``a + b`` modulo 2**64 (both taken as uint64).

    Examples
    --------
    >>> from vstream.kernels.hashing import add_u64
    >>> int(add_u64(2**64 - 1, 2))
    1
    """
    return np.uint64(((int(a) & _MASK64) + (int(b) & _MASK64)) & _MASK64)


def sub_u64(a: Any, b: Any) -> np.uint64:
    """``a - b`` modulo 2**64 (both taken as uint64): exact for int64 ``a >= b``.

    Examples
    --------
    >>> import numpy as np
    >>> from vstream.kernels.hashing import sub_u64
    >>> int(sub_u64(np.int64(2**63 - 1), np.int64(-(2**63))))  == 2**64 - 1
    True
    """
    return np.uint64(((int(a) & _MASK64) - (int(b) & _MASK64)) & _MASK64)


@on_load
def _wrapping_overloads() -> None:
    # compiled: the machine operations, which wrap (the casts keep int64 operands from
    # promoting to float64 in numba's mixed-sign arithmetic); numba matches the typing
    # function's signature against the implementation's, annotations included
    from numba.extending import overload

    @overload(as_u64, jit_options={"nogil": True})
    def _as_u64_jit(x):  # type: ignore[no-untyped-def]
        return lambda x: np.uint64(x)

    @overload(mul_u64, jit_options={"nogil": True})
    def _mul_u64_jit(a, b):  # type: ignore[no-untyped-def]
        return lambda a, b: np.uint64(a) * np.uint64(b)

    @overload(sub_u64, jit_options={"nogil": True})
    def _sub_u64_jit(a, b):  # type: ignore[no-untyped-def]
        return lambda a, b: np.uint64(a) - np.uint64(b)

    @overload(add_u64, jit_options={"nogil": True})
    def _add_u64_jit(a, b):  # type: ignore[no-untyped-def]
        return lambda a, b: np.uint64(a) + np.uint64(b)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def _slot(key: np.int64, mask: np.int64) -> np.int64:
    # Fibonacci hashing: multiply by 2**64 / phi, keep the high bits (spreads sequential ids)
    h = mul_u64(key, _GOLDEN)
    return np.int64((h >> np.uint64(29)) & np.uint64(mask))


@njit(cache=True, nogil=True)
def _insert(table: np.ndarray, keys: np.ndarray, ids: np.ndarray) -> None:
    mask = np.int64(table.shape[0] - 1)
    for i in range(keys.shape[0]):
        j = _slot(keys[i], mask)
        while table[j, 1] != 0:
            j = (j + 1) & mask
        table[j, 0] = keys[i]
        table[j, 1] = ids[i] + 1


@njit(cache=True, nogil=True)
def _find(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    mask = np.int64(table.shape[0] - 1)
    out = np.empty(keys.shape[0], np.int32)
    for i in range(keys.shape[0]):
        k = keys[i]
        j = _slot(k, mask)
        out[i] = -1
        while table[j, 1] != 0:
            if table[j, 0] == k:
                out[i] = table[j, 1] - 1
                break
            j = (j + 1) & mask
    return out


@njit(cache=True, nogil=True)
def first_rows(ids: np.ndarray, first_new: np.int64, n_new: np.int64) -> np.ndarray:
    """For each new id ``first_new + k`` (k < n_new), the first row where it occurs.

    What ``np.unique(ids[fresh], return_index=True)`` gives the key index, in one pass:
    numpy 2.4's unique sorts (0.3 s of 2 s in Nexmark q5).

    Examples
    --------
    >>> from vstream.kernels.hashing import first_rows
    >>> import numpy as np
    >>> first_rows(np.array([0, 3, 2, 3, 2], np.int32), np.int64(2), np.int64(2)).tolist()
    [2, 1]
    """
    out = np.full(n_new, -1, np.int64)
    for i in range(ids.shape[0]):
        k = np.int64(ids[i]) - first_new
        if 0 <= k < n_new and out[k] < 0:
            out[k] = i
    return out


def first_rows_reference(ids: np.ndarray, first_new: int, n_new: int) -> np.ndarray:
    """:func:`first_rows` with numpy (sorting)."""
    fresh = np.flatnonzero((ids >= first_new) & (ids < first_new + n_new))
    return fresh[np.unique(ids[fresh], return_index=True)[1]].astype(np.int64)


@njit(cache=True, nogil=True)
def dense_lookup(values: np.ndarray, base: np.int64, dense: np.ndarray) -> np.ndarray:
    """``dense[value - base]`` for each value, -1 where it falls outside ``dense``: a
    table indexed by the key itself, for integer keys in a compact range (ids, codes).

    Examples
    --------
    >>> from vstream.kernels.hashing import dense_lookup
    >>> import numpy as np
    >>> dense_lookup(np.array([10, 12, 99]), np.int64(10), np.array([5, -1, 7], np.int32)).tolist()
    [5, 7, -1]
    """
    n = values.shape[0]
    m = dense.shape[0]
    size = np.uint64(m)
    out = np.full(n, -1, dense.dtype)
    for i in range(n):
        v = values[i]
        # value - base as int64 wraps for values far from base (INT64_MIN against a base
        # near INT64_MAX landed inside the table); from base up, as uint64 it is exact
        if v >= base:
            j = sub_u64(v, base)
            if j < size:
                out[i] = dense[np.int64(j)]
    return out


def new_table(size: int) -> np.ndarray:
    """An empty table of ``size`` slots (a power of two)."""
    if size < 1 or size & (size - 1):
        msg = f"a hash table needs a power-of-two size, got {size}"
        raise ValueError(msg)
    return np.zeros((size, 2), np.int64)


def find_ids(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Ids of ``keys`` already in the table, -1 for the others (nothing is inserted).

    Examples
    --------
    >>> from vstream.kernels.hashing import find_ids
    >>> from vstream.kernels.hashing import assign_ids
    >>> from vstream.kernels.hashing import new_table
    >>> import numpy as np
    >>> t = new_table(16)
    >>> _ = assign_ids(t, np.array([7, 3]), 0)
    >>> find_ids(t, np.array([3, 5, 7])).tolist()
    [1, -1, 0]
    """
    if keys.ndim != 1 or keys.dtype != np.int64:
        msg = f"find_ids takes a 1-D int64 array, got {keys.dtype} with shape {keys.shape}"
        raise TypeError(msg)
    return _find(table, np.ascontiguousarray(keys))


def insert_pairs(table: np.ndarray, keys: np.ndarray, ids: np.ndarray) -> None:
    """Put distinct ``keys`` not yet in the table with the given ``ids`` (a restore)."""
    _insert(table, np.ascontiguousarray(keys, np.int64), np.ascontiguousarray(ids, np.int64))


def assign_ids(table: np.ndarray, keys: np.ndarray, next_id: int) -> tuple[np.ndarray, int]:
    """Ids of ``keys``; keys not in the table get the next ids in order of first sight.

    The table must have room: ``len(table) >= 2 * (next_id + len(keys))``.

    Examples
    --------
    >>> from vstream.kernels.hashing import new_table
    >>> from vstream.kernels.hashing import assign_ids
    >>> import numpy as np
    >>> ids, n = assign_ids(new_table(16), np.array([7, 3, 7, 9]), 0)
    >>> ids.tolist(), n
    ([0, 1, 0, 2], 3)
    """
    if keys.ndim != 1 or keys.dtype != np.int64:
        msg = f"assign_ids takes a 1-D int64 array, got {keys.dtype} with shape {keys.shape}"
        raise TypeError(msg)
    size = table.shape[0]
    if size & (size - 1) or size < 2 * (next_id + keys.shape[0]):
        msg = f"the table (size {size}) needs a power-of-two size >= 2 x its keys; grow it first"
        raise ValueError(msg)
    out = np.empty(keys.shape[0], dtype=np.int32)
    _, n = assign_from(table, np.ascontiguousarray(keys), out, np.int64(next_id), 0)
    return out, int(n)  # the table has room: assign_from went to the end


@njit(cache=True, nogil=True)
def assign_from(table, keys, out, next_id, start):  # type: ignore[no-untyped-def]
    """:func:`assign_ids` from row ``start`` on, stopping before the table would be more
    than half full; returns ``(row reached, next id)``. The caller grows the table and
    goes on from that row, so the table is sized by the keys it holds, not by a batch
    that could all be new (10 k string keys in 65,536-row batches: 4 MB -> 512 KB,
    probed for every row)."""
    mask = np.int64(table.shape[0] - 1)
    limit = table.shape[0] // 2
    for i in range(start, keys.shape[0]):
        if next_id >= limit:
            return i, next_id
        k = keys[i]
        j = _slot(k, mask)
        while True:
            if table[j, 1] == 0:
                table[j, 0] = k
                table[j, 1] = next_id + 1
                out[i] = next_id
                next_id += 1
                break
            if table[j, 0] == k:
                out[i] = table[j, 1] - 1
                break
            j = (j + 1) & mask
    return keys.shape[0], next_id


def rehash(table: np.ndarray, size: int) -> np.ndarray:
    """The same table with ``size`` slots (a power of two)."""
    new = new_table(size)
    used = table[:, 1] != 0
    _insert(new, table[used, 0].copy(), table[used, 1] - 1)
    return new


def assign_ids_reference(keys: np.ndarray, known: dict[int, int]) -> np.ndarray:
    """The Python reference of :func:`assign_ids` (updates ``known``)."""
    out = np.empty(len(keys), dtype=np.int32)
    for i, k in enumerate(keys.tolist()):
        out[i] = known.setdefault(k, len(known))
    return out


@njit(cache=True, nogil=True)
def gather_keys(values, ids, n, out):  # type: ignore[no-untyped-def]
    """``out[r] = values[ids[r]]`` (stored in ``out``'s integer type); False if an id is
    outside [0, n). One pass where numpy took four (min, max, gather, astype: Q1's
    9 M output keys, ~220 -> ~60 µs a batch)."""
    ok = True
    for r in range(ids.shape[0]):
        i = ids[r]
        if i < 0 or i >= n:
            ok = False
            i = 0
        out[r] = values[i]
    return ok


@njit(cache=True, nogil=True)
def gather_views(views, ids):  # type: ignore[no-untyped-def]
    """The Arrow string views (pairs of words) of strings ``ids``: their rows of an
    array whose views are ``views`` (the caller checked the ids).

    Examples
    --------
    >>> from vstream.kernels.hashing import gather_views
    >>> import numpy as np
    >>> gather_views(np.arange(6, dtype=np.uint64), np.array([2, 0])).tolist()
    [4, 5, 0, 1]
    """
    out = np.empty(2 * ids.shape[0], np.uint64)
    for r in range(ids.shape[0]):
        j = ids[r]
        out[2 * r] = views[2 * j]
        out[2 * r + 1] = views[2 * j + 1]
    return out


# Arrow string views: 16 bytes a string, two uint64 words. Word 0 holds the length (low
# 4 bytes) and the first 4 bytes of the string; strings of at most 12 bytes are inline
# (the rest of word 0 and word 1, zero-padded), longer ones keep a buffer index and an
# offset in word 1. Two inline strings are equal iff both words are (padding left
# non-zero by a producer can only make equal strings look different; the key index then
# compares them exactly).
_INLINE = 12


@njit(cache=True, nogil=True)
def views_equal(views, known, ids):  # type: ignore[no-untyped-def]
    """Whether string ``r`` (``views``, pairs of words) equals known string ``ids[r]``:
    0 every row equal, 1 some row differs, 2 undecided (a string over 12 bytes whose
    length and first 4 bytes match: its bytes live in the data buffers)."""
    undecided = False
    for r in range(ids.shape[0]):
        j = ids[r]
        a0 = views[2 * r]
        b0 = known[2 * j]
        if a0 != b0:
            return 1
        if (a0 & np.uint64(0xFFFFFFFF)) <= _INLINE:
            if views[2 * r + 1] != known[2 * j + 1]:
                return 1
        else:
            undecided = True
    return 2 if undecided else 0


_H1 = np.uint64(0x9E3779B97F4A7C15)
_H2 = np.uint64(0xC2B2AE3D27D4EB4F)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, nogil=True)
def views_hash(views, out):  # type: ignore[no-untyped-def]
    """A 64-bit hash of every inline string (at most 12 bytes) from its Arrow view alone,
    into ``out`` (as int64); returns the rows of longer strings, whose bytes live in the
    data buffers (the caller hashes them otherwise). Bytes past a string's length are
    masked, so padding a producer left non-zero does not change the hash.

    Hashing in Polars first cost ~0.45 ms a 65,536-row batch of host names (Q1 by
    ``host``: 70 ms of 10 M events), this ~0.1 ms.

    Examples
    --------
    >>> from vstream.kernels.hashing import views_hash
    >>> import numpy as np
    >>> a = np.array([2 | (ord("a") << 32), 0], np.uint64)  # "a" and a 2-byte "a\\0"
    >>> b = np.array([1 | (ord("a") << 32) | (0xFF << 40), 0], np.uint64)  # "a", padded
    >>> ha, hb = np.empty(1, np.int64), np.empty(1, np.int64)
    >>> views_hash(a, ha).tolist(), views_hash(b, hb).tolist(), bool(ha[0] == hb[0])
    ([], [], False)
    """
    n = out.shape[0]
    m = 0
    for r in range(n):
        w0 = views[2 * r]
        length = np.int64(w0 & _LOW32)
        if length > _INLINE:
            m += 1
            out[r] = 0
            continue
        w1 = views[2 * r + 1]
        # keep the length word and the string's own bytes (little endian: the string
        # starts in the high half of word 0 and goes on in word 1)
        if length < 4:
            w0 &= _LOW32 | (((np.uint64(1) << np.uint64(8 * length)) - np.uint64(1)) << 32)
            w1 = np.uint64(0)
        elif length < _INLINE:
            w1 &= (np.uint64(1) << np.uint64(8 * (length - 4))) - np.uint64(1)
        h = mul_u64(w0 ^ mul_u64(w1, _H2), _H1)
        h ^= h >> np.uint64(29)
        h = mul_u64(h, _H2)
        h ^= h >> np.uint64(32)
        out[r] = np.int64(h)  # a numpy scalar cast: wraps in Python too
    # the long rows in a second pass, only if there are any: a batch-sized array for
    # them cost more than the hashing (10 M Q1 events: 45 of 70 ms)
    long_rows = np.empty(m, np.int64)
    if m:
        k = 0
        for r in range(n):
            if np.int64(views[2 * r] & _LOW32) > _INLINE:
                long_rows[k] = r
                k += 1
    return long_rows
