"""Time reads as time in the metrics (issue 22 item 2): an integer watermark whose unit is
declared shows as a UTC datetime (the integer stays for programs), and the event-time
lag is measured on the replay clock (the newest event time seen) for recorded data, on
the wall clock for live sources (``Source.live``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import vstream as vs
from vstream.io.base import Source
from vstream.io.kafka import KafkaSource
from vstream.io.memory import ArrowSource, PolarsSource
from vstream.io.mqtt import MqttSource
from vstream.io.ndjson import NdjsonSource
from vstream.io.parquet import ParquetSource
from vstream.io.records import RecordsSource
from vstream.io.watch import WatchSource
from vstream.notebook import metrics_html, metrics_text
from vstream.ops.base import MAX_WM, MIN_WM
from vstream.plan.nodes import EventTime
from vstream.runtime.metrics import set_watermark
from vstream.runtime.metrics_render import format_watermark

JAN_1 = 1_704_067_200_000  # 2024-01-01 00:00:00 UTC, in ms
PATIENCE = 60.0
SCHEMA = {"ts": pl.Int64, "k": pl.String}


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + PATIENCE
    while not predicate():
        assert time.monotonic() < end, f"waited {PATIENCE} s for {what}"
        time.sleep(0.01)


def settled(job: vs.Job, n: int) -> vs.Metrics:
    """The job's metrics once it has read and processed ``n`` rows (and a metrics tick
    came after that): they stay as they are while its source waits."""
    wait_until(lambda: job.metrics.events_in == n, f"{n} events in")
    job.state()  # runs between two steps of the job's loop: every batch read is through
    before = job.metrics.elapsed_s
    wait_until(lambda: job.metrics.elapsed_s > before, "a metrics tick")
    return job.metrics


# ---------------------------------------------------------------------- the watermark
@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (JAN_1, "ms", "2024-01-01 00:00:00 UTC"),
        (JAN_1 + 30_250, "ms", "2024-01-01 00:00:30.250 UTC"),
        (JAN_1 // 1_000, "s", "2024-01-01 00:00:00 UTC"),
        (JAN_1 * 1_000 + 7, "us", "2024-01-01 00:00:00.000007 UTC"),
        (JAN_1 * 1_000_000 + 1_999, "ns", "2024-01-01 00:00:00.000001 UTC"),  # truncated
        (-86_400_000, "ms", "1969-12-31 00:00:00 UTC"),
        (2**62, "ms", f"{2**62:,}"),  # beyond year 9999: the integer
        (JAN_1, None, f"{JAN_1:,}"),  # no unit: the integer
    ],
)
def test_an_integer_watermark_with_a_unit_shows_as_a_utc_datetime(
    value: int, unit: Any, shown: str
) -> None:
    m = vs.Metrics(watermark=value, watermark_unit=unit)
    assert format_watermark(m) == shown
    assert f"watermark      {shown}\n" in metrics_text(m)
    assert shown in metrics_html(m)
    raw = f"{value:,}" == shown  # no datetime: the summary (for logs) has the bare integer
    assert f"watermark {value if raw else shown}," in m.summary()
    assert m.watermark == value  # the raw number stays, for programs


def test_watermark_datetime() -> None:
    m = vs.Metrics(watermark=JAN_1 + 1, watermark_unit="ms")
    assert m.watermark_datetime == datetime(2024, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC)
    naive = datetime(2024, 1, 1)
    assert vs.Metrics(watermark=naive).watermark_datetime == naive  # a Datetime column's
    assert vs.Metrics(watermark=JAN_1).watermark_datetime is None  # no unit
    assert vs.Metrics().watermark_datetime is None


def test_a_run_reports_the_unit_of_its_integer_watermark() -> None:
    done = threading.Event()
    job = started(done, n=50, time_unit="ms")
    try:
        m = settled(job, 50)
    finally:
        done.set()
        job.join(timeout=PATIENCE)
    assert m.watermark == JAN_1 + 49_000 - 2_000
    assert m.watermark_unit == "ms"
    assert m.watermark_datetime == datetime(2024, 1, 1, 0, 0, 47, tzinfo=UTC)
    assert "2024-01-01 00:00:47 UTC" in metrics_text(m)


def test_a_datetime_watermark_has_no_unit_to_declare() -> None:
    et = EventTime("ts", pl.Datetime("ms"), "ms", 0, None)
    m = vs.Metrics()
    set_watermark(m, et, JAN_1, JAN_1, live=False)
    assert m.watermark == datetime(2024, 1, 1)
    assert m.watermark_unit is None


# ---------------------------------------------------------------------- the lag
def started(done: threading.Event, *, n: int, time_unit: Any) -> vs.Job:
    """A job over ``n`` rows a second apart from 2024-01-01 (recorded data, a generator),
    whose source then waits for ``done``: its watermark stays 2 s behind the newest."""

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(n):
            yield {"ts": JAN_1 + i * 1_000, "k": "ab"[i % 2]}
        done.wait(PATIENCE)

    return (
        vs.from_records(rows, schema=SCHEMA, max_delay="5ms")
        .with_watermark("ts", 2_000, time_unit=time_unit)
        .window(vs.tumbling(10_000), by="k")
        .agg(pl.len())
        .start()
    )


def test_replayed_data_lag_on_the_replay_clock() -> None:
    """Data from 2024 replayed now: the lag is how far the watermark is behind the newest
    event read (the out-of-orderness here), not the years since 2024."""
    done = threading.Event()
    job = started(done, n=100, time_unit="ms")
    try:
        m = settled(job, 100)
    finally:
        done.set()
        job.join(timeout=PATIENCE)
    assert m.lag_clock == "replay"
    assert m.event_time_lag_s == pytest.approx(2.0)
    assert "event-time lag 2.0 s (replay clock)" in metrics_text(m)


def test_no_lag_without_a_time_unit() -> None:
    done = threading.Event()
    job = started(done, n=10, time_unit=None)
    try:
        m = settled(job, 10)
    finally:
        done.set()
        job.join(timeout=PATIENCE)
    assert m.watermark == JAN_1 + 7_000
    assert (m.event_time_lag_s, m.lag_clock, m.watermark_unit) == (None, None, None)


def test_a_live_source_lags_on_the_wall_clock(tmp_path: Path) -> None:
    """A watched directory is live: its lag is the wall clock minus the watermark (more
    than a year for data from 2024-01-01)."""
    pl.DataFrame({"ts": [JAN_1, JAN_1 + 5_000], "k": ["a", "b"]}).write_parquet(
        tmp_path / "a.parquet"
    )
    stream = vs.from_parquet(tmp_path, watch=True, poll_interval="20ms", settle=0)
    windowed = stream.with_watermark("ts", "1s", time_unit="ms").window(vs.tumbling("10s"))
    job = windowed.agg(pl.len()).start()
    try:
        m = settled(job, 2)
    finally:
        job.stop(timeout=PATIENCE)
    assert m.lag_clock == "wall"
    assert m.event_time_lag_s is not None
    assert m.event_time_lag_s > time.time() - (JAN_1 + 4_000) / 1_000 - 60
    assert "(wall clock)" in metrics_text(m)


@pytest.mark.parametrize(
    ("live", "newest", "wm", "lag", "clock"),
    [
        (False, JAN_1 + 2_500, JAN_1, 2.5, "replay"),
        # an idle source's watermark may follow the wall clock past the newest event
        (False, JAN_1, JAN_1 + 500, 0.0, "replay"),
        (False, MIN_WM, JAN_1, None, None),  # nothing seen upstream yet
        (False, JAN_1, MIN_WM, None, None),  # no watermark yet
        (True, JAN_1, MAX_WM, None, None),  # the input ended
        (False, JAN_1, MAX_WM, None, None),
    ],
)
def test_set_watermark_lag(live: bool, newest: int, wm: int, lag: Any, clock: Any) -> None:
    m = vs.Metrics()
    set_watermark(m, EventTime("ts", pl.Int64(), "ms", 0, None), wm, newest, live)
    assert m.event_time_lag_s == (None if lag is None else pytest.approx(lag))
    assert m.lag_clock == clock


def test_set_watermark_wall_clock() -> None:
    m = vs.Metrics()
    et = EventTime("ts", pl.Int64(), "s", 0, None)
    before = time.time()
    set_watermark(m, et, JAN_1 // 1_000, MIN_WM, live=True)
    after = time.time()
    assert m.lag_clock == "wall"
    assert m.event_time_lag_s is not None
    assert before - JAN_1 / 1_000 <= m.event_time_lag_s <= after - JAN_1 / 1_000


@pytest.mark.parametrize(
    ("cls", "live"),
    [
        (KafkaSource, True),
        (MqttSource, True),
        (WatchSource, True),
        (ParquetSource, False),
        (NdjsonSource, False),
        (PolarsSource, False),
        (ArrowSource, False),
        (RecordsSource, False),
        (Source, False),
    ],
)
def test_which_sources_are_live(cls: type[Source], live: bool) -> None:
    assert cls.live is live
