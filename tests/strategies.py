"""Hypothesis strategies and small helpers shared by the test suite.

Test modules import this file by name, from whichever folder under ``tests/`` they are in
(pytest runs with ``--import-mode=importlib``, so ``tests`` is not a package; pyproject's
``pythonpath = ["tests"]`` puts the tests root on ``sys.path``)::

    import strategies

Examples
--------
>>> from strategies import split_frame
>>> import polars as pl
>>> [b.num_rows for b in split_frame(pl.DataFrame({"a": range(5)}), [2, 3])]
[2, 1, 2]
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Literal

import polars as pl
import pyarrow as pa
from hypothesis import strategies as st

import vstream as vs

__all__ = [
    "WHOLE",
    "batch_sizes",
    "disorders",
    "event_time_batches",
    "random_batch_sizes",
    "split_frame",
    "split_points",
    "telemetry_frames",
]

#: larger than any frame the tests generate: the whole input in one micro-batch
WHOLE = 65_536


def random_batch_sizes(max_size: int = 700) -> st.SearchStrategy[int]:
    """A batch size strictly between the extremes (2 .. ``max_size``)."""
    return st.integers(min_value=2, max_value=max_size)


def batch_sizes(max_size: int = 700) -> st.SearchStrategy[int]:
    """1 (every row its own micro-batch), a small random size, or 65,536 (one batch)."""
    return st.one_of(st.just(1), random_batch_sizes(max_size), st.just(WHOLE))


def disorders(max_ms: int = 3_000) -> st.SearchStrategy[int]:
    """A maximum disorder in milliseconds, including 0 (sorted event times)."""
    return st.one_of(st.just(0), st.integers(min_value=1, max_value=max_ms))


@st.composite
def telemetry_frames(
    draw: st.DrawFn,
    *,
    min_n: int = 0,
    max_n: int = 2_000,
    max_hosts: int = 50,
    time_type: Literal["int", "datetime"] = "int",
    max_disorder: int | str | timedelta | None = None,
    nulls: bool = True,
) -> pl.DataFrame:
    """``vs.datasets.telemetry`` with a drawn size, host count, seed and null fraction.

    ``max_disorder`` is drawn (in ms) unless given.
    """
    n = draw(st.integers(min_value=min_n, max_value=max_n))
    hosts = draw(st.integers(min_value=1, max_value=max_hosts))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    null_fraction = draw(st.sampled_from([0.0, 0.05, 0.3])) if nulls else 0.0
    disorder = draw(disorders()) if max_disorder is None else max_disorder
    return vs.datasets.telemetry(
        n,
        hosts=hosts,
        seed=seed,
        null_fraction=null_fraction,
        max_disorder=disorder,
        time_type=time_type,
    )


def split_points(n: int, max_chunks: int = 30) -> st.SearchStrategy[list[int]]:
    """Sorted, distinct cut positions in ``(0, n)``: how ``n`` rows arrive in chunks."""
    if n < 2:
        return st.just([])
    return st.lists(
        st.integers(min_value=1, max_value=n - 1), max_size=max_chunks, unique=True
    ).map(sorted)


def split_frame(df: pl.DataFrame, points: list[int]) -> list[pa.RecordBatch]:
    """``df`` as Arrow record batches cut at ``points`` (for ``vs.from_arrow``)."""
    table = df.to_arrow()
    bounds = [0, *points, df.height]
    batches = []
    for lo, hi in itertools.pairwise(bounds):
        batches.extend(table.slice(lo, hi - lo).combine_chunks().to_batches())
    return batches or [pa.RecordBatch.from_pylist([], schema=table.schema)]


@st.composite
def event_time_batches(
    draw: st.DrawFn, *, max_batches: int = 12, max_rows: int = 8, null_rate: bool = False
) -> list[list[int | None]]:
    """Micro-batches of integer event times, in arrival order, some out of order."""
    value = st.integers(min_value=0, max_value=10_000)
    if null_rate:
        value = st.one_of(value, st.none())
    return draw(
        st.lists(st.lists(value, min_size=1, max_size=max_rows), min_size=1, max_size=max_batches)
    )
