"""Window specifications (what users write) and the plan node of a window aggregation."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal, TypeAlias

import polars as pl

from vstream._dtypes import datetime_range, units_per_day
from vstream._duration import (
    Duration,
    TimeUnit,
    parse_duration,
    parse_signed_duration,
    unit_to_ns,
)
from vstream.errors import DurationError
from vstream.plan.aggregates import AggPlan
from vstream.plan.expressions import root_columns
from vstream.plan.nodes import EventTime, Node

__all__ = [
    "Hopping",
    "LateEventsNode",
    "LateMode",
    "Session",
    "TimeMode",
    "Tumbling",
    "WindowNode",
    "WindowSetup",
    "hopping",
    "session",
    "tumbling",
    "valid_times",
]

LateMode: TypeAlias = Literal["drop", "side"]
TimeMode: TypeAlias = Literal["event", "processing"]


def _check(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str | timedelta):
        msg = f"{what} must be an int, a Polars duration string or a timedelta, got {value!r}"
        raise DurationError(msg)


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Fixed, non-overlapping windows ``[k*size + offset, (k+1)*size + offset)``."""

    size: Duration
    offset: Duration = 0

    def __post_init__(self) -> None:
        _check(self.size, "tumbling(size)")
        _check(self.offset, "tumbling(offset=)")

    def __str__(self) -> str:
        extra = f", offset={self.offset!r}" if self.offset else ""
        return f"tumbling({self.size!r}{extra})"


@dataclass(frozen=True, slots=True)
class Hopping:
    """Windows of ``size`` starting every ``slide``; an event is in every window that
    contains it."""

    size: Duration
    slide: Duration
    offset: Duration = 0

    def __post_init__(self) -> None:
        _check(self.size, "hopping(size)")
        _check(self.slide, "hopping(slide=)")
        _check(self.offset, "hopping(offset=)")

    def __str__(self) -> str:
        extra = f", offset={self.offset!r}" if self.offset else ""
        return f"hopping({self.size!r}, slide={self.slide!r}{extra})"


@dataclass(frozen=True, slots=True)
class Session:
    """Per key, events at most ``gap`` apart share a window ``[first, last + gap)``."""

    gap: Duration

    def __post_init__(self) -> None:
        _check(self.gap, "session(gap)")

    def __str__(self) -> str:
        return f"session(gap={self.gap!r})"


WindowSpec: TypeAlias = Tumbling | Hopping | Session


def tumbling(size: Duration, *, offset: Duration = 0) -> Tumbling:
    """Tumbling windows of ``size``: ``start = floor((t - offset) / size) * size + offset``.

    On a time-zone-aware ``Datetime`` column the windows are aligned in the zone's local
    time, as Polars' ``group_by_dynamic`` does (see :func:`local_time`): days and weeks
    are calendar units, so a ``"1d"`` window is a local day (23 or 25 hours across DST)
    and ``offset`` is local too; hours and smaller units are fixed durations, so
    ``"24h"`` is 24 hours on a grid aligned to the zone's standard time (00:00 CET in
    Europe/Berlin, so 01:00 CEST in summer). A ``timedelta`` counts as Polars converts
    it: ``timedelta(days=1)`` (equal to ``timedelta(hours=24)``) is ``"1d"``, a local day;
    ``timedelta(hours=12)`` is 12 fixed hours. A size mixing days and hours
    (``"1d12h"``) is refused there, as are months, quarters and years (``"1mo"``).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> df = pl.DataFrame({"ts": [0, 400, 1_200, 2_500], "host": ["a", "a", "b", "a"]})
    >>> (
    ...     vs.from_polars(df)
    ...     .with_watermark("ts", "1s", time_unit="ms")
    ...     .window(vs.tumbling("1s"), by="host")
    ...     .agg(pl.len())
    ...     .collect()
    ...     .sort("window_start")
    ... )
    shape: (3, 4)
    ┌──────┬──────────────┬────────────┬─────┐
    │ host ┆ window_start ┆ window_end ┆ len │
    │ ---  ┆ ---          ┆ ---        ┆ --- │
    │ str  ┆ i64          ┆ i64        ┆ u32 │
    ╞══════╪══════════════╪════════════╪═════╡
    │ a    ┆ 0            ┆ 1000       ┆ 2   │
    │ b    ┆ 1000         ┆ 2000       ┆ 1   │
    │ a    ┆ 2000         ┆ 3000       ┆ 1   │
    └──────┴──────────────┴────────────┴─────┘
    """
    return Tumbling(size, offset)


