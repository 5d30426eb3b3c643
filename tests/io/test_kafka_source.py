"""vs.from_kafka against librdkafka's mock cluster (tests/kafka_mock.py): start and stop
forms, extra columns, formats, dead letters, data loss on restore, pattern topics and
topics that appear later, offsets committed after a checkpoint, status() and lag, and
batching independence. The SIGKILL series is tests/io/test_kafka_crash.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from polars.testing import assert_frame_equal

import vstream as vs
from kafka_mock import MockCluster
from vstream.io.base import Data, Reader, SourceEvent, SplitAdded, SplitEnd, SplitPosition
from vstream.io.kafka import KafkaSource

SCHEMA = {"ts": pl.Int64, "host": pl.String, "cpu": pl.Float64}
QUIET = {"log_level": 3}
PATIENCE = 30.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[MockCluster]:
    with MockCluster() as c:
        yield c


_topics = iter(range(1_000_000))


@pytest.fixture
def topic() -> str:
    """A fresh topic name (the mock creates it with 4 partitions on first produce)."""
    return f"t{next(_topics)}-{os.getpid()}"


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"ts": i * 10, "host": f"h{i % 3}", "cpu": round(i * 0.5, 1)}
        for i in range(start, start + n)
    ]


def payloads(records: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def kafka(cluster: MockCluster, topic: str | list[str], **kw: Any) -> vs.Stream:
    kw.setdefault("schema", SCHEMA)
    kw.setdefault("stop", "latest")
    return vs.from_kafka(topic, bootstrap_servers=cluster.bootstrap, **QUIET, **kw)


def source(cluster: MockCluster, topic: str | list[str], **kw: Any) -> KafkaSource:
    kw.setdefault("schema", SCHEMA)
    return KafkaSource(topic, bootstrap_servers=cluster.bootstrap, config=QUIET, **kw)


def events_until(
    reader: Reader, done: Callable[[list[SourceEvent]], bool], timeout: float = PATIENCE
) -> list[SourceEvent]:
    got: list[SourceEvent] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        assert time.monotonic() < deadline, f"gave up waiting; events so far: {got}"
        ev = reader.poll(0.1)
        if ev is not None:
            got.append(ev)
        elif reader.exhausted:
            break
    return got


def data_rows(events: list[SourceEvent]) -> int:
    return sum(e.batch.num_rows for e in events if isinstance(e, Data) and e.batch is not None)


def by_ts(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("ts")


# ---------------------------------------------------------------------- reading


def test_bounded_read_gives_every_message_with_the_extra_columns(
    cluster: MockCluster, topic: str
) -> None:
    recs = rows(40)
    p = cluster.producer()
    for i, v in enumerate(payloads(recs)):
        p.produce(
            topic,
            v,
            key=f"k{i}".encode(),
            partition=i % 4,
            timestamp=1_700_000_000_000 + i,
            headers=[("h", f"v{i}".encode())],
        )
    assert p.flush(10) == 0
    extra = ["key", "topic", "partition", "offset", "timestamp", "headers"]
    s = kafka(cluster, topic, columns_from_kafka=extra)
    got = by_ts(s.collect())
    assert got.columns == ["ts", "host", "cpu", *extra]
    assert_frame_equal(got.select("ts", "host", "cpu"), pl.DataFrame(recs, schema=SCHEMA))
    i = got["ts"] // 10
    assert got["key"].to_list() == [f"k{k}".encode() for k in i]
    assert got["topic"].unique().to_list() == [topic]
    assert got["partition"].to_list() == (i % 4).cast(pl.Int32).to_list()
    assert got["offset"].to_list() == (i // 4).to_list()
    assert got["timestamp"].dt.epoch("ms").to_list() == (1_700_000_000_000 + i).to_list()
    assert got["headers"].to_list() == [[{"key": "h", "value": f"v{k}".encode()}] for k in i]


def test_splits_are_named_topic_slash_partition(cluster: MockCluster, topic: str) -> None:
    cluster.produce(topic, payloads(rows(8)))
    assert source(cluster, topic).split_names() == [f"{topic}/{p}" for p in range(4)]


def test_start_and_stop_forms(cluster: MockCluster, topic: str) -> None:
    p = cluster.producer()
    recs = rows(40)
    for i, v in enumerate(payloads(recs)):
        p.produce(topic, v, partition=i % 4, timestamp=1_000_000 + i * 1_000)
    assert p.flush(10) == 0
    everything = kafka(cluster, topic).collect().height
    assert everything == 40
    assert kafka(cluster, topic, start="latest").collect().height == 0
    # a start other than "earliest" is pinned: the first events carry it, so the first
    # checkpoint keeps it even before any message was read
    reader = source(cluster, topic, start="latest").open()
    first = events_until(reader, lambda e: len(e) == 4)
    reader.close()
    assert [(e.split, e.batch, e.position) for e in first] == [(p, None, 10) for p in range(4)]
    # offsets per partition (left out: earliest), by number or by name
    got = by_ts(kafka(cluster, topic, start={0: 5, f"{topic}/1": 9}).collect())
    assert got.height == 40 - 5 - 9
    assert (got.filter(pl.col("ts") // 10 % 4 == 0)["ts"] // 40).min() == 5
    # a timestamp: the first message at or after it (offsets_for_times). The mock cluster
    # answers no ListOffsets by time (it says "none at or after it" for any timestamp),
    # so only that answer's meaning is checked here: nothing to read from there
    at = 1_000_000 + 20 * 1_000
    assert kafka(cluster, topic, start=at).collect().height == 0
    aware = dt.datetime.fromtimestamp(at / 1000, tz=dt.UTC)
    assert kafka(cluster, topic, start=aware).collect().height == 0
    with pytest.raises(vs.PipelineError, match="time zone"):
        kafka(cluster, topic, start=dt.datetime(2024, 1, 1))
    # stop: a mapping (left out: the end); a timestamp with no message at or after it
    # (as the mock answers any) is the end offset
    assert kafka(cluster, topic, stop={0: 2, 1: 0}).collect().height == 2 + 0 + 10 + 10
    assert kafka(cluster, topic, stop=at).collect().height == 40
    # latest at the start of the run: later messages are left for the next run
    s = kafka(cluster, topic)
    cluster.produce(topic, payloads(rows(4, start=40)))
    assert s.collect().height == 44


def test_refused_options_name_the_fix(cluster: MockCluster, topic: str) -> None:
    cluster.produce(topic, payloads(rows(4)))
    with pytest.raises(vs.PipelineError, match="needs schema="):
        kafka(cluster, topic, schema=None)
    with pytest.raises(vs.PipelineError, match="format="):
        kafka(cluster, topic, format="avro")
    with pytest.raises(vs.PipelineError, match="columns_from_kafka"):
        kafka(cluster, topic, columns_from_kafka=["value"])
    with pytest.raises(vs.SchemaError, match="clash"):
        kafka(cluster, topic, schema={"offset": pl.Int64}, columns_from_kafka=["offset"])
    with pytest.raises(vs.PipelineError, match=r"enable\.auto\.commit"):
        vs.from_kafka(
            topic,
            bootstrap_servers=cluster.bootstrap,
            schema=SCHEMA,
            **{"enable.auto.commit": True},
        )
    with pytest.raises(vs.SourceError, match=r"do not exist.*pattern"):
        kafka(cluster, "no-such-topic")
    with pytest.raises(vs.PipelineError, match="start="):
        kafka(cluster, topic, start="newest")


def test_unbounded_collect_is_refused(cluster: MockCluster, topic: str) -> None:
    cluster.produce(topic, payloads(rows(4)))
    with pytest.raises(vs.UnboundedError):
        kafka(cluster, topic, stop=None).collect()


# ---------------------------------------------------------------------- formats


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def test_arrow_format_learns_the_schema_from_the_first_message(
    cluster: MockCluster, topic: str
) -> None:
    tables = [pl.DataFrame(rows(5, start=5 * k), schema=SCHEMA).to_arrow() for k in range(6)]
    cluster.produce(topic, [ipc(t) for t in tables])
    s = kafka(cluster, topic, format="arrow", schema=None, columns_from_kafka=["offset"])
    got = by_ts(s.collect())
    assert_frame_equal(got.drop("offset"), pl.DataFrame(rows(30), schema=SCHEMA))
    assert got["offset"].to_list() == [k // 4 for k in range(6) for _ in range(5)]


def test_raw_format_gives_the_bytes(cluster: MockCluster, topic: str) -> None:
    values = [bytes([i]) * (i + 1) for i in range(12)]
    cluster.produce(topic, values)
    got = kafka(cluster, topic, format="raw", schema=None).collect()
    assert got.columns == ["value"]
    assert sorted(got["value"].to_list()) == sorted(values)


# ---------------------------------------------------------------------- dead letters


def dead_reasons(df: pl.DataFrame) -> list[str]:
    return sorted(df["reason"].to_list())


def test_json_dead_letters_name_topic_partition_offset_and_column(
    cluster: MockCluster, topic: str
) -> None:
    good = payloads(rows(6))
    bad: list[bytes | None] = [
        None,  # a tombstone
        b'{"ts": 1, "host": "\xff\xfe", "cpu": 1.0}',  # invalid UTF-8
        b'{"ts": 2, "host": ',  # invalid JSON
        b'{"ts": "soon", "host": "a", "cpu": 1.0}',  # wrong type
        b"[1, 2]",  # not an object
        b"",  # empty
        b'{"ts": 3, "host": "' + b"x" * 2_000 + b'", "cpu": 1.0}',  # oversized
    ]
    p = cluster.producer()
    for v in good[:3]:
        p.produce(topic, v, partition=2)
    for v in bad:
        p.produce(topic, v, partition=2)
    for v in good[3:]:
        p.produce(topic, v, partition=2)
    assert p.flush(10) == 0
    s = kafka(cluster, topic, max_message_bytes=1_000)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert_frame_equal(by_ts(main), pl.DataFrame(rows(6), schema=SCHEMA))
    reasons = sorted(
        dead["reason"].to_list(), key=lambda r: int(r.split("offset ")[1].split(":")[0])
    )
    assert len(reasons) == len(bad)
    for k, reason in enumerate(reasons):
        assert reason.startswith(f"topic {topic!r} partition 2 offset {3 + k}: "), reason
    assert "tombstone" in reasons[0]
    assert "column 'host'" in reasons[1]
    assert "UTF-8" in reasons[1]
    assert "invalid JSON" in reasons[2]
    assert "column 'ts'" in reasons[3]
    assert "Int64" in reasons[3]
    assert "object" in reasons[4]
    assert "empty" in reasons[5]
    assert "max_message_bytes=1,000" in reasons[6]
    assert set(dead["step"]) == {"from_kafka"}


def test_a_payload_with_line_breaks_is_one_record(cluster: MockCluster, topic: str) -> None:
    pretty = json.dumps({"ts": 5, "host": "a", "cpu": 1.5}, indent=2).encode()
    broken = b'{"ts": 6, "host": "line\nbreak", "cpu": 1.0}'  # raw newline inside a string
    cluster.produce(topic, [pretty, broken, *payloads(rows(3))], partitions=1)
    s = kafka(cluster, topic)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert sorted(main["ts"].to_list()) == [0, 5, 10, 20]
    assert dead.height == 1
    assert "offset 1: invalid JSON" in dead["reason"][0]


def test_arrow_and_raw_dead_letters(cluster: MockCluster, topic: str) -> None:
    t = pl.DataFrame(rows(3), schema=SCHEMA).to_arrow()
    other = pa.table({"ts": ["a"], "host": ["b"], "cpu": [1.0]})
    # a string column whose bytes are not UTF-8: the IPC writer does not check, we must
    not_utf8 = t.slice(0, 1).set_column(
        1, "host", pa.array([b"\xff\xfe"], pa.binary()).view(pa.string())
    )
    cluster.produce(
        topic,
        [ipc(t), b"not arrow", ipc(other), ipc(t.drop(["cpu"])), ipc(not_utf8)],
        partitions=1,
    )
    s = kafka(cluster, topic, format="arrow", schema=SCHEMA)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main.height == 3
    reasons = sorted(dead["reason"].to_list())
    assert len(reasons) == 4
    assert "offset 1: not a valid Arrow IPC stream" in reasons[0]
    assert "offset 2: wrong schema: column 'ts' is string" in reasons[1]
    assert "offset 3: wrong schema: column 'cpu' is missing" in reasons[2]
    assert "offset 4: column 'host' holds invalid Arrow data" in reasons[3]
    assert "UTF8" in reasons[3]

    raw_topic = topic + "-raw"
    p = cluster.producer()
    for v in (b"ok", None, b"y" * 50, b"fine"):
        p.produce(raw_topic, v, partition=0)
    assert p.flush(10) == 0
    s = kafka(cluster, raw_topic, format="raw", schema=None, max_message_bytes=10)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["value"].to_list() == [b"ok", b"fine"]
    assert ["tombstone" in r for r in sorted(dead["reason"])] == [True, False]


# ---------------------------------------------------------------------- restore, data loss


def test_resume_goes_on_after_the_checkpointed_offset(cluster: MockCluster, topic: str) -> None:
    cluster.produce(topic, payloads(rows(20)), partitions=1)
    src = source(cluster, topic, stop="latest")
    reader = src.open({0: SplitPosition(12)})
    evs = events_until(reader, lambda e: any(isinstance(x, SplitEnd) and x.split == 0 for x in e))
    reader.close()
    got = [
        t
        for e in evs
        if isinstance(e, Data) and e.batch is not None
        for t in e.batch["ts"].to_pylist()
    ]
    assert got == [r["ts"] for r in rows(20)[12:]]
    assert [e.position for e in evs if isinstance(e, Data)][-1] == 20


def retention_loss(cluster: MockCluster, topic: str) -> None:
    """Partition 0 of ``topic``: 3 records, then 16 incompressible 600 kB messages, over
    the ~5 MiB a mock partition keeps: its oldest offsets are gone."""
    cluster.produce(topic, payloads(rows(3)), partitions=1)
    p = cluster.producer(**{"compression.type": "none", "linger.ms": 0})
    for _ in range(16):
        p.produce(topic, os.urandom(600_000), partition=0)
        p.flush(10)
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "probe", **QUIET})
    low, _ = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert low > 3


def test_on_data_loss_fail_and_skip(cluster: MockCluster, topic: str) -> None:
    retention_loss(cluster, topic)
    src = source(cluster, topic, stop="latest", format="raw", schema=None)
    with pytest.raises(
        vs.CheckpointError,
        match=r"resume .*/0 at offset 2: offsets 2 to \d+ were deleted.*on_data_loss='skip'",
    ):
        src.open({0: SplitPosition(2)})
    skip = source(
        cluster,
        topic,
        stop="latest",
        format="raw",
        schema=None,
        on_data_loss="skip",
        columns_from_kafka=["offset"],
    )
    reader = skip.open({0: SplitPosition(2)})
    evs = events_until(reader, lambda e: sum(isinstance(x, SplitEnd) for x in e) == 4)
    reader.close()
    offsets = [
        o
        for e in evs
        if isinstance(e, Data) and e.batch is not None
        for o in e.batch["offset"].to_pylist()
    ]
    low = offsets[0]
    assert low > 3  # it went on from the earliest offset left
    assert offsets == list(range(low, 19))
    # beyond the end (a recreated topic) is data loss too
    with pytest.raises(vs.CheckpointError, match="recreated"):
        src.open({0: SplitPosition(10_000)})


@pytest.mark.parametrize("on_data_loss", ["fail", "skip"])
def test_retention_overtaking_a_running_reader(
    cluster: MockCluster, topic: str, on_data_loss: str
) -> None:
    """The reader has fetched offsets 0-5 of partition 0 and waits at 6; retention then
    deletes past 6: the read fails naming the fix, or with on_data_loss="skip" goes on
    from the earliest offset left.

    Deterministic: nothing is polled until the reader thread blocks on its full queue
    (it then makes no call on its client), and partition 0 is paused from the test while
    the retention happens, so no fetch can race it."""
    cluster.produce(topic, payloads(rows(6)), partitions=1)
    src = source(
        cluster,
        topic,
        format="raw",
        schema=None,
        on_data_loss=on_data_loss,
        columns_from_kafka=["offset"],
        batch_size=1,
        consume_size=1,
        discover_interval=None,
    )
    reader = src.open()
    wait_until(reader._queue.full)  # its queue of events: 4 of the 6 messages
    consumer = reader._consumer  # its client, idle now
    part = TopicPartition(topic, 0)
    consumer.pause([part])
    p = cluster.producer(**{"compression.type": "none", "linger.ms": 0})
    for _ in range(16):
        p.produce(topic, os.urandom(600_000), partition=0)
        p.flush(10)
    probe = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "probe", **QUIET})
    low, high = probe.get_watermark_offsets(part, timeout=10)
    probe.close()
    assert low > 6
    consumer.resume([part])
    if on_data_loss == "fail":
        with pytest.raises(vs.SourceError, match=rf"{topic}/0: .*on_data_loss='skip'"):
            events_until(reader, lambda e: False)
    else:

        def offsets(evs: list[SourceEvent]) -> list[int]:
            return [
                o
                for e in evs
                if isinstance(e, Data) and e.batch is not None
                for o in e.batch["offset"].to_pylist()
            ]

        got = offsets(events_until(reader, lambda e: high - 1 in offsets(e)))
        # what was read before (the 4 queued, the one waiting to be queued: those the
        # client had handed out), then from the earliest offset left to the end
        k = got.index(low)
        assert got[:k] == list(range(k))
        assert 4 <= k <= 6
        assert got[k:] == list(range(low, high))
    reader.close()


# ---------------------------------------------------------------------- topics, discovery


def test_a_list_of_topics_and_a_pattern(cluster: MockCluster, topic: str) -> None:
    a, b = f"{topic}-pa", f"{topic}-pb"
    cluster.produce(a, payloads(rows(8)))
    cluster.produce(b, payloads(rows(8, start=8)))
    listed = kafka(cluster, [a, b], columns_from_kafka=["topic"]).collect()
    assert listed.height == 16
    assert listed.group_by("topic").len().sort("topic")["len"].to_list() == [8, 8]
    pattern = kafka(cluster, f"^{topic}-p.$")
    assert pattern.collect().height == 16
    names = source(cluster, f"^{topic}-p.$").split_names()
    assert names == [f"{a}/{p}" for p in range(4)] + [f"{b}/{p}" for p in range(4)]


def test_a_topic_that_appears_later_becomes_new_splits(cluster: MockCluster, topic: str) -> None:
    first, later = f"{topic}-d1", f"{topic}-d2"
    cluster.produce(first, payloads(rows(4)))
    src = source(cluster, f"^{topic}-d", discover_interval=0.2)
    assert src.split_names() == [f"{first}/{p}" for p in range(4)]
    reader = src.open()
    events_until(reader, lambda e: data_rows(e) == 4)
    cluster.produce(later, payloads(rows(8, start=100)))
    evs = events_until(reader, lambda e: data_rows(e) == 8)
    reader.close()
    added = [e for e in evs if isinstance(e, SplitAdded)]
    assert [(e.split, e.name) for e in added] == [(4 + p, f"{later}/{p}") for p in range(4)]
    # each SplitAdded comes before any data of its split
    for e in added:
        at = evs.index(e)
        assert not any(isinstance(x, Data) and x.split == e.split for x in evs[:at])
    new_rows = [
        t
        for e in evs
        if isinstance(e, Data) and e.batch is not None
        for t in e.batch["ts"].to_pylist()
    ]
    assert sorted(new_rows) == [r["ts"] for r in rows(8, start=100)]
    # a restart lists them among its splits from the start
    assert source(cluster, f"^{topic}-d").split_names()[4:] == [f"{later}/{p}" for p in range(4)]


def wait_until(ok: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not ok():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_a_job_reads_a_topic_that_appears_while_it_runs(cluster: MockCluster, topic: str) -> None:
    """Through the runtime: the new partitions are splits of the run (SplitAdded), their
    rows arrive, and the metrics show every split's lag, caught up at the end."""
    first, later = f"{topic}-j1", f"{topic}-j2"
    cluster.produce(first, payloads(rows(4)))
    job = kafka(cluster, f"^{topic}-j", stop=None, discover_interval=0.2).start()
    try:
        wait_until(lambda: job.results.height == 4)
        cluster.produce(later, payloads(rows(8, start=100)))
        wait_until(lambda: job.results.height == 12)
        names = {f"{t}/{p}" for t in (first, later) for p in range(4)}
        wait_until(
            lambda: (
                set(job.metrics.split_lag) == names and sum(job.metrics.split_lag.values()) == 0
            )
        )
        assert job.running
        assert job.metrics.connected
    finally:
        job.stop()
    assert sorted(job.results["ts"].to_list()) == [r["ts"] for r in rows(4) + rows(8, start=100)]


