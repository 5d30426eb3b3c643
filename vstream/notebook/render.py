"""Pure rendering of a run for people: gauges, the newest rows, a plot, the plan.

Every function here turns values into a string (HTML or plain text) or a Vega-Lite spec;
none starts a thread or needs IPython, so the live view can call them on each refresh
and the tests can assert on what they return. Only the plots need Altair (the
``notebook`` extra); it is imported when the first plot is drawn, never with vstream.
"""

from __future__ import annotations

import html
import importlib.util
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from vstream.errors import ColumnNotFoundError, MissingDependencyError
from vstream.runtime.metrics_render import BOX_STYLE, metrics_html, metrics_text

if TYPE_CHECKING:
    from vstream._duration import TimeUnit
    from vstream.api.stream import Stream
    from vstream.runtime.metrics import Metrics

__all__ = [
    "as_datetimes",
    "check_altair",
    "dashboard_html",
    "dashboard_text",
    "metrics_html",
    "metrics_text",
    "plan_html",
    "plot_html",
    "plot_spec",
    "table_html",
]


def _require(df: pl.DataFrame, step: str, **columns: str | None) -> None:
    for arg, name in columns.items():
        if name is not None and name not in df.columns:
            msg = (
                f"{step}: column {name!r} (passed as {arg}=) is not in the results; "
                f"they have the columns {df.columns}. Pass {arg}= one of them."
            )
            raise ColumnNotFoundError(msg)


# ---------------------------------------------------------------------- table
def table_html(df: pl.DataFrame, *, max_rows: int = 20) -> str:
    """The newest ``max_rows`` rows (the frame's last) as an HTML table, Polars' own.

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook import table_html
    >>> out = table_html(pl.DataFrame({"host": ["a", "b", "c"]}), max_rows=2)
    >>> "newest 2 of 3 rows" in out, "&quot;c&quot;" in out, "&quot;a&quot;" in out
    (True, True, False)
    """
    tail = df.tail(max_rows)
    with pl.Config(tbl_rows=max(max_rows, 1), tbl_cols=-1):
        table = tail._repr_html_()
    caption = f"newest {tail.height:,} of {df.height:,} rows"
    return f'<div class="vstream-table"><small style="color: #777">{caption}</small>{table}</div>'


# ---------------------------------------------------------------------- plot
def _no_altair(step: str) -> MissingDependencyError:
    msg = (
        f"{step}: plots are drawn with Altair, which is not installed: pip install "
        '"vstream[notebook]" (or leave out y= for the gauges and rows only)'
    )
    return MissingDependencyError(msg)


def check_altair(step: str) -> None:
    """Raise :class:`~vstream.errors.MissingDependencyError` naming the ``notebook`` extra
    if Altair is not installed, without importing it (~0.3 s, paid at the first plot).

    Examples
    --------
    >>> from vstream.notebook.render import check_altair
    >>> check_altair("display")  # installed: nothing happens
    """
    if importlib.util.find_spec("altair") is None:
        raise _no_altair(step)


def _need_altair(step: str) -> None:
    """Import Altair, or say which extra installs it."""
    try:
        import altair  # noqa: F401
    except ImportError as exc:
        raise _no_altair(step) from exc


VegaType = Literal["quantitative", "temporal", "nominal"]


def _vl_type(dtype: pl.DataType) -> VegaType:
    if dtype in (pl.Date, pl.Datetime):
        return "temporal"
    if dtype.is_numeric():
        return "quantitative"
    return "nominal"


def _field(name: str) -> str:
    # Vega-Lite reads dots and brackets in a field name as nested access
    return name.replace("\\", "\\\\").replace(".", "\\.").replace("[", "\\[").replace("]", "\\]")


@contextmanager
def _inline_data() -> Iterator[None]:
    # Altair refuses more than 5,000 rows by default and may be set to write files;
    # a live view wants the data inside the spec, however long the run has been
    import altair as alt

    with alt.data_transformers.enable("default", max_rows=None):
        yield


