"""Kafka topics as a source: each topic-partition is a named split, read with ``assign()``.

vstream assigns the partitions itself (no consumer-group rebalancing moves a partition
under a checkpoint); ``group_id`` only names where the offsets of a durable checkpoint
are committed, for monitoring. A split's position is the next offset to read. The reader
thread consumes chunks of messages, reads each one's ``value()`` (the one per-message
Python call), cuts the chunk into runs of one partition by vectorised comparison, and
decodes a whole micro-batch per split at once (:mod:`vstream.io._kafka_decode`).

confluent-kafka is imported when a source is built, so ``import vstream`` works without it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from vstream.errors import CheckpointError, PipelineError, SchemaError, SourceError
from vstream.io._kafka_decode import KAFKA_COLUMNS, Decoder, KafkaFormat
from vstream.io._schema import SchemaLike, to_arrow_schema
from vstream.io.base import (
    Data,
    Reader,
    ReaderStatus,
    Source,
    SourceEvent,
    SplitAdded,
    SplitEnd,
    SplitPosition,
    SplitStatus,
    SyncReader,
    ThreadedReader,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer, TopicPartition

__all__ = ["KafkaSource", "OnDataLoss", "Offsets"]

OnDataLoss = Literal["fail", "skip"]
#: ``start`` / ``stop``: a named point, offsets by partition, or a timestamp
Offsets = str | Mapping[int | str, int] | int | dt.datetime

_STEP = "from_kafka"
#: seconds the build and open() wait for the cluster's metadata and offsets
_META_TIMEOUT = 10.0


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        msg = f"{_STEP} needs confluent-kafka: pip install 'vstream[kafka]'"
        raise SourceError(msg) from exc
    return confluent_kafka


def _code(name: str) -> int:
    """A librdkafka error code by its name (the internal ones start with ``_``)."""
    return int(getattr(_kafka().KafkaError, name))


def _millis(t: int | dt.datetime, what: str) -> int:
    if isinstance(t, dt.datetime):
        if t.tzinfo is None:
            msg = f"{_STEP}: {what}={t!r} has no time zone; give an aware datetime (UTC)"
            raise PipelineError(msg)
        return int(t.timestamp() * 1000)
    return int(t)


class KafkaSource(Source):
    """Topic-partitions of a Kafka cluster, each a split named ``"topic/partition"``.

    Built from :func:`vstream.from_kafka` (its docstring holds the options). The
    partitions are listed when the source is built (the cluster must answer then);
    partitions that appear later, in an unbounded read, are new splits (a
    :class:`~vstream.io.base.SplitAdded` event), read from their earliest offset.
    """

    concurrent_splits = True
    replayable = True

    def __init__(
        self,
        topics: str | Sequence[str],
        *,
        bootstrap_servers: str,
        group_id: str | None = None,
        format: KafkaFormat = "json",
        schema: SchemaLike | None = None,
        start: Offsets = "earliest",
        stop: Offsets | None = None,
        columns_from_kafka: Sequence[str] | None = None,
        batch_size: int | None = None,
        consume_size: int = 10_000,
        max_delay: float = 0.05,
        max_message_bytes: int = 1 << 20,
        on_data_loss: OnDataLoss = "fail",
        discover_interval: float | None = 5.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if format not in ("json", "arrow", "raw"):
            msg = f"{_STEP}: format={format!r}; give 'json', 'arrow' or 'raw'"
            raise PipelineError(msg)
        if on_data_loss not in ("fail", "skip"):
            msg = f"{_STEP}: on_data_loss={on_data_loss!r}; give 'fail' or 'skip'"
            raise PipelineError(msg)
        for name, value, low in (
            ("consume_size", consume_size, 1),
            ("max_message_bytes", max_message_bytes, 1),
            ("batch_size", 1 if batch_size is None else batch_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                msg = f"{_STEP}: {name}={value!r}; give a positive int"
                raise PipelineError(msg)
        extra = list(columns_from_kafka or [])
        unknown = [c for c in extra if c not in KAFKA_COLUMNS]
        if unknown:
            msg = (
                f"{_STEP}: columns_from_kafka has {unknown}; it takes any of {list(KAFKA_COLUMNS)}"
            )
            raise PipelineError(msg)
        extra = [c for c in KAFKA_COLUMNS if c in extra]
        self.format: KafkaFormat = format
        self._pattern: re.Pattern[str] | None = None
        if isinstance(topics, str):
            names = [topics]
        elif isinstance(topics, Sequence) and topics and all(isinstance(t, str) for t in topics):
            names = list(topics)
        else:
            msg = f"{_STEP}: topics={topics!r}; give a topic name, a list of names or a '^regex'"
            raise PipelineError(msg)
        if len(names) == 1 and names[0].startswith("^"):
            try:
                self._pattern = re.compile(names[0])
            except re.error as exc:
                msg = f"{_STEP}: the topic pattern {names[0]!r} is not a regex ({exc})"
                raise PipelineError(msg) from None
        self._topics = names
        self._conf = self._consumer_config(bootstrap_servers, group_id, on_data_loss, config)
        self.group_id = group_id
        self.on_data_loss: OnDataLoss = on_data_loss
        self._start = self._check_offsets(start, "start")
        self._stop = None if stop is None else self._check_offsets(stop, "stop")
        self.bounded = stop is not None
        self.batch_size = batch_size or (8 if format == "arrow" else 65_536)
        self.consume_size = consume_size
        self.max_delay = max_delay
        self.discover_interval = discover_interval
        ck = _kafka()
        probe = ck.Consumer(self._conf)
        try:
            self.parts = self.list_partitions(probe, initial=True)
            payload = self._payload_schema(schema, probe)
        finally:
            probe.close()
        clash = [c for c in extra if c in payload.names]
        if clash:
            msg = (
                f"{_STEP}: columns_from_kafka {clash} clash with the payload's column(s) of "
                "the same name; leave them out of columns_from_kafka or rename the payload's"
            )
            raise SchemaError(msg)
        self.decoder = Decoder(format, payload, extra, max_message_bytes)
        shown = self._topics[0] if len(self._topics) == 1 else self._topics
        self.label = f"from_kafka({shown!r}, {len(self.parts)} partition(s))"
        self.discovered: list[str] = []
        self._told = 0
        self._readers: weakref.WeakSet[KafkaReader] = weakref.WeakSet()

    # ------------------------------------------------------------------ build time
    @staticmethod
    def _consumer_config(
        servers: str,
        group_id: str | None,
        on_data_loss: OnDataLoss,
        config: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if not isinstance(servers, str) or not servers:
            msg = f"{_STEP}: bootstrap_servers={servers!r}; give 'host:port[,host:port...]'"
            raise PipelineError(msg)
        own = {"bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store"}
        taken = sorted(k for k in (config or {}) if k in own)
        if taken:
            msg = (
                f"{_STEP}: {taken} are set by from_kafka itself (it assigns partitions and "
                "commits offsets only after a durable checkpoint); use bootstrap_servers= "
                "and group_id="
            )
            raise PipelineError(msg)
        conf: dict[str, Any] = {
            "bootstrap.servers": servers,
            # a group id is required by the client even with assign(); offsets are
            # committed only when the user named a group
            "group.id": group_id or "vstream-from_kafka",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # retention deleting unread offsets: an error unless the user accepts the loss
            "auto.offset.reset": "earliest" if on_data_loss == "skip" else "error",
            "enable.partition.eof": False,
        }
        conf.update(config or {})
        return conf

    def _check_offsets(self, value: Offsets, what: str) -> Offsets:
        if isinstance(value, str):
            allowed = ("earliest", "latest") if what == "start" else ("latest",)
            if value not in allowed:
                named = " or ".join(map(repr, allowed))
                msg = (
                    f"{_STEP}: {what}={value!r}; give {named}, a mapping "
                    "{partition: offset} or a timestamp"
                )
                raise PipelineError(msg)
            return value
        if isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    msg = f"{_STEP}: {what}[{k!r}]={v!r}; an offset is an int >= 0"
                    raise PipelineError(msg)
                if not (isinstance(k, int) and not isinstance(k, bool)) and not isinstance(k, str):
                    msg = (
                        f"{_STEP}: {what} key {k!r}; give a partition number or 'topic/partition'"
                    )
                    raise PipelineError(msg)
            return dict(value)
        if isinstance(value, dt.datetime) or (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            return _millis(value, what)
        msg = (
            f"{_STEP}: {what}={value!r}; give 'earliest' or 'latest', a mapping "
            "{partition: offset} or a timestamp (ms since the epoch, or an aware datetime)"
        )
        raise PipelineError(msg)

    def _matches(self, topic: str) -> bool:
        if self._pattern is not None:
            return not topic.startswith("__") and self._pattern.search(topic) is not None
        return topic in self._topics

    def list_partitions(
        self, consumer: Consumer, *, initial: bool, timeout: float = _META_TIMEOUT
    ) -> list[tuple[str, int]]:
        """(topic, partition) of every partition the source reads, sorted."""
        ck = _kafka()
        try:
            meta = consumer.list_topics(timeout=timeout)
        except ck.KafkaException as exc:
            msg = (
                f"{_STEP}: no metadata from {self._conf['bootstrap.servers']!r} within "
                f"{timeout:.0f} s ({exc}); check bootstrap_servers and that the "
                "cluster is up"
            )
            raise SourceError(msg) from None
        found = sorted(
            (t, p)
            for t, tm in meta.topics.items()
            if self._matches(t) and tm.error is None
            for p in tm.partitions
        )
        if initial and self._pattern is None:
            have = {t for t, _ in found}
            missing = [t for t in self._topics if t not in have]
            if missing:
                msg = (
                    f"{_STEP}: topic(s) {missing} do not exist on "
                    f"{self._conf['bootstrap.servers']!r}; create them first, or give a "
                    f"pattern ('^{re.escape(missing[0])}$') to read them once they appear"
                )
                raise SourceError(msg)
        return found

    def _payload_schema(self, schema: SchemaLike | None, probe: Consumer) -> pa.Schema:
        if self.format == "raw":
            if schema is not None:
                msg = f"{_STEP}: format='raw' gives one binary column 'value'; leave out schema="
                raise PipelineError(msg)
            return pa.schema([("value", pa.large_binary())])
        if schema is not None:
            return to_arrow_schema(schema)
        if self.format == "json":
            msg = (
                f"{_STEP}: format='json' needs schema={{column: dtype, ...}} (e.g. "
                "{'ts': pl.Int64, 'host': pl.String}): a live topic's first messages do "
                "not tell every column and type"
            )
            raise PipelineError(msg)
        return self._first_arrow_schema(probe)

    def _first_arrow_schema(self, probe: Consumer) -> pa.Schema:
        ck = _kafka()
        probe.assign([ck.TopicPartition(t, p, ck.OFFSET_BEGINNING) for t, p in self.parts])
        deadline = time.monotonic() + _META_TIMEOUT
        while time.monotonic() < deadline:
            for m in probe.consume(num_messages=16, timeout=0.5):
                if m.error() is not None or m.value() is None:
                    continue
                try:
                    return pa.ipc.open_stream(m.value()).schema
                except (pa.ArrowException, ValueError, OSError):
                    continue
        msg = (
            f"{_STEP}: no Arrow IPC message to learn the schema from within "
            f"{_META_TIMEOUT:.0f} s; pass schema="
        )
        raise SourceError(msg)

    # ------------------------------------------------------------------ Source
    def splits(self) -> list[str]:
        return [f"{t}/{p}" for t, p in self.parts]

    def schema(self) -> pa.Schema:
        return self.decoder.schema

    def discover_splits(self) -> list[str]:
        new = self.discovered[self._told :]
        self._told = len(self.discovered)
        return new

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        points = self.resume_points(resume, splits)
        if not points and (splits is not None or self.bounded):
            return SyncReader(iter(()))
        ck = _kafka()
        health = _Health(self.label)
        # a cluster outage is reported through error_cb, in the thread that consumes
        consumer = ck.Consumer({**self._conf, "error_cb": health.on_error})
        try:
            starts, stops, highs = self._offsets(consumer, points)
        except BaseException:
            consumer.close()
            raise
        wanted = None if columns is None else frozenset(columns) & set(KAFKA_COLUMNS)
        # "earliest" means the same after a restart; any other start is pinned
        pins = set() if self._start == "earliest" else {i for i, p in points.items() if p is None}
        reader = KafkaReader(
            self,
            consumer,
            health,
            starts,
            stops,
            highs,
            pins,
            wanted,
            discover=splits is None and not self.bounded and self.discover_interval is not None,
        )
        self._readers.add(reader)
        return reader

    def _offsets(
        self, consumer: Consumer, points: Mapping[int, object | None]
    ) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        """Per split to read, the offset to start at, (bounded) the one to stop at, and
        its high watermark now."""
        ck = _kafka()
        starts: dict[int, int] = {}
        stops: dict[int, int] = {}
        marks: dict[int, tuple[int, int]] = {}
        for i in points:
            t, p = self.parts[i]
            try:
                marks[i] = consumer.get_watermark_offsets(
                    ck.TopicPartition(t, p), timeout=_META_TIMEOUT
                )
            except ck.KafkaException as exc:
                msg = f"{_STEP}: cannot read the offsets of {t}/{p} ({exc}); is the cluster up?"
                raise SourceError(msg) from None
        by_time = {i for i, pos in points.items() if pos is None and isinstance(self._start, int)}
        times = self._times(consumer, by_time, self._start)
        for i, pos in points.items():
            t, p = self.parts[i]
            low, high = marks[i]
            if pos is not None:
                starts[i] = self._resumed(pos, t, p, low, high)
            elif self._start == "earliest":
                starts[i] = low
            elif self._start == "latest":
                starts[i] = high
            elif isinstance(self._start, Mapping):
                starts[i] = _pick(self._start, t, p, low)
            else:
                starts[i] = high if times[i] < 0 else times[i]
        if self._stop is not None:
            later = {i for i in points if isinstance(self._stop, int)}
            stop_times = self._times(consumer, later, self._stop)
            for i in points:
                t, p = self.parts[i]
                high = marks[i][1]
                if self._stop == "latest":
                    stops[i] = high
                elif isinstance(self._stop, Mapping):
                    stops[i] = _pick(self._stop, t, p, high)
                else:
                    stops[i] = high if stop_times[i] < 0 else stop_times[i]
        return starts, stops, {i: m[1] for i, m in marks.items()}

    def _times(self, consumer: Consumer, splits: set[int], at: object) -> dict[int, int]:
        if not splits:
            return {}
        ck = _kafka()
        order = sorted(splits)
        asked = [ck.TopicPartition(*self.parts[i], at) for i in order]
        try:
            got = consumer.offsets_for_times(asked, timeout=_META_TIMEOUT)
        except ck.KafkaException as exc:
            msg = f"{_STEP}: cannot find the offsets at timestamp {at} ({exc})"
            raise SourceError(msg) from None
        return {i: tp.offset for i, tp in zip(order, got, strict=True)}

    def _resumed(self, pos: object, topic: str, part: int, low: int, high: int) -> int:
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
            msg = (
                f"{self.label}: cannot resume {topic}/{part} from position {pos!r}; "
                "expected an offset"
            )
            raise CheckpointError(msg)
        if low <= pos <= high:
            return pos
        if self.on_data_loss == "skip":
            return low
        gone = (
            f"offsets {pos} to {low - 1} were deleted (retention) before they were read"
            if pos < low
            else f"its end is offset {high}, before the checkpoint's {pos} (a recreated topic?)"
        )
        msg = (
            f"{self.label}: cannot resume {topic}/{part} at offset {pos}: {gone}; the "
            "checkpoint's output would miss them. Pass on_data_loss='skip' to go on from "
            f"offset {low}, or start over with a new checkpoint_dir"
        )
        raise CheckpointError(msg)

    def on_checkpoint_complete(self, epoch: int, positions: Mapping[str, object]) -> None:
        """Commit the checkpoint's offsets to ``group_id`` (nothing without one)."""
        if self.group_id is None:
            return
        ck = _kafka()
        offsets = []
        for name, pos in positions.items():
            if isinstance(pos, int) and not isinstance(pos, bool) and "/" in name:
                topic, _, part = name.rpartition("/")
                offsets.append(ck.TopicPartition(topic, int(part), pos))
        if not offsets:
            return
        for reader in list(self._readers):
            if reader.commit(offsets):
                return
        consumer = ck.Consumer(self._conf)
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            consumer.close()


