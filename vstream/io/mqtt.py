"""MQTT as a source: a paho-mqtt client in the reader's thread, micro-batches decoded at
once, and with a checkpoint a write-ahead log that makes the stream replayable.

MQTT cannot be read again from a position, and a broker holds only a few unacknowledged
QoS 1 messages per client (mosquitto: ``max_inflight_messages 20``, then it queues a
little and drops), so acknowledgements cannot wait for a checkpoint. With a checkpoint,
each received micro-batch is appended to a write-ahead log in the checkpoint directory
(:mod:`vstream.io.mqtt_wal`, fsynced) and only then acknowledged; the log is the split's
replayable input (its position: the sequence number of the last entry consumed) and is
trimmed once a checkpoint covers it. Without a checkpoint, messages are acknowledged on
receipt.

A message the broker delivers again after a lost acknowledgement (its ``dup`` flag set,
same packet id, topic and payload as a logged message) is acknowledged and dropped: it is
in the log already.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from vstream.errors import PipelineError, SourceError
from vstream.io.base import (
    Data,
    Reader,
    ReaderStatus,
    Source,
    SourceEvent,
    SplitPosition,
    SplitStatus,
    ThreadedReader,
)
from vstream.io.mqtt_decode import EXTRA_COLUMNS, Decoder, MqttFormat
from vstream.io.mqtt_wal import WAL_SCHEMA, WriteAheadLog, log_directory

if TYPE_CHECKING:
    import ssl

    import polars as pl
    from paho.mqtt.client import Client, MQTTMessage

__all__ = ["MqttSource", "paho"]

MqttProtocol = Literal["3.1.1", "5"]


def paho() -> Any:
    """The paho-mqtt client module, or a PipelineError saying how to install it."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        msg = "MQTT needs paho-mqtt 2.x: pip install 'vstream[mqtt]' (or pip install paho-mqtt)"
        raise PipelineError(msg) from None
    return mqtt


class MqttSource(Source):
    """Messages of MQTT topic filters; one split (see the module docstring).

    Built by :func:`vstream.from_mqtt`, which documents the parameters.
    """

    bounded = False
    live = True
    # replayable from its write-ahead log, which a checkpoint gives it (use_checkpoints)
    replayable = True
    replay_hint = "checkpoint the run: from_mqtt replays from its write-ahead log"

    def __init__(
        self,
        topics: list[str],
        *,
        host: str,
        port: int,
        qos: int,
        decoder: Decoder,
        client_id: str | None,
        clean_session: bool | None,
        protocol: MqttProtocol,
        session_expiry: float,
        username: str | None,
        password: str | None,
        tls: ssl.SSLContext | None,
        keepalive: int,
        batch_size: int,
        max_delay: float,
        reconnect_delay: tuple[float, float],
    ) -> None:
        self.topics = topics
        self.host, self.port, self.qos = host, port, qos
        self.decoder = decoder
        self.client_id = client_id
        self.persistent = client_id is not None if clean_session is None else not clean_session
        if self.persistent and client_id is None:
            msg = (
                "from_mqtt: clean_session=False keeps a session on the broker under the "
                "client id: pass client_id= (stable across restarts)"
            )
            raise PipelineError(msg)
        self.protocol = protocol
        self.session_expiry = session_expiry
        self.username, self.password, self.tls = username, password, tls
        self.keepalive = keepalive
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.reconnect_delay = reconnect_delay
        self.label = f"from_mqtt({', '.join(topics)!s} at {host}:{port})"
        self._log_dir: Path | None = None

    def splits(self) -> list[str]:
        return ["mqtt"]

    def schema(self) -> pa.Schema:
        return self.decoder.arrow_schema()

    def use_checkpoints(self, directory: Path, step: str) -> None:
        self._log_dir = log_directory(Path(directory), step)

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        points = self.resume_points(resume, splits)
        log_dir, self._log_dir = self._log_dir, None  # one run's; taken by its open
        after = points.get(0)
        if log_dir is None and after is not None:
            msg = (
                f"{self.label}: cannot resume from position {after!r} without its "
                "write-ahead log: resume through the run's checkpoint_dir"
            )
            raise SourceError(msg)
        if (
            isinstance(after, bool)
            or not (after is None or isinstance(after, int))
            or (isinstance(after, int) and after < 0)
        ):
            msg = f"{self.label}: cannot resume from position {after!r}; expected a log entry"
            raise SourceError(msg)
        wal = None
        if log_dir is not None:
            wal = WriteAheadLog(log_dir, self.label)
            if after is not None and after < wal.trimmed:
                wal.close()
                msg = (
                    f"{self.label}: the checkpoint resumes after log entry {after}, but its "
                    f"write-ahead log in {str(log_dir)!r} was trimmed up to entry "
                    f"{wal.trimmed} (a newer checkpoint covered it, and is gone or damaged): "
                    "the messages between are lost. Start with a new checkpoint_dir"
                )
                raise SourceError(msg)
        return MqttReader(self, wal, after or 0, ended=not points)

    def on_checkpoint_complete(self, epoch: int, positions: Mapping[str, object]) -> None:
        pos = positions.get("mqtt")
        reader = self.current_reader
        if isinstance(pos, int) and not isinstance(pos, bool) and reader is not None:
            reader.trim(pos)

    #: the reader of the current run (told of checkpoints)
    current_reader: MqttReader | None = None

    def connect_client(self, manual_ack: bool) -> Client:
        """A configured paho client (not yet connected)."""
        mqtt = paho()
        v5 = self.protocol == "5"
        client_id = self.client_id or f"vstream-{uuid.uuid4().hex[:12]}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else not self.persistent,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            manual_ack=manual_ack,
            reconnect_on_failure=False,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        return client  # type: ignore[no-any-return]