# ---------------------------------------------------------------------- commits, status


def test_offsets_are_committed_to_the_group_after_a_checkpoint(
    cluster: MockCluster, topic: str, tmp_path: Path
) -> None:
    cluster.produce(topic, payloads(rows(30)))
    s = kafka(cluster, topic, group_id=f"g-{topic}", batch_size=4)
    s.sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2)
    assert pl.read_parquet(tmp_path / "out").height == 30
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{topic}", **QUIET})
    committed = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    c.close()
    ends = [len(range(p, 30, 4)) for p in range(4)]
    assert [tp.offset for tp in committed] == ends


def test_a_commit_is_not_held_up_by_the_consuming_reader(cluster: MockCluster, topic: str) -> None:
    """confluent-kafka serializes the calls on one client, and a thread consuming in a
    loop starves the others: the commit goes through a client of its own."""
    cluster.produce(topic, payloads(rows(8)))
    src = source(cluster, topic, group_id=f"g-{topic}", discover_interval=None)
    reader = src.open()
    events_until(reader, lambda e: data_rows(e) == 8)  # caught up: it polls in a loop
    done = threading.Event()

    def commit() -> None:
        src.on_checkpoint_complete(1, {f"{topic}/0": 2, f"{topic}/1": None})
        done.set()

    threading.Thread(target=commit, daemon=True).start()
    assert done.wait(PATIENCE)
    reader.close()
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{topic}", **QUIET})
    committed = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    c.close()
    assert committed[0].offset == 2
    assert committed[1].offset < 0  # nothing consumed there: nothing committed