def _pick(offsets: Mapping[int | str, int], topic: str, part: int, default: int) -> int:
    got = offsets.get(f"{topic}/{part}", offsets.get(part))
    return default if got is None else got


class _Health:
    """What the client's error callback learnt: connection, errors seen, a fatal one.

    The callback runs in the thread that consumes; ``status()`` reads it in the run's.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.connected = True
        self.errors = 0
        self.fatal: SourceError | None = None

    def on_error(self, err: Any) -> None:
        self.errors += 1
        if err.code() in (_code("_ALL_BROKERS_DOWN"), _code("_TRANSPORT")):
            self.connected = False
        if err.fatal():
            self.fatal = SourceError(f"{self.label}: fatal Kafka error: {err.str()}")


#: seconds between reconnection probes while the cluster is unreachable
_PROBE = 1.0


class KafkaReader(ThreadedReader):
    """The reader thread of a :class:`KafkaSource`: consumes chunks, decodes a batch per
    split, reports connection and lag (:meth:`status`)."""

    def __init__(
        self,
        source: KafkaSource,
        consumer: Consumer,
        health: _Health,
        starts: dict[int, int],
        stops: dict[int, int],
        highs: dict[int, int],
        pins: set[int],
        wanted: frozenset[str] | None,
        *,
        discover: bool,
    ) -> None:
        ck = _kafka()
        self._ck = ck
        self._src = source
        self._consumer = consumer
        self._lock = threading.Lock()  # guards the consumer's close against commit()
        self._closed = False
        self._wanted = wanted
        self._discover = discover
        self._parts = list(source.parts)  # grows with discovered partitions
        self._index = {tp: i for i, tp in enumerate(self._parts)}
        self._single = len({t for t, _ in self._parts}) == 1 and not discover
        self._stops = stops
        self._pos = dict(starts)  # next offset per split still read
        self._active = set(starts)
        self._vals: dict[int, list[bytes | None]] = {}
        self._since: dict[int, float] = {}  # when a split's buffer got its first message
        self._highs = dict(highs)  # high watermark per split, as last noted
        self._msgs: dict[int, list[Any]] = {}
        self._health = health
        self._last_probe = 0.0
        self._events: list[SourceEvent] = []
        for i in sorted(starts):
            if i in pins:
                # the start resolved now (latest, a timestamp), kept by the next
                # checkpoint: a restart before any message must not resolve it again
                self._events.append(Data(i, None, starts[i]))
            if i in stops and starts[i] >= stops[i]:
                self._events.append(SplitEnd(i))
                self._active.discard(i)
        assign = [ck.TopicPartition(*self._parts[i], starts[i]) for i in sorted(self._active)]
        if assign:
            self._consumer.assign(assign)
        super().__init__(self._produce, name="vstream-from_kafka")

    # ------------------------------------------------------------------ commits
    def commit(self, offsets: list[TopicPartition]) -> bool:
        """Commit ``offsets`` through this reader's consumer; False once it is closed."""
        with self._lock:
            if self._closed:
                return False
            self._consumer.commit(offsets=offsets, asynchronous=False)
            return True

    # ------------------------------------------------------------------ the thread
    def _produce(self, put: Callable[[SourceEvent], bool]) -> None:
        try:
            self._loop(put)
        finally:
            with self._lock:
                self._closed = True
                self._consumer.close()

    def _loop(self, put: Callable[[SourceEvent], bool]) -> None:
        for ev in self._events:
            if not put(ev):
                return
        self._events = []
        src = self._src
        size, wait = src.consume_size, src.max_delay
        next_discovery = time.monotonic() + (src.discover_interval or 0.0)
        while self._active or self._discover:
            if self._stop.is_set():
                return
            # what the client holds now; else wait for the first message only (consume()
            # with a timeout would wait for all `size` of them, the whole timeout long)
            msgs = self._consumer.consume(num_messages=size, timeout=0)
            if not msgs:
                first = self._consumer.poll(wait)
                if first is not None:
                    msgs = [first, *self._consumer.consume(num_messages=size - 1, timeout=0)]
            if self._health.fatal is not None:
                raise self._health.fatal
            if msgs:
                self._health.connected = True
                self._take(msgs)
            caught_up = len(msgs) < size
            now = time.monotonic()
            self._note_highs()
            for i in list(self._vals):
                if (
                    len(self._vals[i]) >= src.batch_size or (caught_up and self._due(i, now))
                ) and not self._flush(i, put):
                    return
            if caught_up and not self._end_splits(put):
                return
            if not msgs and not self._health.connected and now - self._last_probe >= _PROBE:
                self._probe(now)
            if self._discover and now >= next_discovery:
                next_discovery = now + (src.discover_interval or 0.0)
                if not self._discovery(put):
                    return
        # a bounded read: every split ended

    def _take(self, msgs: list[Any]) -> None:
        """Cut a consumed chunk into runs of one partition and buffer them per split."""
        Message = self._ck.Message
        if any(map(Message.error, msgs)):
            msgs = self._errors_out(msgs)
            if not msgs:
                return
        vals = list(map(Message.value, msgs))
        parts = np.fromiter(map(Message.partition, msgs), np.int64, len(msgs))
        change = parts[1:] != parts[:-1]
        if self._single:
            topic = self._parts[0][0]
            topics = None
        else:
            topics = list(map(Message.topic, msgs))
            names = np.array(topics)
            change |= names[1:] != names[:-1]
        bounds = [0, *(np.flatnonzero(change) + 1).tolist(), len(msgs)]
        for a, b in itertools.pairwise(bounds):
            key = (topic if topics is None else topics[a], int(parts[a]))
            i = self._index.get(key)
            if i is None or i not in self._active:
                continue  # a partition no longer read (ended)
            run_msgs, run_vals = msgs[a:b], vals[a:b]
            stop = self._stops.get(i)
            if stop is not None and run_msgs[-1].offset() >= stop:
                offs = np.fromiter(map(Message.offset, run_msgs), np.int64, len(run_msgs))
                cut = int(np.searchsorted(offs, stop))
                run_msgs, run_vals = run_msgs[:cut], run_vals[:cut]
                if not run_msgs:
                    continue
            self._msgs.setdefault(i, []).extend(run_msgs)
            if i not in self._vals:
                self._vals[i] = []
                self._since[i] = time.monotonic()
            self._vals[i].extend(run_vals)

    def _errors_out(self, msgs: list[Any]) -> list[Any]:
        """The chunk without its error events; data loss fails the read, other errors
        are counted (librdkafka retries them)."""
        ck = self._ck
        keep = []
        for m in msgs:
            err = m.error()
            if err is None:
                keep.append(m)
                continue
            if err.code() == _code("_PARTITION_EOF"):
                continue
            if err.fatal() or err.code() in (
                _code("_AUTO_OFFSET_RESET"),
                ck.KafkaError.OFFSET_OUT_OF_RANGE,
            ):
                where = f"{m.topic()}/{m.partition()}" if m.topic() else "the cluster"
                msg = (
                    f"{self._src.label}: {where}: {err.str()}; offsets not read yet were "
                    "deleted (retention) or the partition was recreated. Pass "
                    "on_data_loss='skip' to go on from the earliest offset left"
                )
                raise SourceError(msg)
            self._health.errors += 1
        return keep

    def _note_highs(self) -> None:
        """The high watermark of each split read, as the client's last fetch left it."""
        ck = self._ck
        for i in list(self._active):
            try:
                _, high = self._consumer.get_watermark_offsets(
                    ck.TopicPartition(*self._parts[i]), cached=True
                )
            except ck.KafkaException:
                continue
            if high is not None and high >= 0:
                self._highs[i] = high

    def _due(self, i: int, now: float) -> bool:
        """Whether a split's partial batch goes out now: the client holds nothing more of
        it (its buffer reaches the high watermark of the last fetch), or its first
        message has waited ``max_delay``. A backlog thus gives whole batches."""
        if now - self._since[i] >= self._src.max_delay:
            return True
        high = self._highs.get(i, -1)
        return bool(high < 0 or self._msgs[i][-1].offset() + 1 >= high)

    def _flush(self, i: int, put: Callable[[SourceEvent], bool]) -> bool:
        vals = self._vals.pop(i)
        msgs = self._msgs.pop(i)
        out = True
        for lo in range(0, len(vals), self._src.batch_size):
            hi = min(lo + self._src.batch_size, len(vals))
            t, p = self._parts[i]
            got = self._src.decoder.decode(t, p, msgs[lo:hi], vals[lo:hi], self._wanted)
            pos = msgs[hi - 1].offset() + 1
            self._pos[i] = pos
            out = put(Data(i, got.batch, pos, got.dead))
            if not out:
                return False
        return out

    def _end_splits(self, put: Callable[[SourceEvent], bool]) -> bool:
        """End the bounded splits that reached their stop offset (nothing buffered)."""
        ck = self._ck
        done = [i for i in self._active if i in self._stops and self._pos[i] >= self._stops[i]]
        waiting = [
            i for i in self._active if i in self._stops and i not in done and i not in self._vals
        ]
        if waiting:
            # offsets that hold no message (compacted, transaction markers) never arrive
            tps = [ck.TopicPartition(*self._parts[i]) for i in waiting]
            for i, tp in zip(waiting, self._consumer.position(tps), strict=True):
                if tp.offset >= self._stops[i]:
                    done.append(i)
        if not done:
            return True
        self._consumer.incremental_unassign([ck.TopicPartition(*self._parts[i]) for i in done])
        for i in sorted(done):
            self._active.discard(i)
            if not put(SplitEnd(i)):
                return False
        return True

    def _probe(self, now: float) -> None:
        """While the cluster is unreachable: is it back? (librdkafka retries the fetches
        itself; this only tells status() when they can succeed again)."""
        self._last_probe = now
        try:
            meta = self._consumer.list_topics(timeout=_PROBE)
        except self._ck.KafkaException:
            return
        if meta.brokers:
            self._health.connected = True

    def _discovery(self, put: Callable[[SourceEvent], bool]) -> bool:
        """Partitions (of a topic matching the pattern) that appeared: new splits, read
        from their earliest offset."""
        ck = self._ck
        try:
            found = self._src.list_partitions(self._consumer, initial=False, timeout=_PROBE)
        except SourceError:
            self._health.errors += 1
            return True
        new = [tp for tp in found if tp not in self._index]
        if not new:
            return True
        self._single = False
        assign = []
        for tp in new:
            i = len(self._parts)
            self._parts.append(tp)
            self._index[tp] = i
            self._active.add(i)
            self._pos[i] = 0
            name = f"{tp[0]}/{tp[1]}"
            self._src.discovered.append(name)
            if not put(SplitAdded(i, name)):
                return False
            assign.append(ck.TopicPartition(tp[0], tp[1], ck.OFFSET_BEGINNING))
        self._consumer.incremental_assign(assign)
        return True

    # ------------------------------------------------------------------ Reader
    def status(self) -> ReaderStatus:
        """Connection, retried errors, and per split still read its lag: the high
        watermark (as the last fetch response cached it) minus the position handed out.
        Reads what the reader thread noted: never a call into the client, which can wait
        on the thread's own calls (a metadata request)."""
        splits: dict[int, SplitStatus] = {}
        health = self._health
        quiet = self.queue_empty()
        highs = self._highs
        for i in sorted(self._active):
            high = highs.get(i, -1)
            lag = None if high < 0 else max(high - self._pos[i], 0)
            caught_up = health.connected and lag == 0 and quiet and i not in self._vals
            splits[i] = SplitStatus(health.connected, caught_up, lag)
        return ReaderStatus(health.connected, health.errors, splits)

    def close(self) -> None:
        super().close()
