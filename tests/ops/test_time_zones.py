"""Windows over a time-zone-aware ``Datetime`` column are aligned in the zone's local
time, as Polars' ``group_by_dynamic`` does (issue 16, item 11; DESIGN.md "Time zones").

Each zone is tested over a year of events (both DST transitions): Europe/Berlin and
America/New_York (1 h DST), Asia/Kolkata (+5:30: "30m" and "1h" windows are not
UTC-aligned), Asia/Kathmandu (+5:45) and Australia/Lord_Howe (30-minute DST).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vstream as vs
import window_reference as ref
from vstream.errors import DurationError
from vstream.ops.window import to_local, zone_table

SameRows = Any
YEAR = (datetime(2024, 1, 1), datetime(2025, 1, 1))
AGGS = [pl.len(), pl.col("x").sum()]


def year_of_events(zone: str, n: int = 6_000, unit: str = "ms", seed: int = 0) -> pl.DataFrame:
    """``n`` events at random instants of 2024 (sorted), in ``zone``, with denser events
    on the days of its DST transitions."""
    rng = np.random.default_rng(seed)
    lo, hi = (int(d.timestamp() * 1_000) for d in YEAR)
    t = rng.integers(lo, hi, n)
    # a day around each change of the zone's UTC offset in 2024
    hours = pl.datetime_range(*YEAR, "1h", time_unit="ms", time_zone="UTC", eager=True)
    local = hours.dt.convert_time_zone(zone).dt.replace_time_zone(None).to_physical()
    offset = local - hours.to_physical()
    changes = hours.to_physical().filter(offset.diff().fill_null(0) != 0).to_numpy()
    near = [rng.integers(c - 43_200_000, c + 43_200_000, n // 10) for c in changes]
    t = np.sort(np.concatenate([t, *near]))
    ts = pl.Series("ts", t).cast(pl.Datetime("ms", "UTC")).cast(pl.Datetime(unit, "UTC"))  # type: ignore[arg-type]
    x = rng.integers(0, 100, len(t))
    return pl.DataFrame({"ts": ts.dt.convert_time_zone(zone), "x": x})


def windowed(df: pl.DataFrame, spec: Any, batch_size: int = 997) -> pl.DataFrame:
    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", "1h")
    out, m = stream.window(spec).agg(*AGGS).collect(return_metrics=True)
    assert m.late_events == 0
    return out


def polars_tumbling(df: pl.DataFrame, every: str) -> pl.DataFrame:
    out = df.group_by_dynamic(
        "ts", every=every, closed="left", label="left", start_by="window"
    ).agg(*AGGS)
    return out.rename({"ts": "window_start"})


def anchored(df: pl.DataFrame, zone: str) -> pl.DataFrame:
    """``df`` after one event in the zone's standard time (the smaller offset of 2023-01-15
    and 2023-07-15): Polars aligns fixed-duration windows to the local time of the first
    row; vstream to the zone's standard time."""
    days = pl.Series([datetime(2023, 1, 15, 12), datetime(2023, 7, 15, 12)]).cast(
        pl.Datetime("ms")
    )
    days = days.dt.replace_time_zone("UTC")
    offsets = days.dt.convert_time_zone(zone).dt.replace_time_zone(
        None
    ) - days.dt.replace_time_zone(None)
    first = days.dt.convert_time_zone(zone)[int(offsets.arg_min() or 0)]
    head = pl.DataFrame({"ts": [first], "x": [0]}).cast(df.schema)  # type: ignore[arg-type]
    return pl.concat([head, df])


def local(df: pl.DataFrame, *cols: str) -> pl.DataFrame:
    """Columns of a zone as naive local wall-clock times."""
    return df.with_columns(pl.col(c).dt.replace_time_zone(None) for c in cols)


CASES = [
    ("Europe/Berlin", "30m"),
    ("Europe/Berlin", "1h"),
    ("Europe/Berlin", "1d"),
    ("America/New_York", "1h"),
    ("America/New_York", "1d"),
    ("Asia/Kolkata", "30m"),
    ("Asia/Kolkata", "1h"),
    ("Asia/Kolkata", "1d"),
    ("Asia/Kathmandu", "15m"),
    ("Asia/Kathmandu", "1h"),
    ("Asia/Kathmandu", "1d"),
    ("Australia/Lord_Howe", "30m"),
    ("Australia/Lord_Howe", "1d"),
]


