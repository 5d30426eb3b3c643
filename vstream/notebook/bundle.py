"""Charts and dashboards as mime bundles, so that they show without a network or JavaScript.

The live chart is Vega-Lite drawn by vega-embed, which the page loads from a CDN: offline,
in a re-opened or untrusted notebook and in static HTML it draws nothing. So a chart also
carries a static SVG (``vl-convert-python``, in the ``notebook`` extra), twice: inside its
HTML, shown until vega-embed has drawn the live chart (and kept when it never does), and as
the bundle's ``image/svg+xml``, for frontends that show no HTML. ``text/plain`` says what
the chart or dashboard shows, in words and numbers.

Without vl-convert the HTML is the live chart alone, as before: nothing fails, the chart
is blank where vega-embed cannot run, and ``text/plain`` says what would add the image.
An SVG costs 0.05-0.1 s for 100 points and 0.15-0.25 s for 1,000, holding the GIL, plus
0.5-2 s for vl-convert's engine at the first in a process (``benchmarks/README.md``, "Live
display"): the live view draws it in its last rendering only, the one a saved notebook keeps.

Examples
--------
>>> import polars as pl
>>> from vstream.notebook import plot
>>> chart = plot(pl.DataFrame({"window_start": [0, 10, 20], "n": [1, 3, 2]}), y="n")
>>> print(chart)
line chart of n over window_start: 1 line, 3 points; n from 1 to 3
>>> sorted(chart._repr_mimebundle_())
['image/svg+xml', 'text/html', 'text/plain']
"""

from __future__ import annotations

import html
import importlib.util
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from vstream.errors import MissingDependencyError
from vstream.notebook.render import (
    as_datetimes,
    dashboard_text,
    metrics_html,
    plot_html,
    plot_spec,
    table_html,
)

if TYPE_CHECKING:
    from vstream._duration import TimeUnit
    from vstream.runtime.metrics import Metrics

__all__ = [
    "Chart",
    "Dashboard",
    "PlotMode",
    "dashboard",
    "has_static",
    "load_chart_libraries",
    "plot",
    "plot_svg",
]

#: how a dashboard draws its plot: ``"pending"`` a note in its place (nothing imported),
#: ``"live"`` the vega-embed chart, ``"static"`` the chart and its SVG
PlotMode = Literal["pending", "live", "static"]

_NO_STATIC = 'no static image: pip install "vstream[notebook]" (vl-convert-python) for one'


def has_static() -> bool:
    """Whether vl-convert is installed, so charts carry a static SVG (without importing it).

    Examples
    --------
    >>> from vstream.notebook import has_static
    >>> has_static()  # the notebook extra is installed
    True
    """
    return importlib.util.find_spec("vl_convert") is not None


def load_chart_libraries() -> None:
    """Import Altair and, when installed, vl-convert: ~0.5 s warm, seconds in a cold process.

    The live view calls it in its own thread, so that ``job.display()`` returns first.

    Examples
    --------
    >>> import sys
    >>> from vstream.notebook.bundle import load_chart_libraries
    >>> load_chart_libraries()
    >>> "altair" in sys.modules
    True
    """
    import altair  # noqa: F401

    if has_static():
        import vl_convert  # noqa: F401


def _vl_version(spec: dict[str, Any]) -> str | None:
    # render with the Vega-Lite version Altair wrote the spec for, when vl-convert has it
    import vl_convert as vlc

    found = re.search(r"/v(\d+)\.(\d+)", str(spec.get("$schema", "")))
    if found is None:
        return None
    version = f"{found[1]}.{found[2]}"
    return version if version in vlc.get_vegalite_versions() else None


