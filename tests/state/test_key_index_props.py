"""The key index over adversarial key sequences, batch after batch, against a dict.

Sequences hypothesis draws: sparse keys, huge spans, negative keys, the int64 extremes,
ranges that grow and then shrink back, nulls; in many batches, so the dense array of
integer keys is built, extended, rebuilt and dropped along the way. Every path that gives
ids (``ids``, ``dense_keys`` + ``ids_of`` as the window step uses them, ``find``) must
agree with a dict of the ids given so far: one id a key for good, distinct ids for
distinct keys, dense ids; ``keys`` gives every key back, and a snapshot restores the same
ids.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from vstream.kernels.keyhash import key_group, key_hash
from vstream.state.key_index import KeyIndex

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@st.composite
def _batch(draw: st.DrawFn) -> list[int | None]:
    """One batch: keys in a window of a drawn base and span (tiny to the whole int64
    range), a few extremes and nulls mixed in."""
    base = draw(
        st.one_of(
            st.integers(-50, 50),
            st.integers(I64_MIN, I64_MAX),
            st.sampled_from([I64_MIN, I64_MAX - 300, 2**31, -(2**31), 10**12]),
        )
    )
    span = draw(st.sampled_from([1, 7, 300, 70_000, 10**9, 2**62, 2**64]))
    lo = max(I64_MIN, min(base, I64_MAX))
    hi = max(lo, min(I64_MAX, lo + span - 1))
    keys: list[int | None] = draw(st.lists(st.integers(lo, hi), max_size=40))
    keys += draw(st.lists(st.sampled_from([I64_MIN, I64_MAX, 0, -1, None]), max_size=3))
    return draw(st.permutations(keys))


@st.composite
def _growing_then_shrinking(draw: st.DrawFn) -> list[list[int | None]]:
    """Batches of consecutive keys whose range grows past what the dense array holds,
    then shrinks back to a few keys (which must keep their ids)."""
    start = draw(st.integers(-(10**6), 10**6))
    sizes = [8, 200, 5_000, 150_000, 40, 3]
    batches: list[list[int | None]] = []
    for n in sizes:
        step = draw(st.sampled_from([1, 3, 1000]))
        batches.append(list(range(start, start + n * step, step)))
    return batches


def _check_index(index: KeyIndex, batches: list[list[int | None]], dtype: pl.DataType) -> None:
    """Each key keeps one id for good, distinct keys have distinct ids, ids are dense
    (0..n-1, a new key gets the next free one), and ``keys`` gives each id's key back."""
    known: dict[int | None, int] = {}  # the reference: key -> the id first given to it
    for batch in batches:
        df = pl.DataFrame({"k": pl.Series(batch, dtype=dtype)})
        before = len(known)
        dense = index.dense_keys(df)
        if dense is not None:
            # the window step's path: ids of known keys read from the dense array, the
            # others given by ids_of
            assert None not in batch
            got = index.ids_of(dense[0])
        else:
            got = index.ids(df)
        assert got.dtype == np.int32
        for k, i in zip(batch, got.tolist(), strict=True):
            assert known.setdefault(k, i) == i, f"key {k} changed its id"
        new_ids = sorted(set(known.values()))
        assert new_ids == list(range(len(known))), "ids are not dense"
        assert len(known) - before == len(set(batch) - set(list(known)[:before]))
        # find: the known keys' ids, never inserting; nulls and unknown keys -1
        probe = [*batch, *(k ^ 1 for k in batch[:5] if k is not None)]
        found = index.find(pl.DataFrame({"k": pl.Series(probe, dtype=dtype)}))
        assert found.tolist() == [-1 if k is None else known.get(k, -1) for k in probe]
        assert len(index) == len(known)
    order = sorted(known, key=known.__getitem__)
    assert index.keys(np.arange(len(index)))["k"].to_list() == order
    restored = KeyIndex(index.schema)
    restored.restore(index.snapshot())
    everything = pl.DataFrame({"k": pl.Series(order, dtype=dtype)})
    assert restored.ids(everything).tolist() == list(range(len(order)))
    assert len(restored) == len(order)
    _check_groups(index, everything)
    assert restored.key_groups(7).tolist() == index.key_groups(7).tolist()


def _check_groups(index: KeyIndex, everything: pl.DataFrame) -> None:
    """The key group of each id is that of its key's stable hash (``everything``: the
    keys in id order)."""
    for n in (1, 7, 128):
        groups = index.key_groups(n)
        assert groups.dtype == np.int32
        assert groups.tolist() == key_group(key_hash(everything), n).tolist()


@settings(max_examples=150, deadline=None)
@given(st.lists(_batch(), min_size=1, max_size=12))
def test_adversarial_int64_keys_get_the_ids_of_a_dict(batches: list[list[int | None]]) -> None:
    _check_index(KeyIndex(pl.Schema({"k": pl.Int64})), batches, pl.Int64())