@pytest.mark.parametrize(("zone", "every"), CASES, ids=[f"{z}-{e}" for z, e in CASES])
def test_tumbling_windows_match_polars_group_by_dynamic(
    same_rows: SameRows, zone: str, every: str
) -> None:
    df = year_of_events(zone)
    out = windowed(df, vs.tumbling(every))
    assert out.schema["window_start"] == df.schema["ts"]
    assert out.schema["window_end"] == df.schema["ts"]
    expected = polars_tumbling(df, every)
    same_rows(out.drop("window_end"), expected)
    # the end is the next window's start (a local day is 23 or 25 h across DST)
    ends = expected.with_columns(window_end=pl.col("window_start").dt.offset_by(every))
    same_rows(out, ends.select(out.columns))


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_local_days_in_every_time_unit(same_rows: SameRows, unit: str) -> None:
    df = year_of_events("America/New_York", n=2_000, unit=unit)
    out = windowed(df, vs.tumbling("1d"))
    same_rows(out.drop("window_end"), polars_tumbling(df, "1d"))


FIXED = [
    ("Europe/Berlin", "24h"),
    ("Europe/Berlin", "12h"),
    ("Europe/Berlin", "7h"),
    ("America/New_York", "24h"),
    ("America/New_York", "12h"),
    ("America/New_York", "90m"),
    ("Australia/Lord_Howe", "24h"),
    ("Australia/Lord_Howe", "45m"),
    ("Asia/Kathmandu", "24h"),
]


@pytest.mark.parametrize(("zone", "every"), FIXED, ids=[f"{z}-{e}" for z, e in FIXED])
def test_hours_are_fixed_durations_as_in_polars(
    same_rows: SameRows, zone: str, every: str
) -> None:
    """Hours, minutes and seconds are fixed durations, as in Polars: "24h" is not a local
    day (23 or 25 h across DST), "12h" windows move by the DST step; the grid is
    Polars' for data that begins in standard time."""
    df = anchored(year_of_events(zone, n=3_000), zone)
    out = windowed(df, vs.tumbling(every))
    expected = polars_tumbling(df, every)
    same_rows(out.drop("window_end"), expected)
    lengths = (out["window_end"] - out["window_start"]).dt.total_minutes().unique()
    assert lengths.to_list() == [{"h": 60, "m": 1}[every[-1]] * int(every[:-1])]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("change", [0, 1])
def test_24h_and_1d_on_dst_days(same_rows: SameRows, zone: str, change: int) -> None:
    """On the days of both DST changes: "1d" (and timedelta(days=1), which Polars turns
    into "1d") are local days of 23 or 25 h; "24h" and timedelta(hours=12) fixed; "1d"
    with offset "6h" starts at 06:00 local every day. All as group_by_dynamic over the
    same rows (which begin a day before the change, in standard time for the spring
    change and after an event in January for the autumn one)."""
    days = {"Europe/Berlin": ("2024-03-31", "2024-10-27")}
    days["America/New_York"] = ("2024-03-10", "2024-11-03")
    mid = datetime.fromisoformat(days[zone][change] + "T12:00")
    hours = pl.datetime_range(
        mid - timedelta(days=2), mid + timedelta(days=2), "20m", time_unit="ms", eager=True
    )
    ts = pl.concat([pl.Series([datetime(2024, 1, 15, 12)]).cast(pl.Datetime("ms")), hours])
    ts = ts.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
    df = pl.DataFrame({"ts": ts, "x": range(len(ts))})
    for spec, every, offset in [
        (vs.tumbling("1d"), "1d", None),
        (vs.tumbling(timedelta(days=1)), timedelta(days=1), None),
        (vs.tumbling("24h"), "24h", None),
        (vs.tumbling(timedelta(hours=12)), timedelta(hours=12), None),
        (vs.tumbling("12h"), "12h", None),
        (vs.tumbling("1d", offset="6h"), "1d", "6h"),
    ]:
        out = windowed(df, spec, batch_size=17)
        kw = {} if offset is None else {"offset": offset}
        expected = df.group_by_dynamic("ts", every=every, include_boundaries=True, **kw)  # type: ignore[arg-type]
        expected = expected.agg(*AGGS).drop("ts")
        expected = expected.rename({"_lower_boundary": "window_start"})
        expected = expected.rename({"_upper_boundary": "window_end"})
        same_rows(out, expected.select(out.columns))
    # the day of the change: 23 or 25 h as "1d", 24 h as "24h"
    day = datetime.fromisoformat(days[zone][change]).date()
    local_day = windowed(df, vs.tumbling("1d")).filter(pl.col("window_start").dt.date() == day)
    length = (local_day["window_end"] - local_day["window_start"]).dt.total_hours()
    assert length.to_list() == [23 if change == 0 else 25]
    fixed = windowed(df, vs.tumbling("24h"))
    assert (fixed["window_end"] - fixed["window_start"]).dt.total_hours().unique().to_list() == [
        24
    ]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_fixed_hopping_windows_match_polars_across_dst(same_rows: SameRows, zone: str) -> None:
    df = year_of_events(zone, n=2_000)  # begins in January: standard time
    out = windowed(df, vs.hopping("24h", "6h"))
    expected = df.group_by_dynamic(
        "ts", every="6h", period="24h", include_boundaries=True, start_by="window"
    ).agg(*AGGS)
    expected = expected.drop("ts").rename(
        {"_lower_boundary": "window_start", "_upper_boundary": "window_end"}
    )
    # Polars' first window starts at the first row's; vstream's before it hold it too
    assert out.height == expected.height + 3
    out = out.filter(pl.col("window_start") >= expected["window_start"].min())
    same_rows(out, expected.select(out.columns))


