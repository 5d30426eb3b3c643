"""What a window operator is given (:class:`WindowSetup`, resolved at build time from
the plan's window spec) and the event times it can represent (:func:`valid_times`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from vstream.ops.watermark import datetime_range
from vstream.ops.window.zones import _per_day
from vstream.plan.aggregates import AggPlan
from vstream.plan.nodes import EventTime

__all__ = ["WindowSetup", "valid_times"]

_KEY_SLACK = 65_536  # dead keys a window's key index may hold beyond its live ones (x2)


@dataclass(frozen=True, slots=True)
class WindowSetup:
    """Everything the operator needs, resolved at build time (integers in time units)."""

    kind: str  # "tumbling" | "hopping" | "session"
    size: int
    slide: int
    offset: int
    gap: int
    by: list[str]
    key_schema: pl.Schema
    time_column: str | None  # None: processing time
    event_time: EventTime | None  # how to read event time (None: processing time)
    time_dtype: pl.DataType
    ns_per_unit: int  # for processing time
    lateness: int
    late_side: bool
    early: float | None  # seconds of wall clock between early results
    aggs: AggPlan
    schema: pl.Schema  # output schema
    # a time-zone-aware column whose windows are cut in local wall time (see
    # vstream.plan.windows.local_time): its zone, and the largest step back of its
    # clock (a DST overlap) in the column's unit. None: UTC arithmetic (the offset
    # already holds the zone's phase where the windows are aligned in it)
    zone: str | None = None
    zone_back: int = 0
    # the size and slide count calendar days or weeks ("1d", "1w", a timedelta of whole
    # days): local days on a time-zone-aware column; else they are fixed durations ("24h",
    # "60m") on a grid aligned to the zone's standard time (see local_time)
    calendar: bool = False


def valid_times(setup: WindowSetup) -> tuple[int, int]:
    """The event times ``[lo, hi]`` whose windows the step can represent: every window
    ``[start, end)`` of the event (and ``end + allowed_lateness``) strictly inside the
    int64 range, whose ends stand for the watermarks -inf and +inf (and, for a
    ``Datetime`` column in ms or us, inside the calendar Polars can format), with a
    window's length to spare for the kernels' arithmetic on neighbouring windows. An
    event outside is a dead letter, never a window that wrapped around.

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.plan.aggregates import plan_aggregations
    >>> plan = plan_aggregations([pl.len()], pl.Schema({"ts": pl.Int64}), "agg", [])
    >>> setup = WindowSetup(
    ...     "tumbling", 100, 100, 0, 0, [], pl.Schema(), "ts", None, pl.Int64(), 1, 0,
    ...     False, None, plan, pl.Schema(),
    ... )
    >>> valid_times(setup)  # tumbling(100): 200 to spare past the first and last window
    (-9223372036854775600, 9223372036854775599)
    """
    lo, hi = datetime_range(setup.time_dtype)
    lo, hi = lo + 1, hi - 1  # MIN_WM and MAX_WM are the watermarks -inf and +inf
    dtype = setup.time_dtype
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        # local times are up to a day away from the instants (and the zone's data
        # needs the calendar): two days to spare
        lo, hi = lo + 2 * _per_day(dtype), hi - 2 * _per_day(dtype)
    lateness = setup.lateness
    if setup.kind == "session":
        gap = setup.gap  # a session [first, last + gap)
        return lo + gap, hi - 2 * gap - lateness
    size, slide, off = setup.size, setup.slide, setup.offset
    spare = size + slide
    # the first window of t starts at ((t - off - size) // slide + 1) * slide + off
    first_k = -((-(lo + spare - off)) // slide)  # the first window k * slide + off allowed
    t_lo = (first_k - 1) * slide + size + off
    # the last one starts at (t - off) // slide * slide + off and ends size later
    last_k = (hi - lateness - spare - size - off) // slide
    t_hi = (last_k + 1) * slide - 1 + off
    return t_lo, t_hi
