"""Joins refused when the pipeline is built (``plan/joins.py``; DESIGN.md "Bad input": a
wrong pipeline fails when it is built, naming the culprit).

Each refusal is checked for its error class and for a message that names the step (the
join as the user wrote it), the culprit (the column, bound or window) and what to do.
Here: event times of different types on the two sides (integer units, Datetime units and
time zones, integer against Datetime, integer widths), an interval whose lower bound is
after its upper bound, missing bounds, the outer windowed join's limit of 63 windows per
event, and window arguments a join does not take.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

import vstream as vs
from vstream.errors import PipelineError, SchemaError, VStreamError

BASE = pl.DataFrame({"ts": [1_000, 2_000], "k": ["a", "b"], "x": [1, 2]})


def _stream(
    ts: pl.DataType | None = None, *, unit: str | None = "ms", col: str = "ts"
) -> vs.Stream:
    """A stream with event-time column ``col`` of type ``ts`` (Int64 by default)."""
    df = BASE if ts is None else BASE.with_columns(pl.col("ts").cast(ts))
    df = df.rename({"ts": col})
    if isinstance(ts, pl.Datetime):
        return vs.from_polars(df).with_watermark(col, "0s")
    return vs.from_polars(df).with_watermark(col, 0, time_unit=unit)  # type: ignore[arg-type]


def _refused(build: Callable[[], Any], error: type[VStreamError], *parts: str) -> str:
    """The message of the error ``build`` raises; it must contain every one of ``parts``."""
    with pytest.raises(error) as info:
        build()
    msg = str(info.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


JOINS: dict[str, Callable[[vs.Stream, vs.Stream], Any]] = {
    "interval": lambda a, b: a.join_interval(b, on="k", lower="-1s", upper="1s"),
    "window": lambda a, b: a.join(b, on="k", window=vs.tumbling("1s")),
    "ttl": lambda a, b: a.join(b, on="k", ttl="1s"),
    "asof": lambda a, b: a.join_asof(b, by="k"),
}
STEPS = {
    "interval": "join_interval(k, lower='-1s', upper='1s')",
    "window": "join(k, window=tumbling('1s')",
    "ttl": "join(k, ttl='1s'",
    "asof": "join_asof(k",
}

# (left, right, what each side is called in the message, the fix the message proposes)
TIME_TYPES: dict[str, tuple[vs.Stream, vs.Stream, tuple[str, str], str]] = {
    "integer units": (
        _stream(unit="ms"),
        _stream(unit="s", col="t2"),
        ("Int64 (time_unit='ms')", "Int64 (time_unit='s')"),
        "declare the same time_unit in both .with_watermark(...) calls",
    ),
    "integer without a unit": (
        _stream(unit="ms"),
        _stream(unit=None, col="t2"),
        ("Int64 (time_unit='ms')", "Int64 (no time_unit)"),
        "declare time_unit='ms' in the right input's .with_watermark(...)",
    ),
    "integer widths": (
        _stream(),
        _stream(pl.Int32, col="t2"),
        ("Int64 (time_unit='ms')", "Int32 (time_unit='ms')"),
        ".with_columns(pl.col('t2').cast(pl.Int64)) on the right input",
    ),
    "datetime units": (
        _stream(pl.Datetime("ms")),
        _stream(pl.Datetime("us"), col="t2"),
        ("Datetime(time_unit='ms'", "Datetime(time_unit='us'"),
        ".with_columns(pl.col('t2').dt.cast_time_unit('ms')) on the right input before its "
        ".with_watermark(...)",
    ),
    "time zone against none": (
        _stream(pl.Datetime("ms", "UTC")),
        _stream(pl.Datetime("ms"), col="t2"),
        ("Datetime(time_unit='ms', time_zone='UTC')", "Datetime(time_unit='ms', time_zone=None)"),
        ".with_columns(pl.col('t2').dt.replace_time_zone('UTC'))",
    ),
    "two time zones": (
        _stream(pl.Datetime("ms", "Europe/Berlin")),
        _stream(pl.Datetime("ms", "UTC"), col="t2"),
        (
            "Datetime(time_unit='ms', time_zone='Europe/Berlin')",
            "Datetime(time_unit='ms', time_zone='UTC')",
        ),
        ".with_columns(pl.col('t2').dt.convert_time_zone('Europe/Berlin'))",
    ),
    "integer against datetime": (
        _stream(pl.Datetime("ms")),
        _stream(unit="ms", col="t2"),
        ("Datetime(time_unit='ms'", "Int64 (time_unit='ms')"),
        ".with_columns(pl.col('t2').cast(pl.Datetime('ms'))) on the right input (integers in "
        "ms since the epoch)",
    ),
    "datetime against integer": (
        _stream(unit="us"),
        _stream(pl.Datetime("us"), col="t2"),
        ("Int64 (time_unit='us')", "Datetime(time_unit='us'"),
        ".with_columns(pl.col('t2').dt.epoch('us'))",
    ),
}


@pytest.mark.parametrize("kind", JOINS)
@pytest.mark.parametrize("case", TIME_TYPES)
def test_event_times_of_different_types_are_refused(kind: str, case: str) -> None:
    left, right, (ltype, rtype), fix = TIME_TYPES[case]
    msg = _refused(
        lambda: JOINS[kind](left, right),
        SchemaError,
        STEPS[kind],
        "the event times differ in type",
        f"'ts' is {ltype}",  # the culprits: each side's column and its type
        f"'t2' is {rtype}",
        fix,
    )
    assert msg.index("on the left") < msg.index("on the right")


@pytest.mark.parametrize("case", TIME_TYPES)
def test_the_proposed_fix_makes_the_join_build(case: str) -> None:
    """Doing what the message says (on the right input's frame, before its watermark)
    gives a join that builds and runs."""
    left, _, _, _ = TIME_TYPES[case]
    ltype = left._node.event_time.dtype  # type: ignore[union-attr]
    lunit = left._node.event_time.unit  # type: ignore[union-attr]
    fixes: dict[str, Callable[[], vs.Stream]] = {
        "integer units": lambda: _stream(unit="ms", col="t2"),
        "integer without a unit": lambda: _stream(unit="ms", col="t2"),
        "integer widths": lambda: vs.from_polars(
            BASE.rename({"ts": "t2"}).with_columns(pl.col("t2").cast(pl.Int32).cast(pl.Int64))
        ).with_watermark("t2", 0, time_unit="ms"),
        "datetime units": lambda: vs.from_polars(
            BASE.rename({"ts": "t2"})
            .with_columns(pl.col("t2").cast(pl.Datetime("us")))
            .with_columns(pl.col("t2").dt.cast_time_unit("ms"))
        ).with_watermark("t2", "0s"),
        "time zone against none": lambda: vs.from_polars(
            BASE.rename({"ts": "t2"})
            .with_columns(pl.col("t2").cast(pl.Datetime("ms")))
            .with_columns(pl.col("t2").dt.replace_time_zone("UTC"))
        ).with_watermark("t2", "0s"),
        "two time zones": lambda: vs.from_polars(
            BASE.rename({"ts": "t2"})
            .with_columns(pl.col("t2").cast(pl.Datetime("ms", "UTC")))
            .with_columns(pl.col("t2").dt.convert_time_zone("Europe/Berlin"))
        ).with_watermark("t2", "0s"),
        "integer against datetime": lambda: vs.from_polars(
            BASE.rename({"ts": "t2"}).with_columns(pl.col("t2").cast(pl.Datetime("ms")))
        ).with_watermark("t2", "0s"),
        "datetime against integer": lambda: vs.from_polars(
            BASE.rename({"ts": "t2"})
            .with_columns(pl.col("t2").cast(pl.Datetime("us")))
            .with_columns(pl.col("t2").dt.epoch("us"))
        ).with_watermark("t2", 0, time_unit="us"),
    }
    right = fixes[case]()
    rt = right._node.event_time
    assert rt is not None
    assert (rt.dtype, rt.unit) == (ltype, lunit)
    out = left.join(right, on="k", ttl="1s").collect()
    assert out.columns == ["ts", "k", "x", "t2", "x_right"]


def _ints() -> tuple[vs.Stream, vs.Stream]:
    return _stream(), _stream()


@pytest.mark.parametrize(
    ("lower", "upper"),
    [("1s", "-1s"), ("2s", "1s"), (5, 4), (timedelta(seconds=1), "999ms"), ("-1s", "-2s")],
)
def test_lower_after_upper_is_refused(lower: Any, upper: Any) -> None:
    a, b = _ints()
    _refused(
        lambda: a.join_interval(b, on="k", lower=lower, upper=upper),
        PipelineError,
        f"join_interval(k, lower={lower!r}, upper={upper!r})",  # the step
        f"lower ({lower!r}) is after upper ({upper!r})",  # the culprit
        f"swap them, lower={upper!r}, upper={lower!r}",  # the fix
    )


@pytest.mark.parametrize(("lower", "upper"), [("1s", "1s"), (-3, -3), ("-2s", "-1s"), (0, 0)])
def test_lower_equal_to_upper_or_both_negative_is_accepted(lower: Any, upper: Any) -> None:
    a, b = _ints()
    out = a.join_interval(b, on="k", lower=lower, upper=upper).collect()
    assert out.columns == ["ts", "k", "x", "ts_right", "x_right"]


@pytest.mark.parametrize(
    ("lower", "upper", "missing"),
    [(None, "1s", "lower is missing"), ("-1s", None, "upper is missing"),
     (None, None, "lower and upper are missing")],
)  # fmt: skip
def test_missing_bounds_are_refused(lower: Any, upper: Any, missing: str) -> None:
    a, b = _ints()
    _refused(
        lambda: a.join_interval(b, on="k", lower=lower, upper=upper),
        PipelineError,
        "join_interval(k,",
        missing,
        "right.t - left.t must lie between them",
        "e.g. lower='-5s', upper='5s'",
    )


@pytest.mark.parametrize("how", ["left", "full"])
@pytest.mark.parametrize(
    ("size", "slide", "windows"), [("64s", "1s", 64), ("10s", "150ms", 67), ("1h", "1s", 3600)]
)
def test_outer_windowed_join_with_more_than_63_windows_per_event_is_refused(
    how: str, size: str, slide: str, windows: int
) -> None:
    a, b = _ints()
    spec = vs.hopping(size, slide)
    _refused(
        lambda: a.join(b, on="k", window=spec, how=how),  # type: ignore[arg-type]
        PipelineError,
        f"join(k, window={spec}, how={how!r})",
        f"an outer (how={how!r}) windowed join supports up to 63 windows per event",
        f"puts each event in {windows}",
        "use a slide of at least size / 63, or how='inner' (no limit)",
    )


@pytest.mark.parametrize(
    ("how", "size", "slide"),
    [
        ("left", "63s", "1s"),
        ("full", "630ms", "10ms"),
        ("inner", "64s", "1s"),
        ("inner", "2s", "10ms"),
    ],
)
def test_windowed_joins_within_the_limit_are_accepted(how: str, size: str, slide: str) -> None:
    """63 windows per event for an outer join; an inner join has no limit (200 windows)."""
    a, b = _ints()
    out = a.join(b, on="k", window=vs.hopping(size, slide), how=how).collect()  # type: ignore[arg-type]
    assert out.columns[-2:] == ["window_start", "window_end"]
    assert out.height > 0


@pytest.mark.parametrize(
    ("window", "part"),
    [
        (vs.session("1s"), "(session windows are not supported in joins)"),
        ("1s", "e.g. window=vs.tumbling('1s')"),
    ],
)
def test_window_arguments_a_join_does_not_take_are_refused(window: Any, part: str) -> None:
    a, b = _ints()
    _refused(
        lambda: a.join(b, on="k", window=window),
        PipelineError,
        "join(k, window=",
        "window must be vs.tumbling(...) or vs.hopping(...)",
        part,
    )
