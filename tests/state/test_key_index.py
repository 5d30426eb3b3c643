"""The key index and its hash-table kernel against plain Python references."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.kernels.hashing import (
    assign_from,
    assign_ids,
    assign_ids_reference,
    find_ids,
    first_rows,
    first_rows_reference,
    new_table,
    rehash,
    views_equal,
    views_hash,
)
from vstream.kernels.keyhash import key_group, key_hash
from vstream.state.key_index import KeyIndex, _views


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.integers(-5, 40), st.integers(-(2**63), 2**63 - 1)), max_size=60),
        max_size=8,
    )
)
def test_assign_from_grows_the_table_as_new_keys_fill_it(batches: list[list[int]]) -> None:
    """assign_from stops at half load; growing and resuming gives the reference's ids,
    with the table never more than half full."""
    table = new_table(4)
    known: dict[int, int] = {}
    n = 0
    for batch in batches:
        keys = np.array(batch, dtype=np.int64)
        ids = np.empty(len(keys), np.int32)
        r = 0
        while True:
            r, n = assign_from(table, keys, ids, n, r)
            assert n <= table.shape[0] // 2
            if r == len(keys):
                break
            table = rehash(table, 2 * table.shape[0])
        assert ids.tolist() == assign_ids_reference(keys, known).tolist()
    assert n == len(known)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60), max_size=8))
def test_assign_ids_matches_reference(batches: list[list[int]]) -> None:
    table = new_table(8)
    known: dict[int, int] = {}
    n = 0
    for batch in batches:
        keys = np.array(batch, dtype=np.int64)
        size = table.shape[0]
        while size < 2 * (n + len(keys)):
            size *= 2
        table = rehash(table, size)
        ids, n = assign_ids(table, keys, n)
        assert ids.tolist() == assign_ids_reference(keys, known).tolist()
    assert n == len(known)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60),
    st.sampled_from([256, 1024]),
)
def test_find_ids_matches_reference(known: list[int], probes: list[int], size: int) -> None:
    """find_ids gives the id of known keys and -1 for the others, inserts nothing, and
    survives a rehash."""
    table = new_table(256)
    ids, n = assign_ids(table, np.array(known, dtype=np.int64), 0)
    table = rehash(table, size)
    ref = dict(zip(known, ids.tolist(), strict=True))
    keys = np.array(probes + known[:3], dtype=np.int64)
    assert find_ids(table, keys).tolist() == [ref.get(k, -1) for k in keys.tolist()]
    assert int((table[:, 1] != 0).sum()) == n


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 6),
    st.lists(st.integers(1, 4), max_size=8),  # how often each new id occurs
    st.lists(st.integers(0, 5), max_size=20),  # old ids among them
    st.randoms(use_true_random=False),
)
def test_first_rows_matches_reference(
    first_new: int, repeats: list[int], old: list[int], rnd: Any
) -> None:
    ids = [first_new + k for k, r in enumerate(repeats) for _ in range(r)]
    ids += [i for i in old if i < first_new]
    rnd.shuffle(ids)
    arr = np.array(ids, np.int32)
    got = first_rows(arr, np.int64(first_new), np.int64(len(repeats)))
    assert got.tolist() == first_rows_reference(arr, first_new, len(repeats)).tolist()


def test_assign_ids_refuses_a_full_table() -> None:
    with pytest.raises(ValueError, match="grow"):
        assign_ids(new_table(4), np.arange(3, dtype=np.int64), 0)


def _check_index(index: KeyIndex, batches: list[pl.DataFrame]) -> None:
    """Across batches: one id per distinct key, ids dense, keys(ids) gives the keys back."""
    seen: dict[tuple[object, ...], int] = {}
    for df in batches:
        ids = index.ids(df)
        assert ids.dtype == np.int32
        assert len(ids) == df.height
        for row, i in zip(df.rows(), ids.tolist(), strict=True):
            assert seen.setdefault(row, i) == i  # same key, same id, in every batch
        back = index.keys(ids)
        assert back.rows() == df.select(index.columns).rows()
    assert sorted(seen.values()) == list(range(len(seen)))  # dense and injective
    assert len(index) == len(seen)
    # the key group of each id: that of its key's stable hash, whatever path gave ids
    groups = index.key_groups(16)
    for df in batches:
        expected = key_group(key_hash(df.select(index.columns)), 16)
        assert groups[index.find(df, exact=True)[_no_nulls(df, index.columns)]].tolist() == (
            expected[_no_nulls(df, index.columns)].tolist()
        )
        assert groups[index.ids(df)].tolist() == expected.tolist()


def _no_nulls(df: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows whose key has no null (find gives the others -1)."""
    mask: np.ndarray = (
        df.select(~pl.any_horizontal(pl.col(columns).is_null())).to_series().to_numpy()
    )
    return mask