def hopping(size: Duration, slide: Duration, *, offset: Duration = 0) -> Hopping:
    """Hopping (sliding) windows of ``size`` starting every ``slide`` (at
    ``k*slide + offset``); each event counts in every window that contains it. On a
    time-zone-aware column, aligned in local time as :func:`tumbling`; where the zone
    has DST, a size and slide of different kinds (``"1d"`` every ``"6h"``) are refused
    (use ``"24h"``, or both in days).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> df = pl.DataFrame({"ts": [0, 1_500]})
    >>> (
    ...     vs.from_polars(df)
    ...     .with_watermark("ts", 0, time_unit="ms")
    ...     .window(vs.hopping("2s", slide="1s"))
    ...     .agg(pl.len())
    ...     .collect()
    ...     .sort("window_start")
    ... )
    shape: (3, 3)
    ┌──────────────┬────────────┬─────┐
    │ window_start ┆ window_end ┆ len │
    │ ---          ┆ ---        ┆ --- │
    │ i64          ┆ i64        ┆ u32 │
    ╞══════════════╪════════════╪═════╡
    │ -1000        ┆ 1000       ┆ 1   │
    │ 0            ┆ 2000       ┆ 2   │
    │ 1000         ┆ 3000       ┆ 1   │
    └──────────────┴────────────┴─────┘
    """
    return Hopping(size, slide, offset)


def session(gap: Duration) -> Session:
    """Session windows: per key, events at most ``gap`` apart (``next - prev <= gap``)
    share a session ``[first, last + gap)``: windows ``[t, t + gap)`` that overlap or
    touch merge, as in Flink, Spark and Bytewax. A late event that bridges two open
    sessions merges them.

    A session fires when the watermark reaches its end (``watermark >= last + gap``). An
    event exactly at that watermark would touch it; without ``allowed_lateness`` the
    session has already been emitted and freed then, so such an event starts a session
    of its own (as in Flink, whose session state is purged at the same instant).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> df = pl.DataFrame({"ts": [0, 5, 12, 11], "user": ["u", "u", "u", "v"]})
    >>> (
    ...     vs.from_polars(df)
    ...     .with_watermark("ts", 0)
    ...     .window(vs.session(gap=5), by="user")
    ...     .agg(pl.len())
    ...     .collect()
    ...     .sort("user", "window_start")
    ... )
    shape: (3, 4)
    ┌──────┬──────────────┬────────────┬─────┐
    │ user ┆ window_start ┆ window_end ┆ len │
    │ ---  ┆ ---          ┆ ---        ┆ --- │
    │ str  ┆ i64          ┆ i64        ┆ u32 │
    ╞══════╪══════════════╪════════════╪═════╡
    │ u    ┆ 0            ┆ 10         ┆ 2   │
    │ u    ┆ 12           ┆ 17         ┆ 1   │
    │ v    ┆ 11           ┆ 16         ┆ 1   │
    └──────┴──────────────┴────────────┴─────┘
    """
    return Session(gap)


def resolve(spec: WindowSpec, unit: TimeUnit | None, step: str) -> tuple[str, int, int, int, int]:
    """(kind, size, slide, offset, gap) in the time column's unit, checked."""

    def dur(value: Duration, what: str, *, positive: bool = True) -> int:
        if not positive:  # an offset may be negative (it only shifts the grid)
            return parse_signed_duration(value, unit, what=f"{step} {what}")
        out = parse_duration(value, unit, what=f"{step} {what}", allow_zero=not positive)
        if positive and out <= 0:
            msg = f"{step}: {what} must be positive, got {value!r}"
            raise DurationError(msg)
        return out

    def monday(every: Duration) -> int:
        # Polars cuts weeks ("1w", "2w") from Monday 1970-01-05, not from the epoch (a
        # Thursday): 4 days more offset
        weeks = isinstance(every, str) and re.fullmatch(r"(\d+w)+", every.strip())
        return parse_duration("4d", unit) if weeks else 0

    if isinstance(spec, Tumbling):
        size = dur(spec.size, "size")
        offset = dur(spec.offset, "offset", positive=False) + monday(spec.size)
        return "tumbling", size, size, offset % size, 0
    if isinstance(spec, Hopping):
        size = dur(spec.size, "size")
        slide = dur(spec.slide, "slide")
        if slide > size:
            msg = (
                f"{step}: slide ({spec.slide!r}) is larger than size ({spec.size!r}): events "
                "between windows would belong to none; use a slide <= size"
            )
            raise DurationError(msg)
        offset = (dur(spec.offset, "offset", positive=False) + monday(spec.slide)) % slide
        return ("tumbling" if slide == size else "hopping"), size, slide, offset, 0
    if isinstance(spec, Session):
        return "session", 0, 0, 0, dur(spec.gap, "gap")
    msg = f"{step}: expected vs.tumbling(...), vs.hopping(...) or vs.session(...), got {spec!r}"
    raise DurationError(msg)


