"""Issue 22 item 1: charts and dashboards carry a static SVG and a text rendering beside the
live Vega-Lite chart, so they show offline, in saved or untrusted notebooks and in static
HTML; without vl-convert the HTML still works."""

from __future__ import annotations

import re
import sys

import polars as pl
import pytest

import vstream as vs
from vstream.notebook import dashboard, plot, plot_svg
from vstream.notebook.live import LiveView

WINDOWS = pl.DataFrame(
    {
        "window_start": [0, 0, 0, 10, 10, 10],
        "host": ["a", "b", "c", "a", "b", "c"],
        "n": [20, 11, 2, 22, 9, 1],
    }
)


def _without_tags(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_a_chart_bundle_has_the_live_chart_its_svg_and_words() -> None:
    chart = plot(WINDOWS, y="n", by="host", top=2)
    bundle = chart._repr_mimebundle_()
    assert sorted(bundle) == ["image/svg+xml", "text/html", "text/plain"]
    svg = bundle["image/svg+xml"]
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    # the SVG is the chart: its title and the kept keys, not the dropped one
    words = _without_tags(svg)
    assert "n per host (top 2)" in words
    assert ">a<" in svg
    assert ">b<" in svg
    assert ">c<" not in svg
    # the HTML draws the live chart and holds the same SVG for when it cannot
    html = bundle["text/html"]
    assert "vegaEmbed" in html
    assert f'<div class="vstream-static">{svg}</div>' in html
    assert bundle["text/plain"] == (
        "line chart of n over window_start per host: 2 lines, 4 points; n from 9 to 22"
    )


def test_the_static_chart_shows_until_the_live_one_is_drawn() -> None:
    """The CSS hides the SVG once vega-embed has drawn into its div (it adds the class
    vega-embed), and hides that div until then (offline it would hold an error)."""
    html = plot(WINDOWS, y="n")._repr_mimebundle_()["text/html"]
    live_id = re.search(r'<div id="(vstream-plot-[0-9a-f]+)"', html)
    box = re.search(r'class="vstream-chart (vstream-chart-[0-9a-f]+)"', html)
    assert live_id is not None
    assert box is not None
    assert f".{box[1]}:has(.vega-embed) > .vstream-static {{ display: none }}" in html
    assert f"#{live_id[1]}:not(.vega-embed) {{ display: none }}" in html
    # two charts on one page do not share their ids
    assert box[1] not in plot(WINDOWS, y="n")._repr_mimebundle_()["text/html"]


def test_a_chart_without_its_static_rendering() -> None:
    chart = plot(WINDOWS, y="n", static=False)
    assert chart.svg is None
    bundle = chart._repr_mimebundle_()
    assert sorted(bundle) == ["text/html", "text/plain"]
    assert "vstream-static" not in bundle["text/html"]
    assert "vegaEmbed" in bundle["text/html"]
    assert (
        bundle["text/plain"]
        == "line chart of n over window_start: 1 line, 6 points; n from 1 to 22"
    )


def test_a_dashboard_bundle_says_it_all_in_text() -> None:
    metrics = vs.Metrics(events_in=1_234, running=False)
    shown = dashboard(metrics, WINDOWS, y="n", by="host", top=2)
    bundle = shown._repr_mimebundle_()
    assert sorted(bundle) == ["image/svg+xml", "text/html", "text/plain"]
    assert bundle["image/svg+xml"] == shown.svg
    html = bundle["text/html"]
    assert (
        html.index("vstream-metrics") < html.index("vstream-chart") < html.index("vstream-table")
    )
    assert shown.svg is not None
    assert shown.svg in html
    text = bundle["text/plain"]
    assert "IPython" not in text
    assert text.startswith("state          finished")
    assert "events in      1,234" in text
    assert "plot: line chart of n over window_start per host: 2 lines, 4 points" in text
    assert "shape: (6, 3)" in text  # the newest rows


def test_dashboard_plot_modes() -> None:
    metrics = vs.Metrics(events_in=3)
    pending = dashboard(metrics, WINDOWS, y="n", plot_mode="pending")
    assert "vegaEmbed" not in pending.html
    assert "<svg" not in pending.html
    assert "plot of n: loading" in pending.html
    assert "plot of n: loading" in pending.text
    assert pending.svg is None
    live = dashboard(metrics, WINDOWS, y="n", plot_mode="live")
    assert "vegaEmbed" in live.html
    assert "<svg" not in live.html
    assert live.svg is None
    assert "image/svg+xml" not in live._repr_mimebundle_()
    static = dashboard(metrics, WINDOWS, y="n", plot_mode="static")
    assert "vegaEmbed" in static.html
    assert static.svg is not None
    # without y there is no plot at all, whatever the mode
    assert "plot" not in dashboard(metrics, WINDOWS, plot_mode="pending").text


@pytest.fixture
def no_vl_convert(monkeypatch: pytest.MonkeyPatch) -> None:
    """vl-convert as if not installed: its import fails, ``find_spec`` finds nothing."""
    for name in [m for m in sys.modules if m == "vl_convert" or m.startswith("vl_convert.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "vl_convert", None)


@pytest.mark.usefixtures("no_vl_convert")
def test_without_vl_convert_charts_are_live_only_and_say_so() -> None:
    chart = plot(WINDOWS, y="n", by="host")
    assert chart.svg is None
    bundle = chart._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert "vegaEmbed" in bundle["text/html"]
    assert 'pip install "vstream[notebook]"' in bundle["text/plain"]
    with pytest.raises(vs.MissingDependencyError, match=r"plot_svg: .*vstream\[notebook\]"):
        plot_svg(chart.spec)
    shown = dashboard(vs.Metrics(events_in=3), WINDOWS, y="n", by="host")
    assert shown.svg is None
    assert "vegaEmbed" in shown.html
    assert "vl-convert-python" in shown.text


@pytest.mark.usefixtures("no_vl_convert")
def test_without_vl_convert_the_live_view_renders_its_end() -> None:
    job = vs.from_polars(WINDOWS).start()
    job.join(timeout=60)
    seen: list[str] = []
    view = LiveView(job, y="n", by="host", html=True, sink=seen.append).start()
    view.join(timeout=60)
    assert view.error is None
    assert "vegaEmbed" in seen[-1]
    assert view.last is not None
    assert view.last.svg is None