def plot_spec(
    df: pl.DataFrame,
    *,
    x: str = "window_start",
    y: str,
    by: str | None = None,
    top: int = 5,
    zero: bool = False,
    time_unit: TimeUnit | None = None,
) -> dict[str, Any]:
    """A Vega-Lite line chart of ``y`` over ``x``, one line per key of ``by``.

    Only the ``top`` keys with the largest total ``y`` are kept (ties: the smaller key);
    without ``by`` there is one line. The chart is built with Altair, so the spec renders
    in Jupyter, VS Code and static HTML (:func:`plot_html`).

    Parameters
    ----------
    df
        Window results (``job.results``): one row per window and key.
    x, y
        The time column and the aggregate to plot.
    by
        The key column, or None.
    top
        How many keys to keep (at least 1).
    zero
        Whether the y axis starts at zero. Off by default, so that differences between
        windows show (a CPU load between 41 and 43 % is not a flat line at the top).
    time_unit
        The unit of an integer ``x`` (an event time declared with
        ``with_watermark(..., time_unit=)``, or window bounds over it): the axis then
        shows its values as UTC dates and times.

    Raises
    ------
    ColumnNotFoundError
        ``x``, ``y`` or ``by`` is not a column of ``df``.
    MissingDependencyError
        Altair is not installed (``pip install "vstream[notebook]"``).

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook import plot_spec
    >>> df = pl.DataFrame({"window_start": [0, 0, 10, 10], "host": ["a", "b", "a", "b"],
    ...                    "n": [5, 1, 7, 2]})
    >>> spec = plot_spec(df, y="n", by="host", top=1)
    >>> spec["mark"]["type"], spec["encoding"]["color"]["field"]
    ('line', 'host')
    >>> spec["encoding"]["y"]["scale"]
    {'zero': False}
    >>> sorted({row["host"] for rows in spec["datasets"].values() for row in rows})
    ['a']
    >>> df = pl.DataFrame({"window_start": [1_704_067_200_000, 1_704_067_260_000], "n": [1, 2]})
    >>> spec = plot_spec(df, y="n", time_unit="ms")
    >>> spec["encoding"]["x"]["type"], spec["encoding"]["x"]["scale"]
    ('temporal', {'type': 'utc'})
    """
    _require(df, "plot_spec", x=x, y=y, by=by)
    _need_altair("plot_spec")
    import altair as alt

    if top < 1:
        msg = f"plot_spec: top={top} keeps no line; pass top= 1 or more"
        raise ValueError(msg)
    data = df.select(list(dict.fromkeys([x, y] + ([by] if by is not None else []))))
    if by is not None and data.height:
        ranked = (
            data.group_by(by)
            .agg(pl.col(y).sum().alias("__total"))
            .sort(["__total", by], descending=[True, False], nulls_last=True)
            .head(top)
        )
        keys = ranked.get_column(by)
        keep = pl.col(by).is_in(keys.drop_nulls().implode())
        if keys.null_count():
            keep = keep | pl.col(by).is_null()
        data = data.filter(keep)
    data = data.sort(x, nulls_last=True)
    x_scale: Any = alt.Undefined
    if time_unit is not None and df.schema[x].is_integer():
        # integers since the epoch in a declared unit: instants, shown in UTC
        data = data.with_columns(pl.from_epoch(x, time_unit).dt.replace_time_zone("UTC"))
        x_scale = alt.Scale(type="utc")
    schema = data.schema
    encoding: dict[str, Any] = {
        "x": alt.X(field=_field(x), type=_vl_type(schema[x]), title=x, scale=x_scale),
        "y": alt.Y(field=_field(y), type=_vl_type(schema[y]), title=y, scale=alt.Scale(zero=zero)),
    }
    title = y
    if by is not None:
        encoding["color"] = alt.Color(field=_field(by), type="nominal", title=by)
        title = f"{y} per {by} (top {top})"
    chart = (
        alt.Chart(data, title=title)
        .mark_line(point=True)
        .encode(**encoding)
        .properties(width=600, height=240)
    )
    with _inline_data():
        spec: dict[str, Any] = chart.to_dict()
    return spec


