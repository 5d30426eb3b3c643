"""Display in Jupyter: gauges, the newest rows, plots and the plan, rendered as HTML or text.

Examples
--------
>>> import vstream as vs
>>> from vstream.notebook import metrics_html
>>> "events/s" in metrics_html(vs.Metrics(events_in=10))
True
"""

from __future__ import annotations

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
    "dashboard_html",
    "dashboard_text",
    "metrics_html",
    "metrics_text",
    "plan_html",
    "plot_html",
    "plot_spec",
    "table_html",
]
