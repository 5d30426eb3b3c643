"""The file sinks of a Stream other than Parquet (issue 18): ``sink_ndjson``,
``sink_csv`` and ``sink_ipc``, in their own module so the terminal calls' module stays
short (:class:`vstream.api.sinks.Terminals` inherits them), and the checks every file
sink makes when it is built."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, overload

from vstream._duration import Duration, wall_seconds
from vstream.api.base import StreamBase
from vstream.api.mqtt_sink import MqttTerminals
from vstream.api.options import SinkMode
from vstream.errors import PipelineError
from vstream.io.file_formats import (
    CsvFormat,
    FileFormat,
    IpcCompression,
    IpcFormat,
    NdjsonFormat,
    TextCompression,
    check_partition_columns,
)
from vstream.io.sinks import FileSink
from vstream.runtime.checkpointing import CheckpointConfig
from vstream.runtime.metrics import Metrics

if TYPE_CHECKING:
    from vstream.api.sinks import LazySink

__all__ = ["FileTerminals", "check_file_sink", "flush_seconds"]


class FileTerminals(MqttTerminals):
    """The NDJSON, CSV and Arrow IPC terminal calls of a :class:`~vstream.Stream`."""

    @overload
    def sink_ndjson(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: TextCompression = "uncompressed",
        mode: SinkMode = "error",
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics: ...

    @overload
    def sink_ndjson(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: TextCompression = "uncompressed",
        mode: SinkMode = "error",
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> LazySink: ...

    def sink_ndjson(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: TextCompression = "uncompressed",
        mode: SinkMode = "error",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics | LazySink:
        """Write the stream as newline-delimited JSON: part files in a directory, or
        one file.

        The same sink as :meth:`sink_parquet` in another format: the same ``mode``, the
        same output directory that holds committed files only, the same exactly-once
        two-phase commit with ``checkpoint_dir``. A path ending in ``.ndjson`` or
        ``.jsonl`` (``.gz`` / ``.zst`` added when compressed) is one file, written at
        the end of a bounded run.

        Parameters
        ----------
        path
            The output directory, or one file.
        partition_by
            A column name or a list of them: rows go to Hive-style directories
            ``col=value/`` (``a=1/b=x/part-...``). Names and values are percent-encoded
            (a value such as ``../x`` or ``a/b`` stays one directory inside the output);
            a null is ``__HIVE_DEFAULT_PARTITION__``. The partition columns stay in the
            files too (as Polars writes them), so each file holds whole rows.
        max_rows_per_file
            A file holds at most this many rows (per partition); then a new file starts.
        flush_interval
            A file is also written once its first row has waited this long (None: only
            when full, at a checkpoint and at the end).
        compression
            ``"uncompressed"``, ``"gzip"`` or ``"zstd"`` (the whole file).
        mode
            What to do with an output that has content and is not this sink's own
            checkpointed output: ``"error"``, ``"overwrite"`` or ``"append"``.
        lazy
            Return a :class:`LazySink` for :func:`vstream.collect_all` instead of running.
        timeout, checkpoint_dir, checkpoint_interval, keep_checkpoints, progress
            As in :meth:`sink_parquet`.

        Returns
        -------
        Metrics or LazySink
            The run's metrics, or the lazy sink with ``lazy=True``.

        Examples
        --------
        >>> import tempfile, os
        >>> import polars as pl
        >>> import vstream as vs
        >>> d = tempfile.mkdtemp()
        >>> s = vs.from_polars(pl.DataFrame({"day": ["mon", "mon", "tue"], "x": [1, 2, 3]}))
        >>> _ = s.sink_ndjson(os.path.join(d, "out"), partition_by="day")
        >>> sorted(os.listdir(os.path.join(d, "out")))
        ['day=mon', 'day=tue']
        >>> pl.read_ndjson(os.path.join(d, "out", "day=tue", "part-000000.ndjson"))
        shape: (1, 2)
        ┌─────┬─────┐
        │ day ┆ x   │
        │ --- ┆ --- │
        │ str ┆ i64 │
        ╞═════╪═════╡
        │ tue ┆ 3   │
        └─────┴─────┘
        """
        fmt = NdjsonFormat(compression)
        return self._sink_file(
            fmt,
            path,
            partition_by=partition_by,
            max_rows_per_file=max_rows_per_file,
            flush_interval=flush_interval,
            mode=mode,
            lazy=lazy,
            timeout=timeout,
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval=checkpoint_interval,
            keep_checkpoints=keep_checkpoints,
            progress=progress,
        )

    @overload
    def sink_csv(
        self,
        path: str | os.PathLike[str],
        *,
        separator: str = ",",
        include_header: bool = True,
        quote_char: str = '"',
        null_value: str | None = None,
        line_terminator: str = "\n",
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: TextCompression = "uncompressed",
        mode: SinkMode = "error",
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics: ...

    @overload
    def sink_csv(
        self,
        path: str | os.PathLike[str],
        *,
        separator: str = ",",
        include_header: bool = True,
        quote_char: str = '"',
        null_value: str | None = None,
        line_terminator: str = "\n",
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: TextCompression = "uncompressed",
        mode: SinkMode = "error",
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> LazySink: ...

    def sink_csv(
        self,
        path: str | os.PathLike[str],
        *,
        separator: str = ",",
        include_header: bool = True,
        quote_char: str = '"',
        null_value: str | None = None,
        line_terminator: str = "\n",
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: TextCompression = "uncompressed",
        mode: SinkMode = "error",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics | LazySink:
        """Write the stream as CSV: part files in a directory, or one file.

        As :meth:`sink_ndjson` (modes, partitions, rolling, exactly-once with
        ``checkpoint_dir``), with Polars' ``write_csv`` options. Every file starts with
        its own header line when ``include_header``. A path ending in ``.csv`` (``.gz``
        / ``.zst`` added when compressed) is one file. Nested columns (lists, structs)
        and binary columns have no CSV form and are refused when the sink is built.

        Parameters
        ----------
        path
            The output directory, or one file.
        separator
            The field separator, one single-byte character.
        include_header
            Whether each file starts with the column names.
        quote_char
            The quoting character, one single-byte character.
        null_value
            How a null is written (Polars' default: an empty field).
        line_terminator
            What ends a line.
        partition_by, max_rows_per_file, flush_interval, compression, mode, lazy
            As in :meth:`sink_ndjson`.
        timeout, checkpoint_dir, checkpoint_interval, keep_checkpoints, progress
            As in :meth:`sink_parquet`.

        Returns
        -------
        Metrics or LazySink
            The run's metrics, or the lazy sink with ``lazy=True``.

        Examples
        --------
        >>> import tempfile, os
        >>> import polars as pl
        >>> import vstream as vs
        >>> path = os.path.join(tempfile.mkdtemp(), "rows.csv")
        >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2], "y": ["a", None]}))
        >>> _ = s.sink_csv(path, separator=";", null_value="NA")
        >>> print(open(path).read(), end="")
        x;y
        1;a
        2;NA
        """
        fmt = CsvFormat(
            separator=separator,
            include_header=include_header,
            quote_char=quote_char,
            null_value=null_value,
            line_terminator=line_terminator,
            compression=compression,
        )
        return self._sink_file(
            fmt,
            path,
            partition_by=partition_by,
            max_rows_per_file=max_rows_per_file,
            flush_interval=flush_interval,
            mode=mode,
            lazy=lazy,
            timeout=timeout,
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval=checkpoint_interval,
            keep_checkpoints=keep_checkpoints,
            progress=progress,
        )

    @overload
    def sink_ipc(
        self,
        path: str | os.PathLike[str],
        *,
        compression: IpcCompression = "uncompressed",
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        mode: SinkMode = "error",
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics: ...

    @overload
    def sink_ipc(
        self,
        path: str | os.PathLike[str],
        *,
        compression: IpcCompression = "uncompressed",
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        mode: SinkMode = "error",
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> LazySink: ...

    def sink_ipc(
        self,
        path: str | os.PathLike[str],
        *,
        compression: IpcCompression = "uncompressed",
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        mode: SinkMode = "error",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics | LazySink:
        """Write the stream as Arrow IPC files (Feather v2, ``.arrow``): part files in a
        directory, or one file.

        As :meth:`sink_ndjson` (modes, partitions, rolling, exactly-once with
        ``checkpoint_dir``); the files keep every dtype exactly. A path ending in
        ``.arrow``, ``.ipc`` or ``.feather`` is one file.

        Parameters
        ----------
        path
            The output directory, or one file.
        compression
            Buffer compression: ``"uncompressed"``, ``"lz4"`` or ``"zstd"``.
        partition_by, max_rows_per_file, flush_interval, mode, lazy
            As in :meth:`sink_ndjson`.
        timeout, checkpoint_dir, checkpoint_interval, keep_checkpoints, progress
            As in :meth:`sink_parquet`.

        Returns
        -------
        Metrics or LazySink
            The run's metrics, or the lazy sink with ``lazy=True``.

        Examples
        --------
        >>> import tempfile, os
        >>> import polars as pl
        >>> import vstream as vs
        >>> d = tempfile.mkdtemp()
        >>> out, ckpt = os.path.join(d, "out"), os.path.join(d, "ckpt")
        >>> s = vs.from_polars(pl.DataFrame({"x": range(10)}), batch_size=4)
        >>> _ = s.sink_ipc(out, compression="zstd", max_rows_per_file=4,
        ...                checkpoint_dir=ckpt, checkpoint_interval=1)
        >>> sorted(os.listdir(out))
        ['part-00000001-0000.arrow', 'part-00000002-0000.arrow', 'part-00000003-0000.arrow']
        >>> pl.read_ipc(os.path.join(out, "part-00000003-0000.arrow"))["x"].to_list()
        [8, 9]
        """
        fmt = IpcFormat(compression)
        return self._sink_file(
            fmt,
            path,
            partition_by=partition_by,
            max_rows_per_file=max_rows_per_file,
            flush_interval=flush_interval,
            mode=mode,
            lazy=lazy,
            timeout=timeout,
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval=checkpoint_interval,
            keep_checkpoints=keep_checkpoints,
            progress=progress,
        )

    def _sink_file(
        self,
        fmt: FileFormat,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None,
        max_rows_per_file: int,
        flush_interval: Duration | float | None,
        mode: SinkMode,
        lazy: bool,
        timeout: Duration | float | None,
        checkpoint_dir: str | os.PathLike[str] | None,
        checkpoint_interval: Duration | int,
        keep_checkpoints: int,
        progress: bool | None,
    ) -> Metrics | LazySink:
        """The body of ``sink_ndjson``, ``sink_csv`` and ``sink_ipc``."""
        from vstream.api.sinks import LazySink

        where = f"sink_{fmt.name}"
        interval = flush_seconds(flush_interval)
        sink = LazySink(
            self,
            lambda: FileSink(
                path,
                fmt,
                max_rows_per_file=max_rows_per_file,
                flush_interval=interval,
                mode=mode,
                partition_by=partition_by,
            ),
            checkpoint=CheckpointConfig.parse(
                checkpoint_dir, checkpoint_interval, keep_checkpoints, where
            ),
        )
        check_file_sink(self, sink)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=4, progress=progress)


def flush_seconds(flush_interval: Duration | float | None) -> float | None:
    return None if flush_interval is None else wall_seconds(flush_interval, "flush_interval")


def check_file_sink(stream: StreamBase, sink: LazySink) -> None:
    """Refuse a file sink that cannot run, when it is built (not at run time)."""
    probe = sink.make_sink()  # validates the arguments
    assert isinstance(probe, FileSink)
    where, fmt, path = f"sink_{probe.fmt.name}", probe.fmt, str(probe.dir)
    probe.fmt.check_schema(stream.schema, where)
    check_partition_columns(probe.partition_by or None, stream.schema, where)
    if probe.single and sink.checkpoint is not None:
        msg = (
            f"{where}: a single {fmt.title} file ({path!r}) cannot be written "
            "exactly-once with checkpoint_dir; pass a directory (a path not ending in "
            f"{fmt.ext})"
        )
        raise PipelineError(msg)
    if probe.single and not stream.is_bounded:
        msg = (
            f"{where}: {path!r} is one {fmt.title} file, written at the end of the "
            "input, and this stream is unbounded; write to a directory of part files "
            f"(a path not ending in {fmt.ext}), or bound the stream with .head(n)"
        )
        raise PipelineError(msg)