def plot_html(spec: dict[str, Any]) -> str:
    """A Vega-Lite spec as an HTML fragment that draws it (vega-embed, from a CDN).

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook import plot_html, plot_spec
    >>> spec = plot_spec(pl.DataFrame({"window_start": [0, 10], "n": [1, 2]}), y="n")
    >>> "vegaEmbed" in plot_html(spec)
    True
    """
    _need_altair("plot_html")
    import altair as alt
    from altair.utils.html import spec_to_html

    # a fresh div id per call: a notebook shows many plots on one page
    div = f"vstream-plot-{uuid.uuid4().hex[:12]}"
    # Altair's own template, given the spec plot_spec built: Chart.from_dict(spec)
    # .to_html() validated the whole spec again (14 ms a refresh of the live view)
    return spec_to_html(
        spec,
        mode="vega-lite",
        vega_version=alt.VEGA_VERSION,
        vegaembed_version=alt.VEGAEMBED_VERSION,
        vegalite_version=alt.VEGALITE_VERSION,
        output_div=div,
        fullhtml=False,
    )


# ---------------------------------------------------------------------- plan
def plan_html(stream: Stream) -> str:
    """A stream's plan (:meth:`Stream.explain`) as an HTML block: each step and its schema.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.notebook import plan_html
    >>> out = plan_html(vs.from_polars(pl.DataFrame({"x": [1]})))
    >>> "vstream plan" in out, "from_polars" in out
    (True, True)
    """
    return (
        f'<div class="vstream-plan" style="{BOX_STYLE}">'
        '<div style="font-weight: bold; margin-bottom: 4px">vstream plan</div>'
        f'<pre style="margin: 0">{html.escape(stream.explain())}</pre></div>'
    )


# ---------------------------------------------------------------------- dashboard
def dashboard_html(
    metrics: Metrics,
    results: pl.DataFrame,
    *,
    y: str | None = None,
    by: str | None = None,
    x: str = "window_start",
    top: int = 5,
    max_rows: int = 20,
    time_unit: TimeUnit | None = None,
) -> str:
    """Gauges, a plot of ``y`` (when given) and the newest rows, in one HTML block.
    ``time_unit`` is the unit of an integer ``x``, plotted as dates (see :func:`plot_spec`).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.notebook import dashboard_html
    >>> out = dashboard_html(vs.Metrics(events_in=3), pl.DataFrame({"x": [1, 2, 3]}))
    >>> "vstream-metrics" in out, "vstream-table" in out, "vegaEmbed" in out
    (True, True, False)
    """
    parts = [metrics_html(metrics)]
    if y is not None:
        spec = plot_spec(results, x=x, y=y, by=by, top=top, time_unit=time_unit)
        parts.append(plot_html(spec))
    parts.append(table_html(results, max_rows=max_rows))
    return f'<div class="vstream-dashboard">{"".join(parts)}</div>'


def dashboard_text(metrics: Metrics, results: pl.DataFrame, *, max_rows: int = 10) -> str:
    """Gauges and the newest rows as plain text, for terminals.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.notebook import dashboard_text
    >>> out = dashboard_text(vs.Metrics(events_in=3), pl.DataFrame({"x": [1, 2, 3]}))
    >>> "events in      3" in out, "shape: (3, 1)" in out
    (True, True)
    """
    with pl.Config(tbl_rows=max(max_rows, 1), tbl_cols=-1):
        table = str(results.tail(max_rows))
    return f"{metrics_text(metrics)}\n\n{table}"


def as_datetimes(df: pl.DataFrame, columns: Mapping[str, TimeUnit]) -> pl.DataFrame:
    """``df`` with its integer ``columns`` (name -> unit) as UTC datetimes, for display.

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.notebook.render import as_datetimes
    >>> df = pl.DataFrame({"window_start": [60_000], "n": [3]})
    >>> as_datetimes(df, {"window_start": "ms"}).rows()
    [(datetime.datetime(1970, 1, 1, 0, 1), 3)]
    """
    convert = [
        pl.from_epoch(name, time_unit=unit)
        for name, unit in columns.items()
        if name in df.columns and df.schema[name].is_integer()
    ]
    return df.with_columns(convert) if convert else df
