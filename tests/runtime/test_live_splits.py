"""Splits that appear while running (``SplitAdded``) and what readers report on the tick
(``Reader.status()``): the runtime reads a new split, checkpoints it by name and takes it
back on restart; a new split never drags the watermark back; a lagging or disconnected
split is never idle, so an outage of twice ``idle_timeout`` gives zero late events and
the windows of a run without it; retired splits leave the checkpoint; the metrics show
source errors, connection and per-split lag.

The source here is a small test source whose events and status the test hands out (a
broker stand-in); the real brokers' tests are in the Kafka and MQTT test files.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
from vstream.errors import SourceError
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
)
from vstream.notebook import dashboard_html
from vstream.plan.nodes import SourceNode
from vstream.runtime.metrics_render import metrics_text
from vstream.runtime.splits import SourceSplits
from vstream.state.checkpoint import MANIFEST, CheckpointStore

_END = object()


class Broker:
    """What the test source reads: events the test hands out, the status its reader
    reports, and the splits it retires."""

    def __init__(self) -> None:
        self.events: queue.Queue[object] = queue.Queue()
        self.status: ReaderStatus | None = None
        self.retired: list[int] = []
        self.handed = 0  # events the reader has handed out

    def put(self, *events: SourceEvent) -> None:
        for e in events:
            self.events.put(e)

    def end(self) -> None:
        self.events.put(_END)


class LiveReader(Reader):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._done = False

    def poll(self, timeout: float) -> SourceEvent | None:
        if self._done:
            return None
        try:
            item = self.broker.events.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._done = True
            return None
        self.broker.handed += 1
        return item  # type: ignore[return-value]

    @property
    def exhausted(self) -> bool:
        return self._done

    def status(self) -> ReaderStatus | None:
        return self.broker.status

    def retired_splits(self) -> list[int]:
        out, self.broker.retired = self.broker.retired, []
        return out


class LiveSource(Source):
    """An unbounded source of concurrent splits (as Kafka partitions are) fed by a
    :class:`Broker`; ``names``: the splits it lists at open."""

    label = "live"
    bounded = False
    concurrent_splits = True
    replayable = True

    def __init__(self, names: list[str], broker: Broker) -> None:
        self.names = names
        self.broker = broker
        self.resumed: dict[int, SplitPosition] | None = None

    def splits(self) -> list[str]:
        return list(self.names)

    def schema(self) -> pa.Schema:
        return pa.schema([("ts", pa.int64()), ("v", pa.int64())])

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        self.resumed = dict(resume) if resume is not None else None
        return LiveReader(self.broker)


def batch(times: list[int]) -> pa.RecordBatch:
    return pa.record_batch({"ts": pa.array(times, pa.int64()), "v": pa.array(times, pa.int64())})


def stream(src: Source) -> vs.Stream:
    return vs.Stream(SourceNode(src))


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            msg = f"condition not met within {timeout} s"
            raise AssertionError(msg)
        time.sleep(0.01)


@pytest.fixture
def jobs() -> Iterator[list[tuple[vs.Job, Broker]]]:
    started: list[tuple[vs.Job, Broker]] = []
    yield started
    for job, broker in started:
        broker.end()
        job.stop(timeout=10)


def manifest_splits(ckpt: Path) -> dict[str, Any]:
    store = CheckpointStore(ckpt)
    manifest = json.loads((store.dir_of(store.epochs()[-1]) / MANIFEST).read_text())
    (source,) = manifest["sources"]
    return {sp["name"]: (sp["position"], sp["ended"]) for sp in source["splits"]}


# ---------------------------------------------------------------------- SplitAdded


def test_a_split_added_while_running_is_read_checkpointed_by_name_and_resumed(
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "ckpt"
    broker = Broker()
    src = LiveSource(["p0"], broker)
    job = stream(src).start(checkpoint_dir=ckpt, checkpoint_interval=1)
    broker.put(Data(0, batch([1, 2]), 2), SplitAdded(1, "p1"), Data(1, batch([3]), 1))
    broker.put(SplitAdded(2, "p2"), Data(2, batch([4]), 7), SplitEnd(2))
    wait_until(lambda: job.results.height == 4 and broker.handed == 6)
    job.stop()
    assert sorted(job.results["v"].to_list()) == [1, 2, 3, 4]
    assert manifest_splits(ckpt) == {"p0": (2, False), "p1": (1, False), "p2": (7, True)}
    # a restart: the source lists the added splits among those it has from the start
    broker2 = Broker()
    src2 = LiveSource(["p0", "p1", "p2"], broker2)
    job2 = stream(src2).start(checkpoint_dir=ckpt, checkpoint_interval=1)
    broker2.put(Data(1, batch([5]), 2))
    wait_until(lambda: job2.results.height == 1)
    job2.stop()
    assert src2.resumed == {
        0: SplitPosition(2),
        1: SplitPosition(1),
        2: SplitPosition(7, ended=True),
    }
    assert manifest_splits(ckpt) == {"p0": (2, False), "p1": (2, False), "p2": (7, True)}


def test_a_name_announced_twice_gets_a_suffix_as_a_checkpoint_names_it(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    broker = Broker()
    job = stream(LiveSource(["p0"], broker)).start(checkpoint_dir=ckpt, checkpoint_interval=1)
    broker.put(SplitAdded(1, "p0"), Data(1, batch([1]), 1))
    wait_until(lambda: job.results.height == 1)
    job.stop()
    assert manifest_splits(ckpt) == {"p0": (None, False), "p0#2": (1, False)}


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ([SplitAdded(2, "p2")], r"live: its reader announced split 2 \('p2'\), but the next"),
        ([Data(1, batch([1]), 1)], r"live: its reader handed out an event of split 1, which"),
    ],
    ids=["index-skipped", "never-announced"],
)
def test_a_reader_that_breaks_the_split_numbering_fails_the_run(
    events: list[SourceEvent], match: str
) -> None:
    broker = Broker()
    job = stream(LiveSource(["p0"], broker)).start()
    broker.put(*events)
    with pytest.raises(SourceError, match=match):
        job.join(timeout=15)
    assert not job.running


def test_a_new_split_starts_at_the_current_watermark_and_holds_it(
    jobs: list[tuple[vs.Job, Broker]], clock: Any
) -> None:
    """Flink's rule: a new split's watermark starts at the source's current one. It does
    not drag the watermark back (what was emitted stays on time) and holds it there until
    its own data comes (the other splits do not run ahead of it meanwhile)."""
    broker = Broker()
    job = stream(LiveSource(["p0"], broker)).with_watermark("ts", 100, time_unit="ms").start()
    jobs.append((job, broker))
    broker.put(Data(0, batch([10_000]), 1))
    wait_until(lambda: job.metrics.watermark == 9_900)
    broker.put(SplitAdded(1, "p1"), Data(0, batch([20_000]), 2))
    wait_until(lambda: broker.handed == 3)
    clock.step()
    assert job.metrics.watermark == 9_900  # held where p1 started, not dragged to -inf
    broker.put(Data(1, batch([15_000]), 1))
    wait_until(lambda: job.metrics.watermark == 14_900)
    assert job.metrics.late_events == 0
    assert job.error is None


# ---------------------------------------------------------------------- idleness


def outage_run(clock: Any, *, outage: bool, reported: bool) -> tuple[pl.DataFrame, vs.Metrics]:
    """Two partitions under one watermark (idle_timeout 30 s, on the driven clock), the
    same events in every run. With ``outage``, p1 goes quiet for twice idle_timeout
    while p0 goes on; its backlog comes when it is back. ``reported``: the reader says
    p1 is disconnected meanwhile (without, it looks connected and caught up)."""
    broker = Broker()
    job = (
        stream(LiveSource(["p0", "p1"], broker))
        .with_watermark("ts", 100, time_unit="ms", idle_timeout=30)
        .window(vs.tumbling(1_000))
        .agg(pl.len(), pl.col("v").sum())
        .start()
    )
    try:
        broker.put(Data(0, batch(list(range(0, 1_000, 50))), 1))
        broker.put(Data(1, batch(list(range(25, 1_000, 50))), 1))
        p0_during = [
            Data(0, batch(list(range(t, t + 1_000, 50))), 2 + k)
            for k, t in enumerate(range(1_000, 5_000, 1_000))
        ]
        p1_backlog = [
            Data(1, batch(list(range(t + 25, t + 1_000, 50))), 2 + k)
            for k, t in enumerate(range(1_000, 5_000, 1_000))
        ]
        wait_until(lambda: broker.handed == 2)
        if outage:
            if reported:
                broker.status = ReaderStatus(
                    errors=1, splits={1: SplitStatus(connected=False, caught_up=False)}
                )
            clock.step()  # the tick has read the status
            for ev in p0_during:  # p0 goes on through the outage, p1 sends nothing
                broker.put(ev)
                wait_until(lambda n=broker.handed + 1: broker.handed >= n)
                clock.advance(15)  # 4 x 15 s: twice idle_timeout
                clock.step()
            broker.put(*p1_backlog)  # back: its backlog first (still reported lagging)
            wait_until(lambda: broker.handed == 2 + 2 * len(p0_during))
            clock.step()
            broker.status = None  # caught up again
            clock.step()
        else:
            for a, b in zip(p0_during, p1_backlog, strict=True):
                broker.put(a, b)
        broker.put(Data(0, batch([5_000, 5_500]), 9), Data(1, batch([5_025]), 9))
        wait_until(lambda: broker.handed == 3 + 2 * len(p0_during) + 1)
        clock.step()
    finally:
        broker.end()
        job.stop(drain=True)
    return job.results.sort("window_start"), job.metrics


def test_a_disconnected_split_is_never_idle_so_an_outage_makes_nothing_late(clock: Any) -> None:
    expected, m0 = outage_run(clock, outage=False, reported=False)
    got, m1 = outage_run(clock, outage=True, reported=True)
    assert m0.late_events == 0
    assert m1.late_events == 0
    assert m1.behind_watermark == 0
    assert_frame_equal(got, expected)
    assert expected["len"].to_list() == [40, 40, 40, 40, 40, 3]


def test_an_outage_the_reader_does_not_report_turns_the_backlog_late(clock: Any) -> None:
    """The control: a reader that looks connected and caught up through the outage lets
    p1 go idle, the watermark follows p0, and p1's backlog comes late."""
    got, m = outage_run(clock, outage=True, reported=False)
    assert m.late_events > 0
    assert got["len"].sum() < 203


