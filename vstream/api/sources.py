"""The public source constructors: ``vs.from_polars``, ``vs.from_parquet``, ..."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import IO, Any

import polars as pl
import pyarrow as pa

from vstream._duration import Duration, wall_seconds
from vstream.api.base import named, set_name
from vstream.api.stream import Stream
from vstream.io._kafka_decode import KafkaFormat
from vstream.io._schema import SchemaLike
from vstream.io.base import Source
from vstream.io.kafka import KafkaSource, Offsets, OnDataLoss
from vstream.io.memory import ArrowSource, PolarsSource
from vstream.io.ndjson import NdjsonSource
from vstream.io.parquet import ParquetSource
from vstream.io.records import RecordsSource, max_delay_seconds
from vstream.plan.nodes import SourceNode

__all__ = [
    "from_arrow",
    "from_kafka",
    "from_ndjson",
    "from_parquet",
    "from_polars",
    "from_records",
]

PathLike = str | os.PathLike[str]


def from_polars(df: pl.DataFrame, *, batch_size: int = 65_536, name: str | None = None) -> Stream:
    """A bounded stream over a DataFrame, in batches of ``batch_size`` rows.

    Parameters
    ----------
    df
        The rows.
    batch_size
        Rows per micro-batch.
    name
        A stable name for the source's state in checkpoints (its splits' positions); set
        it to keep the state when the pipeline around it changes. Letters, digits, ``_``
        and ``-`` (at most 64), unique in a run.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> vs.from_polars(pl.DataFrame({"a": [1, 2, 3]}), batch_size=2).collect()["a"].to_list()
    [1, 2, 3]
    """
    return _stream(PolarsSource(df, batch_size), name)


def from_arrow(
    data: pa.Table
    | pa.RecordBatch
    | pa.RecordBatchReader
    | Iterable[pa.RecordBatch]
    | Callable[[], Iterable[pa.RecordBatch]],
    *,
    batch_size: int | None = None,
    bounded: bool | None = None,
    rate: float | None = None,
    max_delay: Duration | float = "50ms",
    name: str | None = None,
) -> Stream:
    """A stream over Arrow data, optionally replayed at a given rate.

    Parameters
    ----------
    data
        A Table, a RecordBatch, a list of batches (or tables), a ``RecordBatchReader``,
        any iterable of batches (a generator), or a function of no arguments returning
        one of these.
    batch_size
        Rows per micro-batch, at most. Without ``rate`` a Table (or a list of batches) is
        re-sliced to ``batch_size`` rows when given, and keeps its own chunks otherwise;
        other inputs keep their batches. With ``rate`` it defaults to 65,536.
    bounded
        Whether the input ends. A Table or a list is bounded; a ``RecordBatchReader``
        (read as it comes) is bounded unless ``bounded=False``; any other iterable of
        batches (a generator) is unbounded unless ``bounded=True``. A function's result
        follows the same rules.
    rate
        Rows per second of wall-clock time: replay the data at this pace, e.g. history at
        real speed. Row ``i`` is released ``i / rate`` seconds after the run starts (the
        pace does not depend on the input's batches), and the released rows are cut into
        micro-batches of at most ``batch_size`` rows, or of the rows released within
        ``max_delay`` of a batch's first row when fewer. The source's ``release_start``
        attribute (:class:`~vstream.io.memory.ArrowSource`) gives the schedule's start,
        as ``time.perf_counter()``. ``None`` (the default) reads the data as fast as the
        pipeline takes it.
    max_delay
        With ``rate``: the longest a released row waits for its micro-batch to be handed
        out, a duration (``"20ms"``, a timedelta, or seconds). Smaller means lower latency
        and smaller batches (at 100,000 rows/s, ``"20ms"`` gives ~2,000-row batches).
        Ignored without ``rate``.
    name
        A stable name for the source's state in checkpoints (its splits' positions); set
        it to keep the state when the pipeline around it changes. Letters, digits, ``_``
        and ``-`` (at most 64), unique in a run.

    Returns
    -------
    Stream

    Raises
    ------
    PipelineError
        If ``data`` is not Arrow data, ``batch_size`` is not a positive int or ``rate`` is
        not a positive number; :class:`~vstream.errors.DurationError` for a bad
        ``max_delay``.

    Notes
    -----
    A reader or a generator can be read only once. A function of no arguments returning
    a fresh iterable of batches can be read again: to run the stream more than once, or
    to resume it from a checkpoint (the batches before the checkpoint are then read and
    passed over). It is called once when the stream is built, to learn the schema, and
    boundedness follows what it returns. A Table and a list can be read again too.

    With ``rate``, a resumed run passes over the rows before the checkpoint and releases
    the rest at the rate from the restart, in the batches a full read gives. The input is
    read just ahead of the schedule and must keep up with the rate: rows a generator gives
    late are released late, in batches of the same sizes.

    Examples
    --------
    >>> import pyarrow as pa
    >>> import vstream as vs
    >>> vs.from_arrow(pa.table({"a": [1, 2]})).collect().shape
    (2, 1)

    A function returning a generator of batches, replayable:

    >>> def batches():
    ...     for i in range(3):
    ...         yield pa.record_batch({"a": [i, i]})
    >>> s = vs.from_arrow(batches, bounded=True)
    >>> s.collect()["a"].to_list()
    [0, 0, 1, 1, 2, 2]
    >>> s.collect().height  # a second run calls the function again
    6

    Replaying 2,000 rows at 100,000 rows a second (~20 ms), in batches of the rows
    released within 5 ms:

    >>> seen = []
    >>> replay = vs.from_arrow(pa.table({"a": range(2_000)}), rate=100_000, max_delay="5ms")
    >>> _ = replay.sink_callback(lambda df: seen.append(df.height))
    >>> sum(seen), max(seen) <= 501
    (2000, True)
    """
    source = ArrowSource(
        data,
        batch_size,
        bounded,
        rate=rate,
        max_delay=max_delay_seconds(max_delay, "from_arrow"),
    )
    return _stream(source, name)


def from_parquet(
    path: PathLike | list[PathLike], *, batch_size: int = 65_536, name: str | None = None
) -> Stream:
    """A bounded stream over Parquet files: a path, a glob, a directory or a list.

    Files are read one after another, each a split with its own watermark; a file not yet
    started holds the watermark back (at the minimum of its event-time statistics when
    the file has them), so files split by key do not make each other late.

    Parameters
    ----------
    path
        A file, a glob, a directory (its ``.parquet`` files, recursively) or a list.
    batch_size
        Rows per micro-batch.
    name
        A stable name for the source's state in checkpoints (its splits' positions); set
        it to keep the state when the pipeline around it changes. Letters, digits, ``_``
        and ``-`` (at most 64), unique in a run.

    Examples
    --------
    >>> import tempfile, os
    >>> import polars as pl
    >>> import vstream as vs
    >>> d = tempfile.mkdtemp()
    >>> pl.DataFrame({"a": [1, 2]}).write_parquet(os.path.join(d, "x.parquet"))
    >>> vs.from_parquet(d).collect()["a"].to_list()
    [1, 2]
    """
    return _stream(ParquetSource(path, batch_size), name)


def from_records(
    records: Iterable[dict[str, Any]] | Callable[[], Iterable[dict[str, Any]]],
    *,
    schema: SchemaLike | None = None,
    batch_size: int = 65_536,
    max_delay: Duration | float = "50ms",
    bounded: bool | None = None,
    name: str | None = None,
) -> Stream:
    """A stream of Python dicts, buffered into Arrow batches by a reader thread.

    A partial batch is flushed once ``max_delay`` of wall-clock time has passed since its
    first row, even while the iterable is blocked (not for a list, which never blocks:
    its batches are always whole, so they do not depend on timing). Records that do not
    fit the schema go to :meth:`Stream.dead_letters` (a string that is not valid UTF-8,
    a ``str`` with lone surrogates or undecodable ``bytes``, too). Without ``schema`` it is
    inferred from the first 1,000 records (every key seen, types unified as Polars does),
    which are read when the pipeline is built; from an iterable that is not a list, only
    those that arrive within ``max_delay`` of the first: pass ``schema`` for a live
    source. A list is bounded; any other iterable is unbounded unless ``bounded=True``.
    Pass a function returning a fresh iterable to run the stream more than once, or to
    checkpoint it (a list can be read again too; a one-shot iterator cannot).

    Parameters
    ----------
    name
        A stable name for the source's state in checkpoints (its splits' positions); set
        it to keep the state when the pipeline around it changes. Letters, digits, ``_``
        and ``-`` (at most 64), unique in a run. (The other parameters: as described
        above.)

    Examples
    --------
    >>> import vstream as vs
    >>> rows = [{"ts": 1, "host": "a"}, {"ts": 2, "host": "b"}]
    >>> vs.from_records(rows).collect()["host"].to_list()
    ['a', 'b']
    """
    return _stream(RecordsSource(records, schema, batch_size, max_delay, bounded), name)


def from_ndjson(
    source: PathLike | list[PathLike] | IO[bytes] | IO[str] | Iterable[bytes | str],
    *,
    schema: SchemaLike | None = None,
    batch_size: int = 65_536,
    max_delay: Duration | float = "50ms",
    bounded: bool | None = None,
    name: str | None = None,
) -> Stream:
    """A stream of newline-delimited JSON: files (each a split), a file object, or an
    iterable of lines.

    Whole blocks are parsed at once by ``pyarrow.json``. Malformed lines (bad JSON, a
    value of the wrong type, not an object) go to :meth:`Stream.dead_letters` with the
    reason, and the stream goes on; so do lines that are not valid UTF-8 (the reason names
    the field). Blank lines are skipped, and a byte order mark before a line is dropped.
    Without ``schema``, the types are inferred from the first lines (1 MB of a file, 1,000
    lines of an iterable); a column whose types there cannot be unified raises
    :class:`~vstream.errors.SchemaError` naming it and two of its lines. Files and a list
    of lines can be read again from a checkpoint; a file object or a one-shot iterator
    cannot.

    Parameters
    ----------
    name
        A stable name for the source's state in checkpoints (its splits' positions); set
        it to keep the state when the pipeline around it changes. Letters, digits, ``_``
        and ``-`` (at most 64), unique in a run. (The other parameters: as described
        above.)

    Examples
    --------
    >>> import vstream as vs
    >>> vs.from_ndjson([b'{"a": 1}', b'{"a": 2}']).collect()["a"].to_list()
    [1, 2]
    """
    return _stream(NdjsonSource(source, schema, batch_size, max_delay, bounded), name)


def from_kafka(
    topics: str | list[str],
    *,
    bootstrap_servers: str,
    group_id: str | None = None,
    format: KafkaFormat = "json",
    schema: SchemaLike | None = None,
    start: Offsets = "earliest",
    stop: Offsets | None = None,
    columns_from_kafka: list[str] | None = None,
    batch_size: int | None = None,
    consume_size: int = 10_000,
    max_delay: Duration | float = "50ms",
    max_message_bytes: int = 1 << 20,
    on_data_loss: OnDataLoss = "fail",
    discover_interval: Duration | float | None = "5s",
    name: str | None = None,
    **config: Any,
) -> Stream:
    """A stream of Kafka messages: each topic-partition is a split, with its own watermark.

    vstream assigns the partitions itself (``assign()``, no consumer-group rebalancing);
    a split's position is the next offset to read, kept in checkpoints, so Kafka ->
    window -> ``sink_parquet`` with a checkpoint is exactly-once: a restart resumes
    right after the checkpointed offsets, which override ``start``. ``group_id`` only
    names where those offsets are committed (for monitoring tools), once a checkpoint is
    durable. The partitions are listed when the stream is built, so the cluster must
    answer then.

    Payloads are decoded a whole micro-batch at once. Bad messages go to
    :meth:`Stream.dead_letters` with the reason, naming the topic, partition and offset
    (and the column where one is at fault): a null value (a tombstone), a payload over
    ``max_message_bytes``, invalid UTF-8, invalid JSON or not an object, a value that
    does not fit the schema, a payload that is not an Arrow IPC stream or has other
    columns. A broker outage is retried by the client, counted (``source_errors``) and
    reported (``connected``) in the metrics; it never ends the stream.

    Parameters
    ----------
    topics
        A topic, a list of topics, or a regular expression starting with ``^``
        (``"^tele.*"``, as librdkafka takes it): every matching topic, and in an
        unbounded read the matching topics (and partitions) that appear later, read
        from their earliest offset.
    bootstrap_servers
        ``"host:port[,host:port...]"``.
    group_id
        The consumer group whose committed offsets follow the durable checkpoints
        (``Consumer.committed`` reads them); None: nothing is committed.
    format
        ``"json"``: one JSON object per message, decoded by ``polars.read_ndjson`` over
        the joined payloads (values as it takes them: a ``String`` column takes any JSON
        value as text, a ``Datetime`` an ISO 8601 string); ``"arrow"``: an Arrow IPC
        stream per message (any number of rows); ``"raw"``: the bytes, in a ``value``
        column.
    schema
        The payload's columns and dtypes (a dict of Polars dtypes, a ``pl.Schema`` or a
        ``pa.Schema``); required for JSON; for Arrow, default: the first message's.
    start
        Where a split starts without a checkpoint: ``"earliest"``, ``"latest"``, a
        mapping ``{partition: offset}`` (or ``{"topic/partition": offset}``; partitions
        left out start at the earliest), or a timestamp (ms since the epoch, or an aware
        datetime): the first message at or after it. The resolved start is recorded in
        the first checkpoint, so a restart does not move it.
    stop
        None: unbounded. Otherwise a bounded read (``collect()`` works), each split
        ending at: ``"latest"`` (its end offset when the run starts), a mapping as for
        ``start`` (left out: its end offset), or a timestamp.
    columns_from_kafka
        Extra columns, after the payload's: ``key`` (binary), ``topic``, ``partition``,
        ``offset``, ``timestamp`` (the message's, a UTC ``Datetime("ms")``) and
        ``headers`` (a list of ``{key, value}``).
    batch_size
        Messages per micro-batch at most (default 65,536; for ``format="arrow"``, 8
        messages, each a whole batch).
    consume_size
        Messages asked of the client per ``consume()`` call.
    max_delay
        The longest a message waits for its micro-batch: a duration or seconds.
    max_message_bytes
        Larger payloads are dead letters.
    on_data_loss
        ``"fail"``: resuming at an offset that retention deleted (or beyond the end of a
        recreated topic) raises :class:`~vstream.errors.CheckpointError`, and so does
        retention overtaking the reader; ``"skip"``: go on from the earliest offset left.
    discover_interval
        How often an unbounded read lists the cluster's topics for new partitions
        (None: never).
    name
        A stable name for the source's state in checkpoints (its splits' positions).
    **config
        librdkafka consumer properties by their names, e.g.
        ``**{"security.protocol": "SSL", "fetch.min.bytes": 1}``.

    Returns
    -------
    Stream

    Examples
    --------
    librdkafka's mock cluster stands in for a cluster here (a real one is its
    ``"host:port"`` list):

    >>> import json
    >>> import polars as pl
    >>> import vstream as vs
    >>> from confluent_kafka import Producer
    >>> mock = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    >>> servers = ",".join(f"{b.host}:{b.port}" for b in mock.list_topics().brokers.values())
    >>> p = Producer({"bootstrap.servers": servers})
    >>> for i in range(4):
    ...     p.produce("telemetry", json.dumps({"ts": i, "host": "a", "cpu": i / 2}), partition=0)
    >>> p.produce("telemetry", b"not json", partition=0)
    >>> p.flush(10)
    0
    >>> events = vs.from_kafka(
    ...     "telemetry",
    ...     bootstrap_servers=servers,
    ...     schema={"ts": pl.Int64, "host": pl.String, "cpu": pl.Float64},
    ...     stop="latest",  # bounded: the end offsets when the run starts
    ...     columns_from_kafka=["partition", "offset"],
    ...     log_level=3,
    ... )
    >>> rows, dead = vs.collect_all([events, events.dead_letters()])
    >>> rows
    shape: (4, 5)
    ┌─────┬──────┬─────┬───────────┬────────┐
    │ ts  ┆ host ┆ cpu ┆ partition ┆ offset │
    │ --- ┆ ---  ┆ --- ┆ ---       ┆ ---    │
    │ i64 ┆ str  ┆ f64 ┆ i32       ┆ i64    │
    ╞═════╪══════╪═════╪═══════════╪════════╡
    │ 0   ┆ a    ┆ 0.0 ┆ 0         ┆ 0      │
    │ 1   ┆ a    ┆ 0.5 ┆ 0         ┆ 1      │
    │ 2   ┆ a    ┆ 1.0 ┆ 0         ┆ 2      │
    │ 3   ┆ a    ┆ 1.5 ┆ 0         ┆ 3      │
    └─────┴──────┴─────┴───────────┴────────┘
    >>> dead["reason"][0]
    "topic 'telemetry' partition 0 offset 4: invalid JSON: Expecting value: line 1 ..."
    """
    source = KafkaSource(
        topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        format=format,
        schema=schema,
        start=start,
        stop=stop,
        columns_from_kafka=columns_from_kafka,
        batch_size=batch_size,
        consume_size=consume_size,
        max_delay=max_delay_seconds(max_delay, "from_kafka"),
        max_message_bytes=max_message_bytes,
        on_data_loss=on_data_loss,
        discover_interval=(
            None
            if discover_interval is None
            else wall_seconds(discover_interval, "from_kafka discover_interval")
        ),
        config=config,
    )
    return _stream(source, name)


def _stream(source: Source, name: str | None) -> Stream:
    node = SourceNode(source)
    node.label = named(node.label, name)
    return Stream(set_name(node, name, node.label))
