"""Every kernel against its numpy reference on random input; the wrapping arithmetic of
the hashes, compiled and in pure Python (``NUMBA_DISABLE_JIT=1``)."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vstream.kernels._jit import load
from vstream.kernels.event_time import event_time_stats, event_time_stats_reference
from vstream.kernels.hashing import (
    add_u64,
    as_u64,
    assign_ids,
    dense_lookup,
    mul_u64,
    new_table,
    sub_u64,
    views_hash,
)

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32]


@settings(max_examples=200, deadline=None)
@given(
    ts=st.sampled_from(INT_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, st.integers(0, 300), elements=hnp.from_dtype(np.dtype(dt)))
    ),
    watermark=st.integers(-(2**63), 2**63 - 1),
)
def test_event_time_stats_matches_reference(ts: np.ndarray, watermark: int) -> None:
    assert event_time_stats(ts, watermark) == event_time_stats_reference(ts, watermark)


def test_event_time_stats_strided_view() -> None:
    ts = np.arange(20, dtype=np.int64)[::3]
    assert event_time_stats(ts, 7) == event_time_stats_reference(ts, 7)


@pytest.mark.parametrize(
    ("bad", "error"),
    [(np.zeros((2, 2), dtype=np.int64), ValueError), (np.zeros(3, dtype=np.float64), TypeError)],
)
def test_event_time_stats_checks_inputs(bad: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        event_time_stats(bad, 0)


# ---------------------------------------------------------------------- hashing

MASK64 = 2**64 - 1
I64 = st.integers(-(2**63), 2**63 - 1)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


load()  # numba knows the wrapping helpers once vstream's kernels are loaded


@numba.njit(cache=True)
def _wrapping_ops(a, b):  # type: ignore[no-untyped-def]
    return as_u64(a), mul_u64(a, b), add_u64(a, b), sub_u64(a, b)


GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # a hash multiplier, as an int64


@settings(max_examples=200, deadline=None)
@given(
    a=st.one_of(I64, st.sampled_from([INT64_MIN, INT64_MAX, -1, 0])),
    b=st.one_of(I64, st.sampled_from([INT64_MIN, INT64_MAX, -1, GOLDEN])),
    unsigned=st.booleans(),
)
def test_wrapping_helpers_are_arithmetic_modulo_2_64(a: int, b: int, unsigned: bool) -> None:
    """Compiled (the machine operations) and in Python (explicit masks) alike, on int64
    and uint64 operands, without a numpy overflow warning or error."""
    want = (a & MASK64, (a * b) & MASK64, (a + b) & MASK64, (a - b) & MASK64)
    if unsigned:
        x, y = np.uint64(a & MASK64), np.uint64(b & MASK64)
    else:
        x, y = np.int64(a), np.int64(b)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert (
            tuple(int(v) for v in (as_u64(x), mul_u64(x, y), add_u64(x, y), sub_u64(x, y))) == want
        )
        assert tuple(int(v) for v in _wrapping_ops(x, y)) == want


def _view(text: str) -> list[int]:
    """The two words of an inline Arrow string view of ``text`` (at most 12 bytes)."""
    raw = text.encode()
    padded = raw + bytes(12 - len(raw))
    return [
        len(raw) | (int.from_bytes(padded[:4], "little") << 32),
        int.from_bytes(padded[4:], "little"),
    ]


STABLE_STRINGS = ["", "a", "host-00001", "us-east-1", "123456789012", "zz"]
STABLE_KEYS = [0, 1, -1, 42, INT64_MIN, INT64_MAX, 123456789012345, -987654321]


def test_hash_values_do_not_change() -> None:
    """Checkpoints keep hash tables and partitioning follows the hashes: these values
    were computed with the kernels before their wrapping was made explicit, and must
    come out the same compiled and with NUMBA_DISABLE_JIT=1."""
    words = np.array([w for s in STABLE_STRINGS for w in _view(s)], np.uint64)
    out = np.empty(len(STABLE_STRINGS), np.int64)
    assert views_hash(words, out).tolist() == []  # all inline
    assert out.tolist() == [
        0,
        -7343107761921816033,
        6509475634452614189,
        -6474846546634634787,
        -8939645553521005630,
        4694031928911973032,
    ]
    table = new_table(16)
    ids, n = assign_ids(table, np.array(STABLE_KEYS, np.int64), 0)
    assert (ids.tolist(), n) == (list(range(8)), 8)
    # the slots the keys landed in (id + 1 per slot, 0: empty) come from the slot hash
    assert table[:, 1].tolist() == [1, 5, 7, 8, 3, 6, 0, 4, 0, 0, 0, 2, 0, 0, 0, 0]


@settings(max_examples=100, deadline=None)
@given(
    words=hnp.arrays(
        np.uint64, st.integers(0, 40).map(lambda n: 2 * n), elements=st.integers(0, MASK64)
    ),
    short=st.booleans(),
)
def test_views_hash_in_python_equals_compiled(words: np.ndarray, short: bool) -> None:
    if short:  # mostly inline strings: lengths 0..15 in the low word
        words[0::2] = (words[0::2] & np.uint64(0xFFFFFFFF00000000)) | (words[0::2] % np.uint64(16))
    interpreted = getattr(views_hash, "py_func", views_hash)
    a, b = np.empty(words.size // 2, np.int64), np.empty(words.size // 2, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rows_a = interpreted(words, a)
    rows_b = views_hash(words, b)
    assert rows_a.tolist() == rows_b.tolist()
    np.testing.assert_array_equal(a, b)


@settings(max_examples=300, deadline=None)
@given(
    values=hnp.arrays(
        np.int64,
        st.integers(0, 30),
        elements=st.one_of(
            I64, st.integers(-40, 40), st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN + 3])
        ),
    ),
    base=st.one_of(st.integers(-20, 20), st.sampled_from([INT64_MIN, INT64_MAX - 10, INT64_MAX])),
    m=st.integers(0, 30),
)
def test_dense_lookup_never_wraps(values: np.ndarray, base: int, m: int) -> None:
    """A value far from ``base`` is not in the table, even where ``value - base`` wraps
    around into it (INT64_MIN + 5 against a base of INT64_MAX - 10 gave slot 16)."""
    dense = np.arange(100, 100 + m, dtype=np.int32)
    want = [100 + v - base if 0 <= v - base < m else -1 for v in values.tolist()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert dense_lookup(values, np.int64(base), dense).tolist() == want
