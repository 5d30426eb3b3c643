"""The event-time aligner of a reader's splits (vstream.io.align): the release rule on
hand-made batches (merge order, holding while a pending split has nothing, the memory
cap and max_wait, FIFO per split, batches without event time), and a property test over
random batch sequences and arrival interleavings: nothing lost, duplicated or reordered
within a split, and release order sorted by earliest event time up to the drift."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vstream.io.align import EventTimeAligner, event_time_span
from vstream.io.base import Data

FOREVER = 1e9  # max_wait that never fires in a test


def batch(*ts: int | None) -> pa.RecordBatch:
    return pa.record_batch([pa.array(list(ts), pa.int64())], ["ts"])


def data(split: int, position: int, *ts: int | None) -> Data:
    return Data(split, batch(*ts), position)


def released(events: list[Data]) -> list[tuple[int, object]]:
    return [(e.split, e.position) for e in events]


# ---------------------------------------------------------------------- event_time_span


def test_span_of_integer_and_timestamp_columns() -> None:
    assert event_time_span(batch(7, None, 3, 9), "ts") == (3, 9)
    stamps = pa.array(
        [dt.datetime(2024, 1, 1, 0, 0, 1), dt.datetime(2024, 1, 1)], pa.timestamp("ms", "UTC")
    )
    rb = pa.record_batch([stamps], ["ts"])
    epoch_ms = 1_704_067_200_000
    assert event_time_span(rb, "ts") == (epoch_ms, epoch_ms + 1_000)
    # a slice keeps its offset into the buffers
    assert event_time_span(batch(1, 50, 2, 60).slice(2), "ts") == (2, 60)


def test_no_span_without_a_usable_time() -> None:
    assert event_time_span(None, "ts") is None
    assert event_time_span(batch(None, None), "ts") is None
    assert event_time_span(batch(), "ts") is None
    assert event_time_span(pa.record_batch({"other": [1]}), "ts") is None
    assert event_time_span(pa.record_batch({"ts": ["a"]}), "ts") is None


# ---------------------------------------------------------------------- the release rule


def test_heads_go_in_order_of_their_earliest_time() -> None:
    al = EventTimeAligner("ts", 0, max_wait=FOREVER)
    al.add(data(0, 1, 300, 390), 0.0)
    al.add(data(1, 1, 100, 190), 0.0)
    al.add(data(2, 1, 200, 290), 0.0)
    al.add(data(1, 2, 400, 490), 0.0)
    assert al.held_count == 4
    out = al.release(pending=set(), now=0.0)
    assert released(out) == [(1, 1), (2, 1), (0, 1), (1, 2)]
    assert al.held_count == 0
    assert al.held_bytes == 0
    assert al.forced == 0


def test_a_pending_split_with_nothing_held_holds_later_batches() -> None:
    al = EventTimeAligner("ts", 10, max_wait=FOREVER)
    al.add(data(0, 1, 100, 150), 0.0)
    # split 1 has data in the broker and nothing here, and nothing released yet: hold
    assert al.release(pending={0, 1}, now=0.0) == []
    assert al.holds(0)
    assert not al.holds(1)
    # split 1 brings earlier data: it goes first; split 1 then stands at 60, and its
    # next batch may start there, more than drift=10 before 100: split 0 still waits
    al.add(data(1, 1, 20, 60), 0.1)
    assert released(al.release(pending={0, 1}, now=0.1)) == [(1, 1)]
    assert al.holds(0)
    # split 1 reaches 95 >= 100 - drift: split 0's batch may go
    al.add(data(1, 2, 70, 95), 0.2)
    assert released(al.release(pending={0, 1}, now=0.2)) == [(1, 2), (0, 1)]
    # a split that is not pending (nothing more in the broker) never holds anything
    al.add(data(0, 2, 500, 600), 0.3)
    assert released(al.release(pending={0}, now=0.3)) == [(0, 2)]
    assert al.forced == 0


def test_drift_lets_a_batch_go_that_far_ahead() -> None:
    al = EventTimeAligner("ts", 50, max_wait=FOREVER)
    al.add(data(1, 1, 0, 100), 0.0)
    assert released(al.release(pending={0, 1}, now=0.0)) == []  # split 0: nothing yet
    al.add(data(0, 1, 0, 10), 0.0)
    al.add(data(0, 2, 20, 30), 0.0)
    al.add(data(1, 2, 150, 160), 0.0)
    # equal times go in arrival order; split 1's batch at 150 waits: split 0 has
    # released up to 30 only, more than drift=50 before 150
    out = al.release(pending={0, 1}, now=0.0)
    assert released(out) == [(1, 1), (0, 1), (0, 2)]
    assert al.holds(1)
    # split 0 reaches 120 >= 150 - 50
    al.add(data(0, 3, 100, 120), 0.0)
    assert released(al.release(pending={0, 1}, now=0.0)) == [(0, 3), (1, 2)]


def test_a_split_keeps_its_own_order() -> None:
    al = EventTimeAligner("ts", 0, max_wait=FOREVER)
    # split 0 out of order within itself: its second batch is earlier than its first
    al.add(data(0, 1, 500, 510), 0.0)
    al.add(data(0, 2, 100, 110), 0.0)
    al.add(data(1, 1, 300, 310), 0.0)
    out = al.release(pending=set(), now=0.0)
    assert released(out) == [(1, 1), (0, 1), (0, 2)]


def test_the_memory_cap_releases_the_smallest_head() -> None:
    one = data(0, 1, 100, 101)
    size = one.batch.get_total_buffer_size()
    al = EventTimeAligner("ts", 0, max_wait=FOREVER, max_bytes=2 * size)
    al.add(one, 0.0)
    al.add(data(0, 2, 300, 301), 0.0)
    assert al.release(pending={0, 1}, now=0.0) == []  # at the cap, not over it
    assert al.held_bytes == 2 * size
    al.add(data(2, 1, 200, 201), 0.0)
    # over the cap: the smallest head goes, then the bytes held are within it again
    assert released(al.release(pending={0, 1, 2}, now=0.0)) == [(0, 1)]
    assert al.forced == 1
    assert al.held_bytes == 2 * size


def test_max_wait_releases_in_order_up_to_the_oldest_head() -> None:
    al = EventTimeAligner("ts", 0, max_wait=1.0)
    al.add(data(0, 1, 300, 310), 10.0)  # the oldest held
    al.add(data(2, 1, 100, 110), 10.5)
    al.add(data(2, 2, 400, 410), 10.5)
    assert al.deadline() == 11.0
    assert al.release(pending={0, 1, 2}, now=10.9) == []
    # split 0's head has waited 1 s: the heads go by their time until it has gone
    assert released(al.release(pending={0, 1, 2}, now=11.0)) == [(2, 1), (0, 1)]
    assert al.forced == 2
    assert al.deadline() == 11.5
    assert released(al.release(pending={0, 1, 2}, now=11.5)) == [(2, 2)]
    assert al.deadline() is None


def test_batches_without_event_time_go_when_they_head_their_split() -> None:
    al = EventTimeAligner("ts", 0, max_wait=FOREVER)
    dead = pa.record_batch({"record": ["x"], "reason": ["bad"], "step": ["s"]})
    al.add(Data(0, None, 1, dead), 0.0)  # dead letters only
    al.add(Data(1, pa.record_batch({"other": [1]}), 1), 0.0)  # no such column
    al.add(data(2, 1, 100, 110), 0.0)
    al.add(data(2, 2, None), 0.0)  # only nulls, behind a batch that waits
    out = al.release(pending={2, 3}, now=0.0)
    assert released(out) == [(0, 1), (1, 1)]
    assert out[0].dead is dead  # dead letters travel with their event
    assert al.holds(2)
    al.add(data(3, 1, 200, 210), 0.0)
    assert released(al.release(pending={2, 3}, now=0.0)) == [(2, 1), (2, 2)]


def test_holds_and_counts() -> None:
    al = EventTimeAligner("ts", 0, max_wait=FOREVER)
    assert al.deadline() is None
    assert al.release(pending={0}, now=0.0) == []
    al.add(data(0, 1, 1, 2), 5.0)
    assert al.holds(0)
    assert al.held_count == 1
    assert al.held_bytes == batch(1, 2).get_total_buffer_size()
    assert al.deadline() == pytest.approx(5.0 + FOREVER)


# ---------------------------------------------------------------------- property


@st.composite
def split_inputs(draw: st.DrawFn) -> tuple[list[list[Data]], list[int]]:
    """Per split a sequence of batches with time that never goes back across batches
    (a time-ordered partition; a batch with no time now and then), and an arrival
    order: a list of split indexes, each split's count of times."""
    n_splits = draw(st.integers(1, 4))
    splits: list[list[Data]] = []
    for i in range(n_splits):
        t = draw(st.integers(0, 1_000))
        events = []
        for k in range(draw(st.integers(0, 8))):
            if draw(st.integers(0, 9)) == 0:
                events.append(Data(i, None, k + 1))
                continue
            span = draw(st.integers(0, 200))
            lo = t + draw(st.integers(0, 300))
            ts = sorted(draw(st.lists(st.integers(lo, lo + span), min_size=1, max_size=4)))
            events.append(data(i, k + 1, *ts))
            t = ts[-1]
        splits.append(events)
    order = [i for i, events in enumerate(splits) for _ in events]
    return splits, draw(st.permutations(order))