@settings(max_examples=10, deadline=None)
@given(_growing_then_shrinking())
def test_ranges_that_grow_then_shrink_keep_their_ids(batches: list[list[int | None]]) -> None:
    _check_index(KeyIndex(pl.Schema({"k": pl.Int64})), batches, pl.Int64())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.one_of(st.integers(0, 2**64 - 1), st.none()), max_size=30), max_size=8)
)
def test_uint64_keys_past_int64_get_the_ids_of_a_dict(batches: list[list[int | None]]) -> None:
    """UInt64 keys are kept as int64 bits: keys above INT64_MAX are negative there."""
    _check_index(KeyIndex(pl.Schema({"k": pl.UInt64})), batches, pl.UInt64())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(st.text(max_size=20), st.none(), st.sampled_from(["", "a" * 13])),
            max_size=30,
        ),
        max_size=8,
    )
)
def test_string_keys_short_and_long_get_the_ids_of_a_dict(batches: list[list[str | None]]) -> None:
    """Strings of at most 12 bytes (hashed from their Arrow views) and longer ones."""
    index = KeyIndex(pl.Schema({"k": pl.String}))
    known: dict[str | None, int] = {}
    for batch in batches:
        got = index.ids(pl.DataFrame({"k": pl.Series(batch, dtype=pl.String)}))
        for k, i in zip(batch, got.tolist(), strict=True):
            assert known.setdefault(k, i) == i, f"key {k!r} changed its id"
        assert sorted(set(known.values())) == list(range(len(known)))
    order = sorted(known, key=known.__getitem__)
    assert index.keys(np.arange(len(index)))["k"].to_list() == order
    _check_groups(index, pl.DataFrame({"k": pl.Series(order, dtype=pl.String)}))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.one_of(st.none(), st.text(max_size=3), st.text(min_size=13, max_size=30)),
                st.one_of(st.none(), st.integers(-2, 2), st.integers(I64_MIN, I64_MAX)),
            ),
            max_size=30,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_two_column_keys_get_the_ids_of_a_dict(
    batches: list[list[tuple[str | None, int | None]]],
) -> None:
    """Two key columns go through the stable key hash (no Polars hash): ids as a dict
    gives them, a restore gives them back, key groups follow the stable hash."""
    schema = pl.Schema({"s": pl.String, "i": pl.Int64})
    index = KeyIndex(schema)
    known: dict[tuple[str | None, int | None], int] = {}
    for batch in batches:
        got = index.ids(pl.DataFrame(batch, schema=schema, orient="row"))
        for k, i in zip(batch, got.tolist(), strict=True):
            assert known.setdefault(k, i) == i, f"key {k!r} changed its id"
        assert sorted(set(known.values())) == list(range(len(known)))
    order = sorted(known, key=known.__getitem__)
    everything = pl.DataFrame(order, schema=schema, orient="row")
    assert index.keys(np.arange(len(index))).rows() == order
    _check_groups(index, everything)
    restored = KeyIndex(schema)
    restored.restore(index.snapshot())
    assert restored.ids(everything).tolist() == list(range(len(order)))
    assert restored.key_groups().tolist() == index.key_groups().tolist()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_batch(), min_size=1, max_size=6),
    st.sampled_from([pl.Int64(), pl.String()]),
    st.randoms(use_true_random=False),
    st.lists(_batch(), max_size=3),
)
def test_compacted_keeps_the_kept_keys_and_maps_their_ids(
    batches: list[list[int | None]], dtype: pl.DataType, rnd: object, later: list[list[int | None]]
) -> None:
    """``compacted(keep)`` (how the window step releases dead keys): the new index holds
    exactly the kept keys, ``remap`` sends each kept id to the id of the same key there
    (a null key included, wherever it is in ``keep``) and every other id to -1, and keys
    added afterwards get fresh ids past the kept ones."""
    import random

    assert isinstance(rnd, random.Random)

    def frame(keys: list[int | None]) -> pl.DataFrame:
        values = [None if k is None else str(k) for k in keys] if dtype == pl.String else keys
        return pl.DataFrame({"k": pl.Series(values, dtype=dtype)})

    index = KeyIndex(pl.Schema({"k": dtype}))
    for b in batches:
        index.ids(frame(b))
    keep = np.array(rnd.sample(range(len(index)), rnd.randint(0, len(index))), np.int64)
    small, remap = index.compacted(keep)
    assert len(small) == keep.size
    assert sorted(remap[keep].tolist()) == list(range(keep.size))
    dropped = np.setdiff1d(np.arange(len(index)), keep)
    assert (remap[dropped] == -1).all()
    assert small.keys(remap[keep]).equals(index.keys(keep))
    for b in later:
        ids = small.ids(frame(b))
        old = index.find(frame(b)) if b else np.empty(0, np.int32)
        for k, i, o in zip(b, ids.tolist(), old.tolist(), strict=True):
            if k is not None and o >= 0 and remap[o] >= 0:
                assert i == remap[o]  # a kept key keeps its new id
            else:
                assert i >= 0
        assert len(small) >= keep.size
