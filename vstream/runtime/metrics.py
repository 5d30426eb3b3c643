"""What a run reports: events, batches, bytes, watermark, lag, late and dead letters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics", "StepMetrics"]


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
        columns), or None without event time or once the input has ended.
    event_time_lag_s
        Wall clock minus the watermark in seconds, where the time unit is known.
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
    event_time_lag_s: float | None = None
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

    def summary(self) -> str:
        """One line for logs and the demo."""
        wm = "-" if self.watermark is None else str(self.watermark)
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
