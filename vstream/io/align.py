"""Event-time alignment of a reader's splits: a bounded merge of their decoded batches.

A reader that holds several splits at once (the partitions of a Kafka topic) gets them
from its client in whatever order the client fetches them: librdkafka may deliver one
partition's whole backlog before another's first message. Each split's watermark is
its own, and the source's is their minimum, so a split that runs ahead keeps every
window of the splits behind it open. Measured on the Kafka arrow benchmark (4
partitions, 20 s of event time per message): batches handed out up to ~600 s apart
across splits held ~380 k open (pane, key) slots instead of ~8 k, and the window spent
86 ms instead of 14 ms managing them.

:class:`EventTimeAligner` holds the decoded batches in an outbox per split and releases
them in event-time order, as far as it safely can: the smallest batch (by its earliest
event time) goes first, unless another split that still has data in the broker, and
none here, may yet bring something earlier. Holding is bounded by memory and by time,
so a split that does not deliver never stops the others for long. Pausing the splits
that run ahead in the client instead was tried and measured far worse: after
``resume`` librdkafka waits ~1 s (its fetch backoff) before delivering again.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from vstream.io.base import Data

__all__ = ["EventTimeAligner", "event_time_span"]

#: the default bound on the bytes held, as librdkafka's own queue
#: (``queued.max.messages.kbytes``, 64 MiB)
MAX_HELD_BYTES = 64 << 20

_NO_TIME = -(2**63)  # sorts first: a batch with no event time leaves at once


def event_time_span(batch: pa.RecordBatch | None, column: str) -> tuple[int, int] | None:
    """The least and greatest value of ``column`` in ``batch`` as integers (a timestamp
    column's int64 values, in its unit), or None: no batch, no such column, not an
    integer or timestamp column, or no non-null value.

    Examples
    --------
    >>> from vstream.io.align import event_time_span
    >>> import pyarrow as pa
    >>> event_time_span(pa.record_batch({"ts": [5, None, 2]}), "ts")
    (2, 5)
    >>> event_time_span(pa.record_batch([pa.array([None], pa.int64())], ["ts"]), "ts")
    >>> event_time_span(pa.record_batch({"x": [1]}), "ts")
    """
    if batch is None:
        return None
    index = batch.schema.get_field_index(column)
    if index < 0:
        return None
    values = batch.column(index)
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date64(kind) or pa.types.is_duration(kind):
        values = values.view(pa.int64())
    elif not pa.types.is_integer(kind):
        return None
    span = pc.min_max(values)
    lo = span["min"].as_py()
    if lo is None:
        return None
    return int(lo), int(span["max"].as_py())


def _nbytes(event: Data) -> int:
    size = 0
    for part in (event.batch, event.dead):
        if part is not None:
            size += part.get_total_buffer_size()
    return size


@dataclass(slots=True)
class _Held:
    """A batch in its split's outbox: the event, its event-time span, its buffers' size,
    when it came (monotonic seconds) and its arrival number (ties of ``lo``)."""

    event: Data
    lo: int
    hi: int
    size: int
    since: float
    seq: int


class EventTimeAligner:
    """Outboxes of decoded batches, one per split, released in event-time order.

    :meth:`add` puts a split's :class:`~vstream.io.base.Data` event into its outbox with
    the least and greatest event time of its batch (``column``); :meth:`release` hands
    out what may go now. The release rule, applied again and again: take the outbox
    head with the smallest least event time ``lo``; let it go unless another split
    ``j`` is *pending* (its broker holds more of it, or its client buffer does), has an
    empty outbox, and has released nothing later than ``lo - drift`` (``j``'s next batch
    may hold earlier events). In that case hold everything, except when

    - the bytes held exceed ``max_bytes`` (the smallest head goes anyway), or
    - a head has been held ``max_wait`` seconds (the smallest head goes, and so on
      until that one has gone: release order stays by ``lo``).

    A batch with no event time (no column, all null, no batch: dead letters only)
    sorts first: it goes as soon as it heads its outbox. A split's own order is never
    changed, no event is dropped or repeated, and ``drift`` is the watermark's
    out-of-orderness bound: a batch released up to ``drift`` before another that is
    earlier cannot make that other's events late.

    Parameters
    ----------
    column
        The event-time column (integer or timestamp) of the batches.
    drift
        How far (in the column's unit) release order may run ahead of a pending split.
    max_wait
        Seconds a head may be held before it is released anyway.
    max_bytes
        Bytes held (``RecordBatch.get_total_buffer_size()`` of batches and dead letters)
        above which the smallest head is released anyway.

    Examples
    --------
    >>> from vstream.io.align import EventTimeAligner
    >>> import pyarrow as pa
    >>> from vstream.io.base import Data
    >>> al = EventTimeAligner("ts", 10, max_wait=1.0)
    >>> al.add(Data(0, pa.record_batch({"ts": [100, 150]}), 1), now=0.0)
    >>> [e.position for e in al.release(pending={1}, now=0.0)]  # split 1 may be earlier
    []
    >>> al.add(Data(1, pa.record_batch({"ts": [20, 60]}), 7), now=0.1)
    >>> [(e.split, e.position) for e in al.release(pending={1}, now=0.1)]
    [(1, 7)]
    >>> [(e.split, e.position) for e in al.release(pending=set(), now=0.2)]
    [(0, 1)]
    """

    def __init__(
        self,
        column: str,
        drift: int,
        *,
        max_wait: float,
        max_bytes: int = MAX_HELD_BYTES,
    ) -> None:
        self.column = column
        self.drift = drift
        self.max_wait = max_wait
        self.max_bytes = max_bytes
        self._boxes: dict[int, deque[_Held]] = {}
        self._seen: dict[int, int] = {}  # per split, the greatest event time released
        self._bytes = 0
        self._count_held = 0
        self._count = itertools.count()
        #: releases forced by ``max_bytes`` or ``max_wait`` (a held head let go)
        self.forced = 0

    def add(self, event: Data, now: float) -> None:
        """Put ``event`` at the end of its split's outbox (``now``: monotonic seconds)."""
        span = event_time_span(event.batch, self.column)
        lo, hi = (_NO_TIME, _NO_TIME) if span is None else span
        size = _nbytes(event)
        held = _Held(event, lo, hi, size, now, next(self._count))
        self._boxes.setdefault(event.split, deque()).append(held)
        self._bytes += size
        self._count_held += 1

    def holds(self, split: int) -> bool:
        """Whether ``split`` has batches held (its outbox is not empty)."""
        return bool(self._boxes.get(split))

    @property
    def held_count(self) -> int:
        """The number of batches held."""
        return self._count_held

    @property
    def held_bytes(self) -> int:
        """The bytes held, as counted against ``max_bytes``."""
        return self._bytes

    def deadline(self) -> float | None:
        """When (monotonic seconds) the longest-held head reaches ``max_wait``; None
        when nothing is held. A reader waiting for input waits no longer than this."""
        oldest = min((box[0].since for box in self._boxes.values() if box), default=None)
        return None if oldest is None else oldest + self.max_wait

    def release(self, pending: Collection[int], now: float) -> list[Data]:
        """The events that may go now, in release order (see the class docstring).

        ``pending``: the splits whose broker or client buffer holds more of them (data
        not yet added here); ``now``: monotonic seconds. Call it after every read of the
        input, and also when none came, so held heads reach ``max_wait``.
        """
        out: list[Data] = []
        boxes = self._boxes
        while True:
            heads = [(box[0].lo, box[0].seq, i) for i, box in boxes.items() if box]
            if not heads:
                break
            lo, _, i = min(heads)
            if lo != _NO_TIME and self._blocked(i, lo, pending):
                late = min(boxes[j][0].since for _, _, j in heads) + self.max_wait <= now
                if self._bytes <= self.max_bytes and not late:
                    break
                self.forced += 1
            held = boxes[i].popleft()
            if not boxes[i]:
                del boxes[i]
            self._bytes -= held.size
            self._count_held -= 1
            if held.lo != _NO_TIME and held.hi > self._seen.get(i, _NO_TIME):
                self._seen[i] = held.hi
            out.append(held.event)
        return out

    def _blocked(self, i: int, lo: int, pending: Collection[int]) -> bool:
        """Whether a split other than ``i``, pending with nothing held, may still bring
        events earlier than ``lo - drift``."""
        bound = lo - self.drift
        seen = self._seen
        return any(
            j != i and j not in self._boxes and seen.get(j, _NO_TIME) < bound for j in pending
        )