_UNIT = re.compile(r"\d+(ns|us|µs|ms|s|m|h|d|w)")


def _kinds(value: Duration) -> set[str]:
    """Whether a size or slide counts calendar days / weeks ("calendar"), fixed time
    ("fixed"), or both. A timedelta counts as Polars converts it: whole days are "1d"
    (so ``timedelta(hours=24)``, the same value, is a calendar day too), the rest
    seconds; an integer is in the column's unit."""
    if isinstance(value, timedelta):
        kinds = {"calendar"} if value.days else set()
        return kinds | ({"fixed"} if value.seconds or value.microseconds else set())
    if isinstance(value, str):
        units = {m.group(1) for m in _UNIT.finditer(value.strip().lstrip("-"))}
        kinds = {"calendar"} if units & {"d", "w"} else set()
        return kinds | ({"fixed"} if units - {"d", "w"} else set())
    return {"fixed"}


def calendar_spec(spec: WindowSpec, dtype: pl.DataType, column: str | None, step: str) -> bool:
    """Whether the windows of ``spec`` count local calendar days or weeks on a
    time-zone-aware ``dtype`` (see :func:`local_time`): its size and slide are whole
    days or weeks (``"1d"``, ``"2w"``, ``timedelta(days=1)``). Fixed durations (``"24h"``,
    ``"60m"``, ``"3600s"``, an int) stay fixed there, as in Polars' ``group_by_dynamic``.

    Refused on a time-zone-aware column, as Polars refuses them or they mean different
    windows across DST: a size or slide mixing days or weeks with hours or less
    (``"1d12h"``, ``timedelta(hours=36)``), and, where the zone's UTC offset changes
    (DST), a size and slide of different kinds (``hopping("1d", slide="6h")``: Polars
    gives 23 or 25 h windows on a fixed 6 h grid).

    Examples
    --------
    >>> from vstream.plan.windows import Tumbling
    >>> from vstream.plan.windows import calendar_spec
    >>> import polars as pl
    >>> berlin = pl.Datetime("ms", "Europe/Berlin")
    >>> calendar_spec(Tumbling("1d"), berlin, "ts", "window"), calendar_spec(
    ...     Tumbling("24h"), berlin, "ts", "window")
    (True, False)
    """
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None or column is None:
        return False
    if isinstance(spec, Session):
        return False
    where = f"on column {column!r} ({dtype})"
    parts = [("size", spec.size)] + ([("slide", spec.slide)] if isinstance(spec, Hopping) else [])
    kinds = []
    for what, value in parts:
        k = _kinds(value)
        if len(k) > 1:
            msg = (
                f"{step}: the {what} {value!r} mixes calendar days or weeks with hours or "
                f"smaller units, which {where} disagree across DST (Polars' group_by_dynamic "
                "refuses it too): use whole days ('1d') or fixed hours ('36h', "
                "timedelta(seconds=...))"
            )
            raise DurationError(msg)
        kinds.append(k.pop())
    if len(set(kinds)) > 1 and len(zone_offsets(dtype.time_zone)[0]) > 1:
        assert isinstance(spec, Hopping)
        msg = (
            f"{step}: the size {spec.size!r} and the slide {spec.slide!r} mix calendar days "
            f"or weeks with fixed hours; {where} a local day is not always 24 hours (DST "
            f"or another change of the UTC offset of {dtype.time_zone}), so the windows "
            "would not follow one grid (Polars' group_by_dynamic gives "
            "windows of a local day on a fixed grid): use a fixed size and slide "
            "('24h', slide='6h') or both in days ('2d', slide='1d')"
        )
        raise DurationError(msg)
    return kinds[0] == "calendar"


@lru_cache(maxsize=64)
def standard_offset(zone: str) -> int:
    """The UTC offset (seconds) of a zone's standard time: its smallest offset in 2099
    (its current rules; winter time where it has DST).

    Examples
    --------
    >>> from vstream.plan.windows import standard_offset
    >>> standard_offset("Europe/Berlin"), standard_offset("Australia/Lord_Howe")
    (3600, 37800)
    """
    utc = pl.datetime_range(
        datetime(2099, 1, 1), datetime(2100, 1, 1), "1h", time_unit="ms", time_zone="UTC",
        eager=True,
    )  # fmt: skip
    local = utc.dt.convert_time_zone(zone).dt.replace_time_zone(None).to_physical()
    lowest = (local - utc.to_physical()).min()
    assert isinstance(lowest, int)
    return lowest // 1000