def test_without_a_group_nothing_is_committed(
    cluster: MockCluster, topic: str, tmp_path: Path
) -> None:
    cluster.produce(topic, payloads(rows(8)))
    kafka(cluster, topic).sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    c = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": "vstream-from_kafka", **QUIET}
    )
    committed = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    c.close()
    assert all(tp.offset < 0 for tp in committed)


def wait_status(reader: Reader, ok: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        st = reader.status()
        if ok(st):
            return st
        assert time.monotonic() < deadline, f"status never got there: {st}"
        time.sleep(0.05)


def test_status_reports_lag_then_caught_up(cluster: MockCluster, topic: str) -> None:
    cluster.produce(topic, payloads(rows(400)))
    src = source(cluster, topic, batch_size=5, consume_size=5, discover_interval=None)
    reader = src.open()
    # nothing polled: the reader holds a few batches in its queue and waits; the rest lags
    st = wait_status(reader, lambda s: all(v.lag is not None for v in s.splits.values()))
    assert st.connected
    assert st.errors == 0
    assert sum(v.lag for v in st.splits.values()) > 0
    assert not all(v.caught_up for v in st.splits.values())
    events_until(reader, lambda e: data_rows(e) == 400)
    st = wait_status(reader, lambda s: all(v.caught_up for v in s.splits.values()))
    assert [v.lag for v in st.splits.values()] == [0, 0, 0, 0]
    assert set(st.splits) == {0, 1, 2, 3}
    reader.close()


def test_an_outage_shows_as_disconnected_and_counted() -> None:
    c = MockCluster()
    c.produce("out", payloads(rows(4)))
    src = KafkaSource("out", bootstrap_servers=c.bootstrap, schema=SCHEMA, config=QUIET)
    reader = src.open()
    events_until(reader, lambda e: data_rows(e) == 4)
    c.close()  # the brokers go away
    st = wait_status(reader, lambda s: not s.connected)
    assert st.errors >= 1
    assert not any(v.connected for v in st.splits.values())
    assert not any(v.caught_up for v in st.splits.values())
    assert reader.poll(0.2) is None
    assert not reader.exhausted
    reader.close()


# ---------------------------------------------------------------------- batching independence


def windows(s: vs.Stream) -> pl.DataFrame:
    out = (
        s.with_watermark("ts", 50)
        .window(vs.tumbling(100), by="host")
        .agg(pl.len(), pl.col("cpu").sum(), pl.col("cpu").max().alias("cpu_max"))
        .collect()
    )
    return out.sort("host", "window_start")


@pytest.fixture(scope="module")
def chunked_topic(cluster: MockCluster) -> tuple[str, pl.DataFrame]:
    name = f"chunks-{os.getpid()}"
    recs = rows(2_000)
    cluster.produce(name, payloads(recs))
    df = pl.DataFrame(recs, schema=SCHEMA)
    ref = (
        df.with_columns(window_start=pl.col("ts") // 100 * 100)
        .group_by("host", "window_start")
        .agg(pl.len(), pl.col("cpu").sum(), pl.col("cpu").max().alias("cpu_max"))
        .with_columns(window_end=pl.col("window_start") + 100)
        .select("host", "window_start", "window_end", "len", "cpu", "cpu_max")
        .sort("host", "window_start")
    )
    return name, ref


@pytest.mark.parametrize(
    ("batch_size", "consume_size"), [(1, 1), (7, 3), (64, 1_000), (65_536, 10_000), (13, 97)]
)
def test_windows_do_not_depend_on_consume_chunking(
    cluster: MockCluster,
    chunked_topic: tuple[str, pl.DataFrame],
    batch_size: int,
    consume_size: int,
) -> None:
    name, ref = chunked_topic
    got = windows(kafka(cluster, name, batch_size=batch_size, consume_size=consume_size))
    assert_frame_equal(got, ref, check_dtypes=False)
