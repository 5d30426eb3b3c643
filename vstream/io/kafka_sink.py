"""``sink_kafka``: a stream's rows as Kafka messages, through an idempotent producer.

Without checkpoints every batch is encoded and produced as it is written, and the
producer is flushed when the run ends: at-least-once (a crashed run's rows are produced
again only if the run is started again from the beginning).

With checkpoints the sink takes part in the two-phase commit (:class:`Sink`): the
messages of epoch ``e`` (key and value bytes, already encoded) are staged as an Arrow
IPC file in the sink's own directory inside the checkpoint directory,
``<checkpoint_dir>/kafka-sink-<k>/epoch-<e>-<crc32>.arrow``, and produced only once the
checkpoint of ``e`` is durable (:meth:`KafkaSink.commit`). A staged file is deleted once
the brokers acknowledged every message produced so far (that deletion is the mark
"delivered"). After a crash, :meth:`KafkaSink.recover` produces again every staged epoch
the checkpoint it resumes from covers, and deletes the staged epochs it does not cover
(the run computes them again). Every message carries the headers ``vstream-epoch`` and
``vstream-seq`` (its place in its epoch), both ASCII decimal numbers, so a consumer drops
duplicates by that pair: the guarantee is at-least-once with dedupe headers, not
exactly-once (a Kafka transaction cannot be resumed after a crash with confluent-kafka).

Per row, the only Python work is the ``produce()`` call itself (confluent-kafka's
``produce_batch`` takes no headers); encoding is a Polars expression over the batch.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import zlib
from pathlib import Path
from typing import Any, Literal, get_args

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from vstream._files import fsync, os_problem
from vstream.errors import CheckpointError, PipelineError, SinkError
from vstream.io.sinks import Sink

__all__ = [
    "EPOCH_HEADER",
    "SEQ_HEADER",
    "KafkaSink",
    "KafkaSinkFormat",
]

#: how rows become message values: ``"json"`` one JSON object per row, ``"arrow"`` an
#: Arrow IPC stream of up to ``rows_per_message`` rows per message, ``"raw"`` the bytes
#: of one Binary or String column per row
KafkaSinkFormat = Literal["json", "arrow", "raw"]
_FORMATS: tuple[str, ...] = get_args(KafkaSinkFormat)
#: the headers every message carries: its epoch and its sequence number in that epoch
EPOCH_HEADER = "vstream-epoch"
SEQ_HEADER = "vstream-seq"
#: a staged epoch: ``epoch-<epoch>-<crc32 of the file>.arrow``
_STAGED = re.compile(r"^epoch-(\d{8,})-([0-9a-f]{8})\.arrow$")
_TMP = re.compile(r"^\.epoch-\d+-\d+\.tmp$")
_STAGED_SCHEMA = pa.schema([("key", pa.binary()), ("value", pa.binary())])
#: Kafka's rule for topic names
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: librdkafka's default ``message.max.bytes``
_MAX_BYTES = 1_000_000
#: what the two headers add to a message at most (names, values, varint lengths)
_HEADER_BYTES = 64
#: configuration the sink sets itself
_OWN = frozenset(
    {"bootstrap.servers", "on_delivery", "error_cb", "delivery.report.only.error", "dr_cb"}
)
#: dtypes a key column may have (sent as their text; String and Binary as they are)
_KEY_KINDS = (pl.String, pl.Binary, pl.Categorical, pl.Enum, pl.Boolean, pl.Date)


#: configuration names with an underscore of their own (librdkafka's, confluent-kafka's)
_UNDERSCORED = frozenset(
    {"log_level", "error_cb", "throttle_cb", "stats_cb", "oauth_cb", "on_delivery", "logger"}
)


def _librdkafka_name(name: str) -> str:
    """``linger_ms`` -> ``linger.ms`` (Python keywords cannot hold dots); names with a
    dot, and the few with an underscore of their own, are kept."""
    return name if "." in name or name in _UNDERSCORED else name.replace("_", ".")


def _crc_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def _has_binary(dtype: pl.DataType) -> bool:
    if dtype == pl.Binary:
        return True
    inner = getattr(dtype, "inner", None)
    if inner is not None:
        return _has_binary(inner)
    fields: list[Any] = getattr(dtype, "fields", None) or []
    return any(_has_binary(f.dtype) for f in fields)


class KafkaSink(Sink):
    """Writes rows to the Kafka topic ``topic`` (see the module's docstring for the
    guarantees). ``config`` is librdkafka's producer configuration."""

    def __init__(
        self,
        topic: str,
        *,
        bootstrap_servers: str,
        format: str = "json",
        key: str | None = None,
        value: str | None = None,
        rows_per_message: int = 10_000,
        flush_timeout: float = 60.0,
        config: dict[str, Any] | None = None,
    ) -> None:
        where = f"sink_kafka({topic!r})"
        if not isinstance(topic, str) or not _TOPIC.match(topic):
            msg = (
                f"sink_kafka: the topic must be a name of 1 to 249 letters, digits, '.', '_' "
                f"or '-', got {topic!r}"
            )
            raise PipelineError(msg)
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            msg = (
                f"{where}: bootstrap_servers must be the brokers' 'host:port[,host:port...]', "
                f"got {bootstrap_servers!r}"
            )
            raise PipelineError(msg)
        if format not in _FORMATS:
            msg = f"{where}: format must be one of {list(_FORMATS)}, got {format!r}"
            raise PipelineError(msg)
        if (
            isinstance(rows_per_message, bool)
            or not isinstance(rows_per_message, int)
            or rows_per_message < 1
        ):
            msg = f"{where}: rows_per_message must be an int >= 1, got {rows_per_message!r}"
            raise PipelineError(msg)
        if format == "arrow" and key is not None:
            msg = (
                f"{where}: format='arrow' puts many rows in one message, so a message has "
                "no row's key; drop key=, or use format='json' for one message per row"
            )
            raise PipelineError(msg)
        if value is not None and format != "raw":
            msg = f"{where}: value= names the column of format='raw'; format is {format!r}"
            raise PipelineError(msg)
        conf: dict[str, Any] = {}
        for name, setting in (config or {}).items():
            real = _librdkafka_name(name)
            if real in _OWN:
                msg = (
                    f"{where}: {name!r} is set by the sink itself (it needs the delivery "
                    "reports and errors to know what was delivered); remove it"
                )
                raise PipelineError(msg)
            conf[real] = setting
        if str(conf.get("enable.idempotence", True)).lower() in ("false", "0"):
            msg = (
                f"{where}: the producer is idempotent (retries never duplicate or reorder "
                "messages); enable.idempotence=False is refused"
            )
            raise PipelineError(msg)
        if "transactional.id" in conf:
            msg = (
                f"{where}: transactions are not used (a transaction cannot be resumed after "
                "a crash with confluent-kafka); remove transactional.id. Consumers drop "
                f"duplicates by the headers {EPOCH_HEADER!r} and {SEQ_HEADER!r}"
            )
            raise PipelineError(msg)
        try:
            self.max_bytes = int(conf.get("message.max.bytes", _MAX_BYTES))
        except (TypeError, ValueError):
            msg = (
                f"{where}: message.max.bytes must be an integer, got {conf['message.max.bytes']!r}"
            )
            raise PipelineError(msg) from None
        conf["enable.idempotence"] = True
        conf["bootstrap.servers"] = bootstrap_servers
        conf["delivery.report.only.error"] = True  # no Python call per delivered message
        self.topic = topic
        self.format = format
        self.key = key
        self.value = value
        self.rows_per_message = rows_per_message
        self.flush_timeout = flush_timeout
        self.conf = conf
        self.label = where
        self._producer: Any = None
        self._errors: list[str] = []
        self._fatal: str | None = None
        self.connected = True
        self._seq = 0  # the next message's sequence number in the current epoch
        self._home: Path | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._sink_file: Any = None
        self._tmp_path: Path | None = None
        self._inflight: list[Path] = []  # staged files produced, not yet acknowledged
        #: messages produced by this sink (a staged epoch produced again counts again)
        self.produced = 0

    # ------------------------------------------------------------------ build time
    def check_schema(self, schema: pl.Schema) -> None:
        """Refuse a stream this sink cannot encode, naming the column (build time)."""
        from vstream.errors import ColumnNotFoundError

        where = self.label
        for what, col in (("key", self.key), ("value", self.value)):
            if col is not None and col not in schema:
                msg = f"{where}: {what}={col!r} is not a column; the columns are {schema.names()}"
                raise ColumnNotFoundError(msg)
        if self.key is not None:
            dtype = schema[self.key]
            if not (dtype.is_numeric() or dtype.is_temporal() or isinstance(dtype, _KEY_KINDS)):
                msg = (
                    f"{where}: the key column {self.key!r} is {dtype}; a key is sent as text: "
                    "use a string, binary, numeric, boolean or temporal column (e.g. "
                    ".with_columns(k=pl.col(...).cast(pl.String)))"
                )
                raise PipelineError(msg)
        if self.format == "json":
            bad = [n for n, t in schema.items() if _has_binary(t)]
            if bad:
                msg = (
                    f"{where}: format='json' cannot hold the binary column {bad[0]!r}; encode "
                    "it (e.g. pl.col(...).bin.encode('base64')) or drop it"
                )
                raise PipelineError(msg)
        if self.format == "raw":
            if self.value is None:
                if len(schema) != 1 and "value" not in schema:
                    msg = (
                        f"{where}: format='raw' sends one column's bytes; name it with "
                        f"value=..., the stream has {schema.names()}"
                    )
                    raise PipelineError(msg)
                self.value = schema.names()[0] if len(schema) == 1 else "value"
            dtype = schema[self.value]
            if dtype not in (pl.Binary, pl.String):
                msg = (
                    f"{where}: format='raw' sends the bytes of a Binary or String column; "
                    f"{self.value!r} is {dtype}: cast it, or use format='json'"
                )
                raise PipelineError(msg)

    # ------------------------------------------------------------------ opening
    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        self._home = Path(checkpoint_dir) / f"kafka-sink-{index}"

    def open(self, schema: pl.Schema) -> None:
        super().open(schema)
        self.check_schema(schema)
        if self._home is not None:
            self._mkdir_home()
        try:
            from confluent_kafka import KafkaException, Producer
        except ImportError:  # pragma: no cover - the kafka extra is missing
            msg = f"{self.label}: needs confluent-kafka: pip install 'vstream[kafka]'"
            raise SinkError(msg) from None
        conf = {**self.conf, "on_delivery": self._on_delivery, "error_cb": self._on_error}
        try:
            self._producer = Producer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            msg = f"{self.label}: the producer configuration is refused: {exc}"
            raise SinkError(msg) from exc

    def _mkdir_home(self) -> None:
        assert self._home is not None
        try:
            with contextlib.suppress(FileExistsError):
                self._home.mkdir(parents=True)
        except OSError as exc:
            msg = os_problem(exc, f"{self.label}: cannot create its staging directory", self._home)
            raise SinkError(msg) from exc
        if stat.S_IFMT(os.lstat(self._home).st_mode) != stat.S_IFDIR:
            msg = (
                f"{self.label}: {str(self._home)!r} is not a directory (a symbolic link?); it "
                "is where the sink stages its epochs inside the checkpoint: remove it"
            )
            raise CheckpointError(msg)

    # ------------------------------------------------------------------ callbacks
    def _on_delivery(self, err: Any, msg: Any) -> None:
        # called for failed messages only (delivery.report.only.error)
        if err is not None and len(self._errors) < 5:
            self._errors.append(
                f"{err.str()} (partition {msg.partition()}, {len(msg.value() or b'')} bytes)"
            )

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.fatal():
            self._fatal = err.str()
        elif err.code() in (
            KafkaError._ALL_BROKERS_DOWN,  # noqa: SLF001 - librdkafka's public codes
            KafkaError._TRANSPORT,  # noqa: SLF001
        ):
            self.connected = False  # librdkafka keeps retrying until message.timeout.ms

    def _check_errors(self) -> None:
        if self._fatal is None and not self._errors:
            return
        problem = self._fatal if self._fatal is not None else "; ".join(self._errors)
        if self._home is not None:
            fate = (
                f"the undelivered epochs stay staged in {str(self._home)!r}: run the pipeline "
                "again with the same checkpoint_dir to produce them again"
            )
        else:
            fate = "those rows are not in the topic: run the pipeline again"
        msg = (
            f"{self.label}: the brokers did not take messages: {problem}; {fate} (raise "
            "message.timeout.ms for a broker outage, message.max.bytes for big messages)"
        )
        self._errors = []
        raise SinkError(msg)

    # ------------------------------------------------------------------ encoding
    def _encode(self, df: pl.DataFrame) -> pa.Table:
        """The messages of ``df``: a table of ``key`` and ``value`` binaries."""
        from polars.exceptions import PanicException, PolarsError

        try:
            if self.format == "arrow":
                return self._encode_arrow(df)
            if self.format == "json":
                values = df.select(pl.struct(pl.all()).struct.json_encode().cast(pl.Binary))
            else:
                assert self.value is not None
                values = df.select(pl.col(self.value).cast(pl.Binary))
            vals = values.to_series().to_arrow().cast(pa.binary())
            if self.key is None:
                keys = pa.nulls(len(vals), pa.binary())
            else:
                col = pl.col(self.key)
                if df.schema[self.key] != pl.Binary:
                    col = col.cast(pl.String).cast(pl.Binary)
                keys = df.select(col).to_series().to_arrow().cast(pa.binary())
        except (PolarsError, PanicException, pa.ArrowException) as exc:
            msg = f"{self.label}: cannot encode a batch as {self.format}: {exc}"
            raise SinkError(msg) from exc
        return pa.Table.from_arrays([keys, vals], schema=_STAGED_SCHEMA)

    def _encode_arrow(self, df: pl.DataFrame) -> pa.Table:
        step = self.rows_per_message
        values = []
        for start in range(0, df.height, step):  # one message per rows_per_message rows
            table = df.slice(start, step).to_arrow()
            out = pa.BufferOutputStream()
            with ipc.new_stream(out, table.schema) as w:
                w.write_table(table)
            values.append(out.getvalue().to_pybytes())
        vals = pa.array(values, pa.binary())
        return pa.Table.from_arrays(
            [pa.nulls(len(vals), pa.binary()), vals], schema=_STAGED_SCHEMA
        )

    def _check_sizes(self, table: pa.Table) -> None:
        """A message over ``message.max.bytes`` is refused before it is staged (once
        staged and checkpointed, it would fail every restart)."""
        if table.num_rows == 0:
            return
        import pyarrow.compute as pc  # here, not at import vstream (~25 ms)

        sizes = pc.add(
            pc.fill_null(pc.binary_length(table.column("value")), 0),
            pc.fill_null(pc.binary_length(table.column("key")), 0),
        )
        limit = self.max_bytes - _HEADER_BYTES
        biggest = pc.max(sizes).as_py()
        if biggest > limit:
            at = pc.index(sizes, biggest).as_py()
            unit = "message" if self.format == "arrow" else "row"
            hint = "lower rows_per_message, or " if self.format == "arrow" else ""
            msg = (
                f"{self.label}: a {unit} of the batch encodes to {biggest} bytes (its "
                f"{at}th {unit}), over message.max.bytes={self.max_bytes} less {_HEADER_BYTES} "
                f"for the headers; {hint}raise message.max.bytes (and the topic's "
                "max.message.bytes on the brokers)"
            )
            raise SinkError(msg)

    # ------------------------------------------------------------------ producing
    def _produce(self, table: pa.Table, epoch: int, first_seq: int) -> None:
        """Hand every message of ``table`` to the producer (waiting while its queue is
        full); message ``i`` gets the sequence number ``first_seq + i``."""
        from confluent_kafka import KafkaException

        producer, topic = self._producer, self.topic
        produce = producer.produce
        values = table.column("value").to_pylist()
        keys = table.column("key").to_pylist()
        epoch_header = (EPOCH_HEADER, b"%d" % epoch)
        n, i = len(values), 0
        while i < n:
            try:
                # the one per-row Python loop: confluent-kafka's produce_batch takes no headers
                for i in range(i, n):  # noqa: B020 - resumes where a full queue stopped it
                    produce(
                        topic,
                        values[i],
                        keys[i],
                        headers=[epoch_header, (SEQ_HEADER, b"%d" % (first_seq + i))],
                    )
                i = n
            except BufferError:  # the local queue is full: serve it, then go on at i
                producer.poll(0.05)
                self._check_errors()
            except KafkaException as exc:
                msg = f"{self.label}: the producer refused a message: {exc}"
                raise SinkError(msg) from exc
        self.produced += n
        producer.poll(0)
        self._check_errors()

    def _confirm(self) -> None:
        """Serve delivery reports; once nothing is outstanding, every staged epoch
        produced so far is delivered: delete (mark) them."""
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)
        outstanding = len(producer)  # counts unserved delivery reports too
        self._check_errors()
        if outstanding == 0:
            self.connected = True
            self._mark_delivered()

    def _mark_delivered(self) -> None:
        if not self._inflight:
            return
        for path in self._inflight:
            path.unlink(missing_ok=True)
        self._inflight = []
        assert self._home is not None
        fsync(self._home)

    # ------------------------------------------------------------------ writing
    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        table = self._encode(df)
        self._check_sizes(table)
        if self._home is None:
            self._produce(table, self.epoch, self._seq)
            self._seq += table.num_rows
            return
        self._stage(table)

    def _stage(self, table: pa.Table) -> None:
        assert self._home is not None
        try:
            if self._writer is None:
                self._tmp_path = self._home / f".epoch-{self.epoch}-{os.getpid()}.tmp"
                self._sink_file = pa.OSFile(str(self._tmp_path), "wb")
                self._writer = ipc.new_file(self._sink_file, _STAGED_SCHEMA)
            self._writer.write_table(table)
        except (OSError, pa.ArrowException) as exc:
            msg = os_problem(exc, f"{self.label}: cannot stage epoch {self.epoch}", self._home)
            raise SinkError(msg) from exc

    def tick(self, now: float) -> None:
        self._confirm()

    # ------------------------------------------------------------------ two-phase commit
    def _staged(self) -> list[tuple[int, Path]]:
        assert self._home is not None
        found = []
        for p in self._home.iterdir():
            m = _STAGED.match(p.name)
            if m is not None:
                found.append((int(m.group(1)), p))
            elif _TMP.match(p.name):  # an epoch a crash interrupted: computed again
                p.unlink()
        return sorted(found)

    def _path_of(self, epoch: int) -> Path | None:
        return next((p for e, p in self._staged() if e == epoch), None)

    def recover(self, epoch: int, state: dict[str, Any] | None) -> None:
        assert self._home is not None
        later = False
        for e, path in self._staged():
            if e > epoch:  # no durable checkpoint covers it: the run computes it again
                path.unlink()
                later = True
            else:  # covered by a checkpoint, maybe not delivered: produce it again
                self._produce(self._read_staged(path, e), e, 0)
                self._inflight.append(path)
        if later:
            fsync(self._home)
        self.epoch = epoch + 1
        self._seq = 0

    def _read_staged(self, path: Path, epoch: int) -> pa.Table:
        """A staged epoch, checked (the checkpoint directory is untrusted input)."""
        m = _STAGED.match(path.name)
        assert m is not None
        problem = None
        if stat.S_IFMT(os.lstat(path).st_mode) != stat.S_IFREG:
            problem = "it is not a regular file (a symbolic link?)"
        elif f"{_crc_of(path):08x}" != m.group(2):
            problem = "its content does not match the CRC-32 in its name (damaged)"
        else:
            try:
                with pa.memory_map(str(path)) as source:
                    table = ipc.open_file(source).read_all()
                if table.schema.equals(_STAGED_SCHEMA):
                    return table
                problem = f"its schema is {table.schema}, not the sink's key/value binaries"
            except (OSError, pa.ArrowException) as exc:
                problem = f"it cannot be read ({exc})"
        msg = (
            f"{self.label}: the staged messages of epoch {epoch}, {str(path)!r}, cannot be "
            f"produced: {problem}. The checkpoint says they are due; restore the file, or "
            "delete it to give up that epoch's messages"
        )
        raise CheckpointError(msg)

    def precommit(self, epoch: int) -> dict[str, Any]:
        assert self._home is not None
        writer, self._writer = self._writer, None
        if writer is None:
            return {}
        tmp = self._tmp_path
        assert tmp is not None
        try:
            writer.close()
            self._sink_file.close()
            fsync(tmp)
            final = self._home / f"epoch-{epoch:08d}-{_crc_of(tmp):08x}.arrow"
            os.replace(tmp, final)
            fsync(self._home)  # the staged file is durable before a manifest covers it
        except (OSError, pa.ArrowException) as exc:
            msg = os_problem(exc, f"{self.label}: cannot stage epoch {epoch}", self._home)
            raise SinkError(msg) from exc
        # nothing in the manifest: the epoch's file is found by its name, and its CRC too
        return {}

    def commit(self, epoch: int, state: dict[str, Any]) -> None:
        path = self._path_of(epoch)
        if path is not None:
            self._produce(self._read_staged(path, epoch), epoch, 0)
            self._inflight.append(path)
        self.epoch = epoch + 1
        self._seq = 0
        self._confirm()

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        failed = sys.exc_info()[1] is not None  # close() runs while the run's error unwinds
        writer, self._writer = self._writer, None
        if writer is not None:  # rows after the last checkpoint: a restart computes them
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
                self._sink_file.close()
            if self._tmp_path is not None:
                self._tmp_path.unlink(missing_ok=True)
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # a failed run hands over what is queued, briefly (its epochs stay staged)
        left = producer.flush(min(self.flush_timeout, 5.0) if failed else self.flush_timeout)
        if failed:
            return
        self._producer = producer
        try:
            self._check_errors()
            if left:
                fate = (
                    "they stay staged and are produced again when the pipeline runs again "
                    "with the same checkpoint_dir"
                    if self._home is not None
                    else "they may be lost"
                )
                msg = (
                    f"{self.label}: {left} messages were not acknowledged by the brokers "
                    f"within flush_timeout={self.flush_timeout:g}s; {fate}"
                )
                raise SinkError(msg)
            self._mark_delivered()
        finally:
            self._producer = None
