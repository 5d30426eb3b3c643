"""In-memory sources: Polars DataFrames and Arrow tables, readers and batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeAlias

import polars as pl
import pyarrow as pa

from vstream.errors import PipelineError, SchemaError, SourceError
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

    def schema(self) -> pa.Schema:
        return self._schema

    def total_rows(self) -> int:
        return self._df.height

    def open(self, resume: Mapping[int, SplitPosition] | None = None) -> Reader:
        points = self.resume_points(resume)
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


class ArrowSource(Source):
    """Arrow data: a Table (sliced into batches, replayable), a stream of batches, or a
    function returning a fresh stream of batches (replayable).

    One split; a position is the number of rows handed out. A Table resumes by slicing;
    a function's batches are read again from the start and passed over up to the
    position (their cost is paid again); empty batches are not events.
    """

    def __init__(
        self,
        data: ArrowInput,
        batch_size: int | None,
        bounded: bool | None,
    ) -> None:
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

    def splits(self) -> list[str]:
        return ["arrow"]

    def schema(self) -> pa.Schema:
        return self._schema

    def total_rows(self) -> int | None:
        return None if self._table is None else self._table.num_rows

    replay_hint = (
        "pass a Table, a list of batches, or a function returning a fresh iterable of batches"
    )

    def open(self, resume: Mapping[int, SplitPosition] | None = None) -> Reader:
        points = self.resume_points(resume)
        if not points:
            return SyncReader(iter(()))
        after = 0 if points[0] is None else row_position(points[0], self.label)
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
                        yield Data(0, rb, pos)
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
        schema = self._schema

        def produce(put: Callable[[SourceEvent], bool]) -> None:
            pos = 0
            for rb in source_iter:
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
                    if not put(Data(0, rb, pos)):
                        return
            put(SplitEnd(0))

        return ThreadedReader(produce, name="vstream-from_arrow")


def _chain_first(
    first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