int_batches = st.lists(
    st.lists(st.one_of(st.none(), st.integers(-5, 5), st.integers(-(2**62), 2**62)), max_size=40),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(int_batches)
def test_integer_keys(batches: list[list[int | None]]) -> None:
    index = KeyIndex(pl.Schema({"k": pl.Int64}))
    _check_index(index, [pl.DataFrame({"k": b}, schema={"k": pl.Int64}) for b in batches])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=40), min_size=1, max_size=6
    )
)
def test_string_keys(batches: list[list[str | None]]) -> None:
    index = KeyIndex(pl.Schema({"k": pl.String}))
    _check_index(index, [pl.DataFrame({"k": b}, schema={"k": pl.String}) for b in batches])


# short (inline in an Arrow string view), exactly 12 / 13 bytes, long, multi-byte
view_strings = st.one_of(
    st.text(max_size=14),
    st.sampled_from(["", "a", "abcdefghijkl", "abcdefghijklm", "abcdefghijkz", "é" * 7]),
    st.text(min_size=13, max_size=30),
)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(view_strings, max_size=40), min_size=1, max_size=6),
    start=st.integers(0, 3),
)
def test_string_keys_checked_on_their_views(batches: list[list[str]], start: int) -> None:
    """Without nulls, string keys are checked against the known keys on their Arrow
    views; batches that are slices (an offset into the views) included. The ids and
    keys must be those of the exact comparison."""
    index = KeyIndex(pl.Schema({"k": pl.String}))
    frames = [pl.DataFrame({"k": ["pad"] * start + b}).slice(start) for b in batches]
    _check_index(index, frames)
    assert index._hashed  # no false collision from the views
    if len(index):
        back = index.keys(np.arange(len(index) - 1, -1, -1, dtype=np.int32))
        assert back.schema == pl.Schema({"k": pl.String})
        with pytest.raises(vs.VStreamError, match="ids must be in"):
            index.keys(np.array([len(index)], np.int32))


def test_views_equal_decides_only_inline_strings() -> None:
    """views_equal: 0 all equal, 1 a difference, 2 undecided (long strings whose length
    and first four bytes match)."""
    known = pl.Series(["abc", "abcdefghijkl", "abcdefghijklmn"]).to_arrow(
        compat_level=pl.CompatLevel.newest()
    )
    kv = np.frombuffer(known.buffers()[1], np.uint64)

    def status(values: list[str], ids: list[int]) -> int:
        arr = pl.Series(values).to_arrow(compat_level=pl.CompatLevel.newest())
        v = np.frombuffer(arr.buffers()[1], np.uint64)
        return int(views_equal(v, kv, np.array(ids, np.int32)))

    assert status(["abc", "abcdefghijkl"], [0, 1]) == 0
    assert status(["abd"], [0]) == 1
    assert status(["abcdefghijkm"], [1]) == 1  # same prefix, differs in the inline tail
    assert status(["abcdefghijklmn"], [2]) == 2  # long: the bytes are in a data buffer
    assert status(["abcdefghijklmz"], [2]) == 2
    assert status(["abcdefghijklmn", "x"], [2, 0]) == 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["eu", "us", None]), st.one_of(st.none(), st.integers(0, 3))
            ),
            max_size=30,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_multi_column_keys(batches: list[list[tuple[str | None, int | None]]]) -> None:
    schema = pl.Schema({"region": pl.String, "host": pl.Int32})
    index = KeyIndex(schema)
    frames = [pl.DataFrame(b, schema=schema, orient="row") for b in batches]
    _check_index(index, frames)


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (pl.UInt64, [0, 2**64 - 1, 5, None, 2**63]),
        (pl.Boolean, [True, False, None, True]),
        (pl.Date, [datetime(2024, 1, 1).date(), None, datetime(1969, 5, 1).date()]),
        (pl.Datetime("ms"), [datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 1), None]),
        (pl.Duration("us"), [timedelta(seconds=1), timedelta(0), None]),
        (pl.Int8, [-128, 127, None, 0]),
        (pl.Categorical(), ["a", "b", None, "a"]),
    ],
)
def test_key_dtypes_round_trip(dtype: pl.DataType, values: list[object]) -> None:
    index = KeyIndex(pl.Schema({"k": dtype}))
    df = pl.DataFrame({"k": values}, schema={"k": dtype})
    _check_index(index, [df, df.reverse()])
    assert index.keys(index.ids(df)).schema == df.schema


