"""What a run reports: events, batches, bytes, watermark, lag, late and dead letters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from vstream._duration import TimeUnit
from vstream.runtime.metrics_render import format_watermark

if TYPE_CHECKING:
    from vstream.plan.nodes import EventTime

__all__ = ["LagClock", "Metrics", "StepMetrics", "set_watermark"]

#: what the event-time lag is measured against: the wall clock (live sources) or the
#: newest event time seen (a replay of recorded data)
LagClock = Literal["wall", "replay"]

_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


@dataclass
class StepMetrics:
    """Rows and batches in and out of one step; the late events it dropped, per input
    (windows and joins); for joins, the rows held in state now and at most so far (both
    inputs together)."""

    rows_in: int = 0
    rows_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    late_events: tuple[int, ...] = ()
    state_rows: int = 0
    peak_state_rows: int = 0


@dataclass
class Metrics:
    """A snapshot of a run's counters.

    Attributes
    ----------
    events_in, batches_in, bytes_in
        Records read from the sources (including those a source refused as dead
        letters), the batches they made and those batches' in-memory size (Polars'
        ``estimated_size``).
    events_out
        Rows delivered to the outputs (dead-letter and late branches not counted).
    watermark
        The lowest event-time watermark among the outputs (a datetime for Datetime
        columns, else the integer), or None without event time or once the input has
        ended. :attr:`watermark_datetime` gives it as a datetime.
    watermark_unit
        The unit of an integer watermark, when ``with_watermark(..., time_unit=)``
        declared it (None otherwise, and for a Datetime watermark).
    event_time_lag_s, lag_clock
        How far the watermark is behind, in seconds, where the time unit is known, and
        the clock it is measured on: ``"wall"``, the wall clock minus the watermark,
        when a live source (Kafka, MQTT, a watched directory) feeds the output;
        ``"replay"``, the newest event time seen minus the watermark, when the input is
        recorded data (files, frames, generators; see ``Source.live``), where the wall
        clock would say how old the data are, not how far the run is behind them.
    late_events, dead_letters
        Events dropped as late (or sent to the late output) and records refused.
    behind_watermark
        Events whose event time was already behind the watermark when they arrived
        (the events a window would find late).
    elapsed_s, events_per_s
        Wall-clock run time and events_in per second of it.
    running, stopped
        Whether the run is going on; whether it ended by ``stop()`` or a timeout while
        input was left (else, once it is not running, it finished or failed).
    batch_latency_s, max_batch_latency_s
        Seconds a source batch takes through every operator to the sinks: the mean over
        the batches of the last metrics tick (~50 ms), and the most so far.
    checkpoints, last_checkpoint_epoch
        Checkpoints written in this run, and the epoch of the newest one (0: none).
    source_errors
        Transient errors the sources have met and retried (broker outages, timeouts),
        summed over their readers.
    connected
        Whether every running source reaches its broker (or directory).
    split_lag
        Per split name (a Kafka topic-partition), how far it is behind its end (Kafka:
        the high watermark minus the position), for the splits whose source knows it; a
        name two sources share is prefixed with the source's step id.
    steps
        Per-step counters, keyed by the step's label.
    """

    events_in: int = 0
    batches_in: int = 0
    bytes_in: int = 0
    events_out: int = 0
    watermark: Any = None
    watermark_unit: TimeUnit | None = None
    event_time_lag_s: float | None = None
    lag_clock: LagClock | None = None
    late_events: int = 0
    dead_letters: int = 0
    behind_watermark: int = 0
    elapsed_s: float = 0.0
    events_per_s: float = 0.0
    running: bool = False
    stopped: bool = False
    batch_latency_s: float = 0.0
    max_batch_latency_s: float = 0.0
    checkpoints: int = 0
    last_checkpoint_epoch: int = 0
    source_errors: int = 0
    connected: bool = True
    split_lag: dict[str, int] = field(default_factory=dict)
    steps: dict[str, StepMetrics] = field(default_factory=dict)

    @property
    def watermark_datetime(self) -> datetime | None:
        """The watermark as a datetime: itself for a Datetime event time, the UTC
        datetime of an integer one whose unit is declared; else (or beyond the years
        1-9999) None.

        Examples
        --------
        >>> import vstream as vs
        >>> vs.Metrics(watermark=1_704_067_200_500, watermark_unit="ms").watermark_datetime
        datetime.datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=datetime.timezone.utc)
        >>> vs.Metrics(watermark=1_704_067_200_500).watermark_datetime is None
        True
        """
        wm = self.watermark
        if isinstance(wm, datetime):
            return wm
        if not isinstance(wm, int) or isinstance(wm, bool) or self.watermark_unit is None:
            return None
        per = _US_PER_UNIT.get(self.watermark_unit)
        us = wm // 1_000 if per is None else wm * per  # ns: truncated, as Polars does
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
        except OverflowError:
            return None

    def summary(self) -> str:
        """One line for logs and the demo."""
        # an integer as it is (logs are read by programs too), unless it reads as a date
        wm = "-" if self.watermark is None else str(self.watermark)
        if self.watermark_datetime is not None:
            wm = format_watermark(self)
        sources = "" if self.connected else ", a source is disconnected"
        if self.source_errors:
            sources += f", source errors {self.source_errors:,}"
        if self.split_lag:
            sources += f", lag {sum(self.split_lag.values()):,}"
        return (
            f"{self.events_in:,} events in ({self.bytes_in / 1e6:,.1f} MB, {self.batches_in:,} "
            f"batches), {self.events_out:,} out, {self.elapsed_s:.3f} s, "
            f"{self.events_per_s:,.0f} events/s, watermark {wm}, late {self.late_events:,}, "
            f"dead letters {self.dead_letters:,}{sources}"
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<vstream.Metrics: {self.summary()}>"

    def _repr_html_(self) -> str:
        """The gauges, as Jupyter shows Metrics (see :func:`vstream.notebook.metrics_html`)."""
        from vstream.runtime.metrics_render import metrics_html

        return metrics_html(self)


def set_watermark(m: Metrics, et: EventTime, wm: int, newest: int, live: bool) -> None:
    """The watermark gauges of ``m``: the watermark ``wm`` of an output whose event time
    is ``et``, its unit, and its lag on the clock of its input (``live``: the wall clock;
    else the replay clock, the newest event time seen upstream, ``newest``).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.plan.nodes import EventTime
    >>> from vstream.runtime.metrics import set_watermark
    >>> m = vs.Metrics()
    >>> et = EventTime("ts", pl.Int64(), "ms", 2_000, None)
    >>> set_watermark(m, et, 1_704_067_200_000, 1_704_067_202_500, live=False)
    >>> m.watermark, m.watermark_unit, m.event_time_lag_s, m.lag_clock
    (1704067200000, 'ms', 2.5, 'replay')
    """
    from vstream.ops.base import MAX_WM, MIN_WM

    m.watermark = et.to_python(wm)
    m.watermark_unit = None if isinstance(m.watermark, datetime) else et.unit
    if wm in (MIN_WM, MAX_WM) or et.unit is None:
        m.event_time_lag_s, m.lag_clock = None, None
        return
    seconds_per_unit = _US_PER_UNIT.get(et.unit, 0.001) / 1e6
    if live:
        m.event_time_lag_s, m.lag_clock = time.time() - wm * seconds_per_unit, "wall"
    elif newest == MIN_WM:
        m.event_time_lag_s, m.lag_clock = None, None
    else:  # an idle source's watermark may follow the wall clock past the newest event
        m.event_time_lag_s, m.lag_clock = max(newest - wm, 0) * seconds_per_unit, "replay"
