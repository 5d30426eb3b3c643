"""Event-time alignment of Kafka partitions in the reader (``KafkaReader.align``).

First the reader on a scripted client (the calls it makes on its consumer, served from
messages the test delivers), so what librdkafka delivers when is up to the test: a
partition delivered ahead waits while another has data in the broker, positions and
split ends follow what is handed out, dead letters travel with their batch, ``max_delay``
bounds the wait, and a reader not told to align hands out as it always did. Then whole
jobs on the mock cluster (tests/kafka_mock.py): a topic whose partitions hold time-ordered
data at very different rates gives the Polars reference, and what the source handed out
is in event-time order up to the watermark's bound, under several batch sizes."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest
from confluent_kafka import OFFSET_INVALID, Message, TopicPartition
from polars.testing import assert_frame_equal

import vstream as vs
from kafka_mock import MockCluster
from vstream.io._kafka_reader import Health, KafkaReader
from vstream.io.align import event_time_span
from vstream.io.base import Data, SourceEvent, SplitEnd
from vstream.io.kafka import KafkaSource

SCHEMA = {"ts": pl.Int64, "host": pl.String, "cpu": pl.Float64}
QUIET = {"log_level": 3}
PATIENCE = 30.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[MockCluster]:
    with MockCluster() as c:
        yield c


def record(ts: int, i: int = 0) -> bytes:
    return json.dumps({"ts": ts, "host": f"h{i % 3}", "cpu": i * 0.5}).encode()


# ---------------------------------------------------------------------- a scripted client


class ScriptedClient:
    """What :class:`KafkaReader` calls on its consumer, served from the messages the
    test delivers (:meth:`deliver`); the high watermarks are the test's too.

    :meth:`wait_idle` waits until the reader has taken every message delivered and come
    back to wait for more: everything it does with them (decode, hold, release, end
    splits) is done by then."""

    def __init__(self, topic: str, highs: dict[int, int]) -> None:
        self.topic = topic
        self.highs = dict(highs)
        self._cond = threading.Condition()
        self._ready: list[Message] = []
        self._next: dict[int, int] = {}  # per partition, the next offset to deliver
        self._consumed: dict[int, int] = {}
        self._delivered = 0
        self._taken = 0
        self._idle_after = -1  # messages taken when the reader last waited for more

    def deliver(self, partition: int, values: list[bytes]) -> None:
        with self._cond:
            for v in values:
                offset = self._next.get(partition, 0)
                self._next[partition] = offset + 1
                self._ready.append(
                    Message(topic=self.topic, partition=partition, offset=offset, value=v)
                )
            self._delivered += len(values)
            self._cond.notify_all()

    def wait_idle(self) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self._idle_after == self._delivered, PATIENCE)
        assert ok, "the reader never came back for more"

    def _take(self, n: int) -> list[Message]:
        got, self._ready = self._ready[:n], self._ready[n:]
        for m in got:
            self._consumed[m.partition()] = m.offset() + 1
        self._taken += len(got)
        return got

    # the consumer's calls
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        with self._cond:
            return self._take(num_messages)

    def poll(self, timeout: float) -> Message | None:
        with self._cond:
            if not self._ready:
                self._idle_after = self._taken
                self._cond.notify_all()
                self._cond.wait_for(lambda: bool(self._ready), timeout)
            got = self._take(1)
        return got[0] if got else None

    def get_watermark_offsets(self, tp: TopicPartition, **_: Any) -> tuple[int, int]:
        return 0, self.highs[tp.partition]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        with self._cond:
            return [
                TopicPartition(
                    tp.topic, tp.partition, self._consumed.get(tp.partition, OFFSET_INVALID)
                )
                for tp in tps
            ]

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def incremental_unassign(self, tps: list[TopicPartition]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def four_partitions(cluster: MockCluster) -> str:
    """A topic of 4 partitions (the mock creates them on the first produce): the
    partitions a scripted reader's source lists."""
    name = f"align-{os.getpid()}"
    cluster.produce(name, [record(0)])
    return name


def scripted_reader(
    cluster: MockCluster, topic: str, sizes: dict[int, int], *, max_delay: float = 60.0
) -> tuple[KafkaReader, ScriptedClient]:
    """A bounded reader of ``sizes`` (partition -> messages) from offset 0, on a
    scripted client; one message per batch."""
    src = KafkaSource(
        topic,
        bootstrap_servers=cluster.bootstrap,
        schema=SCHEMA,
        batch_size=1,
        max_delay=max_delay,
        discover_interval=None,
        config=QUIET,
    )
    client = ScriptedClient(topic, sizes)
    starts = dict.fromkeys(sizes, 0)
    reader = KafkaReader(
        src, client, Health(src.label), starts, dict(sizes), dict(sizes), set(), None,  # type: ignore[arg-type]
        discover=False,
    )  # fmt: skip
    return reader, client