@pytest.mark.parametrize("dtype", [pl.Int64, pl.String])
def test_snapshot_restore_keeps_every_id(dtype: pl.DataType) -> None:
    df = vs.datasets.telemetry(3_000, hosts=300, seed=4)
    col = "host_id" if dtype == pl.Int64 else "host"
    keys = df.select(pl.col(col).cast(dtype).alias("k"))
    keys = pl.concat([keys, pl.DataFrame({"k": [None]}, schema={"k": dtype})])
    index = KeyIndex(pl.Schema({"k": dtype}))
    before = index.ids(keys)
    state = index.snapshot()
    assert pl.from_arrow(state["keys"]).height == len(index)  # type: ignore[union-attr]
    restored = KeyIndex(pl.Schema({"k": dtype}))
    restored.restore(state)
    assert restored.ids(keys).tolist() == before.tolist()
    later = pl.DataFrame({"k": keys["k"].head(5).to_list()}, schema={"k": dtype})
    assert restored.ids(later).tolist() == index.ids(later).tolist()
    fresh = pl.DataFrame({"k": [None]}, schema={"k": dtype})
    assert restored.ids(fresh).tolist() == index.ids(fresh).tolist()


@pytest.mark.parametrize(
    ("dtype", "lo", "hi"),
    [
        (pl.Int8, -128, 127),
        (pl.Int32, -(2**31), 2**31 - 1),
        (pl.UInt32, 0, 2**32 - 1),
        (pl.Int64, -(2**63), 2**63 - 1),
        (pl.UInt64, 0, 2**64 - 1),
    ],
)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_integer_keys_come_back_in_their_own_type(
    data: st.DataObject, dtype: pl.DataType, lo: int, hi: int
) -> None:
    """Keys without nulls are gathered straight into the key's numpy type."""
    batches = data.draw(
        st.lists(st.lists(st.integers(lo, hi), max_size=40), min_size=1, max_size=4)
    )
    index = KeyIndex(pl.Schema({"k": dtype}))
    _check_index(index, [pl.DataFrame({"k": b}, schema={"k": dtype}) for b in batches])
    back = index.keys(np.arange(len(index), dtype=np.int32))
    assert back.schema == pl.Schema({"k": dtype})
    # the same keys as an array of the key's physical type, for kernels that gather
    # (UInt64 keys are kept as int64 bits: not offered)
    values = index.key_values()
    assert (values is None) == (dtype == pl.UInt64)
    if values is not None:
        assert values.dtype == back["k"].to_numpy().dtype
        np.testing.assert_array_equal(values, back["k"].to_numpy())
    cols = index.key_columns(np.arange(len(index), dtype=np.int32)[::-1].copy())
    assert pl.DataFrame(cols).equals(back.reverse())
    if len(index):
        with pytest.raises(vs.VStreamError, match="ids must be in"):
            index.keys(np.array([0, len(index)], np.int32))


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(-20, 60), max_size=30), min_size=1, max_size=4),
    dtype=st.sampled_from([pl.Int32, pl.Int64, pl.UInt16]),
)
def test_dense_keys_and_ids_of_agree_with_ids(batches: list[list[int]], dtype: Any) -> None:
    """dense_keys gives each key's id as dense[key - base] (-1: no id yet), and ids_of
    gives the ids ids() would, new keys included."""
    index = KeyIndex(pl.Schema({"k": dtype}))
    other = KeyIndex(pl.Schema({"k": dtype}))
    for b in batches:
        df = pl.DataFrame(
            {"k": [v for v in b if v >= 0 or dtype != pl.UInt16]}, schema={"k": dtype}
        )
        got = index.dense_keys(df)
        if got is not None:
            keys, dense, base = got
            assert keys.tolist() == df["k"].to_list()
            before = other.ids(df) if df.height else np.empty(0, np.int32)
            for key, i in zip(keys.tolist(), before.tolist(), strict=True):
                j = key - base
                if 0 <= j < dense.shape[0] and dense[j] >= 0:
                    assert dense[j] == i  # a known key: its id
            ids = index.ids_of(keys)
        else:
            ids = index.ids(df)
            other.ids(df)
        assert ids.tolist() == other.ids(df).tolist()