@pytest.mark.parametrize(
    "spec",
    [
        vs.tumbling("1d12h"),
        vs.tumbling(timedelta(hours=36)),
        vs.hopping("2d", "1d12h"),
        vs.hopping("1d", "6h"),
        vs.hopping("36h", "1d"),
        vs.hopping(timedelta(days=1), timedelta(hours=6)),
    ],
    ids=str,
)
def test_days_mixed_with_hours_are_refused_where_the_zone_has_dst(spec: Any) -> None:
    df = year_of_events("Europe/Berlin", n=10)
    stream = vs.from_polars(df).with_watermark("ts", "1h")
    with pytest.raises(DurationError, match=r"window\(.*column 'ts'.*use "):
        stream.window(spec).agg(pl.len())
    # on a naive column, days are 24 h: nothing to refuse
    naive = vs.from_polars(local(df, "ts")).with_watermark("ts", "1h")
    naive.window(spec).agg(pl.len()).collect()


def test_a_day_every_6_hours_where_the_zone_has_one_offset(same_rows: SameRows) -> None:
    # Kolkata has no DST: a local day is always 24 h, so "1d" every "6h" is Polars'
    df = year_of_events("Asia/Kolkata", n=1_000)
    out = windowed(df, vs.hopping("1d", "6h"))
    expected = df.group_by_dynamic(
        "ts", every="6h", period="1d", include_boundaries=True, start_by="window"
    ).agg(*AGGS)
    expected = expected.drop("ts").rename(
        {"_lower_boundary": "window_start", "_upper_boundary": "window_end"}
    )
    # Polars' first window starts at the first row's; vstream's before it hold it too
    assert out.height == expected.height + 3
    out = out.filter(pl.col("window_start") >= expected["window_start"].min())
    same_rows(out, expected.select(out.columns))


@pytest.mark.parametrize(
    ("zone", "size", "slide"),
    [
        ("Europe/Berlin", "2d", "1d"),
        ("America/New_York", "3d", "1d"),
        ("Asia/Kolkata", "1h", "30m"),
        ("Asia/Kolkata", "1d", "6h"),  # one UTC offset: a day is 24 h
        ("Asia/Kathmandu", "1h", "15m"),
        ("Australia/Lord_Howe", "2d", "1d"),
    ],
)
def test_hopping_windows_match_explicit_assignment_in_local_time(
    same_rows: SameRows, zone: str, size: str, slide: str
) -> None:
    df = year_of_events(zone, n=3_000)
    out = windowed(df, vs.hopping(size, slide))
    # local wall-clock windows by explicit assignment, on the naive local times (the
    # windows here start and end at local times that exist once)
    us = {"15m": 900, "30m": 1_800, "1h": 3_600, "2h": 7_200, "6h": 21_600, "12h": 43_200}
    us |= {"1d": 86_400, "2d": 172_800, "3d": 259_200}
    naive = local(df, "ts")
    ms = 1_000
    expected = ref.hopping(naive, us[size] * ms, us[slide] * ms, aggs=AGGS)
    same_rows(local(out, "window_start", "window_end"), expected)