def drain(reader: KafkaReader, done: Callable[[list[SourceEvent]], bool]) -> list[SourceEvent]:
    got: list[SourceEvent] = []
    deadline = time.monotonic() + PATIENCE
    while not done(got):
        assert time.monotonic() < deadline, f"gave up waiting; events so far: {got}"
        ev = reader.poll(0.1)
        if ev is not None:
            got.append(ev)
        elif reader.exhausted:
            break
    return got


def shown(events: list[SourceEvent]) -> list[tuple[Any, ...]]:
    """Each event as (split, position, first ts or None, dead letters) or ("end", split)."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, SplitEnd):
            out.append(("end", e.split))
        elif isinstance(e, Data):
            ts = None if e.batch is None else e.batch["ts"][0].as_py()
            out.append((e.split, e.position, ts, 0 if e.dead is None else e.dead.num_rows))
    return out


def test_a_partition_delivered_ahead_waits_for_the_one_behind(
    cluster: MockCluster, four_partitions: str
) -> None:
    reader, client = scripted_reader(cluster, four_partitions, {0: 3, 1: 2})
    reader.align("ts", 0)
    # partition 0 arrives whole (a record that is not JSON among it); 1 is still in
    # the broker: nothing goes out, and 0 ends only once its data has gone
    client.deliver(0, [record(100), b"{not json", record(300)])
    client.wait_idle()
    assert reader.poll(0.0) is None
    st = reader.status().splits
    assert not st[0].caught_up
    assert st[0].lag == 3  # the position handed out is still the start
    assert not st[1].caught_up
    client.deliver(1, [record(50), record(200)])
    events = drain(reader, lambda e: False)
    assert shown(events) == [
        (1, 1, 50, 0),
        (0, 1, 100, 0),
        (0, 2, None, 1),  # the dead letter, in its place in partition 0
        (1, 2, 200, 0),
        (0, 3, 300, 0),
        ("end", 0),
        ("end", 1),
    ]
    assert reader.exhausted
    reader.close()


def test_partitions_merge_by_event_time_up_to_the_drift(
    cluster: MockCluster, four_partitions: str
) -> None:
    reader, client = scripted_reader(cluster, four_partitions, {0: 4, 1: 4})
    reader.align("ts", 25)
    client.deliver(0, [record(t) for t in (10, 20, 30, 40)])
    client.deliver(1, [record(5)])
    client.wait_idle()
    # partition 1 stands at 5 with more in the broker: 0 goes up to 5 + drift
    events = drain(reader, lambda e: len(e) == 4)
    assert shown(events) == [(1, 1, 5, 0), (0, 1, 10, 0), (0, 2, 20, 0), (0, 3, 30, 0)]
    assert reader.poll(0.0) is None
    assert not reader.status().splits[0].caught_up  # 40 is held
    client.deliver(1, [record(15)])
    client.wait_idle()
    events = drain(reader, lambda e: len(e) == 3)
    assert shown(events) == [(1, 2, 15, 0), (0, 4, 40, 0), ("end", 0)]
    client.deliver(1, [record(60), record(70)])
    events = drain(reader, lambda e: False)
    assert shown(events) == [(1, 3, 60, 0), (1, 4, 70, 0), ("end", 1)]
    reader.close()


def test_max_delay_bounds_the_wait(cluster: MockCluster, four_partitions: str) -> None:
    reader, client = scripted_reader(cluster, four_partitions, {0: 2, 1: 1}, max_delay=0.2)
    reader.align("ts", 0)
    client.deliver(0, [record(100), record(200)])
    # partition 1 never delivers until its wait is over: 0's batches go anyway
    events = drain(reader, lambda e: len(e) == 3)
    assert shown(events) == [(0, 1, 100, 0), (0, 2, 200, 0), ("end", 0)]
    client.deliver(1, [record(50)])
    events = drain(reader, lambda e: False)
    assert shown(events) == [(1, 1, 50, 0), ("end", 1)]
    reader.close()


def test_a_reader_not_told_hands_out_as_it_comes(
    cluster: MockCluster, four_partitions: str
) -> None:
    reader, client = scripted_reader(cluster, four_partitions, {0: 2, 1: 1})
    client.deliver(0, [record(100), record(200)])
    events = drain(reader, lambda e: len(e) == 3)
    assert shown(events) == [(0, 1, 100, 0), (0, 2, 200, 0), ("end", 0)]
    client.deliver(1, [record(50)])
    events = drain(reader, lambda e: False)
    assert shown(events) == [(1, 1, 50, 0), ("end", 1)]
    reader.close()


# ---------------------------------------------------------------------- jobs on the mock


N_ROWS = 3_000
DRIFT = 50


@pytest.fixture(scope="module")
def skewed_topic(cluster: MockCluster) -> tuple[str, pl.DataFrame]:
    """Rows 10 apart in time, each to a partition drawn at rates 55/25/15/5 %: every
    partition is in time order, and a batch of the sparse one spans ~11x the time of a
    batch of the dense one."""
    name = f"skewed-{os.getpid()}"
    ts = np.arange(N_ROWS, dtype=np.int64) * 10
    parts = np.random.default_rng(11).choice(4, size=N_ROWS, p=[0.55, 0.25, 0.15, 0.05])
    p = cluster.producer()
    for i, (t, k) in enumerate(zip(ts.tolist(), parts.tolist(), strict=True)):
        while True:
            try:
                p.produce(name, record(t, i), partition=k)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(30) == 0
    df = pl.DataFrame(
        {"ts": ts, "host": [f"h{i % 3}" for i in range(N_ROWS)], "cpu": np.arange(N_ROWS) * 0.5}
    )
    ref = (
        df.with_columns(window_start=pl.col("ts") // 100 * 100)
        .group_by("host", "window_start")
        .agg(pl.len(), pl.col("cpu").sum())
        .with_columns(window_end=pl.col("window_start") + 100)
        .select("host", "window_start", "window_end", "len", "cpu")
        .sort("host", "window_start")
    )
    return name, ref


@pytest.fixture
def handed_out(monkeypatch: pytest.MonkeyPatch) -> tuple[list[SourceEvent], list[KafkaReader]]:
    """The events the Kafka readers of a job hand out, in order, and the readers told to
    align. Each reader thread starts consuming once align() was called: the runtime
    calls it right after open(), and a batch handed out before (the thread runs from
    open() on) would not be held; the test closes that race."""
    events: list[SourceEvent] = []
    aligned: list[KafkaReader] = []
    go = threading.Event()
    real_loop, real_align = KafkaReader._loop, KafkaReader.align

    def align(self: KafkaReader, column: str, drift: int) -> None:
        real_align(self, column, drift)
        aligned.append(self)
        go.set()

    def loop(self: KafkaReader, put: Callable[[SourceEvent], bool]) -> None:
        assert go.wait(PATIENCE), "the runtime never called align()"

        def recorded(event: SourceEvent) -> bool:
            events.append(event)
            return put(event)

        real_loop(self, recorded)

    monkeypatch.setattr(KafkaReader, "align", align)
    monkeypatch.setattr(KafkaReader, "_loop", loop)
    return events, aligned


@pytest.mark.parametrize("batch_size", [1, 17, 65_536])
def test_a_job_on_skewed_partitions_reads_them_in_time_order(
    cluster: MockCluster,
    skewed_topic: tuple[str, pl.DataFrame],
    handed_out: tuple[list[SourceEvent], list[KafkaReader]],
    batch_size: int,
) -> None:
    name, ref = skewed_topic
    events, aligned = handed_out
    stream = vs.from_kafka(
        name,
        bootstrap_servers=cluster.bootstrap,
        schema=SCHEMA,
        stop="latest",
        batch_size=batch_size,
        # long enough never to release a batch before the partition behind delivers
        max_delay="10s",
        **QUIET,
    )
    got = (
        stream.with_watermark("ts", DRIFT)
        .window(vs.tumbling(100), by="host")
        .agg(pl.len(), pl.col("cpu").sum())
        .collect()
        .sort("host", "window_start")
    )
    assert_frame_equal(got, ref, check_dtypes=False)
    assert len(aligned) == 1
    aligner = aligned[0]._aligner
    assert aligner is not None
    assert aligner.forced == 0  # no batch went for the memory cap or max_delay
    data = [e for e in events if isinstance(e, Data) and e.batch is not None]
    assert sum(e.batch.num_rows for e in data) == N_ROWS
    # in time order up to the drift: no batch starts more than DRIFT before the start of
    # one handed out earlier
    first = -(2**63)
    for e in data:
        span = event_time_span(e.batch, "ts")
        assert span is not None
        assert span[0] >= first - DRIFT, (e.split, e.position, span, first)
        first = max(first, span[0])
    # per partition: positions go up, and its end comes after its last batch
    for i in range(4):
        mine = [k for k, e in enumerate(events) if e.split == i]  # type: ignore[union-attr]
        positions = [events[k].position for k in mine if isinstance(events[k], Data)]  # type: ignore[union-attr]
        assert positions == sorted(set(positions))
        assert isinstance(events[mine[-1]], SplitEnd)