def plot_svg(spec: dict[str, Any]) -> str:
    """A Vega-Lite spec (:func:`~vstream.notebook.plot_spec`) drawn as SVG, without a browser.

    Raises
    ------
    MissingDependencyError
        vl-convert is not installed (``pip install "vstream[notebook]"``).

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook import plot_spec, plot_svg
    >>> spec = plot_spec(pl.DataFrame({"window_start": [0, 10], "n": [1, 2]}), y="n")
    >>> plot_svg(spec).startswith("<svg")
    True
    """
    try:
        import vl_convert as vlc
    except ImportError as exc:
        msg = (
            "plot_svg: static charts are drawn with vl-convert, which is not installed: "
            'pip install "vstream[notebook]" (or vl-convert-python)'
        )
        raise MissingDependencyError(msg) from exc
    svg: str = vlc.vegalite_to_svg(spec, vl_version=_vl_version(spec))
    return svg


def _chart_html(spec: dict[str, Any], svg: str | None) -> str:
    """The live chart, and its SVG shown until vega-embed has drawn it (or for good)."""
    live = plot_html(spec)
    if svg is None:
        return live
    # vega-embed puts the class vega-embed on the div it drew into; until it has (it may
    # never: offline, untrusted), the SVG shows and the div (maybe an error) does not
    live_id = re.search(r'<div id="([^"]+)"', live)
    box = f"vstream-chart-{uuid.uuid4().hex[:12]}"
    style = f".{box}:has(.vega-embed) > .vstream-static {{ display: none }}"
    if live_id is not None:
        style += f" #{live_id[1]}:not(.vega-embed) {{ display: none }}"
    return (
        f'<div class="vstream-chart {box}"><style>{style}</style>{live}'
        f'<div class="vstream-static">{svg}</div></div>'
    )


def _describe(spec: dict[str, Any]) -> str:
    """The chart in words: what over what, how many lines and points, the y range."""
    enc = spec.get("encoding", {})
    x, y = enc.get("x", {}).get("title", "x"), enc.get("y", {}).get("title", "y")
    by = enc.get("color", {}).get("title")
    rows = [row for rows in spec.get("datasets", {}).values() for row in rows]
    lines = len({row.get(by) for row in rows}) if by is not None else min(len(rows), 1)
    what = f"line chart of {y} over {x}" + (f" per {by}" if by is not None else "")
    out = f"{what}: {lines:,} line{'s' * (lines != 1)}, {len(rows):,} points"
    values = [v for row in rows if isinstance(v := row.get(y), int | float)]
    if values:
        out += f"; {y} from {min(values):,.4g} to {max(values):,.4g}"
    return out


@dataclass(frozen=True)
class Chart:
    """A Vega-Lite chart with its static rendering: Jupyter shows it through
    ``_repr_mimebundle_`` (``text/html``: the live chart over its SVG; ``image/svg+xml``;
    ``text/plain``: :meth:`__str__`). Build one with :func:`plot`.

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook import plot
    >>> chart = plot(pl.DataFrame({"window_start": [0, 10], "n": [1, 2]}), y="n")
    >>> chart.svg is not None, chart.spec["mark"]["type"]
    (True, 'line')
    >>> chart
    <vstream chart: line chart of n over window_start: 1 line, 2 points; n from 1 to 2>
    """

    #: the Vega-Lite spec (:func:`~vstream.notebook.plot_spec`)
    spec: dict[str, Any]
    #: the chart as SVG, or None (vl-convert missing, or not asked for)
    svg: str | None = None

    def __repr__(self) -> str:
        return f"<vstream chart: {self}>"

    def __str__(self) -> str:
        text = _describe(self.spec)
        return text + f" ({_NO_STATIC})" if self.svg is None and not has_static() else text

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        bundle = {"text/html": _chart_html(self.spec, self.svg), "text/plain": str(self)}
        if self.svg is not None:
            bundle["image/svg+xml"] = self.svg
        return bundle


