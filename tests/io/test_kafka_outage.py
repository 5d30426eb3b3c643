"""A real broker outage against librdkafka's mock cluster: brokers taken down and brought
back (``MockCluster.outage()``, librdkafka's mock API through ctypes). The reader reports
the outage (``status()``: disconnected, errors counted, nothing caught up) and loses no
row; a running job holds its watermark through an outage of twice ``idle_timeout``, so
the backlog is never late and the windows are those of a run without an outage."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import pytest
from confluent_kafka import Producer

import vstream as vs
from kafka_mock import MockCluster, MockLayoutError, _librdkafka, _mock_cluster
from vstream.io.base import Data, Reader, SourceEvent
from vstream.io.kafka import KafkaSource

SCHEMA = {"id": pl.Int64, "host": pl.String, "cpu": pl.Float64}
QUIET: dict[str, Any] = {"log_level": 0}  # the refused connections of an outage would fill the log
PATIENCE = 30.0
TOPIC = "outage"


@pytest.fixture
def cluster() -> Iterator[MockCluster]:
    """A cluster of its own: its brokers go down."""
    with MockCluster() as c:
        yield c


def rows(ids: range) -> list[bytes]:
    return [json.dumps({"id": i, "host": f"h{i % 3}", "cpu": i / 2}).encode() for i in ids]


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_status(reader: Reader, ok: Callable[[Any], bool], what: str) -> Any:
    box: list[Any] = []

    def check() -> bool:
        box[:] = [reader.status()]
        return bool(ok(box[0]))

    wait_for(check, what)
    return box[0]


def read_ids(reader: Reader, into: list[int], n: int) -> None:
    """Poll until ``into`` holds ``n`` ids."""
    deadline = time.monotonic() + PATIENCE
    while len(into) < n:
        assert time.monotonic() < deadline, f"read {len(into)} of {n} rows"
        ev: SourceEvent | None = reader.poll(0.1)
        if isinstance(ev, Data) and ev.batch is not None:
            into.extend(ev.batch["id"].to_pylist())


def buffered(cluster: MockCluster, ids: range) -> Any:
    """A producer holding ``ids`` while the brokers are down: it delivers them once they
    are back (``flush()``), a backlog made during the outage."""
    p = cluster.producer(**QUIET, **{"reconnect.backoff.max.ms": 500})
    for i, v in zip(ids, rows(ids), strict=True):
        p.produce(TOPIC, v, partition=i % 4)
    return p


# ---------------------------------------------------------------------- the helpers


def test_an_unknown_broker_is_refused(cluster: MockCluster) -> None:
    """The ctypes route works (a layout change fails here, not skipped) and the mock's
    own errors come back."""
    with pytest.raises(RuntimeError, match="broker 99 down failed"):
        cluster.broker_down(99)
    cluster.broker_down(cluster.broker_ids[0])
    cluster.broker_up(cluster.broker_ids[0])


def test_the_pointer_is_checked_before_use(cluster: MockCluster) -> None:
    """A producer without a mock cluster passes the type and name checks (the pointer
    is its rd_kafka_t) and is refused for want of a cluster; an object of another type
    is refused before any pointer is read."""
    lib = _librdkafka()
    plain = Producer({"bootstrap.servers": cluster.bootstrap, **QUIET})
    with pytest.raises(MockLayoutError, match="owns no mock cluster"):
        _mock_cluster(lib, plain)
    with pytest.raises(MockLayoutError, match="is not the C Producer"):
        _mock_cluster(lib, object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the reader


def test_an_outage_is_reported_and_loses_nothing(cluster: MockCluster) -> None:
    cluster.produce(TOPIC, rows(range(8)))
    src = KafkaSource(TOPIC, bootstrap_servers=cluster.bootstrap, schema=SCHEMA, config=QUIET)
    reader = src.open()
    got: list[int] = []
    try:
        read_ids(reader, got, 8)
        wait_status(reader, lambda s: all(v.caught_up for v in s.splits.values()), "caught up")
        with cluster.outage():
            st = wait_status(reader, lambda s: not s.connected, "the outage to show")
            assert st.errors >= 1
            assert not any(v.connected or v.caught_up for v in st.splits.values())
            p = buffered(cluster, range(8, 20))
            assert reader.poll(0.2) is None
            assert not reader.exhausted
        assert p.flush(PATIENCE) == 0
        read_ids(reader, got, 20)
        st = wait_status(
            reader,
            lambda s: s.connected and all(v.caught_up for v in s.splits.values()),
            "reconnected and caught up",
        )
        assert [v.lag for v in st.splits.values()] == [0, 0, 0, 0]
    finally:
        reader.close()
    assert sorted(got) == list(range(20))  # nothing lost, nothing twice


# ---------------------------------------------------------------------- a running job


def run(cluster: MockCluster, *, idle: float, outage: bool) -> tuple[pl.DataFrame, int, int]:
    """Ids 0-99, then (after an outage of twice ``idle`` if asked) ids 100-199, through
    a tumbling window of 10; returns the windows, the late events and the source errors."""
    cluster.produce(TOPIC, rows(range(100)))  # the topic exists before the job starts
    src = vs.from_kafka(
        TOPIC, bootstrap_servers=cluster.bootstrap, schema=SCHEMA, stop=None, **QUIET
    )
    windowed = (
        src.with_watermark("id", max_out_of_orderness=0, idle_timeout=idle, time_unit="ms")
        .window(vs.tumbling(10), late="side")
        .agg(pl.len())
    )
    late: list[pl.DataFrame] = []
    out: list[pl.DataFrame] = []
    job = vs.start_all(
        [
            windowed.sink_callback(out.append, lazy=True),
            windowed.late_events().sink_callback(late.append, lazy=True),
        ]
    )

    def counted() -> int:
        return int(sum(f["len"].sum() for f in out)) + sum(f.height for f in late)

    try:
        wait_for(lambda: job.metrics.events_in >= 100, "the first half")
        if outage:
            # at once: a caught-up source quiet for idle_timeout is rightly idle
            cluster.all_down()
            try:
                wait_for(lambda: not job.metrics.connected, "the outage in the metrics")
                p = buffered(cluster, range(100, 200))
                time.sleep(2 * idle)  # the outage: twice idle_timeout
                m = job.metrics
                assert not m.connected
                assert m.source_errors > 0
                # disconnected is never idle: the windows up to 90 fired (the watermark
                # is 96) and no more, the wall clock did not move the watermark
                assert counted() == 90
            finally:
                cluster.all_up()
            assert p.flush(PATIENCE) == 0  # the backlog, delivered now
            wait_for(lambda: job.metrics.connected, "the reconnection in the metrics")
        else:
            cluster.produce(TOPIC, rows(range(100, 200)))
        wait_for(lambda: counted() >= 190, "the windows")
        errors = job.metrics.source_errors
        job.stop(drain=True)
    finally:
        if job.running:
            job.stop()
    return pl.concat(out).sort("window_start"), sum(f.height for f in late), errors


def test_outage_gives_no_late_events_and_same_windows() -> None:
    """An outage of twice idle_timeout in the middle of a stream: the source is
    disconnected, hence never idle, so the watermark waits for the backlog, and the
    windows are those of the same stream without an outage."""
    # after the outage the backlog must reach the job within idle_timeout of its
    # reconnection, or the source is rightly idle and the rest late; 2 s holds on a
    # loaded machine
    idle = 2.0
    with MockCluster() as c:
        calm, calm_late, calm_errors = run(c, idle=idle, outage=False)
    with MockCluster() as c:
        windows, late, errors = run(c, idle=idle, outage=True)
    assert (calm_late, calm_errors) == (0, 0)
    assert calm["len"].to_list() == [10] * 20
    assert late == 0
    assert errors > 0  # the outage happened, and was counted
    assert windows.equals(calm)
