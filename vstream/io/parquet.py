"""Parquet files as a source: each file is a split, read in row batches."""

from __future__ import annotations

import bisect
import glob
import itertools
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from vstream.errors import SchemaError, SourceError
from vstream.io._schema import check_names, polars_schema
from vstream.io._utf8 import drop_invalid_utf8, has_strings, reads_strings
from vstream.io.base import (
    Data,
    Reader,
    Source,
    SourceEvent,
    SplitEnd,
    SplitPosition,
    ThreadedReader,
    row_position,
    split_root,
)
from vstream.io.memory import check_batch_size

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = ["ParquetSource", "expand_paths"]

#: what pyarrow raises on a truncated or garbled file ("Couldn't deserialize thrift",
#: "Parquet magic bytes not found", a page that does not decompress)
_READ_ERRORS = (OSError, pa.ArrowException, ValueError, EOFError)


def _unreadable(path: str, row: int | None, exc: BaseException) -> str:
    where = "the footer" if row is None else f"the rows after row {row:,}"
    detail = " ".join(str(exc).split())
    return (
        f"from_parquet: cannot read {where} of {path!r}: the file is truncated or damaged "
        f"({type(exc).__name__}: {detail}). Was it still being written, or "
        "replaced during the run? Restore the file or take it out of the input, then run "
        "again (a checkpointed run goes on from its last checkpoint)."
    )