def test_an_hour_in_lord_howe_is_60_fixed_minutes_aligned_to_its_standard_time(
    same_rows: SameRows,
) -> None:
    """ "1h" is a fixed duration: 60 minutes on one grid, aligned to Lord Howe's standard
    time (+10:30), so at half past in its summer (+11); Polars' grid when the data
    begins in standard time (a first row in July)."""
    zone = "Australia/Lord_Howe"
    df = anchored(year_of_events(zone, n=3_000), zone)
    out = windowed(df, vs.tumbling("1h"))
    same_rows(out.drop("window_end"), polars_tumbling(df, "1h"))
    lengths = (out["window_end"] - out["window_start"]).dt.total_minutes().unique()
    assert lengths.to_list() == [60]
    minutes = out["window_start"].dt.minute().unique().sort().to_list()
    assert minutes == [0, 30]  # local hours in winter, half past in summer


def batches(zone: str, *utc: list[str]) -> vs.Stream:
    """One micro-batch per list of UTC times (ISO), shown in ``zone``; ``i`` numbers the
    events in arrival order."""
    out, i = [], 0
    for times in utc:
        ts = pl.Series([datetime.fromisoformat(t) for t in times]).cast(pl.Datetime("ms"))
        ts = ts.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
        out.append(pa.record_batch({"ts": ts.to_arrow(), "i": list(range(i, i + len(times)))}))
        i += len(times)
    return vs.from_arrow(out)


def test_a_local_day_fires_at_local_midnight_not_at_utc_midnight() -> None:
    # Kolkata: 2024-01-01 ends at 2024-01-01 18:30 UTC. The watermark (bound 0) passes it
    # at 19:00 UTC, so an event of local 23:00 (17:30 UTC) then is late
    stream = batches(
        "Asia/Kolkata", ["2024-01-01T04:30"], ["2024-01-01T19:00"], ["2024-01-01T17:30"]
    ).with_watermark("ts", 0)
    w = stream.window(vs.tumbling("1d"), late="side").agg(pl.len())
    out, late = vs.collect_all([w, w.late_events()])
    assert late["i"].to_list() == [2]
    starts = out["window_start"].dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    assert sorted(starts.to_list()) == [
        datetime(2023, 12, 31, 18, 30),
        datetime(2024, 1, 1, 18, 30),
    ]


def test_a_23_hour_day_fires_when_the_watermark_reaches_its_local_end() -> None:
    # Berlin, 2024-03-31 (23 h): it ends at 22:00 UTC; at 22:30 UTC an event of local
    # 23:30 (21:30 UTC) is late; an event of 21:59 UTC before that was not
    stream = batches(
        "Europe/Berlin",
        ["2024-03-31T10:00"],
        ["2024-03-31T21:59"],
        ["2024-03-31T22:30"],
        ["2024-03-31T21:30"],
    ).with_watermark("ts", 0)
    w = stream.window(vs.tumbling("1d"), late="side").agg(pl.len())
    out, late = vs.collect_all([w, w.late_events()])
    assert late["i"].to_list() == [3]
    day = out.filter(pl.col("len") == 2)
    assert (day["window_end"] - day["window_start"]).dt.total_hours().to_list() == [23]


def test_a_day_ending_in_a_dst_overlap_fires_at_the_later_instant_of_its_end() -> None:
    # Lord Howe, 2024-04-07: at 02:00 (+11, 15:00 UTC) the clock steps back to 01:30
    # (+10:30). The local day from 01:45 ends at the later 01:45 (15:15 UTC): an event of
    # the second 01:40 (15:10 UTC), after the watermark passed 14:50 UTC, is in it, not
    # late. (Polars' group_by_dynamic ends that day at the earlier 01:45, 14:45 UTC, and
    # counts the second pass in the next day.)
    stream = batches(
        "Australia/Lord_Howe",
        ["2024-04-06T14:40"],  # 01:40 +11
        ["2024-04-06T14:50"],  # 01:50 +11: the next local day
        ["2024-04-06T15:10"],  # 01:40 +10:30 (second pass)
        ["2024-04-06T16:00"],  # 02:30 +10:30
    ).with_watermark("ts", 0)
    w = stream.window(vs.tumbling("1d", offset="1h45m"), late="side").agg(pl.len())
    out, late = vs.collect_all([w, w.late_events()])
    assert late.height == 0
    first = out.sort("window_start").row(0)
    utc = [
        pl.Series([v]).dt.convert_time_zone("UTC").dt.replace_time_zone(None)[0] for v in first[:2]
    ]
    assert utc == [datetime(2024, 4, 5, 14, 45), datetime(2024, 4, 6, 15, 15)]
    assert first[2] == 2


