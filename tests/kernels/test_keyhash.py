"""The stable key hash and key groups against their plain-Python reference.

The golden values pin the function: keyed state is partitioned by it and checkpoints
keep its key groups, so a change here breaks every checkpoint and every deployment that
mixes versions. They must never change (a new function needs a new name and a
checkpoint format version).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.kernels.keyhash import (
    DEFAULT_KEY_GROUPS,
    NULL_CELL,
    bytes_cells,
    group_range,
    hashable,
    int_cells,
    key_group,
    key_hash,
    key_hash_reference,
    views_cells,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
int64s = st.one_of(
    st.integers(INT64_MIN, INT64_MAX), st.sampled_from([0, -1, INT64_MIN, INT64_MAX])
)
# short (inline in a string view), around the 8-byte word and the 12-byte inline limit,
# long (> 12, > 100 bytes), any code point but surrogates
texts = st.one_of(
    st.text(max_size=14),
    st.text(min_size=13, max_size=140),
    st.text(alphabet="ab", min_size=7, max_size=13),
)


def _hex(values: np.ndarray | list[int]) -> list[str]:
    return [hex(int(v)) for v in values]


# ---------------------------------------------------------------------- golden values
GOLDEN_INTS = [0, 1, -1, INT64_MIN, INT64_MAX, 1_700_000_000_000]
GOLDEN_INT_HASHES = [
    "0x12c6e78174eab2f9",
    "0x84caec5916a50662",
    "0xac994bc6342b79eb",
    "0x940a92a26e6d26cf",
    "0x1b067dc36dad179",
    "0xd33257c0865a9366",
]
GOLDEN_STRINGS = ["", "a", "host-00001", "a key longer than twelve bytes", "ünïcødé ✓"]
GOLDEN_STRING_HASHES = [
    "0xfba2db71b3ddf9c3",
    "0xb697d4f34a75a82c",
    "0xdc88f275455d0759",
    "0x550b1f2b1d619928",
    "0x7d126bd5bf93b3a3",
]
GOLDEN_PAIRS = {"a": ["us-east-1", None, "x"], "b": [42, 7, None]}
GOLDEN_PAIR_HASHES = ["0x4ed77eb0a5727565", "0x51d5892e211e1aee", "0xc991ddd2699c2e90"]
GOLDEN_OTHERS = {"null": "0xa387cfb0a4eb779", "1.5": "0x2c6da17b6d6dee00"}


def _golden() -> dict[str, list[str]]:
    return {
        "ints": _hex(key_hash(pl.Series(GOLDEN_INTS))),
        "strings": _hex(key_hash(pl.Series(GOLDEN_STRINGS))),
        "pairs": _hex(key_hash(pl.DataFrame(GOLDEN_PAIRS))),
        "others": _hex(key_hash(pl.Series([None], dtype=pl.Int64)))
        + _hex(key_hash(pl.Series([1.5]))),
    }


EXPECTED = {
    "ints": GOLDEN_INT_HASHES,
    "strings": GOLDEN_STRING_HASHES,
    "pairs": GOLDEN_PAIR_HASHES,
    "others": [GOLDEN_OTHERS["null"], GOLDEN_OTHERS["1.5"]],
}


def test_golden_values_never_change() -> None:
    """The stability contract: these hashes, from the kernels and from the reference."""
    assert _golden() == EXPECTED
    assert _hex(key_hash_reference([(v,) for v in GOLDEN_INTS])) == GOLDEN_INT_HASHES
    assert _hex(key_hash_reference([(v,) for v in GOLDEN_STRINGS])) == GOLDEN_STRING_HASHES
    rows = list(zip(*GOLDEN_PAIRS.values(), strict=True))
    assert _hex(key_hash_reference(rows)) == GOLDEN_PAIR_HASHES
    # splitmix64's first output for seed 0: the integer cell is the well-known function
    assert hex(int(int_cells(np.array([0], np.int64))[0])) == "0xe220a8397b1dcdaf"
    assert key_group(np.array([int(h, 16) for h in GOLDEN_STRING_HASHES], np.uint64)).tolist() == [
        125,
        91,
        110,
        42,
        62,
    ]


@pytest.mark.parametrize(
    "env",
    [{"PYTHONHASHSEED": "1"}, {"PYTHONHASHSEED": "4242", "NUMBA_DISABLE_JIT": "1"}],
    ids=["seed-1", "seed-4242-interpreted"],
)
def test_another_process_gives_the_same_hashes(env: dict[str, str]) -> None:
    """Another interpreter, another hash seed (and plain Python instead of compiled
    kernels): the same values."""
    code = (
        "import json, sys; sys.path.insert(0, 'tests/kernels'); import test_keyhash as t; "
        "print(json.dumps(t._golden()))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == EXPECTED


# ---------------------------------------------------------------------- against the reference
@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), int64s), max_size=60))
def test_integers_match_the_reference(values: list[int | None]) -> None:
    got = key_hash(pl.Series(values, dtype=pl.Int64))
    assert got.dtype == np.uint64
    assert got.tolist() == key_hash_reference([(v,) for v in values])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), max_size=40),
    st.lists(st.one_of(st.none(), st.booleans()), max_size=40),
)
def test_unsigned_and_booleans_hash_as_their_int64_bits(
    unsigned: list[int | None], flags: list[bool | None]
) -> None:
    assert key_hash(pl.Series(unsigned, dtype=pl.UInt64)).tolist() == key_hash_reference(
        [(v,) for v in unsigned]
    )
    assert key_hash(pl.Series(flags, dtype=pl.Boolean)).tolist() == key_hash_reference(
        [(None if v is None else int(v),) for v in flags]
    )
    # a sliced boolean array starts inside a byte of its bitmap
    arr = pa.array([True, False, None, True, *flags], pa.bool_()).slice(3)
    assert key_hash(arr).tolist() == key_hash_reference(
        [(None if v is None else int(v),) for v in arr.to_pylist()]
    )


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (pl.Int8, [-128, 0, 127, None]),
        (pl.Int16, [-(2**15), 5, None]),
        (pl.Int32, [-(2**31), 2**31 - 1, None]),
        (pl.UInt8, [0, 255, None]),
        (pl.UInt16, [65_535, None]),
        (pl.UInt32, [2**32 - 1, None]),
        (pl.Date, [date(1970, 1, 1), date(1900, 5, 6), None]),
        (pl.Datetime("ms"), [datetime(2024, 1, 2, 3, 4, 5), None]),
        (pl.Datetime("us", "Europe/Paris"), [datetime(2024, 1, 2, 3, 4, 5), None]),
        (pl.Duration("ns"), [timedelta(seconds=-3), None]),
        (pl.Time, [datetime(2024, 1, 1, 13, 5).time(), None]),
    ],
)
def test_integer_like_columns_hash_as_their_physical_value(
    dtype: pl.DataType, values: list[object]
) -> None:
    s = pl.Series(values, dtype=dtype)
    physical = s.to_physical().to_list()
    assert key_hash(s).tolist() == key_hash_reference([(v,) for v in physical])
    # the same integers as Int64: a key's hash does not depend on its width
    assert key_hash(s).tolist() == key_hash(s.to_physical().cast(pl.Int64)).tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), texts), max_size=40), st.integers(0, 5))
def test_strings_match_the_reference_in_every_arrow_layout(
    values: list[str | None], cut: int
) -> None:
    """String, LargeString and StringView arrays (and Polars' String, and slices of each,
    whose offsets do not start at 0) of the same values hash equal, to the reference."""
    expected = key_hash_reference([(v,) for v in values])
    assert key_hash(pl.Series(values, dtype=pl.String)).tolist() == expected
    for t in (pa.string(), pa.large_string(), pa.string_view()):
        arr = pa.array(["zz" * 9] * cut + values, t)
        assert key_hash(arr.slice(cut)).tolist() == expected, t
    for t in (pa.binary(), pa.large_binary(), pa.binary_view()):
        raw = [None if v is None else v.encode() for v in values]
        assert key_hash(pa.array(raw, t)).tolist() == expected, t


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), texts), min_size=1, max_size=10), max_size=6))
def test_chunked_columns_hash_as_one(chunks: list[list[str | None]]) -> None:
    whole = [v for c in chunks for v in c]
    chunked = pa.chunked_array([pa.array(c, pa.string_view()) for c in chunks], pa.string_view())
    assert key_hash(chunked).tolist() == key_hash_reference([(v,) for v in whole])
    frame = pl.concat(
        [pl.DataFrame({"k": c}, schema={"k": pl.String}) for c in chunks]
        or [pl.DataFrame({"k": []}, schema={"k": pl.String})],
        rechunk=False,
    )
    assert key_hash(frame).tolist() == key_hash_reference([(v,) for v in whole])


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.text(max_size=12).filter(lambda v: len(v.encode()) <= 12), min_size=1, max_size=30
    ),
    garbage=st.integers(1, 255),
)
def test_inline_views_ignore_their_padding(values: list[str], garbage: int) -> None:
    arr = pa.array(values, pa.string_view())
    views = np.frombuffer(arr.buffers()[1], np.uint64)[: 2 * len(values)].copy()
    for r, v in enumerate(values):
        n = len(v.encode())
        raw = bytearray(views[2 * r : 2 * r + 2].tobytes())
        raw[4 + n :] = bytes([garbage]) * (12 - n)
        views[2 * r : 2 * r + 2] = np.frombuffer(bytes(raw), np.uint64)
    out = np.empty(len(values), np.uint64)
    assert views_cells(views, out).tolist() == []  # all inline
    clean = np.empty(len(values), np.uint64)
    words = np.frombuffer(arr.buffers()[1], np.uint64)[: 2 * len(values)].copy()
    views_cells(words, clean)
    assert out.tolist() == clean.tolist()


def _long_view(data: bytes, buffer: int, offset: int) -> list[int]:
    prefix = int.from_bytes(data[:4], "little")
    return [len(data) | prefix << 32, buffer | offset << 32]


def test_string_views_over_several_data_buffers() -> None:
    """Long strings of a view array may live in different data buffers, at offsets."""
    first, second = b"__" + b"x" * 20, b"y" * 30 + b"z" * 13
    views = np.array(
        [
            *_long_view(first[2:], 0, 2),
            *[5 | int.from_bytes(b"shor", "little") << 32, ord("t")],
            *_long_view(second[30:], 1, 30),
            *_long_view(second[:30], 1, 0),
        ],
        np.uint64,
    )
    arr = pa.Array.from_buffers(
        pa.string_view(),
        4,
        [None, pa.py_buffer(views.tobytes()), pa.py_buffer(first), pa.py_buffer(second)],
    )
    values = ["x" * 20, "short", "z" * 13, "y" * 30]
    assert arr.to_pylist() == values
    expected = key_hash_reference([(v,) for v in values])
    assert key_hash(arr).tolist() == expected
    assert key_hash(arr.slice(1)).tolist() == expected[1:]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, width=64)), max_size=30))
def test_floats_match_the_reference(values: list[float | None]) -> None:
    assert key_hash(pl.Series(values, dtype=pl.Float64)).tolist() == key_hash_reference(
        [(v,) for v in values]
    )


def test_float_zeros_and_nans_are_one_value_each() -> None:
    nans = np.array([0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8000000000001], np.uint64)
    x = pl.Series(np.concatenate([[0.0, -0.0], nans.view(np.float64)]))
    h = key_hash(x)
    assert h[0] == h[1]
    assert h[2] == h[3] == h[4]
    assert h[0] != h[2]
    assert (
        key_hash(pl.Series([1.5, None], dtype=pl.Float32)).tolist()
        == key_hash(pl.Series([1.5, None], dtype=pl.Float64)).tolist()
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), texts),
            st.one_of(st.none(), int64s),
            st.one_of(st.none(), st.floats(allow_nan=False)),
        ),
        max_size=30,
    )
)
def test_several_columns_match_the_reference(rows: list[tuple[object, ...]]) -> None:
    df = pl.DataFrame(rows, schema={"s": pl.String, "i": pl.Int64, "f": pl.Float64}, orient="row")
    assert key_hash(df).tolist() == key_hash_reference(rows)
    # the columns as a list, and as an Arrow table: the same
    assert key_hash([df["s"], df["i"], df["f"]]).tolist() == key_hash(df.to_arrow()).tolist()


def test_column_order_and_nulls_matter() -> None:
    ab = key_hash(pl.DataFrame({"a": ["x", "y"], "b": ["y", "x"]}))
    assert ab[0] != ab[1]
    assert key_hash(pl.Series([None], dtype=pl.String))[0] != key_hash(pl.Series([""]))[0]
    assert key_hash(pl.Series([None], dtype=pl.Int64))[0] != key_hash(pl.Series([0]))[0]
    # a null is the same null in every dtype
    nulls = {
        int(key_hash(pl.Series([None], dtype=dt))[0]) for dt in (pl.Int64, pl.String, pl.Null)
    }
    assert len(nulls) == 1
    assert nulls == {key_hash_reference([(None,)])[0]}
    assert int(NULL_CELL) == 0x8EBC6AF09C88C6E3
    # ("a", "") against ("", "a"): lengths keep cell boundaries
    pair = key_hash(pl.DataFrame({"a": ["a", ""], "b": ["", "a"]}))
    assert pair[0] != pair[1]


def test_categoricals_enums_binaries_and_decimals() -> None:
    values = ["b", None, "a much longer category than twelve", "b"]
    strings = key_hash(pl.Series(values)).tolist()
    assert key_hash(pl.Series(values, dtype=pl.Categorical)).tolist() == strings
    enum = pl.Enum(["z", "b", "a much longer category than twelve"])
    assert key_hash(pl.Series(values, dtype=enum)).tolist() == strings
    assert key_hash(pl.Series([None if v is None else v.encode() for v in values])).tolist() == (
        strings
    )
    dec = pl.Series(["1.50", None, "-2.25"], dtype=pl.Decimal(10, 2))
    raw = [
        (150).to_bytes(16, "little", signed=True),
        None,
        (-225).to_bytes(16, "little", signed=True),
    ]
    assert key_hash(dec).tolist() == key_hash_reference([(v,) for v in raw])


def test_unsupported_and_damaged_columns_are_refused() -> None:
    assert not hashable(pl.List(pl.Int64))
    with pytest.raises(vs.SchemaError, match="no stable hash"):
        key_hash(pl.Series([[1, 2]]))
    with pytest.raises(vs.VStreamError, match="differ in length"):
        key_hash([pl.Series([1, 2]), pl.Series([1])])
    with pytest.raises(vs.VStreamError, match="at least one"):
        key_hash(pl.DataFrame())
    # offsets past the end of the data buffer or decreasing: the row is not read
    out = np.empty(3, np.uint64)
    data = np.frombuffer(b"abc", np.uint8)
    assert bytes_cells(np.array([0, 1, 99, 2], np.int32), data, out) == 1
    assert bytes_cells(np.array([0, 2, 1, 3], np.int64), data, out) == 1
    assert bytes_cells(np.array([0, 1, 2, 3], np.int64), data, out) == -1
    # a long view pointing past its buffer
    view = np.array([20 | (ord("x") << 32), 0 | (5 << 32)], np.uint64)
    bad_view = pa.Array.from_buffers(
        pa.string_view(), 1, [None, pa.py_buffer(view.tobytes()), pa.py_buffer(b"x" * 21)]
    )
    with pytest.raises(vs.VStreamError, match=r"row 0 .* outside its data"):
        key_hash(bad_view)


# ---------------------------------------------------------------------- key groups
@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=50),
    st.one_of(st.integers(1, 4096), st.just(2**31 - 1)),
)
def test_key_group_is_the_high_bits(hashes: list[int], n: int) -> None:
    got = key_group(np.array(hashes, np.uint64), n)
    assert got.dtype == np.int32
    assert got.tolist() == [((h >> 32) * n) >> 32 for h in hashes]
    # int64 hashes (the key index's) are read as their bits
    assert key_group(np.array(hashes, np.uint64).view(np.int64), n).tolist() == got.tolist()
    # each group is a contiguous range of hash values
    order = np.argsort(np.array(hashes, np.uint64), kind="stable")
    assert (np.diff(got[order]) >= 0).all()


@pytest.mark.parametrize("n_groups", [1, 7, DEFAULT_KEY_GROUPS, 1000])
def test_group_ranges_cover_every_group_once(n_groups: int) -> None:
    for parts in {1, min(2, n_groups), min(3, n_groups), min(5, n_groups), n_groups}:
        ranges = [group_range(p, parts, n_groups) for p in range(parts)]
        assert ranges[0][0] == 0
        assert ranges[-1][1] == n_groups
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        sizes = [hi - lo for lo, hi in ranges]
        assert min(sizes) >= 1
        assert max(sizes) - min(sizes) <= 1


def test_bad_group_arguments_are_refused() -> None:
    with pytest.raises(vs.VStreamError, match="n_groups"):
        key_group(np.zeros(1, np.uint64), 0)
    with pytest.raises(vs.VStreamError, match="1-D uint64"):
        key_group(np.zeros(1, np.float64), 8)
    with pytest.raises(vs.VStreamError, match="9 partitions for 8 key groups"):
        group_range(0, 9, 8)
    with pytest.raises(vs.VStreamError, match="partition 3 is outside"):
        group_range(3, 3, 8)


def _chi_square(groups: np.ndarray, n: int) -> float:
    counts = np.bincount(groups, minlength=n)
    expected = groups.size / n
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize(
    "keys",
    [
        pl.Series("id", np.arange(100_000)),  # sequential integers
        pl.Series("id", np.arange(100_000) * 1024),  # strided, low bits all zero
        pl.Series("host", [f"host-{i:05d}" for i in range(100_000)]),  # short, inline
        pl.Series("user", [f"user-{i}@example.com" for i in range(100_000)]),  # long
    ],
    ids=["sequential", "strided", "short-strings", "long-strings"],
)
def test_keys_spread_evenly_over_the_groups(keys: pl.Series) -> None:
    """100 k distinct keys over 128 groups: a chi-square far below what a skew gives
    (127 degrees of freedom: mean 127, sd ~16; 220 is beyond 5 sd)."""
    groups = key_group(key_hash(keys), DEFAULT_KEY_GROUPS)
    assert groups.min() >= 0
    assert groups.max() < DEFAULT_KEY_GROUPS
    assert _chi_square(groups, DEFAULT_KEY_GROUPS) < 220


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_folded_multiply_compiled_equals_python(h: int, a: int, b: int) -> None:
    """The 128-bit product is an LLVM intrinsic compiled, Python integers interpreted."""
    from vstream.kernels.keyhash import _block, fold_mul

    args = (np.uint64(h), np.uint64(a), np.uint64(b))
    interpreted = getattr(_block, "py_func", _block)
    assert int(_block(*args)) == int(interpreted(*args))
    p = (a ^ 0xA0761D6478BD642F) * (b ^ h ^ 0xE7037ED1A0B428DB)
    assert int(fold_mul(a ^ 0xA0761D6478BD642F, b ^ h ^ 0xE7037ED1A0B428DB)) == (
        (p & (2**64 - 1)) ^ (p >> 64)
    )
    assert int(_block(*args)) == (p & (2**64 - 1)) ^ (p >> 64)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=60), st.integers(1, 5))
def test_rows_by_buffer_is_a_stable_counting_sort(buffers: list[int], n_buffers: int) -> None:
    """Long-string rows grouped by the buffer their view names, in row order within a
    buffer; a row naming a buffer past the last is reported and left out."""
    from vstream.kernels.keyhash import rows_by_buffer

    views = np.zeros(2 * len(buffers), np.uint64)
    views[1::2] = np.array(buffers, np.uint64) | (np.uint64(7) << np.uint64(32))
    rows = np.arange(len(buffers), dtype=np.int64)
    grouped, starts, bad = rows_by_buffer(views, rows, n_buffers)
    for b in range(n_buffers):
        assert grouped[starts[b] : starts[b + 1]].tolist() == [
            r for r, x in enumerate(buffers) if x == b
        ]
    assert starts[-1] == grouped.size == sum(x < n_buffers for x in buffers)
    outside = [r for r, x in enumerate(buffers) if x >= n_buffers]
    assert bad == (outside[0] if outside else -1)
