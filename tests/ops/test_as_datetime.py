"""``with_watermark(..., time_unit=..., as_datetime=True)``: an integer event time cast
to ``pl.Datetime(unit)`` after the watermark step (issue 22 item 2). Windows and joins
downstream give the integer run's results with their time columns cast, under every
batch size."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
import vstream as vs
from vstream.errors import EventTimeError, SchemaError

SameRows = Any
# same_rows is a stateless function fixture, safe to share between hypothesis examples
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
FLOAT = {"check_exact": False, "rel_tol": 1e-9}
AGGS = [pl.len(), pl.col("cpu").sum(), pl.col("mem").max()]

WINDOWS = {
    "tumbling": (vs.tumbling("10s"), None),
    "tumbling-offset": (vs.tumbling("10s", offset="3s"), "region"),
    "hopping": (vs.hopping("10s", "4s"), "region"),
    "session": (vs.session("2s"), "host"),
}


def _cast(df: pl.DataFrame, columns: tuple[str, ...], unit: str = "ms") -> pl.DataFrame:
    """``df`` with its integer time columns as ``Datetime(unit)``: the integer run's
    result as the datetime run should give it."""
    return df.with_columns(pl.col(c).cast(pl.Datetime(unit)) for c in columns)  # type: ignore[arg-type]


def _source(df: pl.DataFrame, batch_size: int, *, as_datetime: bool) -> vs.Stream:
    return vs.from_polars(df, batch_size=batch_size).with_watermark(
        "ts", "3s", time_unit="ms", as_datetime=as_datetime
    )


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(max_n=600, max_hosts=8),
    kind=st.sampled_from(sorted(WINDOWS)),
    batch_size=strategies.batch_sizes(),
)
def test_windows_equal_the_integer_run_cast(
    same_rows: SameRows, df: pl.DataFrame, kind: str, batch_size: int
) -> None:
    spec, by = WINDOWS[kind]

    def run(as_datetime: bool) -> tuple[pl.DataFrame, vs.Metrics]:
        s = _source(df, batch_size, as_datetime=as_datetime).window(spec, by=by)
        return s.agg(*AGGS).collect(return_metrics=True)

    ints, m_int = run(False)
    dts, m_dt = run(True)
    assert dts.schema["window_start"] == pl.Datetime("ms")
    assert dts.schema["window_end"] == pl.Datetime("ms")
    same_rows(dts, _cast(ints, ("window_start", "window_end")), **FLOAT)
    assert (m_dt.late_events, m_dt.dead_letters) == (m_int.late_events, m_int.dead_letters)


@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    df=strategies.telemetry_frames(min_n=1, max_n=400, max_hosts=5, nulls=False),
    batch_size=strategies.batch_sizes(),
    how=st.sampled_from(["interval", "window", "asof"]),
)
def test_joins_downstream_equal_the_integer_run_cast(
    same_rows: SameRows, df: pl.DataFrame, batch_size: int, how: str
) -> None:
    left_df = df.select("ts", "host", "cpu")
    right_df = df.select("ts", "host", pl.col("latency_ms").alias("lat")).with_columns(
        pl.col("ts") + 700
    )

    def run(as_datetime: bool) -> pl.DataFrame:
        left = _source(left_df, batch_size, as_datetime=as_datetime)
        right = _source(right_df, max(1, batch_size // 3), as_datetime=as_datetime)
        if how == "interval":
            out = left.join_interval(right, on="host", lower="-1s", upper="1s")
        elif how == "window":
            out = left.join(right, on="host", window=vs.tumbling("5s"))
        else:
            out = left.join_asof(right, by="host", tolerance="2s")
        return out.collect()

    ints, dts = run(False), run(True)
    times = tuple(c for c, dt in ints.schema.items() if c.startswith(("ts", "window_")))
    assert times
    assert all(dts.schema[c] == pl.Datetime("ms") for c in times)
    same_rows(dts, _cast(ints, times), **FLOAT)


def test_a_window_over_window_results_sees_datetimes(same_rows: SameRows) -> None:
    df = vs.datasets.telemetry(3_000, hosts=20, seed=3)

    def run(as_datetime: bool) -> pl.DataFrame:
        per_host = _source(df, 257, as_datetime=as_datetime).window(vs.tumbling("5s"), by="host")
        counts = per_host.agg(pl.len().alias("n"))
        return counts.window(vs.tumbling("10s")).agg(pl.col("n").max()).collect()

    ints, dts = run(False), run(True)
    assert ints.height > 0
    same_rows(dts, _cast(ints, ("window_start", "window_end")))


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_the_column_is_cast_after_the_watermark_step(unit: str) -> None:
    df = pl.DataFrame({"ts": [1_000, 3_000, 2_000], "x": [1, 2, 3]})
    s = vs.from_polars(df).with_watermark("ts", 0, time_unit=unit, as_datetime=True)  # type: ignore[arg-type]
    assert s.schema["ts"] == pl.Datetime(unit)  # type: ignore[arg-type]
    assert s.event_time == "ts"
    out = s.collect()
    assert out["ts"].to_physical().to_list() == [1_000, 3_000, 2_000]  # values kept, in order
    assert f"as_datetime('ts', '{unit}')" in s.explain()


def test_without_as_datetime_the_data_keep_their_integers() -> None:
    df = pl.DataFrame({"ts": [1_000, 2_000]})
    s = vs.from_polars(df).with_watermark("ts", 0, time_unit="ms")
    assert s.schema["ts"] == pl.Int64
    out = s.window(vs.tumbling("1s")).agg(pl.len()).collect()
    assert out.schema["window_start"] == pl.Int64


def test_a_datetime_column_is_kept_as_it_is() -> None:
    df = pl.DataFrame({"ts": [1_000, 2_000]}).with_columns(pl.col("ts").cast(pl.Datetime("us")))
    s = vs.from_polars(df).with_watermark("ts", "1s", as_datetime=True)
    assert s.schema["ts"] == pl.Datetime("us")
    assert "as_datetime" not in s.explain()


@pytest.mark.parametrize(
    ("unit", "fix"),
    [(None, "declare time_unit='ms'"), ("s", "scale the column to milliseconds first")],
)
def test_refused_without_a_datetime_unit(unit: str | None, fix: str) -> None:
    df = pl.DataFrame({"ts": [1, 2]})
    with pytest.raises(EventTimeError, match="as_datetime=True needs a time_unit") as info:
        vs.from_polars(df).with_watermark("ts", 0, time_unit=unit, as_datetime=True)  # type: ignore[arg-type]
    assert "with_watermark('ts')" in str(info.value)
    assert fix in str(info.value)


def test_a_join_of_integers_with_datetimes_points_to_as_datetime() -> None:
    df = pl.DataFrame({"ts": [1_000, 2_000], "k": ["a", "b"]})
    left = vs.from_polars(df).with_watermark("ts", 0, time_unit="ms", as_datetime=True)
    right = vs.from_polars(df).with_watermark("ts", 0, time_unit="ms")
    with pytest.raises(SchemaError, match=r"time_unit=.ms., as_datetime=True\) on it"):
        left.join_interval(right, on="k", lower="-1s", upper="1s")
