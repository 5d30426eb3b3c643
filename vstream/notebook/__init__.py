"""Display in Jupyter: gauges, the newest rows, plots and the plan, rendered as HTML or text.

Charts (:func:`plot`) and dashboards (:func:`dashboard`) are mime bundles: the live
Vega-Lite chart, a static SVG of it (with vl-convert, in the ``notebook`` extra) so they
show offline and in saved notebooks, and a text rendering.

Examples
--------
>>> import vstream as vs
>>> from vstream.notebook import metrics_html
>>> "events/s" in metrics_html(vs.Metrics(events_in=10))
True
"""

from __future__ import annotations

from vstream.notebook.bundle import Chart, Dashboard, dashboard, has_static, plot, plot_svg
from vstream.notebook.render import (
    dashboard_html,
    dashboard_text,
    metrics_html,
    metrics_text,
    plan_html,
    plot_html,
    plot_spec,
    table_html,
)

__all__ = [
    "Chart",
    "Dashboard",
    "dashboard",
    "dashboard_html",
    "dashboard_text",
    "metrics_html",
    "metrics_text",
    "has_static",
    "plan_html",
    "plot",
    "plot_html",
    "plot_spec",
    "plot_svg",
    "table_html",
]