def test_dense_keys_only_without_null_keys_in_a_compact_range() -> None:
    assert KeyIndex(pl.Schema({"k": pl.String})).dense_keys(pl.DataFrame({"k": ["a"]})) is None
    index = KeyIndex(pl.Schema({"k": pl.Int64}))
    index.ids(pl.DataFrame({"k": [3, 4]}))
    assert index.dense_keys(pl.DataFrame({"k": [3, 9]})) is not None
    assert index.dense_keys(pl.DataFrame({"k": [3, None]})) is None
    index.ids(pl.DataFrame({"k": [10**15]}))  # no longer a compact range
    assert index.dense_keys(pl.DataFrame({"k": [3]})) is None


def test_key_values_only_for_integer_keys_without_nulls() -> None:
    """key_values is None where the keys are not one integer column without nulls; it
    follows keys added later."""
    assert KeyIndex(pl.Schema({"k": pl.String})).key_values() is None
    assert KeyIndex(pl.Schema({"k": pl.UInt64})).key_values() is None
    index = KeyIndex(pl.Schema({"k": pl.Int32}))
    index.ids(pl.DataFrame({"k": [5, 3]}, schema={"k": pl.Int32}))
    assert index.key_values().tolist() == [5, 3]  # type: ignore[union-attr]
    index.ids(pl.DataFrame({"k": [7, 5]}, schema={"k": pl.Int32}))
    assert index.key_values().tolist() == [5, 3, 7]  # type: ignore[union-attr]
    index.ids(pl.DataFrame({"k": [None]}, schema={"k": pl.Int32}))
    assert index.key_values() is None


def test_many_integer_keys_grow_the_table() -> None:
    index = KeyIndex(pl.Schema({"k": pl.Int64}))
    keys = np.random.default_rng(0).permutation(100_000).astype(np.int64)
    ids = index.ids(pl.DataFrame({"k": keys}))
    assert len(index) == 100_000
    assert (np.sort(ids) == np.arange(100_000)).all()
    assert (index.keys(ids)["k"].to_numpy() == keys).all()


def test_bad_batches_are_refused() -> None:
    index = KeyIndex(pl.Schema({"k": pl.Int64}))
    with pytest.raises(vs.SchemaError, match="lacks the key column"):
        index.ids(pl.DataFrame({"x": [1]}))
    with pytest.raises(vs.VStreamError, match="ids must be in"):
        index.keys([3])
    with pytest.raises(vs.SchemaError):
        KeyIndex(pl.Schema({}))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(view_strings, max_size=30), min_size=1, max_size=6))
