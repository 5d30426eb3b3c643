"""The public source constructors: ``vs.from_polars``, ``vs.from_parquet``, ..."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, Literal

import polars as pl
import pyarrow as pa

from vstream._duration import Duration, wall_seconds
from vstream.api.base import named, set_name
from vstream.api.stream import Stream
from vstream.errors import PipelineError
from vstream.io._kafka_decode import KafkaFormat
from vstream.io._schema import SchemaLike, polars_schema, to_arrow_schema
from vstream.io.base import Source
from vstream.io.kafka import KafkaSource, Offsets, OnDataLoss
from vstream.io.memory import ArrowSource, PolarsSource, check_batch_size
from vstream.io.mqtt import MqttSource, check_topics, decoder_for
from vstream.io.ndjson import NdjsonSource
from vstream.io.parquet import ParquetSource
from vstream.io.records import RecordsSource, max_delay_seconds
from vstream.io.watch import (
    FileFormat,
    FileOrder,
    NdjsonFiles,
    ParquetFiles,
    WatchOptions,
    WatchSource,
)
from vstream.plan.nodes import SourceNode

if TYPE_CHECKING:
    import ssl

__all__ = [
    "from_arrow",
    "from_kafka",
    "from_mqtt",
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
    path: PathLike | list[PathLike],
    *,
    batch_size: int = 65_536,
    name: str | None = None,
    watch: bool = False,
    schema: SchemaLike | None = None,
    order: FileOrder = "name",
    max_files_per_batch: int = 100,
    max_file_age: Duration | float | None = "7d",
    poll_interval: Duration | float = "1s",
    settle: Duration | float = "1s",
) -> Stream:
    """A bounded stream over Parquet files: a path, a glob, a directory or a list; with
    ``watch=True``, an unbounded stream over a directory's files, those there at the
    start and every file that appears while it runs.

    Files are read one after another, each a split with its own watermark; a file not yet
    started holds the watermark back (at the minimum of its event-time statistics when
    the file has them), so files split by key do not make each other late.

    Parameters
    ----------
    path
        A file, a glob, a directory (its ``.parquet`` files, recursively) or a list; with
        ``watch=True``, a directory.
    batch_size
        Rows per micro-batch.
    name
        A stable name for the source's state in checkpoints (its splits' positions); set
        it to keep the state when the pipeline around it changes. Letters, digits, ``_``
        and ``-`` (at most 64), unique in a run.
    watch
        Watch the directory: every new file is a new split, read once (see the README's
        "Watched directories" for what is guaranteed). The stream is
        unbounded: run it with ``start()`` (or a sink's ``lazy=True`` and ``.start()``)
        and end it with ``Job.stop()``. The options below apply to ``watch=True`` only.
    schema
        The columns and types (Polars or Arrow types); by default those of the first
        file. Needed when the directory is empty at the start. A file of another schema,
        or one that cannot be read, goes to :meth:`Stream.dead_letters` (the record is
        its name, the reason says what is wrong) and the stream goes on.
    order
        ``"name"``: new files are read in the order of their names (relative to the
        directory); ``"mtime"``: of their modification times.
    max_files_per_batch
        New files picked up per look at the directory, at most.
    max_file_age
        Files modified longer ago than this are not read, and a file read leaves the
        checkpoint once it is that old, so the checkpoint stays bounded (a restart does
        not read it again: it is too old). None: every file is read and kept.
    poll_interval
        How often the directory is listed.
    settle
        A file is read once its size and modification time have not changed for this
        long. Write files elsewhere (or under a name starting with ``.`` or ``_``,
        which the watch skips) and rename them into place; with renames only, ``0``
        reads files at once.

    Examples
    --------
    >>> import tempfile, os
    >>> import polars as pl
    >>> import vstream as vs
    >>> d = tempfile.mkdtemp()
    >>> pl.DataFrame({"a": [1, 2]}).write_parquet(os.path.join(d, "x.parquet"))
    >>> vs.from_parquet(d).collect()["a"].to_list()
    [1, 2]

    Watching the directory: a file written while the job runs is read once it is
    complete (here written elsewhere and renamed into place):

    >>> import time
    >>> job = vs.from_parquet(d, watch=True, poll_interval="20ms", settle=0).start()
    >>> tmp = os.path.join(d, ".y.parquet.tmp")
    >>> pl.DataFrame({"a": [3]}).write_parquet(tmp)
    >>> os.rename(tmp, os.path.join(d, "y.parquet"))
    >>> end = time.monotonic() + 30
    >>> while job.results.height < 3 and time.monotonic() < end:
    ...     time.sleep(0.02)
    >>> job.stop()
    >>> sorted(job.results["a"].to_list())
    [1, 2, 3]
    """
    if watch:
        options = WatchOptions.parse(
            order=order,
            max_files_per_batch=max_files_per_batch,
            max_file_age=max_file_age,
            poll_interval=poll_interval,
            settle=settle,
        )
        return _watched(
            path, ParquetFiles(check_batch_size(batch_size, "from_parquet")), options, schema, name
        )
    _no_watch_options(
        "from_parquet",
        schema=schema,
        order=order,
        max_files_per_batch=max_files_per_batch,
        max_file_age=max_file_age,
        poll_interval=poll_interval,
        settle=settle,
    )
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
    watch: bool = False,
    order: FileOrder = "name",
    max_files_per_batch: int = 100,
    max_file_age: Duration | float | None = "7d",
    poll_interval: Duration | float = "1s",
    settle: Duration | float = "1s",
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
    watch, order, max_files_per_batch, max_file_age, poll_interval, settle
        ``watch=True`` watches a directory: its ``.ndjson`` files there at the start,
        then every file that appears, each read once, as :func:`from_parquet` does with
        ``watch=True`` (the options as described there). Without ``schema`` the types are
        inferred from the first file; bad lines go to :meth:`Stream.dead_letters`.

    Examples
    --------
    >>> import vstream as vs
    >>> vs.from_ndjson([b'{"a": 1}', b'{"a": 2}']).collect()["a"].to_list()
    [1, 2]
    """
    if watch:
        options = WatchOptions.parse(
            order=order,
            max_files_per_batch=max_files_per_batch,
            max_file_age=max_file_age,
            poll_interval=poll_interval,
            settle=settle,
        )
        if not isinstance(source, str | os.PathLike):
            msg = (
                "from_ndjson(..., watch=True) watches a directory; pass its path, got "
                f"{type(source).__name__}"
            )
            raise PipelineError(msg)
        fmt = NdjsonFiles(check_batch_size(batch_size, "from_ndjson"))
        return _watched(source, fmt, options, schema, name)
    _no_watch_options(
        "from_ndjson",
        order=order,
        max_files_per_batch=max_files_per_batch,
        max_file_age=max_file_age,
        poll_interval=poll_interval,
        settle=settle,
    )
    return _stream(NdjsonSource(source, schema, batch_size, max_delay, bounded), name)


def from_mqtt(
    topic: str | list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    qos: int = 1,
    format: Literal["json", "arrow", "raw"] = "json",
    schema: SchemaLike | None = None,
    columns_from_mqtt: list[str] | None = None,
    client_id: str | None = None,
    clean_session: bool | None = None,
    protocol: Literal["3.1.1", "5"] = "3.1.1",
    session_expiry: Duration | float = "1d",
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    keepalive: int = 60,
    batch_size: int = 10_000,
    max_delay: Duration | float = "50ms",
    max_message_bytes: int = 1 << 20,
    reconnect_delay: tuple[float, float] = (0.1, 10.0),
    name: str | None = None,
) -> Stream:
    """An unbounded stream of the messages of MQTT topic filters (paho-mqtt 2.x).

    The client runs in the source's reader thread. Messages are buffered into
    micro-batches of at most ``batch_size``, handed out ``max_delay`` after the first one
    at the latest, and decoded a batch at once: ``format="json"`` (one JSON object per
    message, all parsed by one ``polars.read_ndjson`` call), ``"arrow"`` (an Arrow IPC
    stream per message, any number of rows) or ``"raw"`` (a ``payload`` column of bytes).
    Bad messages (an empty payload, invalid UTF-8 or JSON, a value of the wrong type,
    an Arrow payload of another schema, a payload over ``max_message_bytes``) go to
    :meth:`Stream.dead_letters` with their topic, log entry and packet id, and the
    stream goes on.

    **Guarantees.** With a checkpoint (``checkpoint_dir`` on the terminal call), each
    received micro-batch is appended to a write-ahead log in the checkpoint directory
    (Arrow IPC, fsynced) before it is acknowledged; the log is the source's replayable
    split and is trimmed once a checkpoint covers it. From the log on, processing is
    exactly-once (a restart replays the entries after the checkpoint). End to end it is
    at-least-once at ``qos=1`` with a persistent session: give a stable ``client_id``
    (``clean_session`` then defaults to False; with ``protocol="5"``: clean start off,
    session expiry ``session_expiry``), so the broker keeps what arrives while the job is
    down and re-sends what was not acknowledged (a re-sent message that is in the log
    already is dropped). At ``qos=0`` it is at-most-once. Without a checkpoint messages
    are acknowledged on receipt and those not yet processed are lost with the process.
    QoS 2 is not offered (its release handshake cannot be resumed by a new process).

    A broker outage is retried with exponential backoff from ``reconnect_delay[0]`` to
    ``reconnect_delay[1]`` seconds (jittered); the reader's status (connected, errors)
    shows in the run's metrics, and a disconnected source is never idle.

    Parameters
    ----------
    topic
        A topic filter (``"tele/#"``, ``"tele/+/cpu"``) or a list of them.
    host, port
        The broker.
    qos
        0 or 1: the subscription's quality of service.
    format
        ``"json"``, ``"arrow"`` or ``"raw"``.
    schema
        The payload's columns (a dict of Polars types, a ``pl.Schema`` or a
        ``pa.Schema``); required for ``json`` and ``arrow``. JSON keys not in it are
        ignored; missing ones are null.
    columns_from_mqtt
        Message attributes to add as columns: ``"topic"``, ``"qos"``, ``"retain"``,
        ``"timestamp"`` (the receive time, ``Datetime("ms", "UTC")``).
    client_id, clean_session, protocol, session_expiry
        The session, see above. Without ``client_id`` a random one is used with a clean
        session.
    username, password, tls
        Authentication, and an ``ssl.SSLContext`` for TLS.
    keepalive
        Seconds between keep-alive pings.
    batch_size, max_delay
        Messages per micro-batch at most, and the longest a message waits for its batch.
        With a log at QoS 1 a batch is also cut whenever no further message is waiting
        (the broker sends only a few unacknowledged messages at a time).
    max_message_bytes
        Larger payloads are dead letters.
    reconnect_delay
        (first, longest) wait between reconnection attempts, in seconds.
    name
        A stable name for the source's state in checkpoints; see :func:`from_polars`.

    Returns
    -------
    Stream

    Raises
    ------
    PipelineError
        For a bad option (a topic filter MQTT refuses, ``qos`` not 0 or 1, a format
        without schema, an attribute column that clashes with a payload column).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> s = vs.from_mqtt("tele/#", port=1883, qos=1, format="json",
    ...                  schema={"ts": pl.Int64, "host": pl.String, "cpu": pl.Float64},
    ...                  columns_from_mqtt=["topic"])
    >>> s.schema
    Schema([('ts', Int64), ('host', String), ('cpu', Float64), ('topic', String)])
    >>> job = s.sink_parquet("out/", checkpoint_dir="ckpt/", lazy=True).start()  # doctest: +SKIP
    >>> vs.from_mqtt("tele/#", qos=2)
    Traceback (most recent call last):
    ...
    vstream.errors.PipelineError: from_mqtt: qos must be 0 or 1, got 2 ...
    """
    where = "from_mqtt"
    topics = check_topics(topic, where)
    if qos not in (0, 1) or isinstance(qos, bool):
        msg = (
            f"{where}: qos must be 0 or 1, got {qos!r} (QoS 2's release handshake cannot "
            "be resumed after a restart; QoS 1 with the write-ahead log drops redeliveries)"
        )
        raise PipelineError(msg)
    if not isinstance(host, str) or not host:
        msg = f"{where}: host must be a host name or address, got {host!r}"
        raise PipelineError(msg)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        msg = f"{where}: port must be an int from 1 to 65535, got {port!r}"
        raise PipelineError(msg)
    if protocol not in ("3.1.1", "5"):
        msg = f"{where}: protocol must be '3.1.1' or '5', got {protocol!r}"
        raise PipelineError(msg)
    check_batch_size(batch_size, where)
    lo, hi = _delays(reconnect_delay, where)
    pl_schema = None if schema is None else polars_schema(to_arrow_schema(schema))
    decoder = decoder_for(format, pl_schema, columns_from_mqtt, max_message_bytes, where)
    source = MqttSource(
        topics,
        host=host,
        port=port,
        qos=qos,
        decoder=decoder,
        client_id=client_id,
        clean_session=clean_session,
        protocol=protocol,
        session_expiry=wall_seconds(session_expiry, "session_expiry"),
        username=username,
        password=password,
        tls=tls,
        keepalive=keepalive,
        batch_size=batch_size,
        max_delay=max_delay_seconds(max_delay, where),
        reconnect_delay=(lo, hi),
    )
    return _stream(source, name)


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
    reported (``connected``) in the metrics; it never ends the stream. An outage of some
    brokers holds the partitions they lead (seen in the client's statistics, every
    ``statistics.interval.ms``, 500 ms unless given): those splits are disconnected, never
    idle, so their backlog is not late when the brokers return, and ``source_errors``
    grows by one per statistics report for each unreachable broker.

    When the stream's ``with_watermark`` reads a payload column unchanged, the
    partitions' micro-batches are handed out in event-time order (up to its
    ``max_out_of_orderness``): the client may deliver one partition far ahead of the
    others, and its batches then wait for theirs (at most ``max_delay`` each, 64 MiB in
    all), so the windows of the partitions behind are not held open meanwhile.

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
        The longest a message waits for its micro-batch, and a micro-batch for the
        partitions behind it in event time: a duration or seconds.
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
        ``statistics.interval.ms`` (default 500) is how soon an outage of some brokers
        shows per partition (0: only an outage of the whole cluster shows); a
        ``stats_cb`` given is called after vstream's own.

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