def expand_paths(
    path: str | os.PathLike[str] | list[str | os.PathLike[str]], suffix: str
) -> list[str]:
    """Files named by a path, a glob, a directory (its ``*suffix`` files) or a list of those.

    In a directory, files in hidden folders and files whose names start with ``.`` or
    ``_`` are left out (a sink's pending and temporary files, ``_SUCCESS`` markers).
    """
    if isinstance(path, list | tuple):
        out: list[str] = []
        for p in path:
            out.extend(expand_paths(p, suffix))
        return out
    text = os.fspath(path)
    if os.path.isdir(text):
        root = Path(text)
        files = sorted(
            str(p)
            for p in root.rglob(f"*{suffix}")
            if not p.name.startswith(("_", "."))
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    elif glob.has_magic(text):
        files = sorted(glob.glob(text, recursive=True))
    else:
        if not os.path.exists(text):
            msg = f"no such file: {text!r}"
            raise SourceError(msg)
        files = [text]
    if not files:
        msg = f"{text!r} matches no {suffix} file"
        raise SourceError(msg)
    return files


def _recut(batches: Iterable[pa.RecordBatch], start: int, bs: int) -> Iterator[pa.RecordBatch]:
    """Batches that end at the multiples of ``bs`` (counted from the file start) or at the
    end, from ``batches`` that begin at row ``start`` of the file, however they are cut.

    pyarrow already cuts so across row groups (the batches then pass as they are); a read
    that starts inside a row group is re-cut here, so it gives the batches of a full read.
    """
    pending: list[pa.RecordBatch] = []
    have = 0  # rows in pending
    need = bs - start % bs  # rows up to the next cut
    for rb in batches:
        while rb.num_rows:
            take = min(need - have, rb.num_rows)
            piece = rb if take == rb.num_rows else rb.slice(0, take)
            pending.append(piece)
            have += take
            rb = rb.slice(take)
            if have == need:
                yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
                pending, have, need = [], 0, bs
    if have:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _skip_rows(batches: Iterable[pa.RecordBatch], n: int) -> Iterator[pa.RecordBatch]:
    """``batches`` without their first ``n`` rows."""
    for rb in batches:
        if n >= rb.num_rows:
            n -= rb.num_rows
            continue
        yield rb.slice(n) if n else rb
        n = 0


class ParquetSource(Source):
    """Reads files one after another (source order), prefetching in a thread.

    Every file is a split; a position is the number of rows of the file read so far.
    Batches end at the multiples of ``batch_size`` from the file start (and at its end),
    so a read resumed at a position gives the batches of a full read; it starts at the
    row group holding that row, skipping the groups before it.
    """

    replayable = True

    def __init__(
        self, path: str | os.PathLike[str] | list[str | os.PathLike[str]], batch_size: int
    ) -> None:
        self._files = expand_paths(path, ".parquet")
        self.split_root = split_root(path, self._files)
        self._batch_size = check_batch_size(batch_size, "from_parquet")
        # imported here: pyarrow.parquet brings pyarrow.fs and ssl, ~25 ms of import vstream
        import pyarrow.parquet as pq

        schemas = []
        for f in self._files:
            try:
                schemas.append(pq.read_schema(f))
            except _READ_ERRORS as exc:
                raise SourceError(_unreadable(f, None, exc)) from exc
        first = schemas[0].remove_metadata()
        check_names(first.names, f"from_parquet({self._files[0]!r})")
        # Polars reads string/large_string, nullable or not, as one type: so do we
        want = polars_schema(first)
        for f, s in zip(self._files, schemas, strict=True):
            if polars_schema(s) != want:
                msg = (
                    f"from_parquet: {f!r} has schema {dict(polars_schema(s))} but "
                    f"{self._files[0]!r} has {dict(want)}; "
                    "every file of one source needs the same schema"
                )
                raise SchemaError(msg)
        self._schema = first
        self._strings = any(has_strings(f.type) for f in first)
        n = len(self._files)
        shown = os.fspath(path) if not isinstance(path, list) else "[...]"
        self.label = f"from_parquet({shown}, {n} file{'s' * (n != 1)})"

    def splits(self) -> list[str]:
        return list(self._files)

    def config(self) -> dict[str, object] | None:
        return {"kind": "parquet", "files": list(self._files), "batch_size": self._batch_size}

    def schema(self) -> pa.Schema:
        return self._schema

    def total_rows(self) -> int | None:
        import pyarrow.parquet as pq

        try:
            return sum(int(pq.read_metadata(f).num_rows) for f in self._files)
        except _READ_ERRORS:  # for progress only: the run names the damaged file
            return None

    def split_lower_bounds(self, column: str, dtype: pl.DataType) -> list[int | None]:
        """Per file, the minimum of ``column`` from the Parquet statistics (in the
        column's physical unit), or None where a file has no usable statistics."""
        import pyarrow.parquet as pq

        out: list[int | None] = []
        for f in self._files:
            try:
                md = pq.read_metadata(f)
            except _READ_ERRORS:  # no bound; the run names the damaged file
                out.append(None)
                continue
            idx = (
                next(
                    (
                        i
                        for i in range(md.num_columns)
                        if md.row_group(0).column(i).path_in_schema == column
                    ),
                    None,
                )
                if (md.num_row_groups)
                else None
            )
            lows: list[Any] = []
            for g in range(md.num_row_groups if idx is not None else 0):
                stats = md.row_group(g).column(idx).statistics
                if stats is None or not stats.has_min_max:
                    lows = []
                    break
                lows.append(stats.min)
            if not lows:
                out.append(None)
                continue
            try:
                low = pl.Series([min(lows)]).cast(dtype).to_physical().item()
            except Exception:  # statistics in a form Polars cannot read back: no bound
                low = None
            out.append(low)
        return out

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        files, bs = self._files, self._batch_size
        starts = {
            i: 0 if p is None else row_position(p, self.label)
            for i, p in self.resume_points(resume, splits).items()
        }

        strings = self._strings and reads_strings(self.schema(), columns)
        # projection pushdown: only the columns the run reads are read from the files, in
        # the file's order (the runtime selects them by name; rows are counted the same)
        names = self._schema.names
        wanted = None if columns is None else [c for c in names if c in columns]
        if wanted is not None and len(wanted) == len(names):
            wanted = None
        # (pyarrow takes "a.b" for field b of a struct a as well as for a column "a.b": it
        # then reads both, and the runtime keeps the column by its name)

        def produce(put: Callable[[SourceEvent], bool]) -> None:
            import pyarrow.parquet as pq

            for i, start in starts.items():
                pos = start
                try:
                    with pq.ParquetFile(files[i]) as pf:
                        for rb in _read_from(pf, start, bs, wanted):
                            pos += rb.num_rows
                            dead = None
                            if strings:
                                rb, dead = drop_invalid_utf8(rb, "from_parquet", columns=columns)
                            event = Data(i, rb if rb.num_rows else None, pos, dead)
                            if not put(event):
                                return
                except _READ_ERRORS as exc:
                    raise SourceError(_unreadable(files[i], pos, exc)) from exc
                if not put(SplitEnd(i)):
                    return

        return ThreadedReader(produce, name="vstream-from_parquet")


def _read_from(
    pf: pq.ParquetFile, start: int, bs: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The batches of ``pf`` after its first ``start`` rows, cut as a full read cuts them,
    with only ``columns`` (None: all; none at all still counts the rows)."""
    md = pf.metadata
    # first row of each row group; reading starts at the group holding row `start`
    firsts = [0, *itertools.accumulate(md.row_group(g).num_rows for g in range(md.num_row_groups))]
    if start >= firsts[-1]:
        return
    group = bisect.bisect_right(firsts, start) - 1
    groups = None if group == 0 else list(range(group, md.num_row_groups))
    read = pf.iter_batches(batch_size=bs, row_groups=groups, columns=columns, use_threads=False)
    clean = (rb.replace_schema_metadata(None) for rb in read)
    yield from _recut(_skip_rows(clean, start - firsts[group]), start, bs)