def test_hash_collisions_are_caught_on_the_views(batches: list[list[str]]) -> None:
    """Without nulls the views decide; a collision must still be seen (short strings:
    by the views, long ones: by Polars once the views cannot tell)."""
    real = KeyIndex._hash
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KeyIndex, "_hash", lambda self, keys, *views: real(self, keys, *views) % 3)
        index = KeyIndex(pl.Schema({"k": pl.String}))
        _check_index(index, [pl.DataFrame({"k": b}, schema={"k": pl.String}) for b in batches])
        if len({v for b in batches for v in b}) > 3:
            assert not index._hashed


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.text(max_size=2)), max_size=30), min_size=1, max_size=6
    )
)
def test_hash_collisions_fall_back_to_joins(batches: list[list[str | None]]) -> None:
    # a hash with three values: almost every batch collides, and ids must stay right
    real = KeyIndex._hash
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KeyIndex, "_hash", lambda self, keys, *views: real(self, keys, *views) % 3)
        index = KeyIndex(pl.Schema({"k": pl.String}))
        frames = [pl.DataFrame({"k": b}, schema={"k": pl.String}) for b in batches]
        _check_index(index, frames)
        distinct = {v for b in batches for v in b}
        # with more than three distinct keys, some two must share one of the three hashes
        if len(distinct) > 3:
            assert not index._hashed


def test_string_keys_use_the_hash_table_without_collisions() -> None:
    index = KeyIndex(pl.Schema({"host": pl.String}))
    df = vs.datasets.telemetry(50_000, hosts=2_000).select("host")
    with pytest.MonkeyPatch.context() as mp:
        # no collision among 2,000 host names: the join path must never run
        mp.setattr(KeyIndex, "_general_ids", lambda self, keys: pytest.fail("joins used"))
        _check_index(index, [df.slice(i, 5_000) for i in range(0, df.height, 5_000)])
    assert index._hashed


def test_integer_keys_in_a_compact_range_keep_their_ids_as_the_range_grows() -> None:
    """Compact integer keys are read through a dense array: it is rebuilt as new keys
    widen the range, dropped when a far key arrives, and ids never change."""
    index = KeyIndex(pl.Schema({"k": pl.Int64}))
    batches = [np.arange(start, start + 70_000) for start in range(0, 280_000, 70_000)]
    batches.append(np.array([10**15, 5, None], dtype=object))  # a far key, an old one, null
    batches.append(np.arange(0, 280_000, 7))
    seen: dict[object, int] = {}
    for keys in batches:
        df = pl.DataFrame({"k": pl.Series(keys.tolist(), dtype=pl.Int64)})
        ids = index.ids(df)
        for k, i in zip(df["k"].to_list(), ids.tolist(), strict=True):
            assert seen.setdefault(k, i) == i
    assert len(index) == 280_000 + 2
    restored = KeyIndex(pl.Schema({"k": pl.Int64}))
    restored.restore(index.snapshot())
    probe = pl.DataFrame({"k": [5, 279_999, 10**15, None, 7]})
    assert restored.ids(probe).tolist() == index.ids(probe).tolist()
    assert index.find(pl.DataFrame({"k": [3, -1, None]})).tolist() == [seen[3], -1, -1]


_M64 = (1 << 64) - 1


def _views_hash_reference(value: str) -> int | None:
    """views_hash of one string from its bytes (None: over 12 bytes, not hashed)."""
    data = value.encode()
    if len(data) > 12:
        return None
    padded = data.ljust(12, b"\0")
    w0 = len(data) | int.from_bytes(padded[:4], "little") << 32
    w1 = int.from_bytes(padded[4:], "little")
    h = ((w0 ^ (w1 * 0xC2B2AE3D27D4EB4F)) * 0x9E3779B97F4A7C15) & _M64
    h ^= h >> 29
    h = (h * 0xC2B2AE3D27D4EB4F) & _M64
    h ^= h >> 32
    return h - (1 << 64) if h >= 1 << 63 else h


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.text(max_size=16), min_size=1, max_size=40),
    garbage=st.integers(0, 255),
)
def test_views_hash_matches_reference_whatever_the_padding(
    values: list[str], garbage: int
) -> None:
    """Inline strings hash from their bytes alone: padding a producer left non-zero
    changes nothing; longer strings are left to the caller."""
    views = _views(pl.Series(values, dtype=pl.String))
    assert views is not None
    dirty = views.copy()
    for r, v in enumerate(values):
        n = len(v.encode())
        if n <= 12:  # fill the padding after the string's bytes
            raw = bytearray(dirty[2 * r : 2 * r + 2].tobytes())
            raw[4 + n :] = bytes([garbage]) * (12 - n)
            dirty[2 * r : 2 * r + 2] = np.frombuffer(bytes(raw), np.uint64)
    expected = [_views_hash_reference(v) for v in values]
    for words in (views, dirty):
        out = np.empty(len(values), np.int64)
        rest = views_hash(words, out)
        assert rest.tolist() == [r for r, e in enumerate(expected) if e is None]
        assert [
            None if e is None else int(o) for o, e in zip(out, expected, strict=True)
        ] == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=14)), min_size=1, max_size=40))