def test_sessions_are_unaffected_by_the_zone(same_rows: SameRows) -> None:
    df = year_of_events("Europe/Berlin", n=2_000)
    out = windowed(df, vs.session("2h"))
    same_rows(out, ref.session(df, 2 * 3_600_000, aggs=AGGS))


@pytest.mark.parametrize("every", ["1mo", "1y", "1q"])
def test_calendar_durations_are_refused_at_build_time(every: str) -> None:
    df = year_of_events("Europe/Berlin", n=10)
    stream = vs.from_polars(df).with_watermark("ts", "1h")
    with pytest.raises(DurationError, match="calendar duration"):
        stream.window(vs.tumbling(every)).agg(pl.len())


def test_the_offset_is_local_too() -> None:
    # days from 06:00 local: in Berlin across the spring change (23 h from 2024-03-30
    # 06:00 to 03-31 06:00), in Kolkata a shift of the UTC grid
    for zone, hours in (("Europe/Berlin", [24, 23, 24]), ("Asia/Kolkata", [24, 24, 24])):
        stream = batches(
            zone, ["2024-03-29T12:00", "2024-03-30T12:00", "2024-03-31T12:00"]
        ).with_watermark("ts", 0)
        out = stream.window(vs.tumbling("1d", offset="6h")).agg(pl.len()).collect()
        out = out.sort("window_start")
        starts = out["window_start"].dt.replace_time_zone(None).dt.hour().to_list()
        assert starts == [6, 6, 6]
        assert (out["window_end"] - out["window_start"]).dt.total_hours().to_list() == hours


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    change=st.sampled_from([0, 1]),
    n=st.integers(1, 300),
    disorder_h=st.integers(0, 6),
    bound_h=st.sampled_from([0, 1, 3]),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_local_days_follow_the_watermark_model(
    same_rows: SameRows,
    zone: str,
    change: int,
    n: int,
    disorder_h: int,
    bound_h: int,
    batch_size: int,
    seed: int,
) -> None:
    """Around a DST change, with disorder: an event is late iff the (UTC) watermark
    from before its batch has reached the end instant of its local day (Polars' window
    end); the others give Polars' group_by_dynamic."""
    days = {
        "Europe/Berlin": ("2024-03-31", "2024-10-27"),
        "America/New_York": ("2024-03-10", "2024-11-03"),
    }
    days["Australia/Lord_Howe"] = ("2024-04-06", "2024-10-06")
    mid = int(datetime.fromisoformat(days[zone][change] + "T12:00+00:00").timestamp() * 1_000)
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(mid - 3 * 86_400_000, mid + 3 * 86_400_000, n))
    t = t + rng.integers(-disorder_h * 3_600_000 - 1, 1, n)  # late-ish arrivals
    ts = pl.Series("ts", t).cast(pl.Datetime("ms", "UTC")).dt.convert_time_zone(zone)
    df = pl.DataFrame({"ts": ts, "x": rng.integers(0, 100, n)})
    end = df["ts"].dt.truncate("1d").dt.offset_by("1d").to_physical().to_numpy()
    wm = ref.watermarks_before(t, ref.fixed_batches(n, batch_size), bound_h * 3_600_000)
    late = wm >= end

    stream = vs.from_polars(df, batch_size=batch_size).with_watermark("ts", f"{bound_h}h")
    w = stream.window(vs.tumbling("1d"), late="side").agg(*AGGS)
    (out, late_rows), m = vs.collect_all([w, w.late_events()], return_metrics=True)

    assert m.late_events == int(late.sum())
    assert late_rows.height == int(late.sum())
    expected = polars_tumbling(df.filter(pl.Series(~late)).sort("ts"), "1d")
    same_rows(out.drop("window_end"), expected)


