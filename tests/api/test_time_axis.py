"""The plot's time axis (issue 22 item 2): an integer x column whose unit is declared
(``with_watermark(..., time_unit=)``) is plotted as UTC dates and times."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl
import pytest

import vstream as vs
from vstream.notebook import plot_spec
from vstream.notebook.live import LiveView

JAN_1 = 1_704_067_200_000  # 2024-01-01 00:00:00 UTC, in ms


def _xs(spec: dict[str, Any]) -> list[Any]:
    (rows,) = spec["datasets"].values()
    return [r["window_start"] for r in rows]


@pytest.mark.parametrize(
    ("unit", "scale"), [("s", 1 / 1_000), ("ms", 1), ("us", 1_000), ("ns", 1_000_000)]
)
def test_integers_with_a_unit_are_plotted_as_utc_instants(unit: Any, scale: float) -> None:
    starts = [int(JAN_1 * scale), int((JAN_1 + 60_000) * scale)]
    df = pl.DataFrame({"window_start": starts[::-1], "n": [2, 1]})
    spec = plot_spec(df, y="n", time_unit=unit)
    assert spec["encoding"]["x"]["type"] == "temporal"
    assert spec["encoding"]["x"]["scale"] == {"type": "utc"}
    got = [datetime.strptime(v, "%Y-%m-%dT%H:%M:%S%z") for v in _xs(spec)]
    assert [d.timestamp() for d in got] == [JAN_1 / 1_000, JAN_1 / 1_000 + 60]  # sorted


def test_integers_without_a_unit_stay_numbers() -> None:
    df = pl.DataFrame({"window_start": [0, 10], "n": [1, 2]})
    spec = plot_spec(df, y="n")
    assert spec["encoding"]["x"]["type"] == "quantitative"
    assert "scale" not in spec["encoding"]["x"]
    assert _xs(spec) == [0, 10]


def test_a_datetime_column_is_plotted_as_it_is() -> None:
    df = pl.DataFrame({"window_start": [datetime(2024, 1, 1)], "n": [1]})
    spec = plot_spec(df, y="n", time_unit="ms")
    assert spec["encoding"]["x"]["type"] == "temporal"
    assert "scale" not in spec["encoding"]["x"]
    assert _xs(spec) == ["2024-01-01T00:00:00"]


def _job(time_unit: Any) -> vs.Job:
    df = pl.DataFrame({"ts": [JAN_1, JAN_1 + 1_000, JAN_1 + 65_000], "k": [1, 2, 1]})
    stream = vs.from_polars(df).with_watermark("ts", 0, time_unit=time_unit)
    job = stream.window(vs.tumbling(60_000), by="k").agg(pl.len()).start()
    job.join(timeout=60)
    return job


@pytest.mark.parametrize(
    ("x", "time_unit", "expected"),
    [
        ("window_start", "ms", "ms"),
        ("window_end", "us", "us"),
        ("k", "ms", None),  # not a time column
        ("window_start", None, None),  # no unit declared
    ],
)
def test_the_live_view_plots_window_bounds_as_dates(x: str, time_unit: Any, expected: Any) -> None:
    job = _job(time_unit)
    job.display(x=x)  # outside Jupyter: the gauges and rows as text
    assert job.view.time_unit == expected


def test_the_dashboard_draws_the_time_axis_in_utc() -> None:
    job = _job("ms")
    shown: list[str] = []
    view = LiveView(job, y="len", by="k", html=True, sink=shown.append, time_unit="ms")
    text = view.render(final=True)
    start = text.index('"encoding"')
    assert '"scale": {"type": "utc"}' in text[start:]
    assert json.dumps("2024-01-01T00:00:00+0000") in text


def test_the_table_and_text_show_window_bounds_as_dates_and_the_data_keep_integers() -> None:
    job = _job("ms")
    shown: list[str] = []
    view = LiveView(
        job,
        y="len",
        by="k",
        html=True,
        sink=shown.append,
        time_unit="ms",
        time_columns={"window_start": "ms", "window_end": "ms"},
    )
    view.render(final=True)
    assert view.last is not None
    assert "2024-01-01 00:01:00" in view.last.text  # the second window's start, as a date
    assert str(JAN_1 + 60_000) not in view.last.text
    assert '"scale": {"type": "utc"}' in view.last.html  # the plot keeps its UTC axis
    assert job.results.schema["window_start"] == pl.Int64  # the data keep their type


def test_display_finds_the_time_columns_of_the_results() -> None:
    job = _job("ms")
    job.display()  # outside Jupyter: the text dashboard, which shows them as dates
    assert job.view.time_columns == {"window_start": "ms", "window_end": "ms"}
    plain = _job(None)
    plain.display()
    assert plain.view.time_columns == {}