def _check_per_split(splits: list[list[Data]], out: list[Data]) -> None:
    for i, events in enumerate(splits):
        got = [e for e in out if e.split == i]
        assert [id(e) for e in got] == [id(e) for e in events]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_inputs(), st.integers(0, 150))
def test_random_arrivals_keep_every_split_and_release_in_time_order(
    inputs: tuple[list[list[Data]], list[int]], drift: int
) -> None:
    splits, order = inputs
    al = EventTimeAligner("ts", drift, max_wait=FOREVER)
    left = [len(events) for events in splits]
    out: list[Data] = []
    for i in order:
        al.add(splits[i][len(splits[i]) - left[i]], 0.0)
        left[i] -= 1
        # pending: what has not arrived yet (the broker holds it)
        out += al.release(pending={j for j, n in enumerate(left) if n}, now=0.0)
    out += al.release(pending=set(), now=0.0)
    _check_per_split(splits, out)
    assert al.held_count == 0
    assert al.forced == 0
    # sorted by earliest time up to drift: no batch starts more than drift before one
    # released earlier
    first = -(2**63)
    for e in out:
        span = event_time_span(e.batch, "ts")
        if span is not None:
            assert span[0] >= first - drift, (e, first)
            first = max(first, span[0])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_inputs(), st.integers(0, 150), st.integers(0, 3_000), st.data())
def test_random_arrivals_with_cap_and_timeouts_lose_nothing(
    inputs: tuple[list[list[Data]], list[int]], drift: int, cap: int, more: st.DataObject
) -> None:
    splits, order = inputs
    al = EventTimeAligner("ts", drift, max_wait=1.0, max_bytes=cap)
    left = [len(events) for events in splits]
    out: list[Data] = []
    now = 0.0
    for i in order:
        now += more.draw(st.sampled_from([0.0, 0.3, 1.5]))
        al.add(splits[i][len(splits[i]) - left[i]], now)
        left[i] -= 1
        out += al.release(pending={j for j, n in enumerate(left) if n}, now=now)
        assert al.held_bytes <= cap
        deadline = al.deadline()
        assert deadline is None or deadline > now  # whatever waited max_wait has gone
    out += al.release(pending=set(), now=now)
    _check_per_split(splits, out)
    assert al.held_count == 0
    assert al.held_bytes == 0
