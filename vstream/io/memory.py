"""In-memory sources: Polars DataFrames and Arrow tables, readers and batches."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from numbers import Real
from typing import TYPE_CHECKING, TypeAlias

import polars as pl
import pyarrow as pa

from vstream.errors import PipelineError, SchemaError, SourceError
from vstream.io._utf8 import drop_invalid_utf8, has_strings, reads_strings
from vstream.io.base import (
    Data,
    Reader,
    Source,
    SourceEvent,
    SplitEnd,
    SplitPosition,
    SyncReader,
    ThreadedReader,
    row_position,
)

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

__all__ = ["ArrowSource", "PolarsSource", "check_batch_size"]


def check_batch_size(batch_size: int, where: str) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"{where}: batch_size must be a positive int, got {batch_size!r}"
        raise PipelineError(msg)
    return batch_size


def _has_categorical(dtype: PolarsDataType) -> bool:
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return True
    if isinstance(dtype, pl.Struct):
        return any(_has_categorical(f.dtype) for f in dtype.fields)
    if isinstance(dtype, pl.List | pl.Array):
        return _has_categorical(dtype.inner)
    return False


class PolarsSource(Source):
    """Slices a DataFrame into micro-batches; one split; replayable.

    A slice of ``batch_size`` rows may come out of Arrow in several record batches (a
    frame of several chunks): each is an event, and a position is the number of rows
    handed out. A read resumed inside a slice converts the slice again and goes on
    after the position, so it gives the batches of a full read.
    """

    replayable = True

    def __init__(self, df: pl.DataFrame, batch_size: int) -> None:
        if not isinstance(df, pl.DataFrame):
            msg = f"from_polars takes a polars.DataFrame, got {type(df).__name__}"
            raise PipelineError(msg)
        self._df = df
        self._batch_size = check_batch_size(batch_size, "from_polars")
        # Polars' own layout (string views) when pyarrow can take it back: the slices
        # then become DataFrames without copying; large_string copies every string twice
        # (~30x slower). Categoricals as dictionaries of views are not supported by
        # pyarrow's conversions, so frames with them keep the old layout.
        self._compat = (
            pl.CompatLevel.oldest()
            if any(_has_categorical(dt) for dt in df.schema.dtypes())
            else pl.CompatLevel.newest()
        )
        try:
            self._schema = df.slice(0, 0).to_arrow(compat_level=self._compat).schema
        except Exception as exc:
            bad = []
            for name in df.columns:
                try:
                    df.select(name).slice(0, 0).to_arrow()
                except Exception:
                    bad.append(f"{name!r} ({df.schema[name]})")
            msg = (
                f"from_polars: the column(s) {', '.join(bad) or '?'} have a type Arrow cannot "
                f"hold ({exc}); cast them first, e.g. pl.col(...).cast(pl.Int64)"
            )
            raise SchemaError(msg) from exc
        self.label = f"from_polars({df.height} rows, batch_size={batch_size})"

    def splits(self) -> list[str]:
        return ["dataframe"]

    def config(self) -> dict[str, object] | None:
        return {"kind": "polars", "data": self._df, "batch_size": self._batch_size}

    def schema(self) -> pa.Schema:
        return self._schema

    def total_rows(self) -> int:
        return self._df.height

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        points = self.resume_points(resume, splits)
        if not points:
            return SyncReader(iter(()))
        after = 0 if points[0] is None else row_position(points[0], self.label)

        def events() -> Iterator[SourceEvent]:
            n, bs = self._df.height, self._batch_size
            for start in range(after - after % bs, n, bs):
                part = self._df.slice(start, bs).to_arrow(compat_level=self._compat)
                pos = start
                if pos < after:  # resumed inside this slice
                    part = part.slice(after - pos)
                    pos = after
                for rb in part.to_batches():
                    if rb.num_rows:
                        pos += rb.num_rows
                        yield Data(0, rb, pos)
            yield SplitEnd(0)

        return SyncReader(events())


ArrowInput: TypeAlias = (
    pa.Table
    | pa.RecordBatch
    | pa.RecordBatchReader
    | Iterable[pa.RecordBatch]
    | Callable[[], Iterable[pa.RecordBatch]]
)


#: rows of a batch cut by count when a replay rate is given without ``batch_size``
_REPLAY_BATCH_SIZE = 65_536


def _check_rate(rate: object, where: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, Real) or not 0 < float(rate) < math.inf:
        msg = f"{where}: rate must be a positive number of rows per second, got {rate!r}"
        raise PipelineError(msg)
    return float(rate)


class ArrowSource(Source):
    """Arrow data: a Table (sliced into batches, replayable), a stream of batches, or a
    function returning a fresh stream of batches (replayable).

    One split; a position is the number of rows handed out. A Table resumes by slicing;
    a function's batches are read again from the start and passed over up to the
    position (their cost is paid again); empty batches are not events.

    With ``rate`` (rows per second), a reader thread releases the rows on a wall-clock
    schedule: in a run, row ``i`` of the data is due at ``release_start + i / rate``,
    where :attr:`release_start` is the ``time.perf_counter()`` time set when the run's
    first row is in hand (for a run resumed at position ``p``, it lies ``p / rate``
    before that, so the formula holds for the rows it releases). A batch holds the rows
    due within ``max_delay`` seconds of its first one, at most ``batch_size``, and is
    handed out when its last row is due (cut by count) or ``max_delay`` after its first
    (cut by time). Batch boundaries thus depend on the rate, ``max_delay`` and
    ``batch_size`` only, not on the input's chunks or on timing, so a resumed run gives
    the batches of a full read. Rows are late for their schedule when the input cannot
    keep up with the rate or the pipeline holds the reader back (a full queue).
    """

    #: with a rate: the ``time.perf_counter()`` time at which row 0 of the data is due in
    #: the last run (see the class docstring); None before a run releases its first row
    release_start: float | None = None

    def __init__(
        self,
        data: ArrowInput,
        batch_size: int | None,
        bounded: bool | None,
        *,
        rate: float | None = None,
        max_delay: float = 0.05,
    ) -> None:
        self._rate = None if rate is None else _check_rate(rate, "from_arrow")
        self._max_delay = max_delay
        self._table: pa.Table | None = None
        self._iterable: Iterable[pa.RecordBatch] | None = None
        self._factory: Callable[[], Iterable[pa.RecordBatch]] | None = None
        if callable(data) and not isinstance(data, Iterable):
            self._factory = data
            data = data()
            if not isinstance(data, pa.Table | pa.RecordBatch | Iterable):
                kind = type(data).__name__
                msg = (
                    "from_arrow: the function must return pyarrow RecordBatches (a "
                    f"generator, a RecordBatchReader, a list) or a Table, got {kind}"
                )
                raise PipelineError(msg)
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        elif isinstance(data, list | tuple):
            if not data:
                msg = "from_arrow got an empty list of batches: its schema is unknown"
                raise SourceError(msg)
            # a list may mix batches and tables (each table contributes its batches)
            parts = [b for d in data for b in (d.to_batches() if isinstance(d, pa.Table) else [d])]
            try:
                data = pa.Table.from_batches(parts)
            except (pa.ArrowInvalid, TypeError) as exc:
                msg = f"from_arrow: the batches do not share one schema ({exc})"
                raise SchemaError(msg) from exc
        if isinstance(data, pa.Table):
            self._table = data
            self._schema = data.schema
            self.bounded = True
            self.replayable = True
            self.label = f"from_arrow(Table, {data.num_rows} rows)"
        elif isinstance(data, pa.RecordBatchReader):
            self._iterable = data
            self._schema = data.schema
            self.bounded = True if bounded is None else bounded
            self.label = "from_arrow(RecordBatchReader)"
        elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
            it = iter(data)
            try:
                first = next(it)
            except StopIteration:
                msg = "from_arrow got an empty iterator of batches: its schema is unknown"
                raise SourceError(msg) from None
            if not isinstance(first, pa.RecordBatch):
                msg = f"from_arrow expects pyarrow.RecordBatch items, got {type(first).__name__}"
                raise PipelineError(msg)
            self._schema = first.schema
            self._iterable = _chain_first(first, it)
            self.bounded = bool(bounded)
            self.label = f"from_arrow({type(data).__name__} of batches)"
        else:
            kind = type(data).__name__
            msg = (
                "from_arrow takes a pyarrow Table, RecordBatchReader, batches or a function "
                f"returning batches; got {kind}"
            )
            raise PipelineError(msg)
        if self._factory is not None:
            self.replayable = True
            name = getattr(self._factory, "__name__", type(self._factory).__name__)
            self.label = f"from_arrow({name}(): {self.label.removeprefix('from_arrow(')}"
        self._batch_size = (
            None if batch_size is None else check_batch_size(batch_size, "from_arrow")
        )
        self._strings = any(has_strings(f.type) for f in self._schema)
        if self._rate is not None:
            r = int(self._rate) if self._rate.is_integer() else self._rate
            self.label = f"{self.label[:-1]}, rate={r:,}/s)"

    def splits(self) -> list[str]:
        return ["arrow"]

    def config(self) -> dict[str, object] | None:
        if self._table is None or self._factory is not None:
            return None  # a stream of batches is read once; a function is code
        return {
            "kind": "arrow",
            "data": self._table,
            "batch_size": self._batch_size,
            "rate": self._rate,
            "max_delay": self._max_delay,
        }

    def _data(self, rb: pa.RecordBatch, pos: int, columns: frozenset[str] | None) -> Data:
        """The event for ``rb``: Arrow data built from outside bytes (an IPC stream,
        ``Array.from_buffers``) may hold invalid UTF-8, which must not reach Polars;
        those rows go to the dead letters (only ``columns`` are checked, the ones the
        run reads; None: all)."""
        if not self._strings or not reads_strings(self._schema, columns):
            return Data(0, rb, pos)
        rb, dead = drop_invalid_utf8(rb, "from_arrow", columns=columns)
        return Data(0, rb if rb.num_rows else None, pos, dead)

    def schema(self) -> pa.Schema:
        return self._schema

    def total_rows(self) -> int | None:
        return None if self._table is None else self._table.num_rows

    replay_hint = (
        "pass a Table, a list of batches, or a function returning a fresh iterable of batches"
    )

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        points = self.resume_points(resume, splits)
        if not points:
            return SyncReader(iter(()))
        after = 0 if points[0] is None else row_position(points[0], self.label)
        if self._table is not None and self._rate is not None:
            table = self._table
            start = min(after, table.num_rows)
            rows = (table.slice(start) if start else table).to_batches()
            return self._paced(rows, start, columns)
        if self._table is not None:
            table, bs = self._table, self._batch_size

            def table_events() -> Iterator[SourceEvent]:
                pos = min(after, table.num_rows)
                # a slice starts at a batch boundary of the full read: the cuts after it
                # (per chunk, at most bs rows) are the same
                rest = table.slice(pos) if pos else table
                for rb in rest.to_batches(max_chunksize=bs) if bs else rest.to_batches():
                    if rb.num_rows:
                        pos += rb.num_rows
                        yield self._data(rb, pos, columns)
                yield SplitEnd(0)

            return SyncReader(table_events())
        if self._iterable is not None:
            source_iter: Iterable[pa.RecordBatch] = self._iterable
            self._iterable = None
        elif self._factory is not None:
            source_iter = self._factory()
        else:
            msg = (
                "this from_arrow source reads a one-shot iterator that an earlier run consumed; "
                "build the stream again, or pass a Table, a list of batches or a function "
                "returning batches to run it twice"
            )
            raise SourceError(msg)
        rest = _checked_rest(source_iter, self._schema, after)
        if self._rate is not None:
            return self._paced(rest, after, columns)

        def produce(put: Callable[[SourceEvent], bool]) -> None:
            pos = after
            for rb in rest:
                pos += rb.num_rows
                if not put(self._data(rb, pos, columns)):
                    return
            put(SplitEnd(0))

        return ThreadedReader(produce, name="vstream-from_arrow")

    def _paced(
        self, batches: Iterable[pa.RecordBatch], after: int, columns: frozenset[str] | None
    ) -> Reader:
        """A reader thread releasing the rows of ``batches`` (those after position
        ``after``) at the source's rate, in batches cut as the class docstring says
        (``columns``: those the run reads, see :meth:`_data`)."""
        assert self._rate is not None
        rate, delay = self._rate, self._max_delay
        size = _REPLAY_BATCH_SIZE if self._batch_size is None else self._batch_size
        # rows due within max_delay of a batch's first row (the first included)
        per_batch = size if delay * rate >= size - 1 else min(size, int(delay * rate) + 1)
        by_count = per_batch == size
        stopped = threading.Event()

        def produce(put: Callable[[SourceEvent], bool]) -> None:
            t0 = 0.0
            pos = after  # rows handed out, from the start of the data
            pieces: list[pa.RecordBatch] = []
            n = 0

            def release(due_row: float) -> bool:
                """Wait until row ``due_row`` of this run is due, then hand out the
                pending rows; False once the run is over."""
                nonlocal pos, pieces, n
                wait = t0 + due_row / rate - time.perf_counter()
                if wait > 0 and stopped.wait(wait):
                    return False
                batch = pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
                pos += n
                pieces, n = [], 0
                return put(self._data(batch, pos, columns))

            for rb in batches:
                off = 0
                while off < rb.num_rows:
                    if pos == after and not n:
                        t0 = time.perf_counter()
                        self.release_start = t0 - after / rate
                    take = min(per_batch - n, rb.num_rows - off)
                    pieces.append(rb.slice(off, take))
                    n += take
                    off += take
                    if n == per_batch:
                        first = pos - after
                        due = first + n - 1 if by_count else first + delay * rate
                        if not release(due):
                            return
            if n and not release(pos - after + n - 1):
                return
            put(SplitEnd(0))

        return _PacedReader(produce, stopped)


class _PacedReader(ThreadedReader):
    """A :class:`ThreadedReader` whose producer waits on ``stopped`` between releases:
    closing it ends a wait at once (a low rate can mean long waits)."""

    def __init__(
        self, produce: Callable[[Callable[[SourceEvent], bool]], None], stopped: threading.Event
    ) -> None:
        self._stopped = stopped
        super().__init__(produce, name="vstream-from_arrow-replay")

    def close(self) -> None:
        self._stopped.set()
        super().close()


def _checked_rest(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, after: int
) -> Iterator[pa.RecordBatch]:
    """The non-empty batches of a stream after its first ``after`` rows (passed over),
    each checked to be a RecordBatch of ``schema``."""
    pos = 0
    for rb in batches:
        if not isinstance(rb, pa.RecordBatch):
            kind = type(rb).__name__
            msg = f"from_arrow expects pyarrow.RecordBatch items, got {kind}"
            raise SourceError(msg)
        if rb.schema != schema:
            msg = (
                f"from_arrow: a batch has schema {rb.schema} but the stream's schema is "
                f"{schema}; every batch must have the same schema"
            )
            raise SchemaError(msg)
        if pos < after:  # passed over by a resumed run
            if pos + rb.num_rows <= after:
                pos += rb.num_rows
                continue
            rb = rb.slice(after - pos)
            pos = after
        if rb.num_rows:
            pos += rb.num_rows
            yield rb


def _chain_first(
    first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
