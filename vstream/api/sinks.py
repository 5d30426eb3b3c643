"""Running a stream: the terminal calls of a Stream (``collect``, ``iter_batches``,
``sink_parquet``, ``sink_callback``, ``sink_kafka``, ``start``; the other file sinks are
in :mod:`vstream.api.file_sinks`), lazy sinks, and the one function that runs a set of
branches as one job."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import polars as pl

from vstream._duration import Duration, wall_seconds
from vstream.api.base import StreamBase
from vstream.api.file_sinks import FileTerminals, check_file_sink, flush_seconds
from vstream.api.options import SinkMode
from vstream.errors import PipelineError, UnboundedError
from vstream.io.kafka_sink import KafkaSink, KafkaSinkFormat
from vstream.io.sinks import (
    CallbackSink,
    CollectSink,
    ParquetSink,
    ResultsSink,
    Sink,
    takes_epoch,
)
from vstream.plan.nodes import SourceNode, ancestors
from vstream.runtime.checkpointing import CheckpointConfig, merge_configs
from vstream.runtime.executor import Executor, Target
from vstream.runtime.metrics import Metrics
from vstream.runtime.progress import Progress, describe, run_total, wants_progress

if TYPE_CHECKING:
    from vstream.api.job import Job

__all__ = ["LazySink", "Terminals", "job_checkpoint", "run_items", "to_targets"]


class Terminals(FileTerminals):
    """The calls that run a :class:`~vstream.Stream`; nothing runs before one of them."""

    @overload
    def collect(
        self,
        *,
        timeout: Duration | float | None = None,
        return_metrics: Literal[False] = False,
        progress: bool | None = None,
    ) -> pl.DataFrame: ...

    @overload
    def collect(
        self,
        *,
        timeout: Duration | float | None = None,
        return_metrics: Literal[True],
        progress: bool | None = None,
    ) -> tuple[pl.DataFrame, Metrics]: ...

    @overload
    def collect(
        self,
        *,
        timeout: Duration | float | None = None,
        return_metrics: bool,
        progress: bool | None = None,
    ) -> pl.DataFrame | tuple[pl.DataFrame, Metrics]: ...

    def collect(
        self,
        *,
        timeout: Duration | float | None = None,
        return_metrics: bool = False,
        progress: bool | None = None,
    ) -> pl.DataFrame | tuple[pl.DataFrame, Metrics]:
        """Run to the end of the input and return the rows as a ``polars.DataFrame``.

        Refused on an unbounded stream unless it is bounded by :meth:`head` or
        ``timeout`` (after which the input is treated as ended). With
        ``return_metrics=True`` returns ``(DataFrame, Metrics)``.

        ``progress`` shows a bar of the rows read (of the sources' total, where they know
        it) once the run has lasted half a second: None shows it when stderr is a terminal
        or in Jupyter, True always, False never.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2, 3]})).filter(pl.col("x") > 1)
        >>> df, metrics = s.collect(return_metrics=True)
        >>> df["x"].to_list(), metrics.events_in
        ([2, 3], 3)
        """
        results, metrics = run_items([self], timeout=timeout, stacklevel=2, progress=progress)
        df = results[0]
        assert df is not None  # a Stream's result sink always gives a frame
        return (df, metrics) if return_metrics else df

    def iter_batches(self, *, timeout: Duration | float | None = None) -> Iterator[pl.DataFrame]:
        """Run and yield output batches as they are produced (works on unbounded input);
        also ``collect_batches``, Polars' name.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"a": range(5)}), batch_size=2)
        >>> [b.height for b in s.iter_batches()]
        [2, 2, 1]
        """
        sink = CollectSink()
        deadline = None if timeout is None else time.monotonic() + wall_seconds(timeout, "timeout")
        ex = Executor([Target(self._node, sink)])
        steps: Generator[None, None, None] = ex.run(deadline)
        try:
            for _ in steps:
                if sink.frames:
                    frames, sink.frames = sink.frames, []
                    yield from frames
            yield from sink.frames
            ex.warn_uncollected(2)
        finally:
            steps.close()

    #: Polars' name for :meth:`iter_batches` (``LazyFrame.collect_batches``)
    collect_batches = iter_batches

    @overload
    def sink_parquet(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int | None = None,
        rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: str = "zstd",
        mode: SinkMode = "error",
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics: ...

    @overload
    def sink_parquet(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int | None = None,
        rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: str = "zstd",
        mode: SinkMode = "error",
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> LazySink: ...

    def sink_parquet(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by: str | Sequence[str] | None = None,
        max_rows_per_file: int | None = None,
        rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: str = "zstd",
        mode: SinkMode = "error",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics | LazySink:
        """Write the stream to Parquet part files in a directory, or to one file.

        Each file is written in the sink's own directory beside the output
        (``.<name>.vstream/``, on the same file system) and renamed into the output when
        complete, so the output directory holds complete part files and nothing else:
        ``pl.read_parquet(path)``, ``pl.scan_parquet(path)`` and ``pyarrow.dataset`` read
        it at any moment. Returns the run's :class:`Metrics`, or a :class:`LazySink` with
        ``lazy=True`` for :func:`vstream.collect_all`.

        ``mode`` says what to do with a directory that already has content and is not
        this sink's own checkpointed output (as Spark's ``mode``): ``"error"`` refuses
        it, ``"overwrite"`` deletes its content first, ``"append"`` adds part files
        after the ones there. A directory holding another checkpointed run's output is
        refused whatever the mode.

        A path ending in ``.parquet`` (that is not an existing directory) is one file,
        for a bounded stream without checkpoints, as Polars' ``sink_parquet`` writes: it
        appears at the end of a run that did not fail, at once (written to a temporary
        file, then renamed); ``mode="error"`` refuses an existing file, ``"overwrite"``
        replaces it.

        With ``checkpoint_dir`` the run is exactly-once and restartable: every
        ``checkpoint_interval`` (a duration of wall-clock time, or an int number of
        source batches) it checkpoints its sources' positions, watermarks and state, and
        only then commits the part files written since the previous checkpoint
        (``part-<epoch>-<k>.parquet``). Running the same pipeline again with the same
        ``checkpoint_dir`` resumes from the newest good checkpoint, and the directory
        ends up with exactly the rows of an uninterrupted run. A ``timeout`` then
        pauses the run at a checkpoint instead of ending its input. The last
        ``keep_checkpoints`` checkpoints are kept.

        ``partition_by`` (a column name or a list of them) writes Hive-style
        ``col=value/`` directories, read back by ``pl.scan_parquet(path,
        hive_partitioning=True)`` (see :meth:`sink_ndjson`). ``max_rows_per_file`` rolls
        to a new file after that many rows (per partition); ``rows_per_file`` is its
        older name.

        ``progress`` shows a bar of the rows read (of the sources' total, where they know
        it) once the run has lasted half a second: None shows it when stderr is a terminal
        or in Jupyter, True always, False never.

        Examples
        --------
        >>> import tempfile, os
        >>> import polars as pl
        >>> import vstream as vs
        >>> d = tempfile.mkdtemp()
        >>> s = vs.from_polars(pl.DataFrame({"x": range(10)}), batch_size=4)
        >>> out, ckpt = os.path.join(d, "out"), os.path.join(d, "ckpt")
        >>> _ = s.sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1)
        >>> pl.read_parquet(out).height
        10
        >>> _ = s.head(3).sink_parquet(os.path.join(d, "first.parquet"))  # one file
        >>> pl.read_parquet(os.path.join(d, "first.parquet")).height
        3
        """
        if max_rows_per_file is not None:
            if rows_per_file != 1_000_000:
                msg = (
                    "sink_parquet: pass max_rows_per_file or rows_per_file (its older "
                    "name), not both"
                )
                raise PipelineError(msg)
            rows_per_file = max_rows_per_file
        interval = flush_seconds(flush_interval)
        sink = LazySink(
            self,
            lambda: ParquetSink(
                path,
                rows_per_file=rows_per_file,
                flush_interval=interval,
                compression=compression,
                mode=mode,
                partition_by=partition_by,
            ),
            checkpoint=CheckpointConfig.parse(
                checkpoint_dir, checkpoint_interval, keep_checkpoints, "sink_parquet"
            ),
        )
        check_file_sink(self, sink)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=3, progress=progress)

    @overload
    def sink_callback(
        self,
        fn: Callable[..., object],
        *,
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics: ...

    @overload
    def sink_callback(
        self,
        fn: Callable[..., object],
        *,
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> LazySink: ...

    def sink_callback(
        self,
        fn: Callable[..., object],
        *,
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Metrics | LazySink:
        """Call ``fn`` with every output batch (a ``polars.DataFrame``); also
        ``sink_batches``, Polars' name. What ``fn`` returns is ignored (Polars' early
        stop on ``True`` is not supported: bound the stream with :meth:`head` instead).

        With ``checkpoint_dir`` (see :meth:`sink_parquet`) the run checkpoints and
        resumes, and ``fn`` is called as ``fn(df, epoch)``. The guarantee is
        at-least-once: after a restart from the checkpoint of epoch ``e``, the rows of
        epoch ``e + 1`` onwards are delivered again, under the same epoch ids. To get
        exactly-once results, make the write idempotent per epoch: replace what an
        epoch wrote before (``DELETE ... WHERE epoch >= e``) rather than appending.
        ``progress``: as in :meth:`collect`.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> seen = []
        >>> _ = vs.from_polars(pl.DataFrame({"a": range(5)}), batch_size=2).sink_callback(
        ...     lambda df: seen.append(df.height))
        >>> seen
        [2, 2, 1]
        """
        config = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, "sink_callback"
        )
        with_epoch = config is not None
        if with_epoch and not takes_epoch(fn):
            msg = (
                "sink_callback: with checkpoint_dir the function is called as fn(df, epoch) "
                "(the epoch id lets it drop rows a restart delivers again); "
                f"{getattr(fn, '__name__', fn)!r} does not take two arguments"
            )
            raise PipelineError(msg)
        CallbackSink(fn)
        sink = LazySink(self, lambda: CallbackSink(fn, with_epoch=with_epoch), checkpoint=config)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=3, progress=progress)

    #: Polars' name for :meth:`sink_callback` (``LazyFrame.sink_batches``)
    sink_batches = sink_callback

    @overload
    def sink_kafka(
        self,
        topic: str,
        *,
        bootstrap_servers: str,
        format: KafkaSinkFormat = "json",
        key: str | None = None,
        value: str | None = None,
        rows_per_message: int = 10_000,
        flush_timeout: Duration | float = "60s",
        lazy: Literal[False] = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
        **config: Any,
    ) -> Metrics: ...

    @overload
    def sink_kafka(
        self,
        topic: str,
        *,
        bootstrap_servers: str,
        format: KafkaSinkFormat = "json",
        key: str | None = None,
        value: str | None = None,
        rows_per_message: int = 10_000,
        flush_timeout: Duration | float = "60s",
        lazy: Literal[True],
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
        **config: Any,
    ) -> LazySink: ...

    def sink_kafka(
        self,
        topic: str,
        *,
        bootstrap_servers: str,
        format: KafkaSinkFormat = "json",
        key: str | None = None,
        value: str | None = None,
        rows_per_message: int = 10_000,
        flush_timeout: Duration | float = "60s",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
        **config: Any,
    ) -> Metrics | LazySink:
        """Write the stream to the Kafka topic ``topic`` through an idempotent producer.

        ``format``: ``"json"`` one JSON object per row (Polars' JSON encoding; NaN and
        infinity become null), ``"raw"`` the bytes of one Binary or String column per row
        (``value=``, by default the only column or the column ``value``), ``"arrow"`` an
        Arrow IPC stream of up to ``rows_per_message`` rows per message. ``key`` names the
        column whose value (as text; Binary as it is) is each message's key, so rows of one
        key go to one partition. ``config`` is librdkafka's producer configuration
        (``linger_ms=20`` stands for ``linger.ms``; or ``**{"compression.type": "zstd"}``).

        Guarantee: at-least-once, nothing lost; not exactly-once. Without
        ``checkpoint_dir`` rows are produced as they come and the producer is flushed at
        the end (``flush_timeout``). With ``checkpoint_dir`` each epoch's messages are
        staged in the checkpoint directory and produced once its checkpoint is durable; a
        restart produces again every staged epoch not yet acknowledged. Every message
        carries the headers ``vstream-epoch`` and ``vstream-seq`` (decimal text): a
        consumer that drops a repeated (epoch, seq) pair sees every row once. Other
        arguments as in :meth:`sink_parquet`.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"host": ["a", "b"], "cpu": [0.5, 0.9]}))
        >>> job = s.sink_kafka("alerts", bootstrap_servers="127.0.0.1:9092", key="host",
        ...                    lazy=True)
        >>> metrics = job.run()  # doctest: +SKIP
        >>> s.sink_kafka("alerts", bootstrap_servers="127.0.0.1:9092", key="hots")
        Traceback (most recent call last):
        ...
        vstream.errors.ColumnNotFoundError: sink_kafka('alerts'): key='hots' is not a column; ...
        """
        where = f"sink_kafka({topic!r})"
        config_ = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, where
        )
        flush_s = wall_seconds(flush_timeout, "flush_timeout")
        sink = LazySink(
            self,
            lambda: KafkaSink(
                topic,
                bootstrap_servers=bootstrap_servers,
                format=format,
                key=key,
                value=value,
                rows_per_message=rows_per_message,
                flush_timeout=flush_s,
                config=config,
            ),
            checkpoint=config_,
        )
        probe = sink.make_sink()  # validate the arguments and the schema now
        assert isinstance(probe, KafkaSink)
        probe.check_schema(self.schema)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=3, progress=progress)

    def start(
        self,
        *,
        keep: int = 100_000,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
    ) -> Job:
        """Run in a background thread; see :class:`vstream.Job`.

        ``job.results`` holds the newest ``keep`` output rows while it runs. With
        ``checkpoint_dir`` the job checkpoints its state and positions (see
        :meth:`sink_parquet`); ``job.stop()`` then takes a last checkpoint and a later
        start resumes from it. The rows kept in memory are not part of a checkpoint.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> job = vs.from_polars(pl.DataFrame({"x": [1, 2, 3]})).filter(pl.col("x") > 1).start()
        >>> job.join(timeout=30)
        >>> job.results
        shape: (2, 1)
        ┌─────┐
        │ x   │
        │ --- │
        │ i64 │
        ╞═════╡
        │ 2   │
        │ 3   │
        └─────┘
        """
        from vstream.api.job import Job

        config = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, "start"
        )
        return Job.launch([self], keep=keep, checkpoint=config)


class LazySink:
    """A sink not yet run: pass several to :func:`vstream.collect_all` to run them as one
    job over one plan, or call :meth:`run`."""

    def __init__(
        self,
        stream: StreamBase,
        factory: Callable[[], Sink],
        checkpoint: CheckpointConfig | None = None,
    ) -> None:
        self.stream = stream
        self._factory = factory
        self.checkpoint = checkpoint

    def make_sink(self) -> Sink:
        """A fresh sink object for a run of this lazy sink (each run writes through its
        own), for tools that run plans (:class:`vstream.runtime.executor.Executor`)."""
        return self._factory()

    def run(
        self,
        *,
        timeout: Duration | float | None = None,
        stacklevel: int = 2,
        progress: bool | None = None,
    ) -> Metrics:
        """Run this sink alone; returns the run's metrics (``progress``: as in
        :meth:`Stream.collect`)."""
        _, metrics = run_items([self], timeout=timeout, stacklevel=stacklevel, progress=progress)
        return metrics

    def start(self) -> Job:
        """Run in a background thread."""
        from vstream.api.job import Job

        return Job.launch([self], checkpoint=self.checkpoint)

    def __repr__(self) -> str:
        return f"<vstream.LazySink of {self.stream.node.label!r}>"


def to_targets(items: Sequence[StreamBase | LazySink], keep: int | None = None) -> list[Target]:
    """The executor's targets of a run: a result sink per Stream, its sink per LazySink."""
    targets = []
    for item in items:
        if isinstance(item, StreamBase):
            sink: Sink = CollectSink() if keep is None else ResultsSink(keep)
            targets.append(Target(item.node, sink))
        elif isinstance(item, LazySink):
            targets.append(Target(item.stream.node, item.make_sink()))
        else:
            kind = type(item).__name__
            msg = f"expected Streams or lazy sinks (sink_*(..., lazy=True)), got {kind}"
            raise PipelineError(msg)
    return targets


