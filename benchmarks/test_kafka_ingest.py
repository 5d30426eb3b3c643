"""Kafka ingest on librdkafka's mock cluster (3 brokers, 4 partitions, zstd).

JSON: ~80-byte Q1-like telemetry messages (ts, host, region, cpu, latency_ms) read by
``vs.from_kafka`` -> a 1 s tumbling window per host with Q1's aggregates -> discarded,
against the raw consumer loop alone (``consume(num_messages=10_000)`` and each message's
``value()``, nothing else), in alternating rounds. Arrow: IPC payloads of 10,000 rows each
through the same window, against ``vs.from_arrow`` over the same batches. Every arm
asserts it consumed every message produced (the mock keeps ~5 MiB per partition and drops
older data silently). A note splits the JSON arm's time into its parts (broker and
client, decode, engine), each measured alone.

Run: ``python -m pytest benchmarks/test_kafka_ingest.py`` (quick: ``VSTREAM_BENCH_QUICK=1 ...
--benchmark-disable``).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from _bench import compared, note, q1_aggs, size

import vstream as vs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kafka_mock import MockCluster

N = size(1_000_000, 20_000)
ARROW_ROWS = size(1_000_000, 40_000)
PER_MESSAGE = 10_000
SCHEMA = {
    "ts": pl.Int64,
    "host": pl.String,
    "region": pl.String,
    "cpu": pl.Float64,
    "latency_ms": pl.Int64,
}


def telemetry(n: int) -> pl.DataFrame:
    """Q1-like rows, 2 ms apart; cpu with 2 decimals (so zstd keeps a partition < 5 MiB)."""
    rng = np.random.default_rng(7)
    hosts = np.array([f"host-{i:03d}" for i in range(1_000)])
    regions = np.array(["eu-west", "us-east", "ap-south", "sa-east"])
    return pl.DataFrame(
        {
            "ts": np.arange(n, dtype=np.int64) * 2,
            "host": hosts[rng.integers(0, 1_000, n)],
            "region": regions[rng.integers(0, 4, n)],
            "cpu": np.round(rng.random(n) * 100, 2),
            "latency_ms": rng.integers(1, 500, n),
        }
    )


def produce(cluster: MockCluster, topic: str, values: list[bytes]) -> None:
    p = cluster.producer(**{"linger.ms": 50, "batch.num.messages": 10_000, "batch.size": 1 << 20})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v, partition=i & 3)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[MockCluster]:
    with MockCluster() as c:
        yield c


@pytest.fixture(scope="module")
def json_topic(cluster: MockCluster) -> tuple[str, list[bytes]]:
    values = telemetry(N).write_ndjson().encode().split(b"\n")[:-1]
    produce(cluster, "bench-json", values)
    return "bench-json", values


def q1(stream: vs.Stream) -> vs.Stream:
    return (
        stream.with_watermark("ts", 100).window(vs.tumbling(1_000), by="host").agg(*q1_aggs())  # type: ignore[arg-type]
    )


def counted(stream: vs.Stream, expected: int) -> Callable[[], None]:
    def run() -> None:
        out = q1(stream).collect()
        assert int(out["len"].sum()) == expected  # consumed == produced

    return run


def raw_loop(bootstrap: str, topic: str, expected: int) -> Callable[[], None]:
    from confluent_kafka import Consumer, TopicPartition

    def run() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "log_level": 3})
        c.assign([TopicPartition(topic, p, 0) for p in range(4)])
        n = 0
        while n < expected:
            msgs = c.consume(num_messages=10_000, timeout=1.0)
            for m in msgs:
                m.value()
            n += len(msgs)
        c.close()
        assert n == expected

    return run


def test_kafka_json_q1(benchmark, cluster, json_topic) -> None:  # type: ignore[no-untyped-def]
    topic, values = json_topic
    source = vs.from_kafka(
        topic, bootstrap_servers=cluster.bootstrap, schema=SCHEMA, stop="latest", log_level=3
    )
    best = compared(
        benchmark,
        {
            "kafka json -> Q1 window": counted(source, N),
            "raw consumer loop": raw_loop(cluster.bootstrap, topic, N),
        },
        events=N,
        pairs=(("kafka json -> Q1 window", "raw consumer loop"),),
        rounds=5,
    )
    if not best:
        return
    # where the time goes: each part alone
    t = time.perf_counter()
    frames = [
        pl.read_ndjson(io.BytesIO(b"\n".join(values[i : i + 65_536])), schema=SCHEMA)
        for i in range(0, len(values), 65_536)
    ]
    decode = time.perf_counter() - t
    table = pl.concat(frames).to_arrow()
    engine_run = counted(vs.from_arrow(table, batch_size=65_536), N)
    engine_run()
    t = time.perf_counter()
    engine_run()
    engine = time.perf_counter() - t
    note(
        f"kafka json, {N:,} messages: whole pipeline {best['kafka json -> Q1 window']:.2f} s; "
        f"raw consumer loop (broker + client + value()) {best['raw consumer loop']:.2f} s; "
        f"decode alone (read_ndjson of joined payloads) {decode:.2f} s; engine alone "
        f"(from_arrow -> Q1 window) {engine:.2f} s"
    )


@pytest.fixture(scope="module")
def arrow_topic(cluster: MockCluster) -> tuple[str, list[pa.RecordBatch]]:
    table = telemetry(ARROW_ROWS).to_arrow()
    batches = table.to_batches(max_chunksize=PER_MESSAGE)
    payloads = []
    for b in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, b.schema) as w:
            w.write_batch(b)
        payloads.append(sink.getvalue().to_pybytes())
    produce(cluster, "bench-arrow", payloads)
    return "bench-arrow", batches


def test_kafka_arrow_q1(benchmark, cluster, arrow_topic) -> None:  # type: ignore[no-untyped-def]
    topic, batches = arrow_topic
    source = vs.from_kafka(
        topic, bootstrap_servers=cluster.bootstrap, format="arrow", stop="latest", log_level=3
    )
    compared(
        benchmark,
        {
            "kafka arrow -> Q1 window": counted(source, ARROW_ROWS),
            "from_arrow -> Q1 window": counted(vs.from_arrow(batches), ARROW_ROWS),
        },
        events=ARROW_ROWS,
        pairs=(("kafka arrow -> Q1 window", "from_arrow -> Q1 window"),),
        rounds=5,
    )