def _delays(value: object, where: str) -> tuple[float, float]:
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and 0 < value[0] <= value[1]
    )
    if not ok:
        msg = f"{where}: reconnect_delay must be (first, longest) seconds, 0 < first <= longest"
        raise PipelineError(msg)
    return float(value[0]), float(value[1])  # type: ignore[index]


def _watched(
    path: PathLike | list[PathLike],
    fmt: FileFormat,
    options: WatchOptions,
    schema: SchemaLike | None,
    name: str | None,
) -> Stream:
    if not isinstance(path, str | os.PathLike):
        msg = f"{fmt.step}(..., watch=True) watches one directory; pass its path, not a list"
        raise PipelineError(msg)
    given = None if schema is None else to_arrow_schema(schema)
    return _stream(WatchSource(path, fmt, options, given), name)


#: the watch options' defaults: given otherwise without watch=True, they are refused
_WATCH_DEFAULTS: dict[str, object] = {
    "schema": None,
    "order": "name",
    "max_files_per_batch": 100,
    "max_file_age": "7d",
    "poll_interval": "1s",
    "settle": "1s",
}


def _no_watch_options(step: str, **given: object) -> None:
    odd = [k for k, v in given.items() if v != _WATCH_DEFAULTS[k]]
    if odd:
        msg = (
            f"{step}: {', '.join(f'{k}=' for k in odd)} "
            f"{'applies' if len(odd) == 1 else 'apply'} to a watched directory only; "
            "add watch=True, or leave it out"
        )
        raise PipelineError(msg)


def _stream(source: Source, name: str | None) -> Stream:
    node = SourceNode(source)
    node.label = named(node.label, name)
    return Stream(set_name(node, name, node.label))
