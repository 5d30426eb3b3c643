"""sink_kafka (json) against a raw confluent-kafka produce loop of the same payloads.

Both arms run against librdkafka's mock cluster (tests/kafka_mock.py, 3 brokers) with the
same producer settings (idempotent, zstd, linger.ms=5), each round into a fresh topic,
and each includes creating its producer and the final flush (every message
acknowledged). Ours: ``from_polars(telemetry) -> sink_kafka(format="json", key="host")``,
so it also encodes the rows (Polars' JSON encoding), derives the keys and adds the
``vstream-epoch`` / ``vstream-seq`` headers; the peer produces payloads encoded before
the timing, with no key and no headers. A second pair runs the sink with checkpoints
(an epoch every 5 batches: staged as Arrow IPC, produced once the checkpoint is durable).
Every topic is counted afterwards: produced == rows in every arm.

Run: ``python -m pytest benchmarks/test_kafka_sink.py`` (quick: ``VSTREAM_BENCH_QUICK=1 ...
--benchmark-disable``).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import polars as pl
import pytest
from _bench import paired, size

import vstream as vs

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from kafka_mock import MockCluster

N = size(200_000, 4_000)
BATCH = 10_000
CONF = {"compression.type": "zstd", "linger.ms": 5, "log_level": 3}
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    with MockCluster() as c:
        yield c


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    # ~100-byte JSON rows: ts, host, region, cpu, latency
    return vs.datasets.telemetry(N, hosts=1_000).select(
        "ts", "host", "region", "cpu", "latency_ms"
    )


def _count(cluster: MockCluster, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "count", "log_level": 3})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        marks = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts]
        return sum(high - low for low, high in marks)
    finally:
        c.close()


def _pair(benchmark, cluster, frame, tmp_path, *, checkpoint: bool) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka import Producer

    payloads = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series()
    payloads = payloads.cast(pl.Binary).to_list()
    topics: list[str] = []

    def ours() -> None:
        topic = f"sink-{next(_names)}"
        topics.append(topic)
        ckpt = {"checkpoint_dir": tmp_path / topic, "checkpoint_interval": 5} if checkpoint else {}
        vs.from_polars(frame, batch_size=BATCH).sink_kafka(
            topic,
            bootstrap_servers=cluster.bootstrap,
            key="host",
            **ckpt,  # type: ignore[arg-type]
            **CONF,
        )

    def peer() -> None:
        topic = f"raw-{next(_names)}"
        topics.append(topic)
        p = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, **CONF})
        produce = p.produce
        i, n = 0, len(payloads)
        while i < n:
            try:
                for i in range(i, n):  # noqa: B020 - resumes where a full queue stopped it
                    produce(topic, payloads[i])
                i = n
            except BufferError:
                p.poll(0.05)
        assert p.flush(60) == 0

    mode = "checkpointed" if checkpoint else "plain"
    paired(
        benchmark,
        ours,
        peer,
        name=f"vstream sink_kafka json ({mode})",
        peer_name=f"confluent-kafka produce loop ({mode} pair)",
        events=N,
        rounds=5,
    )
    for topic in topics:
        assert _count(cluster, topic) == N, topic


def test_sink_kafka_json(benchmark, cluster, frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _pair(benchmark, cluster, frame, tmp_path, checkpoint=False)


def test_sink_kafka_json_checkpointed(benchmark, cluster, frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _pair(benchmark, cluster, frame, tmp_path, checkpoint=True)
