"""Parsing durations (Polars strings, ``timedelta``, integers) into event-time units."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal, TypeAlias

from vstream.errors import DurationError

__all__ = [
    "Duration",
    "TimeUnit",
    "parse_duration",
    "to_nanoseconds",
    "unit_to_ns",
    "wall_seconds",
]

TimeUnit: TypeAlias = Literal["ns", "us", "ms", "s"]
Duration: TypeAlias = str | timedelta | int

_NS_PER: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_TOKEN = re.compile(r"(\d+)(ns|us|µs|ms|s|m|h|d|w)")


def to_nanoseconds(value: str | timedelta, *, what: str = "duration") -> int:
    """Convert a Polars duration string (``"1h30m"``, ``"500ms"``) or a timedelta to ns.

    Calendar units (``mo``, ``y``) and index counts (``i``) have no fixed length in
    event time and are refused. A leading ``-`` gives a negative count: callers say
    whether a negative duration is acceptable (so ``"-2s"`` is refused as negative, not
    as unparsable).

    Examples
    --------
    >>> from vstream._duration import to_nanoseconds
    >>> to_nanoseconds("1m30s"), to_nanoseconds("-2s")
    (90000000000, -2000000000)
    >>> from datetime import timedelta
    >>> to_nanoseconds(timedelta(milliseconds=2))
    2000000
    """
    if isinstance(value, timedelta):
        # timedelta keeps microseconds exactly; avoid float total_seconds()
        return ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 1_000
    text = value.strip()
    if text.startswith("-") and text[1:2].isdigit():
        # a negative duration parses (the caller says whether it may be negative)
        return -to_nanoseconds(text[1:], what=what)
    pos = 0
    total = 0
    for m in _TOKEN.finditer(text):
        if m.start() != pos:
            break
        unit = "us" if m.group(2) == "µs" else m.group(2)
        total += int(m.group(1)) * _NS_PER[unit]
        pos = m.end()
    if pos != len(text) and re.fullmatch(r"(\d+(ns|us|µs|ms|s|m|h|d|w|mo|q|y|i))+", text):
        msg = (
            f"{what} {value!r} is a calendar duration (months, quarters, years) or an index "
            "count, which have no fixed length in event time: use a fixed duration or whole "
            "days or weeks ('30d', '1w')"
        )
        raise DurationError(msg)
    if pos != len(text) or not text:
        msg = (
            f"cannot parse {what} {value!r}: use a Polars duration string such as "
            "'500ms', '2s', '1m' or '1h30m' (units ns, us, ms, s, m, h, d, w)"
        )
        raise DurationError(msg)
    return total


def parse_duration(
    value: Duration,
    unit: TimeUnit | None,
    *,
    what: str = "duration",
    allow_zero: bool = True,
) -> int:
    """Express ``value`` as an integer number of ``unit``.

    Parameters
    ----------
    value
        An int (already in the column's unit), a Polars duration string or a
        :class:`~datetime.timedelta`.
    unit
        The time unit of the event-time column, or None for an integer column whose
        unit was not declared (then only ints are accepted).
    what
        What the duration is for; used in error messages.
    allow_zero
        Whether 0 is acceptable.

    Examples
    --------
    >>> from vstream._duration import parse_duration
    >>> parse_duration("2s", "ms")
    2000
    >>> parse_duration(250, None)
    250
    """
    if isinstance(value, bool):
        msg = f"{what} must be a duration, got the bool {value!r}"
        raise DurationError(msg)
    if isinstance(value, int):
        out = value
    elif isinstance(value, str | timedelta):
        if unit is None:
            msg = (
                f"{what} {value!r} is a duration but the event-time column is a plain "
                "integer with no declared unit: pass an integer in the column's unit, or "
                "declare it with with_watermark(..., time_unit='ms')"
            )
            raise DurationError(msg)
        ns = to_nanoseconds(value, what=what)
        per = _NS_PER[unit]
        if ns % per:
            msg = (
                f"{what} {value!r} is not a whole number of {unit}, the unit of the "
                f"event-time column: use a multiple of 1{unit}"
            )
            raise DurationError(msg)
        out = ns // per
    else:
        msg = (
            f"{what} must be an int, a duration string or a timedelta, got {type(value).__name__}"
        )
        raise DurationError(msg)
    if out < 0 or (out == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        which = "the negative duration " if out < 0 else ""
        msg = f"{what} must be {bound}, got {which}{value!r}: pass a duration {bound} such as "
        msg += "'2s'" if unit is not None else "2 (in the column's unit)"
        raise DurationError(msg)
    return out


def parse_signed_duration(
    value: Duration, unit: TimeUnit | None, *, what: str = "duration"
) -> int:
    """:func:`parse_duration` that also takes negative durations (``-5``, ``"-2s"``,
    ``timedelta(seconds=-2)``): window offsets, interval-join bounds.

    Examples
    --------
    >>> from vstream._duration import parse_signed_duration
    >>> parse_signed_duration("-2s", "ms"), parse_signed_duration(30, None)
    (-2000, 30)
    """
    negative = (
        (isinstance(value, int) and not isinstance(value, bool) and value < 0)
        or (isinstance(value, str) and value.strip().startswith("-"))
        or (isinstance(value, timedelta) and value < timedelta(0))
    )
    if not negative:
        return parse_duration(value, unit, what=what)
    flipped: Duration = -value if not isinstance(value, str) else value.strip()[1:]
    return -parse_duration(flipped, unit, what=what)


def unit_to_ns(unit: TimeUnit) -> int:
    """Nanoseconds in one ``unit``."""
    return _NS_PER[unit]


def wall_seconds(value: Duration | float, what: str) -> float:
    """A wall-clock duration in seconds: a Polars duration string, a timedelta, or a
    number of seconds (as ``time.sleep`` takes)."""
    if isinstance(value, bool):
        msg = f"{what} must be a duration, got {value!r}"
        raise DurationError(msg)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        seconds = to_nanoseconds(value, what=what) / 1e9
    if seconds < 0:
        msg = f"{what} must be >= 0, got the negative duration {value!r}: pass a duration >= 0"
        raise DurationError(msg)
    return seconds