def plot(
    df: pl.DataFrame,
    *,
    x: str = "window_start",
    y: str,
    by: str | None = None,
    top: int = 5,
    zero: bool = False,
    static: bool = True,
    time_unit: TimeUnit | None = None,
) -> Chart:
    """A line chart of ``y`` over ``x`` for the ``top`` keys of ``by`` (:func:`plot_spec`),
    with its SVG when ``static`` and vl-convert is installed. ``time_unit`` is the unit of
    an integer ``x``, plotted as dates.

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook import plot
    >>> df = pl.DataFrame({"window_start": [0, 0, 10, 10], "host": ["a", "b", "a", "b"],
    ...                    "n": [5, 1, 7, 2]})
    >>> print(plot(df, y="n", by="host", top=1))
    line chart of n over window_start per host: 1 line, 2 points; n from 5 to 7
    """
    spec = plot_spec(df, x=x, y=y, by=by, top=top, zero=zero, time_unit=time_unit)
    return Chart(spec, plot_svg(spec) if static and has_static() else None)


@dataclass(frozen=True)
class Dashboard:
    """One rendering of a run (:func:`dashboard`): ``html`` for Jupyter, ``text`` for
    ``text/plain`` (the gauges, the chart in words, the newest rows) and the chart's ``svg``
    (or None); ``_repr_mimebundle_`` hands all three to the frontend.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.notebook import dashboard
    >>> shown = dashboard(vs.Metrics(events_in=3), pl.DataFrame({"x": [1, 2, 3]}))
    >>> sorted(shown._repr_mimebundle_()), shown.svg is None
    (['text/html', 'text/plain'], True)
    """

    html: str = field(repr=False)
    text: str
    svg: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        bundle = {"text/html": self.html, "text/plain": self.text}
        if self.svg is not None:
            bundle["image/svg+xml"] = self.svg
        return bundle


def dashboard(
    metrics: Metrics,
    results: pl.DataFrame,
    *,
    y: str | None = None,
    by: str | None = None,
    x: str = "window_start",
    top: int = 5,
    max_rows: int = 20,
    plot_mode: PlotMode = "static",
    time_unit: TimeUnit | None = None,
    time_columns: Mapping[str, TimeUnit] | None = None,
) -> Dashboard:
    """Gauges, a plot of ``y`` (when given) and the newest rows, as HTML, text and SVG.

    ``plot_mode`` is how the plot is drawn (see :data:`PlotMode`): ``"pending"`` imports no
    plotting library (the live view's first frame), ``"live"`` skips the SVG (its frames
    while the job runs), ``"static"`` adds it when vl-convert is installed. ``time_unit``
    is the unit of an integer ``x``, plotted as dates (see :func:`plot_spec`);
    ``time_columns`` (name -> unit) are integer columns of event time shown as UTC
    datetimes in the table and the text (the plot keeps the integers, on a UTC axis).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.notebook import dashboard
    >>> results = pl.DataFrame({"window_start": [0, 10], "n": [1, 2]})
    >>> shown = dashboard(vs.Metrics(events_in=3), results, y="n")
    >>> "<svg" in shown.html, shown.svg is not None
    (True, True)
    >>> [line for line in shown.text.splitlines() if line.startswith("plot")]
    ['plot: line chart of n over window_start: 1 line, 2 points; n from 1 to 2']
    >>> "vegaEmbed" in dashboard(vs.Metrics(), results, y="n", plot_mode="pending").html
    False
    """
    parts, svg = [metrics_html(metrics)], None
    plot_line = ""
    if y is not None and plot_mode == "pending":
        note = f"plot of {y}: loading the plotting library…"
        parts.append(f'<div class="vstream-chart" style="color: #777">{html.escape(note)}</div>')
        plot_line = f"\n\nplot: {note}"
    elif y is not None:
        chart = plot(
            results,
            x=x,
            y=y,
            by=by,
            top=top,
            static=plot_mode == "static",
            time_unit=time_unit,
        )
        parts.append(_chart_html(chart.spec, chart.svg))
        svg = chart.svg
        plot_line = f"\n\nplot: {chart}"
    rows = as_datetimes(results, time_columns or {})
    parts.append(table_html(rows, max_rows=max_rows))
    text = dashboard_text(metrics, rows, max_rows=max_rows)
    gauges, _, table = text.partition("\n\n")
    return Dashboard(
        html=f'<div class="vstream-dashboard">{"".join(parts)}</div>',
        text=f"{gauges}{plot_line}\n\n{table}",
        svg=svg,
    )