def test_a_window_ending_inside_a_dst_overlap_waits_for_its_second_pass() -> None:
    # Berlin, 2024-10-27: 03:00 CEST (01:00 UTC) steps back to 02:00 CET. The local day
    # from 02:30 ends inside the overlap: at 00:50 UTC (02:50 CEST) the clock will still
    # show 02:10 CET at 01:10 UTC, so the day has not fired and that event is in it
    stream = batches(
        "Europe/Berlin",
        ["2024-10-27T00:10"],  # 02:10 CEST
        ["2024-10-27T00:50"],  # 02:50 CEST: the next local day
        ["2024-10-27T01:10"],  # 02:10 CET
        ["2024-10-27T03:00"],
    ).with_watermark("ts", 0)
    w = stream.window(vs.tumbling("1d", offset="2h30m"), late="side").agg(pl.len())
    out, late = vs.collect_all([w, w.late_events()])
    assert late.height == 0
    first = out.sort("window_start").row(0)
    utc = [
        pl.Series([v]).dt.convert_time_zone("UTC").dt.replace_time_zone(None)[0] for v in first[:2]
    ]
    assert utc == [datetime(2024, 10, 26, 0, 30), datetime(2024, 10, 27, 1, 30)]
    assert first[2] == 2


ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu"]
ZONES += ["Australia/Lord_Howe", "Pacific/Apia", "America/Santiago"]


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    unit=st.sampled_from(["ms", "us", "ns"]),
    seconds=st.lists(st.integers(-3 * 10**9, 5 * 10**9), min_size=1, max_size=50),
    near=st.lists(st.tuples(st.integers(0, 10**6), st.integers(-2, 2)), max_size=20),
)
def test_local_times_from_the_zone_table_are_polars(
    zone: str, unit: str, seconds: list[int], near: list[tuple[int, int]]
) -> None:
    """to_local (a search in the zone's offset changes, 1970-2100; Polars outside)
    against Polars' replace_time_zone, at random instants and next to the changes."""
    per = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    at = zone_table(zone, unit)[0]
    ts = [s * per for s in seconds]
    if len(at):
        ts += [int(at[i % len(at)]) + d for i, d in near]
    ts = [t for t in ts if -(2**63) + 2 * 86_400 * per < t < 2**63 - 2 * 86_400 * per]
    values = np.array(ts, np.int64)
    dtype = pl.Datetime(unit, zone)  # type: ignore[arg-type]
    expected = pl.Series(values).cast(dtype).dt.replace_time_zone(None).to_physical()
    assert to_local(values, dtype).tolist() == expected.to_list()


# ------------------------------------------------------------------ windowed joins


def test_a_windowed_join_over_local_days_in_a_dst_zone_is_refused() -> None:
    df = year_of_events("Europe/Berlin", n=20).with_columns(k=pl.col("x") % 3)
    left = vs.from_polars(df).with_watermark("ts", "1h")
    right = vs.from_polars(df).with_watermark("ts", "1h")
    with pytest.raises(DurationError, match=r"join\(k, window=tumbling\('1d'\).*column 'ts'.*UTC"):
        left.join(right, on="k", window=vs.tumbling("1d"))


@pytest.mark.parametrize(
    ("zone", "spec"),
    [
        ("Asia/Kolkata", vs.tumbling("1h")),
        ("Asia/Kolkata", vs.tumbling("1d")),
        ("Europe/Berlin", vs.tumbling("12h")),
        ("Europe/Berlin", vs.hopping("24h", "6h")),
        ("America/New_York", vs.tumbling("1h")),
    ],
    ids=str,
)
def test_a_windowed_join_cuts_the_windows_a_window_step_cuts(zone: str, spec: Any) -> None:
    df = year_of_events(zone, n=300).with_columns(k=pl.col("x") % 3)
    left = vs.from_polars(df, batch_size=97).with_watermark("ts", "1h")
    right = vs.from_polars(df.select("ts", "k"), batch_size=89).with_watermark("ts", "1h")
    joined = left.join(right, on="k", window=spec).collect()
    window = vs.from_polars(df).with_watermark("ts", "1h").window(spec, by="k").agg(pl.len())
    expected = window.collect().select("k", "window_start", "window_end").unique()
    got = joined.select("k", "window_start", "window_end").unique()
    assert sorted(got.rows()) == sorted(expected.rows())
