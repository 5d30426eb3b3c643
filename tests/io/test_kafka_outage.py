"""A real broker outage against librdkafka's mock cluster: brokers taken down and brought
back (``MockCluster.outage()`` / ``broker_down()``, librdkafka's mock API through ctypes).
The reader reports the outage (``status()``: disconnected, errors counted, nothing caught
up; for one broker down, exactly the partitions it leads) and loses no row; a running job
holds its watermark through an outage of twice ``idle_timeout``, of every broker or of
one, so the backlog is never late and the windows are those of a run without an outage."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

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


def split_leaders(cluster: MockCluster) -> tuple[int, set[int]]:
    """Partitions 0 and 2 of the topic led by one broker, 1 and 3 by another: that first
    broker (the one taken down) and its partitions."""
    a, b = cluster.broker_ids[:2]
    layout = {0: a, 1: b, 2: a, 3: b}
    cluster.set_leaders(TOPIC, layout)
    wait_for(lambda: cluster.leaders(TOPIC) == layout, "the new leaders in the metadata")
    return a, {0, 2}


def test_a_one_broker_outage_holds_exactly_the_partitions_it_leads(
    cluster: MockCluster,
) -> None:
    """One broker down: the partitions it leads are unreadable (the mock does not fail
    them over), so their splits show disconnected and never caught up while the others
    go on; the client still reaches the cluster; the errors grow all through the outage;
    once the broker is back every row arrives, once."""
    cluster.produce(TOPIC, rows(range(8)))
    down, led = split_leaders(cluster)
    src = KafkaSource(TOPIC, bootstrap_servers=cluster.bootstrap, schema=SCHEMA, config=QUIET)
    part = {i: p for i, (_, p) in enumerate(src.parts)}
    reader = src.open()
    got: list[int] = []

    def held(st: Any) -> set[int]:
        return {part[i] for i, v in st.splits.items() if not v.connected}

    try:
        read_ids(reader, got, 8)
        wait_status(reader, lambda s: all(v.caught_up for v in s.splits.values()), "caught up")
        cluster.broker_down(down)
        try:
            st = wait_status(
                reader,
                lambda s: s.connected and held(s) == led,
                f"the partitions of broker {down} (and only those) to show disconnected",
            )
            assert not any(st.splits[i].caught_up for i in part if part[i] in led)
            # rows for every partition: those of the partitions still led arrive now
            p = buffered(cluster, range(8, 20))
            live = [i for i in range(8, 20) if i % 4 not in led]
            read_ids(reader, got, 8 + len(live))
            assert sorted(got[8:]) == live
            errors = st.errors
            # still the same partitions held (the outage goes on), the errors growing
            st = wait_status(
                reader,
                lambda s: s.errors >= errors + 3 and held(s) == led,
                "the errors to grow",
            )
            assert not any(st.splits[i].caught_up for i in part if part[i] in led)
            assert reader.poll(0.2) is None  # nothing of the led partitions meanwhile
        finally:
            cluster.broker_up(down)
        assert p.flush(PATIENCE) == 0
        read_ids(reader, got, 20)
        st = wait_status(
            reader,
            lambda s: s.connected and all(v.connected and v.caught_up for v in s.splits.values()),
            "reconnected and caught up",
        )
        assert [v.lag for v in st.splits.values()] == [0, 0, 0, 0]
    finally:
        reader.close()
    assert sorted(got) == list(range(20))  # nothing lost, nothing twice


def test_the_users_statistics_interval_and_stats_cb_are_kept(cluster: MockCluster) -> None:
    """A ``statistics.interval.ms`` given is the one used, and a ``stats_cb`` given still
    gets every report."""
    cluster.produce(TOPIC, rows(range(8)))
    reports: list[str] = []
    config = {**QUIET, "statistics.interval.ms": 200, "stats_cb": reports.append}
    src = KafkaSource(TOPIC, bootstrap_servers=cluster.bootstrap, schema=SCHEMA, config=config)
    reader = src.open()
    got: list[int] = []
    try:
        read_ids(reader, got, 8)
        wait_for(lambda: len(reports) >= 4, "four reports")
    finally:
        reader.close()
    stats = [json.loads(r) for r in reports]
    assert {s["type"] for s in stats} == {"consumer"}
    # librdkafka's own clock (us) at each report: a load can only stretch the gaps, and
    # the shortest is far below the 500 ms vstream would have set
    ts = [s["ts"] for s in stats]
    assert min(b - a for a, b in itertools.pairwise(ts)) < 400_000


def test_no_statistics_leaves_the_reader_level_connection(cluster: MockCluster) -> None:
    """``statistics.interval.ms=0``: no per-partition state, so a one-broker outage shows
    only while the client is disconnected; every split is connected again once the client
    reaches the cluster (no split waits for a report that never comes)."""
    cluster.produce(TOPIC, rows(range(8)))
    down, _ = split_leaders(cluster)
    config = {**QUIET, "statistics.interval.ms": 0}
    src = KafkaSource(TOPIC, bootstrap_servers=cluster.bootstrap, schema=SCHEMA, config=config)
    reader = src.open()
    got: list[int] = []
    try:
        read_ids(reader, got, 8)
        errors = reader.status().errors  # type: ignore[union-attr]
        cluster.broker_down(down)
        try:
            wait_status(
                reader,
                lambda s: (
                    s.errors > errors
                    and s.connected
                    and all(v.connected for v in s.splits.values())
                ),
                "the error, then every split connected",
            )
        finally:
            cluster.broker_up(down)
    finally:
        reader.close()


# ---------------------------------------------------------------------- a running job


def run(
    cluster: MockCluster, *, idle: float, outage: Literal["none", "all", "one"]
) -> tuple[pl.DataFrame, int, int]:
    """Ids 0-99, then (after an outage of twice ``idle`` if asked: of every broker, or of
    the one leading partitions 0 and 2) ids 100-199, through a tumbling window of 10;
    returns the windows, the late events and the source errors."""
    cluster.produce(TOPIC, rows(range(100)))  # the topic exists before the job starts
    down = split_leaders(cluster)[0] if outage == "one" else None
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
        if outage == "all":
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
        elif outage == "one":
            assert down is not None
            cluster.broker_down(down)
            try:
                wait_for(lambda: job.metrics.source_errors > 0, "the outage in the metrics")
                # rows for every partition: those of partitions 1 and 3 (odd ids) arrive
                # now, those of 0 and 2 wait in the producer
                p = buffered(cluster, range(100, 200))
                wait_for(lambda: job.metrics.events_in >= 150, "the partitions still led")
                errors = job.metrics.source_errors
                time.sleep(2 * idle)  # the outage: twice idle_timeout
                assert job.metrics.source_errors > errors  # counted all along
                # partitions 0 and 2 are disconnected, never idle: they hold the
                # watermark at 96 though partitions 1 and 3 are at 199
                assert counted() == 90
            finally:
                cluster.broker_up(down)
            assert p.flush(PATIENCE) == 0  # the backlog, delivered now
        else:
            cluster.produce(TOPIC, rows(range(100, 200)))
        wait_for(lambda: counted() >= 190, "the windows")
        errors = job.metrics.source_errors
        job.stop(drain=True)
    finally:
        if job.running:
            job.stop()
    return pl.concat(out).sort("window_start"), sum(f.height for f in late), errors


@pytest.mark.parametrize("outage", ["all", "one"])
def test_outage_gives_no_late_events_and_same_windows(outage: Literal["all", "one"]) -> None:
    """An outage of twice idle_timeout in the middle of a stream, of every broker or of
    the one leading half the partitions: the splits it makes unreadable are disconnected,
    hence never idle, so the watermark waits for their backlog, and the windows are those
    of the same stream without an outage."""
    # after the outage the backlog must reach the job within idle_timeout of its
    # reconnection, or the source is rightly idle and the rest late; 2 s holds on a
    # loaded machine
    idle = 2.0
    with MockCluster() as c:
        calm, calm_late, calm_errors = run(c, idle=idle, outage="none")
    with MockCluster() as c:
        windows, late, errors = run(c, idle=idle, outage=outage)
    assert (calm_late, calm_errors) == (0, 0)
    assert calm["len"].to_list() == [10] * 20
    assert late == 0
    assert errors > 0  # the outage happened, and was counted
    assert windows.equals(calm)
