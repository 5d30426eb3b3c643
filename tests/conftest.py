"""Shared fixtures for the test suite.

pytest runs with ``--import-mode=importlib``, so test modules cannot import this file;
shared helpers are handed out as fixtures instead.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import vstream as vs

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]


def assert_same_rows(a: pl.DataFrame, b: pl.DataFrame, **kwargs: object) -> None:
    """Order-insensitive equality: same columns, dtypes and multiset of rows.

    Both frames are sorted by all their columns (nulls last) before
    ``polars.testing.assert_frame_equal``; keyword arguments go to the latter
    (``check_exact=False`` for floats computed in a different order, ...).
    """
    assert a.columns == b.columns, f"columns differ: {a.columns} != {b.columns}"
    assert a.height == b.height, f"row counts differ: {a.height} != {b.height}"
    if a.width == 0:
        return
    sortable = [c for c, dt in a.schema.items() if not dt.is_nested()]
    a_sorted = a.sort(sortable, nulls_last=True, maintain_order=True) if sortable else a
    b_sorted = b.sort(sortable, nulls_last=True, maintain_order=True) if sortable else b
    assert_frame_equal(a_sorted, b_sorted, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def same_rows() -> SameRows:
    """The order-insensitive frame comparison :func:`assert_same_rows`."""
    return assert_same_rows


@pytest.fixture(scope="session")
def telemetry_small() -> pl.DataFrame:
    """20,000 rows of synthetic telemetry over 50 hosts (a DataFrame is immutable, so one
    copy serves the whole session)."""
    return vs.datasets.telemetry(20_000, hosts=50, seed=1)


EndlessKind = Literal["records", "ndjson", "arrow"]


class Endless:
    """Endless inputs for unbounded streams: rows ``{"i": 0}, {"i": 1}, ...``.

    ``produced`` counts the rows handed out so far (by every generator made here), so a
    test can see how far ahead of the pipeline a source reads, and whether it keeps
    reading after the run ended. ``halt`` ends every generator made here; the fixture
    sets it at teardown so that a reader thread a run failed to stop does not spin on
    (and slow down the rest of the session).
    """

    schema = pl.Schema({"i": pl.Int64})

    def __init__(self) -> None:
        self.produced = 0
        self.halt = threading.Event()

    def _numbers(self, delay: float) -> Iterator[int]:
        for i in itertools.count():
            if self.halt.is_set():
                return
            if delay:
                time.sleep(delay)
            self.produced += 1
            yield i

    def records(self, delay: float = 0.0) -> Iterator[dict[str, int]]:
        """An endless generator of dicts."""
        return ({"i": i} for i in self._numbers(delay))

    def lines(self, delay: float = 0.0) -> Iterator[bytes]:
        """An endless generator of NDJSON lines."""
        return (b'{"i": %d}' % i for i in self._numbers(delay))

    def batches(self, rows: int, delay: float = 0.0) -> Iterator[pa.RecordBatch]:
        """An endless generator of Arrow batches of ``rows`` rows each."""
        for start in itertools.count(0, rows):
            if self.halt.is_set():
                return
            if delay:
                time.sleep(delay)
            self.produced += rows
            yield pa.record_batch({"i": pa.array(range(start, start + rows), pa.int64())})

    def stream(
        self, kind: EndlessKind = "records", *, batch_size: int = 100, delay: float = 0.0
    ) -> vs.Stream:
        """An unbounded stream of the given source kind over a fresh endless generator."""
        if kind == "records":
            return vs.from_records(self.records(delay), schema=self.schema, batch_size=batch_size)
        if kind == "ndjson":
            return vs.from_ndjson(self.lines(delay), schema=self.schema, batch_size=batch_size)
        return vs.from_arrow(self.batches(batch_size, delay))

    def blocked(self) -> Iterator[dict[str, int]]:
        """A generator that yields nothing and blocks until ``halt`` is set."""
        self.halt.wait(60)
        yield from ()


@pytest.fixture
def endless() -> Iterator[Endless]:
    """An :class:`Endless` whose generators are all halted when the test ends."""
    e = Endless()
    yield e
    e.halt.set()
