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
import re
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from vstream.errors import CheckpointError, PipelineError, SchemaError, SourceError
from vstream.io._kafka_decode import KAFKA_COLUMNS, Decoder, KafkaFormat
from vstream.io._kafka_reader import Health, KafkaReader, kafka_client
from vstream.io._schema import SchemaLike, check_names, to_arrow_schema
from vstream.io.base import (
    Reader,
    Source,
    SplitPosition,
    SyncReader,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer

__all__ = ["KafkaSource", "OnDataLoss", "Offsets"]

OnDataLoss = Literal["fail", "skip"]
#: ``start`` / ``stop``: a named point, offsets by partition, or a timestamp
Offsets = str | Mapping[int | str, int] | int | dt.datetime

_STEP = "from_kafka"
#: seconds the build and open() wait for the cluster's metadata and offsets
_META_TIMEOUT = 10.0
#: librdkafka's statistics interval, ms, unless the user gives one: each report says
#: which partitions' brokers are reachable (a one-broker outage holds the partitions it
#: leads). Taking a report (json.loads and the walk) measured 0.14 ms for 4 partitions,
#: 0.6-0.9 ms for 100 and 6-8 ms for 1,000 (the report grows with the partitions): under
#: 2 % of a core up to 1,000 partitions, and an outage shows within 0.5 s
_STATS = "statistics.interval.ms"
_STATS_MS = 500


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
    live = True
    splits_may_grow = True

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
        self.consumer_config = self._consumer_config(
            bootstrap_servers, group_id, on_data_loss, config
        )
        self.group_id = group_id
        self.on_data_loss: OnDataLoss = on_data_loss
        self._start = self._check_offsets(start, "start")
        self._stop = None if stop is None else self._check_offsets(stop, "stop")
        self.bounded = stop is not None
        self.batch_size = batch_size or (8 if format == "arrow" else 65_536)
        self.consume_size = consume_size
        self.max_delay = max_delay
        self.discover_interval = discover_interval
        ck = kafka_client()
        probe = ck.Consumer(self.consumer_config)
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
        ck = kafka_client()
        try:
            meta = consumer.list_topics(timeout=timeout)
        except ck.KafkaException as exc:
            msg = (
                f"{_STEP}: no metadata from {self.consumer_config['bootstrap.servers']!r} within "
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
                    f"{self.consumer_config['bootstrap.servers']!r}; create them first, or give a "
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
        ck = kafka_client()
        probe.assign([ck.TopicPartition(t, p, ck.OFFSET_BEGINNING) for t, p in self.parts])
        deadline = time.monotonic() + _META_TIMEOUT
        while time.monotonic() < deadline:
            for m in probe.consume(num_messages=16, timeout=0.5):
                if m.error() is not None or m.value() is None:
                    continue
                try:
                    schema: pa.Schema = pa.ipc.open_stream(m.value()).schema
                except (pa.ArrowException, ValueError, OSError):
                    continue
                check_names(schema.names, f"{_STEP}: the first message's schema")
                return schema
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
        ck = kafka_client()
        conf = dict(self.consumer_config)
        interval = int(conf.setdefault(_STATS, _STATS_MS))
        health = Health(self.label, per_partition=interval > 0, stats_cb=conf.get("stats_cb"))
        # an outage is reported through error_cb and, per partition, through the
        # statistics (stats_cb), both in the thread that consumes
        conf.update(error_cb=health.on_error, stats_cb=health.on_stats)
        consumer = ck.Consumer(conf)
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
        ck = kafka_client()
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
        ck = kafka_client()
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
        ck = kafka_client()
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
        consumer = ck.Consumer(self.consumer_config)
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            consumer.close()


def _pick(offsets: Mapping[int | str, int], topic: str, part: int, default: int) -> int:
    got = offsets.get(f"{topic}/{part}", offsets.get(part))
    return default if got is None else got