def test_a_split_caught_up_again_waits_idle_timeout_before_it_is_idle(
    jobs: list[tuple[vs.Job, Broker]], clock: Any
) -> None:
    """The idle clock runs only while a split is caught up: a split back from an outage
    longer than idle_timeout is not idle at once."""
    broker = Broker()
    job = (
        stream(LiveSource(["p0", "p1"], broker))
        .with_watermark("ts", 100, time_unit="ms", idle_timeout=30)
        .start()
    )
    jobs.append((job, broker))
    broker.put(Data(0, batch([1_000]), 1), Data(1, batch([500]), 1))
    wait_until(lambda: job.metrics.watermark == 400)
    broker.status = ReaderStatus(splits={1: SplitStatus(caught_up=False, lag=7)})
    clock.step()
    clock.advance(60)
    broker.put(Data(0, batch([9_000]), 2))
    wait_until(lambda: broker.handed == 3)
    clock.step()
    assert job.metrics.watermark == 400  # lagging for 60 s: holds
    broker.status = None
    clock.step()
    clock.advance(20)
    clock.step()
    assert job.metrics.watermark == 400  # caught up 20 s ago: not idle yet
    clock.advance(11)
    clock.step()
    assert job.metrics.watermark == 8_900  # idle now: p0 alone


class FrozenClock:
    """``time.monotonic`` for the executor and the watermark step, standing still unless
    the test moves it: the run ticks only when the clock is moved past a tick."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_a_step_longer_than_idle_timeout_does_not_make_waiting_data_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step of the run takes longer than idle_timeout (a first JIT compile, a slow
    function) while the other splits' data waits: the next event must not meet those
    splits judged idle on the statuses from before the step. (It did: the statuses were
    read after the event, and p1's batch moved the watermark past p2's waiting data.)"""
    from vstream.ops import watermark
    from vstream.runtime import executor

    clock = FrozenClock()
    monkeypatch.setattr(executor, "time", clock)
    monkeypatch.setattr(watermark, "time", clock)
    broker = Broker()

    def slow(df: pl.DataFrame) -> pl.DataFrame:
        if 1_000 in df["ts"].to_list():
            clock.now += 60  # this step takes twice idle_timeout
            # meanwhile p1 and p2 received data: their reader says so
            lagging = SplitStatus(caught_up=False, lag=1)
            broker.status = ReaderStatus(splits={1: lagging, 2: lagging})
        return df

    job = (
        stream(LiveSource(["p0", "p1", "p2"], broker))
        .with_watermark("ts", 0, time_unit="ms", idle_timeout=30)
        .map_batches(slow)
        .window(vs.tumbling(1_000), late="side")
        .agg(pl.len())
        .start()
    )
    try:
        broker.put(Data(0, batch([100]), 1), Data(1, batch([110]), 1), Data(2, batch([120]), 1))
        wait_until(lambda: broker.handed == 3)
        broker.put(Data(0, batch([1_000]), 2), Data(1, batch([2_050]), 2))
        broker.put(Data(2, batch([1_020]), 2))
        wait_until(lambda: broker.handed == 6)
    finally:
        broker.end()
        job.stop(drain=True)
    assert job.error is None
    assert job.metrics.late_events == 0
    assert job.results.sort("window_start")["len"].to_list() == [3, 2, 1]


