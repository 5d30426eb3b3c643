"""The notebook renderers: what the gauges, table, plot spec and plan say, not only that
they run."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

import vstream as vs
from vstream.notebook import (
    dashboard_html,
    dashboard_text,
    metrics_html,
    metrics_text,
    plot_html,
    plot_spec,
    table_html,
)


def _rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for rows in spec.get("datasets", {}).values() for row in rows]


@pytest.fixture
def metrics() -> vs.Metrics:
    return vs.Metrics(
        events_in=1_234_567,
        events_per_s=12_345_678.0,
        events_out=4_321,
        watermark=1_700_000_000_000,
        event_time_lag_s=2.14,
        late_events=17,
        dead_letters=3,
        elapsed_s=0.1,
        running=True,
        checkpoints=2,
    )


@pytest.fixture
def windows() -> pl.DataFrame:
    # host totals: a 60, b 33, c 6, d 3 (a and b are the top 2)
    hosts = ["a", "b", "c", "d"]
    per_window = {"a": 20, "b": 11, "c": 2, "d": 1}
    t0 = datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "host": [h for _ in range(3) for h in hosts],
            "window_start": [t0 + timedelta(minutes=i) for i in range(3) for _ in hosts],
            "n": [per_window[h] for _ in range(3) for h in hosts],
        }
    )


def test_gauges_show_formatted_numbers_and_labels(metrics: vs.Metrics) -> None:
    for out in (metrics_html(metrics), metrics_text(metrics)):
        for label in ("events in", "events/s", "watermark", "event-time lag", "late events"):
            assert label in out
        for value in ("1,234,567", "12.3 M/s", "1,700,000,000,000", "2.1 s", "100 ms"):
            assert value in out
        assert "running" in out
        assert "dead letters" in out
    text = metrics_text(metrics).splitlines()
    assert text[0].split() == ["state", "running"]
    assert "late events    17" in text
    assert "finished" in metrics_text(vs.Metrics())
    assert "\n  - \n" not in metrics_text(vs.Metrics())


def test_gauges_escape_text() -> None:
    out = metrics_html(vs.Metrics(watermark="<script>"))
    assert "<script>" not in out
    assert "&lt;script&gt;" in out


def test_table_shows_newest_rows_escaped() -> None:
    df = pl.DataFrame({"<b>": range(100), "host": [f"h{i}" for i in range(100)]})
    out = table_html(df, max_rows=20)
    assert "&lt;b&gt;" in out
    assert "<b>" not in out
    assert "newest 20 of 100 rows" in out
    assert "&quot;h99&quot;" in out
    assert "&quot;h80&quot;" in out  # every one of the 20, none elided
    assert "&quot;h79&quot;" not in out


def test_table_of_an_empty_frame_shows_its_columns() -> None:
    out = table_html(pl.DataFrame(schema={"host": pl.String, "n": pl.UInt32}))
    assert "newest 0 of 0 rows" in out
    assert "<th>host</th>" in out
    assert "<th>n</th>" in out


def test_plot_spec_keeps_the_top_keys(windows: pl.DataFrame) -> None:
    spec = plot_spec(windows, y="n", by="host", top=2)
    assert spec["mark"]["type"] == "line"
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("window_start", "temporal")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("n", "quantitative")
    assert (enc["color"]["field"], enc["color"]["type"]) == ("host", "nominal")
    rows = _rows(spec)
    assert sorted({r["host"] for r in rows}) == ["a", "b"]
    assert len(rows) == 6
    assert sum(r["n"] for r in rows if r["host"] == "a") == 60


def test_plot_spec_without_by_plots_all_rows(windows: pl.DataFrame) -> None:
    total = windows.group_by("window_start").agg(pl.col("n").sum())
    spec = plot_spec(total, y="n")
    assert "color" not in spec["encoding"]
    rows = _rows(spec)
    assert [r["n"] for r in rows] == [34, 34, 34]
    assert [r["window_start"] for r in rows] == sorted(r["window_start"] for r in rows)


def test_plot_spec_null_key_and_many_rows() -> None:
    # more rows than Altair's default limit of 5,000: still inline, no MaxRowsError
    df = pl.DataFrame(
        {"window_start": list(range(6000)) * 2, "k": [None] * 6000 + [1] * 6000}
    ).with_columns(n=pl.when(pl.col("k").is_null()).then(2).otherwise(1))
    rows = _rows(plot_spec(df, y="n", by="k", top=1))
    assert len(rows) == 6000
    assert {r["k"] for r in rows} == {None}


def test_plot_spec_of_an_empty_frame_has_no_data(windows: pl.DataFrame) -> None:
    spec = plot_spec(windows.clear(), y="n", by="host")
    assert spec["mark"]["type"] == "line"
    assert _rows(spec) == []
    assert "vegaEmbed" in plot_html(spec)


def test_plot_spec_missing_column(windows: pl.DataFrame) -> None:
    with pytest.raises(vs.ColumnNotFoundError, match=r"'cpu'.*\['host', 'window_start', 'n'\]"):
        plot_spec(windows, y="cpu", by="host")
    with pytest.raises(vs.ColumnNotFoundError, match="'region'"):
        plot_spec(windows.clear(), y="n", by="region")
    with pytest.raises(ValueError, match="top="):
        plot_spec(windows, y="n", by="host", top=0)


def test_plot_html_embeds_the_spec(windows: pl.DataFrame) -> None:
    out = plot_html(plot_spec(windows, y="n", by="host"))
    assert "vegaEmbed" in out
    assert "window_start" in out
    assert "<html" not in out  # a fragment, to sit inside the dashboard


def test_dashboard(metrics: vs.Metrics, windows: pl.DataFrame) -> None:
    out = dashboard_html(metrics, windows, y="n", by="host", top=1)
    assert out.index("vstream-metrics") < out.index("vegaEmbed") < out.index("vstream-table")
    assert "12.3 M/s" in out
    text = dashboard_text(metrics, windows, max_rows=3)
    assert "12.3 M/s" in text
    assert "shape: (3, 3)" in text


def test_stream_repr_html_shows_the_plan() -> None:
    df = pl.DataFrame({"ts": [1, 2, 3], "host": ["a", "b", "a"], "cpu": [1.0, 2.0, 3.0]})
    stream = (
        vs.from_polars(df)
        .with_watermark("ts", 0)
        .filter(pl.col("cpu") > 0)
        .window(vs.tumbling(10), by="host")
        .agg(pl.len(), pl.col("cpu").mean().alias("<mean>"))
    )
    out = stream._repr_html_()
    assert "vstream plan" in out
    assert "<pre" in out
    assert "&lt;mean&gt;" in out
    assert "<mean>" not in out
    for col in ("ts", "host", "cpu", "window_start", "window_end", "len"):
        assert col in out
    for step in ("window", "filter", "with_watermark", "from_polars"):
        assert step in out


def test_metrics_repr_html_of_a_real_run() -> None:
    df = pl.DataFrame({"x": range(2_500)})
    _, metrics = vs.from_polars(df, batch_size=1000).collect(return_metrics=True)
    out = metrics._repr_html_()
    assert "2,500" in out
    assert "finished" in out
    assert out == metrics_html(metrics)


def test_plot_spec_y_axis_does_not_start_at_zero_unless_asked(windows: pl.DataFrame) -> None:
    """Issue 22: small differences between windows show; zero=True gives the old axis."""
    assert plot_spec(windows, y="n", by="host")["encoding"]["y"]["scale"] == {"zero": False}
    assert plot_spec(windows, y="n", by="host", zero=True)["encoding"]["y"]["scale"] == {
        "zero": True
    }
