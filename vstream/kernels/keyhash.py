"""A 64-bit hash of key rows that is the same in every process, on every machine, on
every run and across Polars versions, and the key groups it splits keys into.

Keyed state is split by this hash into a fixed number of key groups (the unit of
rescaling, as in Flink); a partition owns a contiguous range of groups. So the hash
depends only on a key's values and their dtype: no per-run seed, no ``hash()`` of
Python, no Polars hash (which Polars documents as unstable across versions).

The function, pinned by golden values in ``tests/kernels/test_keyhash.py`` (changing it breaks
checkpoints and partitioning). All arithmetic is modulo 2**64; ``mix`` is the
splitmix64 finalizer (Stafford's variant 13), a bijection with full avalanche::

    mix(z):  z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27
             z *= 0x94D049BB133111EB; z ^= z >> 31

- a cell of an integer-like column (integers, booleans as 0/1, dates, datetimes,
  durations, times: their int64 physical value; UInt64 as its two's complement bits):
  ``mix(v + 0x9E3779B97F4A7C15)`` (splitmix64 of ``v``), so distinct integers never
  share a cell hash;
- a float cell: the same of its float64 bits, with -0.0 taken as 0.0 and every NaN as
  the one quiet NaN ``0x7FF8000000000000`` (Float32 widened first);
- a string or binary cell (UTF-8 bytes; the same for String, LargeString and StringView
  arrays, categoricals and enums through their strings; decimals through their 16
  little-endian bytes): ``h = 0x6A09E667F3BCC909 ^ len``, then for each 16-byte block,
  two little-endian words ``a, b`` (the last block zero-padded), wyhash's step
  ``h = fold(a ^ 0xA0761D6478BD642F, b ^ h ^ 0xE7037ED1A0B428DB)``, where ``fold`` is
  the 128-bit product with its two halves xor-ed; the cell is ``mix(h ^ len)``;
- a null cell: the constant ``0x8EBC6AF09C88C6E3``;
- a row: ``h = 0x243F6A8885A308D3``, then ``h = mix(h ^ cell)`` for each key column in
  order.

:func:`key_group` maps a hash to one of ``n`` groups by its high bits,
``((h >> 32) * n) >> 32``: each group is a contiguous range of hash values, and
:func:`group_range` gives partition ``p`` of ``P`` the groups ``[p * n // P,
(p + 1) * n // P)``.

Compiled, uint64 arithmetic wraps, :func:`fold_mul` is an LLVM 128-bit multiply and an
8-byte word one unaligned load; run as plain Python (``NUMBA_DISABLE_JIT=1``) each of
these is a Python function with the same result (the wrapping helpers of
:mod:`vstream.kernels.hashing`), so both modes give the same values (tested).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.errors import SchemaError, VStreamError
from vstream.kernels._jit import njit, on_load
from vstream.kernels.hashing import add_u64, as_u64, mul_u64

__all__ = [
    "DEFAULT_KEY_GROUPS",
    "NULL_CELL",
    "ROW_SEED",
    "bytes_cells",
    "combine_cells",
    "fold_mul",
    "group_range",
    "hashable",
    "int_cells",
    "key_group",
    "key_hash",
    "key_hash_reference",
    "rows_by_buffer",
    "view_bytes_cells",
    "views_cells",
]

DEFAULT_KEY_GROUPS = 128
"""Key groups of keyed state unless a job says otherwise (Flink's default is 128 too):
the most partitions a job can be rescaled to."""

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_BYTES_SEED = np.uint64(0x6A09E667F3BCC909)
_S1 = np.uint64(0xA0761D6478BD642F)  # wyhash's secrets, for the 16-byte blocks
_S2 = np.uint64(0xE7037ED1A0B428DB)
NULL_CELL = np.uint64(0x8EBC6AF09C88C6E3)
ROW_SEED = np.uint64(0x243F6A8885A308D3)
_LOW32 = np.uint64(0xFFFFFFFF)
_MASK = (1 << 64) - 1
_INLINE = 12  # Arrow string views: strings of at most 12 bytes are inline


@njit(cache=True, nogil=True)
def _mix(z):  # type: ignore[no-untyped-def]
    z ^= z >> np.uint64(30)
    z = mul_u64(z, _M1)
    z ^= z >> np.uint64(27)
    z = mul_u64(z, _M2)
    z ^= z >> np.uint64(31)
    return z


@njit(cache=True, nogil=True)
def int_cells(values):  # type: ignore[no-untyped-def]
    """The cell hash of every int64 value, ``mix(v + golden)`` (splitmix64).

    Examples
    --------
    >>> from vstream.kernels.keyhash import int_cells
    >>> import numpy as np
    >>> hex(int(int_cells(np.array([0], np.int64))[0]))
    '0xe220a8397b1dcdaf'
    """
    out = np.empty(values.shape[0], np.uint64)
    for i in range(values.shape[0]):
        out[i] = _mix(add_u64(values[i], _GOLDEN))
    return out


def _word(data: np.ndarray, j: Any) -> np.uint64:
    """The 8 bytes ``data[j:j + 8]`` as a little-endian word.

    Compiled: one unaligned load (an LLVM intrinsic). Spelled as eight byte loads, numba
    checked each index for wraparound and LLVM could not merge them: ~4x slower.
    Arrow buffers are little-endian, as every machine vstream runs on.
    """
    return np.uint64(int.from_bytes(data[int(j) : int(j) + 8].tobytes(), "little"))


def fold_mul(a: Any, b: Any) -> np.uint64:
    """The 128-bit product of ``a`` and ``b`` (as uint64), its two halves xor-ed: the
    "folded multiply" of wyhash and foldhash (compiled: one ``mul`` instruction).

    Examples
    --------
    >>> from vstream.kernels.keyhash import fold_mul
    >>> int(fold_mul(2**63, 4)), int(fold_mul(3, 5))
    (2, 15)
    """
    p = (int(a) & _MASK) * (int(b) & _MASK)
    return np.uint64((p & _MASK) ^ (p >> 64))


@on_load
def _llvm_intrinsics() -> None:
    """The compiled ``_word`` and ``fold_mul``: LLVM instructions numba does not spell."""
    from llvmlite import ir  # type: ignore[import-untyped]
    from numba.core import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def load_u64(typingctx, data, j):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            arr = context.make_array(signature.args[0])(context, builder, args[0])
            at = builder.gep(arr.data, [args[1]])
            return builder.load(builder.bitcast(at, ir.IntType(64).as_pointer()), align=1)

        return types.uint64(data, types.intp), codegen

    @overload(_word, jit_options={"nogil": True}, inline="always")
    def _word_jit(data, j):  # type: ignore[no-untyped-def]
        return lambda data, j: load_u64(data, np.intp(j))  # type: ignore[call-arg]

    @intrinsic
    def fold_mul_128(typingctx, a, b):  # type: ignore[no-untyped-def]
        # numba has no 128-bit integers; LLVM has: zero-extend, multiply, xor the halves
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            wide = ir.IntType(128)
            p = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
            lo = builder.trunc(p, ir.IntType(64))
            hi = builder.trunc(builder.lshr(p, ir.Constant(wide, 64)), ir.IntType(64))
            return builder.xor(lo, hi)

        return types.uint64(types.uint64, types.uint64), codegen

    @overload(fold_mul, jit_options={"nogil": True})
    def _fold_mul_jit(a, b):  # type: ignore[no-untyped-def]
        return lambda a, b: fold_mul_128(np.uint64(a), np.uint64(b))  # type: ignore[call-arg]


@njit(cache=True, nogil=True)
def _block(h, a, b):  # type: ignore[no-untyped-def]
    # 16 bytes (words a, b) into the running hash, as wyhash does
    return fold_mul(a ^ _S1, b ^ h ^ _S2)


@njit(cache=True, nogil=True, inline="always")
def _tail(data, j, hi):  # type: ignore[no-untyped-def]
    # the 1..7 bytes data[j:hi] as a zero-padded word, in one load rather than a loop:
    # the 8 bytes ending with them shifted down, or the 8 starting with them masked,
    # whichever the buffer holds
    rem = hi - j
    if hi >= 8:
        return _word(data, hi - 8) >> np.uint64(8 * (8 - rem))
    if j + 8 <= data.shape[0]:
        return _word(data, j) & ((np.uint64(1) << np.uint64(8 * rem)) - np.uint64(1))
    w = np.uint64(0)
    for k in range(rem):
        w |= np.uint64(data[j + k]) << np.uint64(8 * k)
    return w


@njit(cache=True, nogil=True, inline="always")
def _bytes_cell(data, lo, hi):  # type: ignore[no-untyped-def]
    # the cell hash of data[lo:hi]: 16-byte blocks of two little-endian words (the last
    # zero-padded), then the length, then the avalanche
    n = as_u64(hi - lo)
    h = _BYTES_SEED ^ n
    j = lo
    while j + 16 <= hi:
        h = _block(h, _word(data, j), _word(data, j + 8))
        j += 16
    if j < hi:
        if j + 8 < hi:
            h = _block(h, _word(data, j), _tail(data, j + 8, hi))
        elif j + 8 == hi:
            h = _block(h, _word(data, j), np.uint64(0))
        else:
            h = _block(h, _tail(data, j, hi), np.uint64(0))
    return _mix(h ^ n)


@njit(cache=True, nogil=True)
def bytes_cells(offsets, data, out):  # type: ignore[no-untyped-def]
    """The cell hash of every string ``data[offsets[i]:offsets[i + 1]]`` into ``out``
    (int32 or int64 offsets, as Arrow's String and LargeString). Returns the first row
    whose offsets fall outside ``data`` or decrease (-1: none); such rows are not read.
    """
    size = data.shape[0]
    bad = -1
    for i in range(out.shape[0]):
        lo = np.int64(offsets[i])
        hi = np.int64(offsets[i + 1])
        if lo < 0 or hi < lo or hi > size:
            out[i] = np.uint64(0)
            if bad < 0:
                bad = i
            continue
        out[i] = _bytes_cell(data, lo, hi)
    return bad


@njit(cache=True, nogil=True)
def views_cells(views, out):  # type: ignore[no-untyped-def]
    """The cell hash of every string of at most 12 bytes of an Arrow string-view array
    (``views``: its views as pairs of uint64 words) into ``out``, from the views alone
    (bytes past a string's length are masked: padding left non-zero changes nothing).
    Returns the rows of longer strings, whose bytes live in the data buffers (see
    :func:`view_bytes_cells`).
    """
    m = 0
    for r in range(out.shape[0]):
        w0 = views[2 * r]
        length = np.int64(w0 & _LOW32)
        if length > _INLINE:
            m += 1
            continue
        w1 = views[2 * r + 1]
        n = as_u64(length)
        h = _BYTES_SEED ^ n
        if length > 0:
            # bytes 0..3 are the high half of word 0, bytes 4..11 word 1
            first = (w0 >> np.uint64(32)) | (w1 << np.uint64(32))
            second = np.uint64(0)
            if length < 8:
                first &= (np.uint64(1) << np.uint64(8 * length)) - np.uint64(1)
            elif length > 8:
                second = (w1 >> np.uint64(32)) & (
                    (np.uint64(1) << np.uint64(8 * (length - 8))) - np.uint64(1)
                )
            h = _block(h, first, second)
        h = _mix(h ^ n)
        out[r] = h
    long_rows = np.empty(m, np.int64)
    if m:
        k = 0
        for r in range(out.shape[0]):
            if np.int64(views[2 * r] & _LOW32) > _INLINE:
                long_rows[k] = r
                k += 1
    return long_rows


@njit(cache=True, nogil=True)
def rows_by_buffer(views, rows, n_buffers):  # type: ignore[no-untyped-def]
    """The long-string ``rows`` of a string-view array grouped by the data buffer their
    view points into (a counting sort, in order within a buffer): ``(grouped, starts,
    bad)``, buffer ``b``'s rows being ``grouped[starts[b]:starts[b + 1]]``; ``bad`` is
    the first row whose buffer index is past ``n_buffers`` (-1: none; left out).
    A numpy mask a buffer cost ~0.7 ms a 65,536-row batch, this ~0.05 ms."""
    starts = np.zeros(n_buffers + 1, np.int64)
    bad = -1
    for k in range(rows.shape[0]):
        b = np.int64(views[2 * rows[k] + 1] & _LOW32)
        if b >= n_buffers:
            if bad < 0:
                bad = rows[k]
            continue
        starts[b + 1] += 1
    for i in range(n_buffers):
        starts[i + 1] += starts[i]
    at = starts[:-1].copy()
    grouped = np.empty(starts[n_buffers], np.int64)
    for k in range(rows.shape[0]):
        c = np.int64(views[2 * rows[k] + 1] & _LOW32)
        if c < n_buffers:
            grouped[at[c]] = rows[k]
            at[c] += 1
    return grouped, starts, bad


@njit(cache=True, nogil=True)
def view_bytes_cells(views, rows, data, out):  # type: ignore[no-untyped-def]
    """The cell hash of the strings ``rows`` of a string-view array (longer than 12
    bytes, all in the data buffer ``data``) into ``out[rows]``. Returns the first row
    whose view points outside ``data`` (-1: none); it is not read."""
    size = data.shape[0]
    for k in range(rows.shape[0]):
        r = rows[k]
        length = np.int64(views[2 * r] & _LOW32)
        offset = np.int64(views[2 * r + 1] >> np.uint64(32))
        if offset + length > size:
            out[r] = np.uint64(0)
            return r
        out[r] = _bytes_cell(data, offset, offset + length)
    return -1


@njit(cache=True, nogil=True)
def combine_cells(h, cells, valid):  # type: ignore[no-untyped-def]
    """``h[r] = mix(h[r] ^ cell)`` for every row, the cell being ``cells[r]``, or the null
    cell where ``valid[r]`` is False (``valid`` empty: every row valid). In place."""
    every = valid.shape[0] == 0
    for r in range(h.shape[0]):
        c = cells[r] if every or valid[r] else NULL_CELL
        h[r] = _mix(h[r] ^ c)


@njit(cache=True, nogil=True)
def _groups(hashes, n_groups):  # type: ignore[no-untyped-def]
    out = np.empty(hashes.shape[0], np.int32)
    n = np.uint64(n_groups)
    for i in range(hashes.shape[0]):
        out[i] = np.int32(((hashes[i] >> np.uint64(32)) * n) >> np.uint64(32))
    return out


def _check_groups(n_groups: int) -> None:
    if not isinstance(n_groups, int | np.integer) or not 1 <= n_groups <= 2**31 - 1:
        msg = f"key groups: n_groups must be an integer in [1, 2**31 - 1], got {n_groups!r}"
        raise VStreamError(msg)


def key_group(hashes: np.ndarray, n_groups: int = DEFAULT_KEY_GROUPS) -> np.ndarray:
    """The key group (int32, in ``[0, n_groups)``) of every key hash: its high bits,
    ``((h >> 32) * n_groups) >> 32``, so group ``g`` holds a contiguous range of hashes
    (the high bits of splitmix64 are as well mixed as the low ones, and no modulo bias).

    Examples
    --------
    >>> from vstream.kernels.keyhash import key_group
    >>> import numpy as np
    >>> key_group(np.array([0, 2**63, 2**64 - 1], np.uint64), 128).tolist()
    [0, 64, 127]
    """
    _check_groups(n_groups)
    h = np.asarray(hashes)
    if h.dtype == np.int64:
        h = h.view(np.uint64)
    if h.ndim != 1 or h.dtype != np.uint64:
        msg = f"key_group takes a 1-D uint64 array of hashes, got {h.dtype} with shape {h.shape}"
        raise VStreamError(msg)
    groups: np.ndarray = _groups(np.ascontiguousarray(h), np.int64(n_groups))
    return groups


def group_range(partition: int, n_partitions: int, n_groups: int) -> tuple[int, int]:
    """The key groups partition ``partition`` of ``n_partitions`` owns, ``[lo, hi)``:
    contiguous ranges that cover ``0..n_groups - 1`` once, sizes differing by one at most.

    Examples
    --------
    >>> from vstream.kernels.keyhash import group_range
    >>> [group_range(p, 3, 128) for p in range(3)]
    [(0, 42), (42, 85), (85, 128)]
    """
    _check_groups(n_groups)
    if not 1 <= n_partitions <= n_groups:
        msg = (
            f"key groups: {n_partitions} partitions for {n_groups} key groups; a job has "
            f"between 1 and n_groups partitions (raise n_groups, e.g. to {max(n_partitions, 1)})"
        )
        raise VStreamError(msg)
    if not 0 <= partition < n_partitions:
        msg = f"key groups: partition {partition} is outside 0..{n_partitions - 1}"
        raise VStreamError(msg)
    return partition * n_groups // n_partitions, (partition + 1) * n_groups // n_partitions


# ---------------------------------------------------------------------- the wrapper
_INT_TYPES = {8: (np.int8, np.uint8), 16: (np.int16, np.uint16), 32: (np.int32, np.uint32)}


def hashable(dtype: pl.DataType) -> bool:
    """Whether :func:`key_hash` takes a Polars column of this dtype.

    Examples
    --------
    >>> from vstream.kernels.keyhash import hashable
    >>> import polars as pl
    >>> hashable(pl.String), hashable(pl.Datetime("ms")), hashable(pl.List(pl.Int64))
    (True, True, False)
    """
    wide = (pl.Int128, getattr(pl, "UInt128", pl.Int128))  # no Arrow type to read them
    return not (dtype.is_nested() or isinstance(dtype, pl.Object) or dtype in wide)


def _arrow_columns(keys: Any) -> list[pa.Array | pa.ChunkedArray]:
    if isinstance(keys, pl.DataFrame):
        return [_arrow_columns(s)[0] for s in keys.iter_columns()]
    if isinstance(keys, pl.Series):
        return [keys.to_arrow(compat_level=pl.CompatLevel.newest())]
    if isinstance(keys, pa.Table | pa.RecordBatch):
        return list(keys.columns)
    if isinstance(keys, pa.Array | pa.ChunkedArray):
        return [keys]
    if isinstance(keys, Sequence) and not isinstance(keys, str | bytes):
        return [c for k in keys for c in _arrow_columns(k)]
    msg = f"key_hash takes a Polars DataFrame or Series or Arrow columns, got {type(keys)}"
    raise VStreamError(msg)


def _fixed(arr: pa.Array, dtype: Any) -> np.ndarray:
    """The values of a fixed-width array (garbage under nulls), zero-copy."""
    buf = arr.buffers()[1]
    if buf is None or not len(arr):
        return np.zeros(len(arr), dtype)
    values: np.ndarray = np.frombuffer(buf, dtype)
    return values[arr.offset : arr.offset + len(arr)]


def _int64(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_boolean(t):
        buf = arr.buffers()[1]
        if buf is None or not len(arr):
            return np.zeros(len(arr), np.int64)
        bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")
        return bits[arr.offset : arr.offset + len(arr)].astype(np.int64)
    width = t.bit_width
    if width == 64:
        return _fixed(arr, np.uint64 if pa.types.is_unsigned_integer(t) else np.int64).view(
            np.int64
        )
    signed, unsigned = _INT_TYPES[width]
    return _fixed(arr, unsigned if pa.types.is_unsigned_integer(t) else signed).astype(np.int64)


def _float_bits(arr: pa.Array) -> np.ndarray:
    width = arr.type.bit_width
    x = _fixed(arr, {16: np.float16, 32: np.float32, 64: np.float64}[width]).astype(np.float64)
    if width == 64:
        x = x.copy()  # _fixed is a view of the array's buffer
    x[x == 0] = 0.0  # -0.0 is 0.0
    x[np.isnan(x)] = np.nan  # one NaN
    return x.view(np.int64)


def _bytes(buf: pa.Buffer | None, dtype: Any = np.uint8) -> np.ndarray:
    """A buffer as an array of ``dtype`` (zero-copy; a trailing partial item dropped)."""
    if buf is None:
        return np.zeros(0, dtype)
    size = np.dtype(dtype).itemsize
    return np.frombuffer(buf, dtype, count=buf.size // size)


def _refuse(arr: pa.Array, row: int) -> None:
    if row >= 0:
        msg = (
            f"key hash: row {row} of a {arr.type} key column points outside its data "
            "buffers (a damaged Arrow array); the key is refused"
        )
        raise VStreamError(msg)


def _cells(arr: pa.Array) -> np.ndarray:
    """The cell hash of every row of one Arrow array (nulls: any value)."""
    t, n = arr.type, len(arr)
    if any(
        f(t)
        for f in (
            pa.types.is_integer,
            pa.types.is_boolean,
            pa.types.is_date,
            pa.types.is_time,
            pa.types.is_timestamp,
            pa.types.is_duration,
        )
    ):
        return int_cells(np.ascontiguousarray(_int64(arr)))  # type: ignore[no-any-return]
    if pa.types.is_floating(t):
        return int_cells(_float_bits(arr))  # type: ignore[no-any-return]
    out = np.empty(n, np.uint64)
    if not n:
        return out
    wide = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    if wide or pa.types.is_string(t) or pa.types.is_binary(t):
        bufs = arr.buffers()
        offsets = _bytes(bufs[1], np.int64 if wide else np.int32)
        offsets = offsets[arr.offset : arr.offset + n + 1]
        if offsets.size != n + 1:
            _refuse(arr, 0)
        _refuse(arr, bytes_cells(offsets, _bytes(bufs[2]), out))
        return out
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        bufs = arr.buffers()
        views = np.ascontiguousarray(
            _bytes(bufs[1], np.uint64)[2 * arr.offset : 2 * (arr.offset + n)]
        )
        if views.size != 2 * n:
            _refuse(arr, 0)
        rows = views_cells(views, out)
        if rows.size:
            # the long strings buffer by buffer (a numba list of the buffers cost
            # ~0.1 ms a call, joining them a copy of every byte)
            data = bufs[2:]
            grouped, starts, bad = rows_by_buffer(views, rows, len(data))
            _refuse(arr, bad)
            for b, buf in enumerate(data):
                if starts[b + 1] > starts[b]:
                    mine = grouped[starts[b] : starts[b + 1]]
                    _refuse(arr, view_bytes_cells(views, mine, _bytes(buf), out))
        return out
    if pa.types.is_dictionary(t):
        values = _cells(arr.dictionary)
        codes = arr.indices
        idx = _int64(codes)
        if codes.null_count:
            idx = np.where(codes.is_valid().to_numpy(zero_copy_only=False), idx, 0)
        if values.size and n and (idx.min() < 0 or idx.max() >= values.size):
            _refuse(arr, int(np.flatnonzero((idx < 0) | (idx >= values.size))[0]))
        return values[idx] if values.size else np.zeros(n, np.uint64)
    if pa.types.is_decimal(t) and t.byte_width == 16:
        raw = _bytes(arr.buffers()[1])[16 * arr.offset : 16 * (arr.offset + n)]
        _refuse(arr, bytes_cells(np.arange(0, 16 * n + 1, 16, dtype=np.int64), raw, out))
        return out
    if pa.types.is_null(t):
        return np.zeros(n, np.uint64)
    msg = (
        f"key hash: a key column of type {t} has no stable hash; keys are integers, "
        "floats, booleans, temporals, strings, binaries, categoricals or decimals "
        "(cast it first, e.g. to String)"
    )
    raise SchemaError(msg)


def key_hash(keys: Any) -> np.ndarray:
    """The stable 64-bit hash (uint64) of every key row: ``keys`` a Polars DataFrame or
    Series, an Arrow table, record batch, array or chunked array, or a list of columns
    (combined in that order). See the module's docstring for the function.

    Examples
    --------
    >>> from vstream.kernels.keyhash import key_hash
    >>> import polars as pl
    >>> df = pl.DataFrame({"host": ["a", "b", None], "id": [1, 2, 3]})
    >>> [hex(int(h)) for h in key_hash(df)]
    ['0x5637ef7f09d444c0', '0xfd522ccbe66d4150', '0xe43adae915e87335']
    >>> bool(key_hash(df.select("id"))[0] == key_hash(pl.Series([1]))[0])
    True
    """
    columns = _arrow_columns(keys)
    if not columns:
        msg = "key_hash needs at least one key column"
        raise VStreamError(msg)
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        msg = f"key_hash: the key columns differ in length ({[len(c) for c in columns]})"
        raise VStreamError(msg)
    h = np.full(n, ROW_SEED, np.uint64)
    no_nulls = np.zeros(0, np.bool_)
    for col in columns:
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        at = 0
        for chunk in chunks:
            m = len(chunk)
            if not m:
                continue
            cells = _cells(chunk)
            valid = no_nulls
            if chunk.null_count or pa.types.is_null(chunk.type):
                valid = chunk.is_valid().to_numpy(zero_copy_only=False)
                if pa.types.is_dictionary(chunk.type) and chunk.dictionary.null_count:
                    valid = (
                        valid
                        & chunk.dictionary.is_valid().to_numpy(zero_copy_only=False)[
                            np.where(valid, _int64(chunk.indices), 0)
                        ]
                    )
            elif pa.types.is_dictionary(chunk.type) and chunk.dictionary.null_count:
                valid = chunk.dictionary.is_valid().to_numpy(zero_copy_only=False)[
                    _int64(chunk.indices)
                ]
            combine_cells(h[at : at + m], cells, valid)
            at += m
    return h


# ---------------------------------------------------------------------- the reference
def _mix_reference(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _MASK
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _cell_reference(value: object) -> int:
    if value is None:
        return int(NULL_CELL)
    if isinstance(value, float):
        if math.isnan(value):
            value = math.nan
        bits = struct.unpack("<q", struct.pack("<d", value + 0.0))[0]  # -0.0 + 0.0 is 0.0
        return _mix_reference((bits + int(_GOLDEN)) & _MASK)
    if isinstance(value, int):  # booleans too
        return _mix_reference((int(value) + int(_GOLDEN)) & _MASK)
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes | bytearray | memoryview):
        msg = f"key_hash_reference: no cell hash for {type(value)}"
        raise TypeError(msg)
    data = bytes(value)
    h = int(_BYTES_SEED) ^ len(data)
    for j in range(0, len(data), 16):
        a = int.from_bytes(data[j : j + 8], "little")
        b = int.from_bytes(data[j + 8 : j + 16], "little")
        p = (a ^ int(_S1)) * (b ^ h ^ int(_S2))
        h = (p & _MASK) ^ (p >> 64)
    return _mix_reference(h ^ len(data))


def key_hash_reference(rows: Sequence[Sequence[object]]) -> list[int]:
    """:func:`key_hash` in plain Python, over rows of physical values: None (null), int
    (integer-like values, booleans), float, str or bytes.

    Examples
    --------
    >>> from vstream.kernels.keyhash import key_hash_reference
    >>> [hex(h) for h in key_hash_reference([("a", 1), ("b", 2), (None, 3)])]
    ['0x5637ef7f09d444c0', '0xfd522ccbe66d4150', '0xe43adae915e87335']
    """
    out = []
    for row in rows:
        h = int(ROW_SEED)
        for value in row:
            h = _mix_reference(h ^ _cell_reference(value))
        out.append(h)
    return out