@lru_cache(maxsize=64)
def zone_offsets(zone: str) -> tuple[tuple[int, ...], int]:
    """The UTC offsets (seconds) a time zone has had from 1970 to 2100, and the largest
    step back of its clock (a DST overlap: 1 h in Europe/Berlin, 30 min in
    Australia/Lord_Howe, 0 without DST).

    Examples
    --------
    >>> from vstream.plan.windows import zone_offsets
    >>> zone_offsets("Europe/Berlin")
    ((3600, 7200), 3600)
    >>> zone_offsets("Asia/Kathmandu")  # +5:30 until 1986, then +5:45
    ((19800, 20700), 0)
    """
    utc = pl.datetime_range(
        datetime(1970, 1, 1), datetime(2100, 1, 1), "1h", time_unit="ms", time_zone="UTC",
        eager=True,
    )  # fmt: skip
    local = utc.dt.convert_time_zone(zone).dt.replace_time_zone(None).to_physical()
    offsets = (local - utc.to_physical()) // 1000
    back = -min(int(offsets.diff().min() or 0), 0)  # type: ignore[arg-type]
    return tuple(sorted(int(v) for v in offsets.unique())), back


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
    # local_time): its zone, and the largest step back of its
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
    >>> from vstream.plan.windows import valid_times
    >>> from vstream.plan.windows import WindowSetup
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
        lo, hi = lo + 2 * units_per_day(dtype), hi - 2 * units_per_day(dtype)
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


def local_time(setup: WindowSetup) -> WindowSetup:
    """``setup`` for a time-zone-aware column: windows aligned in the zone's local time,
    as Polars' ``group_by_dynamic`` does.

    Fixed durations (``"24h"``, ``"12h"``, ``"60m"``, ``"3600s"``, ints, a timedelta of
    less than a day: not ``setup.calendar``) stay fixed: windows of that many hours on one
    grid of instants, aligned to the zone's standard (winter) local time
    (:func:`standard_offset`): a ``"12h"`` window in Europe/Berlin starts at 00:00 and
    12:00 CET, so at 01:00 and 13:00 CEST in summer. That is Polars' grid when the data
    begins in standard time (Polars aligns the first window to the first row's local
    time, then adds fixed hours). ``offset`` is a fixed shift of that grid.

    Calendar days and weeks (``"1d"``, ``"1w"``, ``timedelta(days=1)``,
    ``setup.calendar``) are local: a ``"1d"`` window is a local day, 23 or 25 hours across
    DST, and ``offset`` is local wall-clock time too (``"1d"`` with offset ``"6h"``
    starts at 06:00 local every day, as Polars' windows after their first).

    For calendar windows, where the zone's UTC offsets (1970-2100) are all the same
    modulo the slide, local alignment is a fixed shift of the UTC grid: the offset takes
    it, and the windows are computed in UTC as for any column ("1d" in Asia/Kolkata).
    Else (a day in Europe/Berlin) events are placed by their local wall-clock time
    (``setup.zone``): both passes of an overlap are in the same local window, a window
    in a gap has no data, a window starts at the earliest instant its local start
    stands for and ends at the latest one of its end, and it fires when the watermark
    reaches that end (see ``WindowOp._local_wm``). Sessions keep UTC (gaps are
    durations). Weeks ("1w") start on Mondays, as in Polars (see :func:`resolve`).
    """
    dtype = setup.time_dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        return setup
    if setup.kind == "session" or setup.time_column is None:
        return setup
    offset = utc_offset(dtype, setup.slide, setup.offset, calendar=setup.calendar)
    if offset is not None:
        return replace(setup, offset=offset)
    per_s = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[dtype.time_unit or "us"]
    back = zone_offsets(dtype.time_zone)[1]
    return replace(setup, zone=dtype.time_zone, zone_back=back * per_s)


