"""The reader thread of :class:`vstream.io.kafka.KafkaSource`: consumes chunks of
messages, cuts them into runs of one partition, decodes a micro-batch per split, hands
the batches out in event-time order across splits when the run asks (``align()``, see
:mod:`vstream.io.align`), ends bounded splits at their stop offsets, finds partitions
that appear, and reports connection and lag (``status()``)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from vstream.errors import SourceError
from vstream.io.align import EventTimeAligner
from vstream.io.base import (
    Data,
    ReaderStatus,
    SourceEvent,
    SplitAdded,
    SplitEnd,
    SplitStatus,
    ThreadedReader,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer, TopicPartition

    from vstream.io.kafka import KafkaSource

__all__ = ["Health", "KafkaReader", "kafka_client"]

_STEP = "from_kafka"


def kafka_client() -> Any:
    """The confluent_kafka module, imported on first use (the ``kafka`` extra)."""
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        msg = f"{_STEP} needs confluent-kafka: pip install 'vstream[kafka]'"
        raise SourceError(msg) from exc
    return confluent_kafka


def _code(name: str) -> int:
    """A librdkafka error code by its name (the internal ones start with ``_``)."""
    return int(getattr(kafka_client().KafkaError, name))


class Health:
    """What the client's callbacks learnt: connection, errors seen, a fatal one, and per
    partition whether the broker it is read from is reachable.

    The callbacks run in the thread that consumes (inside ``consume()`` / ``poll()``);
    ``status()`` reads what they noted in the run's thread (each field replaced whole).

    Per partition: librdkafka's statistics (``stats_cb``, every ``statistics.interval.ms``)
    list the brokers with their state and each partition with its leader and the broker
    it is fetched from (the leader, or a follower with ``client.rack``). A partition is
    reachable when its leader is known and the broker it is fetched from is ``"UP"``; a
    broker that is down, still connecting, or gone from the client's list (librdkafka
    drops a broker the cluster's metadata no longer names) is not. Every report counts
    one error per unreachable broker serving partitions the reader reads (a leader left
    unknown counts as one), so ``errors`` grows all through an outage of some brokers,
    which ``error_cb`` reports only once.

    Examples
    --------
    >>> from vstream.io._kafka_reader import Health
    >>> import json
    >>> h = Health("from_kafka('t', 2 partition(s))")
    >>> report = {
    ...     "brokers": {"b:9092/1": {"nodeid": 1, "state": "UP"},
    ...                 "b:9093/2": {"nodeid": 2, "state": "TRY_CONNECT"}},
    ...     "topics": {"t": {"partitions": {
    ...         "0": {"leader": 1, "broker": 1, "desired": True},
    ...         "1": {"leader": 2, "broker": 2, "desired": True},
    ...         "-1": {"leader": -1, "broker": -1, "desired": False}}}},
    ... }
    >>> h.on_stats(json.dumps(report))
    >>> h.reachable("t", 0), h.reachable("t", 1), h.errors
    (True, False, 1)
    """

    def __init__(
        self,
        label: str,
        *,
        per_partition: bool = True,
        stats_cb: Callable[[str], object] | None = None,
    ) -> None:
        self.label = label
        self.connected = True
        self.errors = 0
        self.fatal: SourceError | None = None
        #: (topic, partition) -> reachable, as the last statistics report said
        self.partitions: dict[tuple[str, int], bool] = {}
        #: a connection failed since the last report: every partition is unsure (held)
        #: until the next one says which are reachable
        self.unsure = False
        #: statistics reports come (statistics.interval.ms > 0)
        self._per_partition = per_partition
        self._user_stats = stats_cb  # the user's own stats_cb, called after ours

    def on_error(self, err: Any) -> None:
        self.errors += 1
        if err.code() in (_code("_ALL_BROKERS_DOWN"), _code("_TRANSPORT")):
            self.connected = False
            self.unsure = self._per_partition
        if err.fatal():
            self.fatal = SourceError(f"{self.label}: fatal Kafka error: {err.str()}")

    def on_stats(self, report: str) -> None:
        """Take a statistics report (librdkafka's JSON): which partitions are reachable."""
        stats = json.loads(report)
        up = {
            b.get("nodeid", -1)
            for b in stats.get("brokers", {}).values()
            if b.get("state") == "UP" and b.get("nodeid", -1) >= 0
        }
        reachable: dict[tuple[str, int], bool] = {}
        down: set[int] = set()
        for topic, t in stats.get("topics", {}).items():
            for key, part in t.get("partitions", {}).items():
                p = int(key)
                if p < 0:
                    continue  # librdkafka's internal "unassigned" partition
                leader, via = part.get("leader", -1), part.get("broker", -1)
                ok = leader >= 0 and via in up
                reachable[topic, p] = ok
                if not ok and part.get("desired", True):
                    down.add(via if via >= 0 else leader)
        self.partitions = reachable
        self.unsure = False
        self.errors += len(down)
        if self._user_stats is not None:
            self._user_stats(report)

    def reachable(self, topic: str, partition: int) -> bool:
        """Whether a partition can be read now: the cluster answers, and the broker it
        is read from is up (as far as the last report knows: unknown counts as up)."""
        return self.connected and not self.unsure and self.partitions.get((topic, partition), True)


#: seconds between reconnection probes while the cluster is unreachable
_PROBE = 1.0


class KafkaReader(ThreadedReader):
    """The reader thread of a :class:`KafkaSource`: consumes chunks, decodes a batch per
    split, reports connection and lag (:meth:`status`)."""

    def __init__(
        self,
        source: KafkaSource,
        consumer: Consumer,
        health: Health,
        starts: dict[int, int],
        stops: dict[int, int],
        highs: dict[int, int],
        pins: set[int],
        wanted: frozenset[str] | None,
        *,
        discover: bool,
    ) -> None:
        ck = kafka_client()
        self._ck = ck
        self._src = source
        self._consumer = consumer
        self._lock = threading.Lock()  # guards the committing client against close()
        self._shut = False  # close() was called
        self._committer: Consumer | None = None
        self._wanted = wanted
        self._discover = discover
        self._parts = list(source.parts)  # grows with discovered partitions
        self._index = {tp: i for i, tp in enumerate(self._parts)}
        self._single = len({t for t, _ in self._parts}) == 1 and not discover
        self._stops = stops
        self._pos = dict(starts)  # next offset handed out per split still read
        self._read = dict(starts)  # next offset to consume (what _take got) per split
        self._active = set(starts)
        self._vals: dict[int, list[bytes | None]] = {}
        self._since: dict[int, float] = {}  # when a split's buffer got its first message
        self._highs = dict(highs)  # high watermark per split, as last noted
        self._msgs: dict[int, list[Any]] = {}
        self._health = health
        self._last_probe = 0.0
        self._events: list[SourceEvent] = []
        # set by align() (in the run's thread, once); read once per use by this thread
        self._aligner: EventTimeAligner | None = None
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
        """Commit ``offsets`` (in the run's thread); False once the reader is closed.

        Through a client of its own: confluent-kafka serializes the calls on one client,
        and the reader thread, consuming in a loop, would starve a commit on its client
        (measured: blocked for minutes)."""
        with self._lock:
            if self._shut:
                return False
            if self._committer is None:
                self._committer = self._ck.Consumer(self._src.consumer_config)
            self._committer.commit(offsets=offsets, asynchronous=False)
            return True

    # ------------------------------------------------------------------ the thread
    def _produce(self, put: Callable[[SourceEvent], bool]) -> None:
        try:
            self._loop(put)
        finally:
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
                first = self._consumer.poll(self._wait(wait))
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
            # many partitions each short of a batch: memory stays within two batches
            crowded = sum(map(len, self._vals.values())) >= 2 * src.batch_size
            for i in list(self._vals):
                if (
                    crowded
                    or len(self._vals[i]) >= src.batch_size
                    or (caught_up and self._due(i, now))
                ) and not self._flush(i, put):
                    return
            if not self._release(put):
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
            self._read[i] = run_msgs[-1].offset() + 1
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
        """Decode split ``i``'s buffer into batches and hand them out, or, aligning,
        into its outbox (:meth:`_release` hands them out)."""
        vals = self._vals.pop(i)
        msgs = self._msgs.pop(i)
        aligner = self._aligner
        for lo in range(0, len(vals), self._src.batch_size):
            hi = min(lo + self._src.batch_size, len(vals))
            t, p = self._parts[i]
            got = self._src.decoder.decode(t, p, msgs[lo:hi], vals[lo:hi], self._wanted)
            pos = msgs[hi - 1].offset() + 1
            event = Data(i, got.batch, pos, got.dead)
            if aligner is not None:
                aligner.add(event, time.monotonic())
                continue
            self._pos[i] = pos
            if not put(event):
                return False
        return True

    # ------------------------------------------------------------------ alignment
    def align(self, column: str, drift: int) -> None:
        """Hand the partitions' batches out in event-time order (``column``, ``drift``
        as in :class:`~vstream.io.align.EventTimeAligner`): a partition delivered ahead
        of the others waits for them, at most ``max_delay`` seconds per batch and 64 MiB
        held. A single partition read without discovery needs no alignment. Batches
        handed out before the call (the thread runs from ``open`` on) are not held."""
        if self._aligner is None and (len(self._pos) > 1 or self._discover):
            self._aligner = EventTimeAligner(column, drift, max_wait=self._src.max_delay)

    def _wait(self, wait: float) -> float:
        """How long to wait for a message: ``wait``, or less when a held batch reaches
        its ``max_wait`` sooner."""
        aligner = self._aligner
        due = None if aligner is None else aligner.deadline()
        if due is None:
            return wait
        return min(wait, max(due - time.monotonic(), 0.0))

    def _release(self, put: Callable[[SourceEvent], bool]) -> bool:
        """Hand out the held batches that may go now (the release rule of
        :meth:`EventTimeAligner.release`); the position handed out moves with them."""
        aligner = self._aligner
        if aligner is None or not aligner.held_count:
            return True
        for event in aligner.release(self._pending(), time.monotonic()):
            pos = event.position
            assert isinstance(pos, int)  # an offset: this reader's own events
            self._pos[event.split] = pos
            if not put(event):
                return False
        return True

    def _pending(self) -> set[int]:
        """The splits read with more of them to come that the aligner has not got: some
        in this thread's buffer, or in the broker (its high watermark, capped by its
        stop offset, beyond what was consumed). Splits with batches held count too: the
        release may empty their outbox."""
        out = set(self._vals)
        ask = [i for i in self._active if i not in out and self._end(i) > self._read[i]]
        if ask:
            # offsets that hold no message (transaction markers, compacted ones) move the
            # client's position but never arrive: a split there is not waited for
            ck = self._ck
            tps = [ck.TopicPartition(*self._parts[i]) for i in ask]
            for i, tp in zip(ask, self._consumer.position(tps), strict=True):
                if max(tp.offset, self._read[i]) < self._end(i):
                    out.add(i)
        return out

    def _end(self, i: int) -> int:
        """Where split ``i``'s data ends for now: its high watermark as last noted (-1:
        unknown), or its stop offset if that comes first."""
        end = self._highs.get(i, -1)
        stop = self._stops.get(i)
        return end if stop is None else min(end, stop)

    def _end_splits(self, put: Callable[[SourceEvent], bool]) -> bool:
        """End the bounded splits that reached their stop offset (nothing buffered)."""
        ck = self._ck
        done = [i for i in self._active if i in self._stops and self._pos[i] >= self._stops[i]]
        aligner = self._aligner
        waiting = [
            i
            for i in self._active
            if i in self._stops
            and i not in done
            and i not in self._vals
            and not (aligner is not None and aligner.holds(i))
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
            self._read[i] = 0
            name = f"{tp[0]}/{tp[1]}"
            self._src.discovered.append(name)
            if not put(SplitAdded(i, name)):
                return False
            assign.append(ck.TopicPartition(tp[0], tp[1], ck.OFFSET_BEGINNING))
        self._consumer.incremental_assign(assign)
        return True

    # ------------------------------------------------------------------ Reader
    def status(self) -> ReaderStatus:
        """Connection, retried errors, and per split still read: whether the broker it is
        read from is reachable (:class:`Health`), and its lag: the high watermark (as the
        last fetch response cached it) minus the position handed out; a split that is
        unreachable, or has batches held for alignment, is never caught up. Reads what the
        reader thread noted: never a call into the client, which can wait on the thread's
        own calls (a metadata request)."""
        splits: dict[int, SplitStatus] = {}
        health = self._health
        quiet = self.queue_empty()
        highs = self._highs
        aligner = self._aligner
        for i in sorted(self._active):
            high = highs.get(i, -1)
            lag = None if high < 0 else max(high - self._pos[i], 0)
            up = health.reachable(*self._parts[i])
            caught_up = (
                up
                and lag == 0
                and quiet
                and i not in self._vals
                and not (aligner is not None and aligner.holds(i))
            )
            splits[i] = SplitStatus(up, caught_up, lag)
        return ReaderStatus(health.connected, health.errors, splits)

    def close(self) -> None:
        super().close()
        with self._lock:
            self._shut = True
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()