def job_checkpoint(
    items: Sequence[StreamBase | LazySink], given: CheckpointConfig | None, where: str
) -> CheckpointConfig | None:
    """The checkpoint setting of a run: the one passed to it, or its sinks' one."""
    configs = [i.checkpoint for i in items if isinstance(i, LazySink)]
    return merge_configs([given, *configs], where)


def run_items(
    items: Sequence[StreamBase | LazySink],
    *,
    timeout: Duration | float | None,
    stacklevel: int = 2,
    checkpoint: CheckpointConfig | None = None,
    progress: bool | None = None,
) -> tuple[list[pl.DataFrame | None], Metrics]:
    """Run items as one job; ``stacklevel`` of the user's call relative to our caller."""
    if not items:
        msg = "nothing to run: pass at least one Stream or lazy sink"
        raise PipelineError(msg)
    targets = to_targets(items)
    if timeout is None:
        for item in items:
            stream = item if isinstance(item, StreamBase) else item.stream
            if isinstance(stream, StreamBase) and not stream.is_bounded:
                culprits = [
                    n.label
                    for n in ancestors([stream.node])
                    if isinstance(n, SourceNode) and not n.bounded
                ]
                msg = (
                    f"cannot run to the end of {', '.join(culprits)}: it is unbounded. "
                    "Bound it with .head(n), pass timeout='10s', or run it in the background "
                    "with .start()"
                )
                raise UnboundedError(msg)
    deadline = None if timeout is None else time.monotonic() + wall_seconds(timeout, "timeout")
    bar = None
    if wants_progress(progress):
        outputs = [t.node for t in targets]
        bar = Progress(run_total(outputs), describe(outputs))
    ex = Executor(targets, job_checkpoint(items, checkpoint, "collect_all"), progress=bar)
    for _ in ex.run(deadline):
        pass
    ex.warn_uncollected(stacklevel + 1)
    results = [t.sink.result() if isinstance(t.sink, CollectSink) else None for t in targets]
    return results, ex.metrics