def utc_offset(dtype: pl.Datetime, slide: int, offset: int, *, calendar: bool) -> int | None:
    """The offset of windows computed in UTC (``k*slide + offset``, in the unit of the
    time-zone-aware ``dtype``) that are the windows :func:`local_time` means: fixed
    durations shifted to the zone's standard time, calendar days shifted by the zone's
    phase where its UTC offsets (1970-2100) agree modulo the slide; None where they need
    local wall-clock time (a day in Europe/Berlin).

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.plan.windows import utc_offset
    >>> hour = 3_600_000
    >>> utc_offset(pl.Datetime("ms", "Asia/Kolkata"), hour, 0, calendar=False) // 60_000
    30
    >>> utc_offset(pl.Datetime("ms", "Europe/Berlin"), 24 * hour, 0, calendar=True) is None
    True
    """
    assert dtype.time_zone is not None
    per_s = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[dtype.time_unit or "us"]
    if not calendar:  # a fixed grid, shifted to the zone's standard time
        return (offset - standard_offset(dtype.time_zone) * per_s % slide) % slide
    phases = {off * per_s % slide for off in zone_offsets(dtype.time_zone)[0]}
    if len(phases) == 1:
        return (offset - phases.pop()) % slide
    return None


def join_window_offset(spec: WindowSpec, et: EventTime, slide: int, offset: int, step: str) -> int:
    """For a windowed join, which cuts windows in UTC: the offset that puts them where a
    window step puts them on the join's time column (:func:`local_time`: unchanged on a
    column without a time zone). Refused at build time where that needs local wall-clock
    time (calendar days in a zone with DST), and for the kinds :func:`calendar_spec`
    refuses."""
    dtype = et.dtype
    calendar = calendar_spec(spec, dtype, et.column, step)
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        return offset
    out = utc_offset(dtype, slide, offset, calendar=calendar)
    if out is None:
        msg = (
            f"{step}: {spec} on column {et.column!r} ({dtype}) counts local days, 23 or 25 "
            f"hours across DST in {dtype.time_zone}, and a windowed join cuts its windows "
            "in UTC only: use fixed hours (vs.tumbling('24h'), a grid aligned to the "
            "zone's standard time) or join on the time in UTC "
            f"(.with_columns(pl.col({et.column!r}).dt.convert_time_zone('UTC')) on both "
            "inputs before with_watermark)"
        )
        raise DurationError(msg)
    return out


class WindowNode(Node):
    """A keyed window aggregation."""

    def __init__(self, input: Node, setup: WindowSetup, label: str) -> None:
        super().__init__()
        self.inputs = (input,)
        setup = local_time(setup)
        self.setup = setup
        self.schema = setup.schema
        self.bounded = input.bounded
        self.label = label
        if setup.time_column is not None:
            lo, hi = valid_times(setup)
            if lo > hi:
                msg = (
                    f"{label}: the window ({setup.size or setup.gap} with allowed lateness "
                    f"{setup.lateness}, in the unit of column {setup.time_column!r}) is too "
                    f"long for any event time of {setup.time_dtype} to have windows that "
                    "fit; use a shorter window or allowed_lateness"
                )
                raise DurationError(msg)
        unit: TimeUnit | None
        if setup.time_column is None:
            unit = "us"
        else:
            assert input.event_time is not None
            unit = input.event_time.unit
        # downstream, a result row's event time is window_end - 1 (Flink's convention)
        self.event_time = EventTime(
            "window_end",
            setup.time_dtype,
            unit,
            0,
            None,
            shift=-1,
        )

    def needs(self, wanted: set[str]) -> set[str] | None:
        st = self.setup
        cols = set(st.by)
        if st.time_column is not None:
            cols.add(st.time_column)
        if st.event_time is not None and st.event_time.other is not None:
            cols.add(st.event_time.other)
        roots = root_columns(list(st.aggs.inputs.values()))
        return None if roots is None else cols | roots

    def can_dead_letter(self) -> bool:
        return True  # events whose windows do not fit the time column's type


class LateEventsNode(Node):
    """The rows of input ``port`` that a window (with ``late="side"``) or a join dropped
    as late."""

    def __init__(self, of: Node, port: int = 0) -> None:
        super().__init__()
        self.inputs = (of,)
        self.of = of
        self.port = port
        # its rows come from that input of ``of`` (see required_columns)
        self.late_input = of.inputs[port]
        self.schema = self.late_input.schema
        self.event_time = self.late_input.event_time
        self.bounded = of.bounded
        side = "" if len(of.inputs) == 1 else f" ({'left' if port == 0 else 'right'})"
        self.label = f"late_events of [{of.id}]{side}"

    def needs(self, wanted: set[str]) -> set[str] | None:
        return set()  # nothing from the window's output


def processing_time() -> tuple[pl.DataType, int]:
    """The dtype and unit of processing-time window bounds."""
    return pl.Datetime("us"), unit_to_ns("us")