class MqttReader(Reader):
    """The running source: a thread that runs the paho client, logs and acknowledges
    micro-batches, and hands them out decoded (see :class:`MqttSource`)."""

    def __init__(self, source: MqttSource, wal: WriteAheadLog | None, after: int, *, ended: bool):
        self.src = source
        self.wal = wal
        self.after = after
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.connected = False
        self.errors = 0
        self.replaying = wal is not None
        self.quiet = False  # nothing pending since the last (re)connect
        self._pending = 0  # messages received and not yet handed to the queue
        self._fatal: BaseException | None = None
        #: packet id -> (topic, payload) of logged QoS 1 messages, to spot redeliveries
        self._logged: dict[int, tuple[str, bytes | bytearray]] = {}
        self._buf: list[MQTTMessage] = []
        self._first_at = 0.0
        self._seq = after
        source.current_reader = self
        if ended:
            self._stop.set()
        self._inner = ThreadedReader(self._produce, name="vstream-mqtt", maxsize=4)

    # ------------------------------------------------------------------ Reader
    def poll(self, timeout: float) -> SourceEvent | None:
        return self._inner.poll(timeout)

    @property
    def exhausted(self) -> bool:
        return self._inner.exhausted

    def close(self) -> None:
        self._stop.set()
        self._inner.close()
        if self.src.current_reader is self:
            self.src.current_reader = None

    def status(self) -> ReaderStatus:
        connected = self.connected
        caught_up = (
            connected
            and self.quiet
            and not self.replaying
            and self._pending == 0
            and self._inner.queue_empty()
        )
        split = SplitStatus(connected=connected, caught_up=caught_up, lag=None)
        return ReaderStatus(connected=connected, errors=self.errors, splits={0: split})

    def trim(self, upto: int) -> None:
        """A checkpoint consumed the log up to entry ``upto``: trim it."""
        if self.wal is not None:
            self.wal.trim(upto)

    # ------------------------------------------------------------------ thread
    def _produce(self, put: Callable[[SourceEvent], bool]) -> None:
        try:
            if self.wal is not None and not self._replay(put):
                return
            self.replaying = False
            self._live(put)
        finally:
            if self.wal is not None:
                self.wal.close()

    def _replay(self, put: Callable[[SourceEvent], bool]) -> bool:
        """Hand out the log's entries after the resume point; False once stopped."""
        assert self.wal is not None
        self.wal.trim(self.after)  # covered by the checkpoint resumed from
        for seq, raw in self.wal.entries(self.after):
            self._remember(raw)
            batch, dead = self.src.decoder.decode(raw, seq)
            if self._stop.is_set() or not put(Data(0, batch, seq, dead)):
                return False
            self._seq = seq
        self._seq = max(self._seq, self.wal.next_seq - 1)
        return True

    def _remember(self, raw: pa.Table) -> None:
        qos = raw.column("qos").to_pylist()
        if not any(qos):
            return
        mids = raw.column("mid").to_pylist()
        pairs = zip(
            raw.column("topic").to_pylist(), raw.column("payload").to_pylist(), strict=True
        )
        self._logged.update((m, p) for m, p, q in zip(mids, pairs, qos, strict=True) if q)

    def _live(self, put: Callable[[SourceEvent], bool]) -> None:
        src = self.src
        manual = self.wal is not None and src.qos > 0
        client = src.connect_client(manual)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._manual = manual
        delay = src.reconnect_delay[0]
        first = True
        try:
            while not self._stop.is_set():
                if self._fatal is not None:
                    raise self._fatal
                if client.is_connected() or self.connected:
                    rc = self._step(client, put)
                    if rc is None:
                        return
                    if rc:
                        delay = src.reconnect_delay[0]
                    continue
                if self._buf and not self._flush(put):
                    return
                if self._connect(client, first):
                    first = False
                    # wait for the CONNACK before judging the attempt
                    deadline = time.monotonic() + max(5.0, src.keepalive)
                    while not self.connected and self._fatal is None and not self._stop.is_set():
                        if client.loop(0.05) != 0 or time.monotonic() > deadline:
                            break
                    if self.connected:
                        continue
                self.errors += 1
                with contextlib.suppress(Exception):
                    client.disconnect()
                if self._stop.wait(delay * (0.5 + random.random() / 2)):
                    return
                delay = min(delay * 2, src.reconnect_delay[1])
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()
            self.connected = False

    def _connect(self, client: Client, first: bool) -> bool:
        src = self.src
        try:
            if first:
                props = None
                kw: dict[str, Any] = {}
                if src.protocol == "5":
                    from paho.mqtt.packettypes import PacketTypes
                    from paho.mqtt.properties import Properties

                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    if src.persistent:
                        props.SessionExpiryInterval = int(src.session_expiry)
                    kw = {"clean_start": not src.persistent, "properties": props}
                client.connect(src.host, src.port, src.keepalive, **kw)
            else:
                client.reconnect()
        except (OSError, ValueError):
            return False
        return True

    def _step(self, client: Client, put: Callable[[SourceEvent], bool]) -> bool | None:
        """One round of the network loop, then a flush when due. None: stopped; False:
        the connection was lost; True: it goes on."""
        before = len(self._buf)
        if self._buf:
            wait = 0.0 if self._manual else self._first_at + self.src.max_delay - time.monotonic()
        else:
            wait = 0.1
        rc = client.loop(max(wait, 0.0))
        got = len(self._buf) > before
        if not got and not self._buf:
            self.quiet = True
        due = self._buf and (
            len(self._buf) >= self.src.batch_size
            or (self._manual and not got)  # the broker may wait for our acks
            or time.monotonic() - self._first_at >= self.src.max_delay
            or rc != 0
        )
        if due and not self._flush(put):
            return None
        if rc != 0:
            if self.connected and not self._stop.is_set():
                self.errors += 1
            self.connected = False
            return False
        return True

    def _flush(self, put: Callable[[SourceEvent], bool]) -> bool:
        """Log, acknowledge and hand out the buffered messages; False once stopped."""
        msgs, self._buf = self._buf, []
        offset = time.time() - time.monotonic()
        try:
            topics = [m.topic for m in msgs]
        except UnicodeDecodeError:  # brokers refuse such topics; never crash on one
            topics = [_topic(m) for m in msgs]
        raw = pa.table(
            [
                pa.array([m.payload for m in msgs], pa.binary()),
                pa.array(topics, pa.string()),
                pa.array([m.qos for m in msgs], pa.int8()),
                pa.array([m.retain for m in msgs], pa.bool_()),
                pa.array([m.mid for m in msgs], pa.int32()),
                pa.array([int((m.timestamp + offset) * 1000) for m in msgs], pa.int64()),
            ],
            schema=WAL_SCHEMA,
        )
        if self.wal is not None:
            seq = self.wal.append(raw)
            if self._manual:
                ack = self._client.ack
                for m in msgs:
                    if m.qos:
                        ack(m.mid, m.qos)
                self._logged.update(
                    (m.mid, (t, m.payload)) for m, t in zip(msgs, topics, strict=True) if m.qos
                )
        else:
            seq = self._seq + 1
        self._seq = seq
        batch, dead = self.src.decoder.decode(raw, seq)
        ok = put(Data(0, batch, seq, dead))
        self._pending = 0
        return ok and not self._stop.is_set()

    # ------------------------------------------------------------------ callbacks
    def _on_message(self, client: Client, userdata: object, msg: MQTTMessage) -> None:
        if msg.dup and msg.qos and self._manual:
            seen = self._logged.get(msg.mid)
            if seen is not None and seen[1] == msg.payload and seen[0] == _topic(msg):
                client.ack(msg.mid, msg.qos)  # redelivered after a lost ack: logged already
                return
        if not self._buf:
            self._first_at = time.monotonic()
        self._buf.append(msg)
        self._pending = len(self._buf)
        self.quiet = False

    def _on_connect(
        self, client: Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            name = getattr(reason, "getName", lambda: str(reason))()
            if name in ("Server unavailable", "Server busy"):
                return  # retried with backoff
            self._fatal = SourceError(
                f"{self.src.label}: the broker refused the connection: {name}; check the "
                "client id, username, password and the broker's access rules"
            )
            return
        self.connected = True
        self.quiet = False
        client.subscribe([(t, self.src.qos) for t in self.src.topics])

    def _on_subscribe(
        self, client: Client, userdata: object, mid: int, reasons: list[Any], properties: object
    ) -> None:
        bad = [
            t
            for t, r in zip(self.src.topics, reasons, strict=False)
            if getattr(r, "is_failure", False)
        ]
        if bad:
            self._fatal = SourceError(
                f"{self.src.label}: the broker refused the subscription to {bad}; check the "
                "topic filter and the broker's access rules"
            )

    def _on_disconnect(
        self, client: Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if self.connected and not self._stop.is_set():
            self.errors += 1
        self.connected = False


def _topic(msg: MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:
        return "<topic not valid UTF-8>"


def check_topics(topic: str | list[str], where: str) -> list[str]:
    """Topic filters, checked as MQTT defines them (``#`` last and alone in its level,
    ``+`` alone in its level, not empty, no NUL)."""
    topics = [topic] if isinstance(topic, str) else topic
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        msg = f"{where}: topic takes a topic filter or a list of them, got {topic!r}"
        raise PipelineError(msg)
    for t in topics:
        levels = t.split("/")
        ok = bool(t) and "\x00" not in t and len(t.encode("utf-8", "surrogatepass")) < 65536
        for k, level in enumerate(levels):
            if ("#" in level and (level != "#" or k != len(levels) - 1)) or (
                "+" in level and level != "+"
            ):
                ok = False
        if not ok:
            msg = (
                f"{where}: {t!r} is not an MQTT topic filter ('#' only as the whole last "
                "level, '+' only as a whole level, not empty)"
            )
            raise PipelineError(msg)
    return topics


def extra_columns(
    columns: list[str] | None, schema: pl.Schema | None, where: str
) -> tuple[str, ...]:
    """The message attributes asked for as columns, checked."""
    if not columns:
        return ()
    bad = [c for c in columns if c not in EXTRA_COLUMNS]
    if bad:
        msg = f"{where}: columns_from_mqtt takes {sorted(EXTRA_COLUMNS)}, not {bad}"
        raise PipelineError(msg)
    clash = [c for c in columns if schema is not None and c in schema]
    if clash:
        msg = (
            f"{where}: columns_from_mqtt {clash} clash with payload columns of the same "
            "name; rename them in the schema or leave them out of columns_from_mqtt"
        )
        raise PipelineError(msg)
    return tuple(dict.fromkeys(columns))


def decoder_for(
    format: MqttFormat,
    schema: pl.Schema | None,
    columns: list[str] | None,
    max_bytes: int,
    where: str,
) -> Decoder:
    """The decoder of a source's payloads, its options checked."""
    if format not in ("json", "arrow", "raw"):
        msg = f"{where}: format must be 'json', 'arrow' or 'raw', got {format!r}"
        raise PipelineError(msg)
    if format == "raw" and schema is not None:
        msg = f"{where}: format='raw' gives a 'payload' column of bytes; it takes no schema"
        raise PipelineError(msg)
    if format != "raw" and schema is None:
        msg = (
            f"{where}: format={format!r} needs schema= (a live topic cannot be sampled "
            'when the pipeline is built), e.g. schema={"ts": pl.Int64, "cpu": pl.Float64}'
        )
        raise PipelineError(msg)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        msg = f"{where}: max_message_bytes must be a positive int, got {max_bytes!r}"
        raise PipelineError(msg)
    extra = extra_columns(columns, schema, where)
    return Decoder(format, schema, extra, max_bytes, "from_mqtt")