def test_string_hash_is_a_function_of_the_value(values: list[str | None]) -> None:
    """Through the views or Polars, with nulls or not, in one chunk or several: equal
    keys hash equal (the key index relies on it for ids)."""
    index = KeyIndex(pl.Schema({"k": pl.String}))
    whole = index._hash(pl.DataFrame({"k": values}, schema={"k": pl.String}))
    chunked = pl.concat(
        [pl.DataFrame({"k": [v]}, schema={"k": pl.String}) for v in values], rechunk=False
    )
    singles = [index._hash(pl.DataFrame({"k": [v]}, schema={"k": pl.String}))[0] for v in values]
    assert whole.tolist() == index._hash(chunked).tolist() == [int(h) for h in singles]


# ---------------------------------------------------------------------- untrusted restore
def _damaged(dtype: pl.DataType, keys: list[Any], change: Any) -> tuple[KeyIndex, dict[str, Any]]:
    index = KeyIndex(pl.Schema({"k": dtype}))
    index.ids(pl.DataFrame({"k": keys}, schema={"k": dtype}))
    table = pl.from_arrow(index.snapshot()["keys"])
    assert isinstance(table, pl.DataFrame)
    return KeyIndex(pl.Schema({"k": dtype})), {"keys": change(table).to_arrow()}


_ID = "__vstream_key_id__"
SPARSE = [0, 10**15, -(10**15), 7, 2**62]  # no dense array: duplicates through the table


@pytest.mark.parametrize(
    ("dtype", "keys", "change", "reason"),
    [
        (pl.Int64, [5, 6, 7], lambda t: t.with_columns(pl.lit(0, pl.Int32).alias(_ID)),
         r"column '__vstream_key_id__': id 0 is given 3 times"),
        (pl.Int64, [5, 6, 7], lambda t: t.with_columns(pl.col(_ID) + 1),
         r"column '__vstream_key_id__': 3 is above 2 \(the ids of 3 keys are 0..2\)"),
        (pl.String, ["a", "b"], lambda t: t.with_columns(pl.col(_ID) - 1),
         r"column '__vstream_key_id__': -1 is below 0"),
        (pl.Int64, [5, 6, 7], lambda t: t.with_columns(k=pl.lit(6, pl.Int64)),
         r"column 'k': the key 6 is given two ids"),
        (pl.Int64, SPARSE, lambda t: t.with_columns(k=pl.lit(7, pl.Int64)),
         r"column 'k': the key 7 is given two ids"),
        (pl.String, ["a", "b", "c"], lambda t: t.with_columns(k=pl.lit("b")),
         r"column 'k': the key \{'k': 'b'\} is given two ids"),
        (pl.Int64, [1, None, 3], lambda t: t.with_columns(k=pl.lit(None, pl.Int64)),
         r"column 'k': 3 null keys \(one at most\)"),
        (pl.Int64, [1, 2], lambda t: t.drop(_ID),
         r"column '__vstream_key_id__': missing"),
        (pl.Int64, [1, 2], lambda t: t.with_columns(pl.col(_ID).cast(pl.Float64)),
         r"column '__vstream_key_id__' is double, not integers"),
    ],
)  # fmt: skip
def test_a_damaged_keys_table_is_refused(
    dtype: pl.DataType, keys: list[Any], change: Any, reason: str
) -> None:
    """A key index restored from an edited table: ids must be 0..n-1 once each (kernels
    index the key arrays with them), keys distinct, one null key at most; anything
    else is a CheckpointError naming the table and the column."""
    fresh, state = _damaged(dtype, keys, change)
    with pytest.raises(vs.CheckpointError, match=reason):
        fresh.restore(state, step="test step")


