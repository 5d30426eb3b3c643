"""The formats a file sink writes (Parquet, NDJSON, CSV, Arrow IPC) and the Hive-style
partition directories it writes them into.

A format is a small strategy object: the extension of its files, which columns it can
hold, and how to write a frame (or a lazy frame, when the parts of a single-file output
are joined at the end) to a path. Everything else a file sink does (modes, the output's
claim, two-phase commit, partitions, rolling) is the same for every format and lives in
:mod:`vstream.io.file_sink`.

Partition directories are ``col=value/`` as Hive, Spark and Polars write them: the
column name and the value are percent-encoded (every byte outside ``A-Z a-z 0-9 _ - .
~``), so a value from the data (``../x``, ``a/b``, ``=``, a NUL byte) never leaves the
output directory nor makes a second level; a null is ``__HIVE_DEFAULT_PARTITION__``.
``pl.scan_parquet(out, hive_partitioning=True)`` decodes them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import quote

import polars as pl

from vstream.errors import PipelineError

__all__ = [
    "HIVE_NULL",
    "MAX_SEGMENT_BYTES",
    "CsvFormat",
    "FileFormat",
    "IpcCompression",
    "IpcFormat",
    "NdjsonFormat",
    "ParquetCompression",
    "ParquetFormat",
    "TextCompression",
    "check_partition_columns",
    "hive_segment",
]

ParquetCompression = Literal["lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"]
#: what Polars offers for Arrow IPC files
IpcCompression = Literal["uncompressed", "lz4", "zstd"]
#: what Polars offers for NDJSON and CSV files (the whole file is compressed)
TextCompression = Literal["uncompressed", "gzip", "zstd"]
_TEXT_SUFFIX = {"uncompressed": "", "gzip": ".gz", "zstd": ".zst"}

#: the directory name of a null partition value (Hive's, Spark's and Polars')
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
#: a directory name's limit on common file systems (ext4, xfs, btrfs, APFS, NTFS)
MAX_SEGMENT_BYTES = 255
# percent-encode everything but these (quote never encodes letters, digits and "_.-~")
_SAFE = ""


def _pick(where: str, what: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        msg = f"{where}: {what} must be one of {list(allowed)}, got {value!r}"
        raise PipelineError(msg)
    assert isinstance(value, str)
    return value


class FileFormat:
    """How one kind of file is written. ``ext`` ends every file's name; a path ending
    in one of ``single_suffixes`` is a single-file output."""

    name = "file"
    #: how messages name the format ("the Parquet file ...")
    title = "file"
    ext = ""
    single_suffixes: tuple[str, ...] = ()

    def check_schema(self, schema: pl.Schema, label: str) -> None:
        """Refuse, before anything is written, a column the format cannot hold."""

    def write(self, df: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
        """Write ``df`` to ``path`` (raises what Polars raises)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ParquetFormat(FileFormat):
    """Parquet files (``.parquet``), compressed with ``compression``."""

    compression: ParquetCompression = "zstd"
    name = "parquet"
    title = "Parquet"
    ext = ".parquet"
    single_suffixes = (".parquet",)

    def __post_init__(self) -> None:
        _pick("sink_parquet", "compression", self.compression, get_args(ParquetCompression))

    def write(self, df: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
        if isinstance(df, pl.LazyFrame):
            df.sink_parquet(path, compression=self.compression)
        else:
            df.write_parquet(path, compression=self.compression)


@dataclass(frozen=True)
class IpcFormat(FileFormat):
    """Arrow IPC files (``.arrow``, Feather v2), with buffers compressed by
    ``compression``."""

    compression: IpcCompression = "uncompressed"
    name = "ipc"
    title = "Arrow IPC"
    ext = ".arrow"
    single_suffixes = (".arrow", ".ipc", ".feather")

    def __post_init__(self) -> None:
        _pick("sink_ipc", "compression", self.compression, get_args(IpcCompression))

    def write(self, df: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
        if isinstance(df, pl.LazyFrame):
            df.sink_ipc(path, compression=self.compression)
        else:
            df.write_ipc(path, compression=self.compression)


@dataclass(frozen=True)
class NdjsonFormat(FileFormat):
    """Newline-delimited JSON (``.ndjson``, ``.ndjson.gz`` or ``.ndjson.zst`` when
    compressed)."""

    compression: TextCompression = "uncompressed"
    name = "ndjson"
    title = "NDJSON"

    def __post_init__(self) -> None:
        _pick("sink_ndjson", "compression", self.compression, get_args(TextCompression))

    @property
    def ext(self) -> str:  # type: ignore[override]
        return ".ndjson" + _TEXT_SUFFIX[self.compression]

    @property
    def single_suffixes(self) -> tuple[str, ...]:  # type: ignore[override]
        end = _TEXT_SUFFIX[self.compression]
        return (".ndjson" + end, ".jsonl" + end)

    def write(self, df: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
        if isinstance(df, pl.LazyFrame):
            df.sink_ndjson(path, compression=self.compression, check_extension=False)
        else:
            df.write_ndjson(path, compression=self.compression, check_extension=False)


#: dtypes a CSV cell cannot hold (Polars refuses to write them)
_NESTED = (pl.List, pl.Array, pl.Struct, pl.Object)


@dataclass(frozen=True)
class CsvFormat(FileFormat):
    """CSV files (``.csv``, ``.csv.gz``, ``.csv.zst``), with Polars' ``write_csv``
    options; every file has its own header line when ``include_header``."""

    separator: str = ","
    include_header: bool = True
    quote_char: str = '"'
    null_value: str | None = None
    line_terminator: str = "\n"
    compression: TextCompression = "uncompressed"
    name = "csv"
    title = "CSV"

    def __post_init__(self) -> None:
        _pick("sink_csv", "compression", self.compression, get_args(TextCompression))
        for what, value in (("separator", self.separator), ("quote_char", self.quote_char)):
            if not isinstance(value, str) or len(value.encode()) != 1:
                msg = f"sink_csv: {what} must be a single one-byte character, got {value!r}"
                raise PipelineError(msg)
        if self.separator == self.quote_char:
            msg = f"sink_csv: separator and quote_char are both {self.separator!r}"
            raise PipelineError(msg)
        if not isinstance(self.include_header, bool):
            msg = f"sink_csv: include_header must be True or False, got {self.include_header!r}"
            raise PipelineError(msg)
        if self.null_value is not None and not isinstance(self.null_value, str):
            msg = f"sink_csv: null_value must be a string or None, got {self.null_value!r}"
            raise PipelineError(msg)
        if not isinstance(self.line_terminator, str) or not self.line_terminator:
            got = self.line_terminator
            msg = f"sink_csv: line_terminator must be a non-empty string, got {got!r}"
            raise PipelineError(msg)

    @property
    def ext(self) -> str:  # type: ignore[override]
        return ".csv" + _TEXT_SUFFIX[self.compression]

    @property
    def single_suffixes(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.ext,)

    def check_schema(self, schema: pl.Schema, label: str) -> None:
        for col, dtype in schema.items():
            if isinstance(dtype, _NESTED) or dtype == pl.Binary:
                msg = (
                    f"{label}: column {col!r} is {dtype}, which a CSV cell cannot hold; "
                    "convert it first (e.g. .with_columns(pl.col(...).cast(pl.String)) "
                    "or struct.json_encode()), or use sink_ndjson / sink_parquet"
                )
                raise PipelineError(msg)

    def write(self, df: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
        if isinstance(df, pl.LazyFrame):
            df.sink_csv(
                path,
                separator=self.separator,
                include_header=self.include_header,
                quote_char=self.quote_char,
                null_value=self.null_value,
                line_terminator=self.line_terminator,
                compression=self.compression,
                check_extension=False,
            )
        else:
            df.write_csv(
                path,
                separator=self.separator,
                include_header=self.include_header,
                quote_char=self.quote_char,
                null_value=self.null_value,
                line_terminator=self.line_terminator,
                compression=self.compression,
                check_extension=False,
            )


# ---------------------------------------------------------------------- partitions
#: what a partition column may be: a value with a plain text form (no nesting, no bytes)
_NOT_A_KEY = (pl.List, pl.Array, pl.Struct, pl.Object)


def check_partition_columns(
    partition_by: str | Sequence[str] | None, schema: pl.Schema | None, where: str
) -> tuple[str, ...]:
    """The partition columns as a tuple; with ``schema``, each must be in it and have a
    plain text form."""
    if partition_by is None:
        return ()
    cols = (partition_by,) if isinstance(partition_by, str) else tuple(partition_by)
    if not cols or not all(isinstance(c, str) and c for c in cols):
        msg = f"{where}: partition_by takes a column name or a list of them, got {partition_by!r}"
        raise PipelineError(msg)
    if len(set(cols)) != len(cols):
        msg = f"{where}: partition_by names a column twice: {list(cols)}"
        raise PipelineError(msg)
    if schema is None:
        return cols
    for c in cols:
        if c not in schema:
            msg = f"{where}: partition_by column {c!r} is not in the stream ({list(schema)})"
            raise PipelineError(msg)
    if len(cols) == len(schema):
        msg = f"{where}: partition_by takes every column {list(cols)}; no value would be left"
        raise PipelineError(msg)
    for c in cols:
        dtype = schema[c]
        if isinstance(dtype, _NOT_A_KEY) or dtype in (pl.Binary, pl.Null):
            msg = (
                f"{where}: partition_by column {c!r} is {dtype}, which has no directory "
                "name; partition by a column of strings, integers, dates or booleans "
                "(e.g. .with_columns(day=pl.col('ts').dt.date()))"
            )
            raise PipelineError(msg)
    return cols


def hive_segment(column: str, value: str | None) -> str:
    """``column=value`` with both percent-encoded (a null is :data:`HIVE_NULL`): one
    directory name, never ``.``, ``..`` nor containing ``/``."""
    text = HIVE_NULL if value is None else quote(value, safe=_SAFE)
    return f"{quote(column, safe=_SAFE)}={text}"