# ---------------------------------------------------------------------- retired splits


def test_retired_splits_leave_the_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    broker = Broker()
    job = (
        stream(LiveSource(["p0"], broker))
        .with_watermark("ts", 0, time_unit="ms")
        .start(checkpoint_dir=ckpt, checkpoint_interval=1)
    )
    broker.put(Data(0, batch([1]), 1))
    for k in (1, 2):
        broker.put(SplitAdded(k, f"f{k}"), Data(k, batch([k * 10]), 5), SplitEnd(k))
    wait_until(lambda: job.results.height == 3)
    broker.retired = [1]
    wait_until(lambda: not broker.retired)  # taken on a tick
    broker.put(Data(0, batch([2]), 2))  # one more batch: one more checkpoint
    wait_until(lambda: job.results.height == 4)
    job.stop()
    assert manifest_splits(ckpt) == {"p0": (2, False), "f2": (5, True)}
    store = CheckpointStore(ckpt)
    (step,) = [k for k in store.load(store.epochs()[-1]).tables if k.endswith(".splits")]
    names = store.load(store.epochs()[-1]).tables[step]["name"].to_pylist()
    assert sorted(n.rsplit("/", 1)[1] for n in names) == ["f2", "p0"]


def test_a_split_retired_before_its_end_is_seen_goes_once_it_ends() -> None:
    sp = SourceSplits("live", ["a", "b"], first_id=5)
    assert sp.retire([0, 1], ended={5}) == [5]
    assert sp.names == {1: "b"}
    assert sp.retiring == {1}
    assert sp.retire(sp.retiring, ended={6}) == [6]
    assert sp.names == {}
    assert sp.retiring == set()


# ---------------------------------------------------------------------- metrics


def test_metrics_show_source_errors_connection_and_lag(
    jobs: list[tuple[vs.Job, Broker]], clock: Any
) -> None:
    broker = Broker()
    job = stream(LiveSource(["t/0", "t/1"], broker)).start()
    jobs.append((job, broker))
    clock.step()
    m = job.metrics
    assert (m.connected, m.source_errors, m.split_lag) == (True, 0, {})
    broker.status = ReaderStatus(
        connected=False, errors=3, splits={0: SplitStatus(lag=40), 1: SplitStatus(lag=2)}
    )
    clock.step()
    m = job.metrics
    assert (m.connected, m.source_errors, m.split_lag) == (False, 3, {"t/0": 40, "t/1": 2})
    text = metrics_text(m)
    assert "connected      no" in text
    assert "source errors  3" in text
    assert "split lag      42 (t/0 40, t/1 2)" in text
    assert "a source is disconnected, source errors 3, lag 42" in m.summary()
    html = dashboard_html(m, pl.DataFrame({"x": [1]}))
    assert "split lag" in html
    assert "t/0 40" in html
    assert "color: #c00" in html  # disconnected, in red