@pytest.mark.parametrize(
    ("dtype", "keys"),
    [(pl.Int64, [5, None, 6, 7]), (pl.Int64, SPARSE), (pl.String, ["a", None, "bb" * 20])],
)
def test_an_undamaged_keys_table_restores(dtype: pl.DataType, keys: list[Any]) -> None:
    index = KeyIndex(pl.Schema({"k": dtype}))
    df = pl.DataFrame({"k": keys}, schema={"k": dtype})
    ids = index.ids(df)
    fresh = KeyIndex(pl.Schema({"k": dtype}))
    fresh.restore(index.snapshot())
    assert fresh.find(df.drop_nulls()).tolist() == index.find(df.drop_nulls()).tolist()
    assert fresh.ids(df).tolist() == ids.tolist()


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (pl.Int64, [3, None, -(2**63), 3, 2**63 - 1]),
        (pl.UInt64, [2**64 - 1, 0, None]),
        (pl.Int32, [7, -7, None]),
        (pl.Boolean, [True, None, False]),
        (pl.Date, [datetime(2024, 5, 6).date(), None]),
        (pl.Datetime("ms"), [datetime(2024, 5, 6, 7), None]),
        (pl.Duration("us"), [timedelta(seconds=5), None]),
        (pl.String, ["a", None, "a key of more than twelve bytes", ""]),
        (pl.Categorical, ["x", None, "a category of more than twelve bytes"]),
        (pl.Float64, [1.5, -0.0, 0.0, None, float("nan")]),
    ],
)
def test_key_groups_are_those_of_the_stable_hash(dtype: pl.DataType, values: list[object]) -> None:
    """Integer-like keys hash as their int64 value, others by key_hash of the column;
    compaction and a restore keep each key's group."""
    df = pl.DataFrame({"k": pl.Series(values, dtype=dtype)})
    index = KeyIndex(df.schema)
    ids = index.ids(df)
    expected = key_group(key_hash(df), 128)
    assert index.key_groups()[ids].tolist() == expected.tolist()
    assert index.key_groups(128).dtype == np.int32
    small, remap = index.compacted(np.arange(len(index))[::-1].copy())
    assert small.key_groups()[remap[ids]].tolist() == expected.tolist()
    restored = KeyIndex(df.schema)
    restored.restore(index.snapshot())
    assert restored.key_groups().tolist() == index.key_groups().tolist()
    assert KeyIndex(df.schema).key_groups().tolist() == []


def test_polars_hash_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long strings and several key columns go through the stable key hash: Polars'
    hash, unstable across Polars versions, is never called (ids, find, restore)."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("Polars' hash was used")

    monkeypatch.setattr(pl.Expr, "hash", refuse)
    monkeypatch.setattr(pl.Series, "hash", refuse)
    monkeypatch.setattr(pl.DataFrame, "hash_rows", refuse)
    frames = {
        "long": pl.DataFrame({"k": ["a", None, "x" * 40, "y" * 13, "a"]}),
        "pair": pl.DataFrame({"k": ["a", None, "x" * 40, "a"], "n": [1, 2, None, 1]}),
        "float": pl.DataFrame({"k": [1.5, None, 2.5]}),
        "categorical": pl.DataFrame({"k": pl.Series(["u", None, "u"], dtype=pl.Categorical)}),
    }
    for df in frames.values():
        index = KeyIndex(df.schema)
        _check_index(index, [df, df.head(2)])
        assert index.hashed
        restored = KeyIndex(df.schema)
        restored.restore(index.snapshot())
        assert restored.find(df).tolist() == index.find(df).tolist()


def test_key_dtypes_without_a_stable_hash_use_joins() -> None:
    """A key column the stable hash does not take (a list) still gets exact ids, by
    joins; asking for its key groups says why not."""
    df = pl.DataFrame({"k": [[1, 2], [3], [1, 2]]})
    index = KeyIndex(df.schema)
    assert not index.hashed
    assert index.ids(df).tolist() == [0, 1, 0]
    with pytest.raises(vs.SchemaError, match="no stable hash"):
        index.key_groups()
