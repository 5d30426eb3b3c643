"""Parquet files as a source: each file is a split, read in row batches."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vstream.errors import SchemaError, SourceError
from vstream.io._schema import polars_schema
from vstream.io.base import Data, Reader, Source, SplitEnd, ThreadedReader
from vstream.io.memory import check_batch_size

__all__ = ["ParquetSource", "expand_paths"]


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


class ParquetSource(Source):
    """Reads files one after another (source order), prefetching in a thread."""

    def __init__(
        self, path: str | os.PathLike[str] | list[str | os.PathLike[str]], batch_size: int
    ) -> None:
        self._files = expand_paths(path, ".parquet")
        self._batch_size = check_batch_size(batch_size, "from_parquet")
        try:
            schemas = [pq.read_schema(f) for f in self._files]
        except (OSError, pa.ArrowInvalid) as exc:
            msg = f"from_parquet: cannot read {exc}"
            raise SourceError(msg) from exc
        first = schemas[0].remove_metadata()
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
        n = len(self._files)
        shown = os.fspath(path) if not isinstance(path, list) else "[...]"
        self.label = f"from_parquet({shown}, {n} file{'s' * (n != 1)})"

    def splits(self) -> list[str]:
        return list(self._files)

    def schema(self) -> pa.Schema:
        return self._schema

    def total_rows(self) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self._files)

    def split_lower_bounds(self, column: str, dtype: pl.DataType) -> list[int | None]:
        """Per file, the minimum of ``column`` from the Parquet statistics (in the
        column's physical unit), or None where a file has no usable statistics."""
        out: list[int | None] = []
        for f in self._files:
            md = pq.ParquetFile(f).metadata
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

    def open(self) -> Reader:
        files, bs = self._files, self._batch_size

        def produce(put) -> None:  # type: ignore[no-untyped-def]
            for i, f in enumerate(files):
                pos = 0
                with pq.ParquetFile(f) as pf:
                    for rb in pf.iter_batches(batch_size=bs, use_threads=False):
                        pos += rb.num_rows
                        if not put(Data(i, rb.replace_schema_metadata(None), pos)):
                            return
                if not put(SplitEnd(i)):
                    return

        return ThreadedReader(produce, name="vstream-from_parquet")
