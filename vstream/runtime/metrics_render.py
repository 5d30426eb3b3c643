"""The gauges of a run (:class:`vstream.runtime.metrics.Metrics`) as HTML or plain text.

Beside ``Metrics`` so that Jupyter can show a metrics snapshot without the runtime
importing the notebook layer (which sits above it); :mod:`vstream.notebook` re-exports
both functions and builds its dashboard from them.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vstream.runtime.metrics import Metrics

__all__ = [
    "BOX_STYLE",
    "format_count",
    "format_lag",
    "format_seconds",
    "format_watermark",
    "metrics_html",
    "metrics_text",
]

BOX_STYLE = (
    "font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; "
    "border: 1px solid #ccc; border-radius: 4px; padding: 6px 10px; margin: 4px 0"
)


# ---------------------------------------------------------------------- formatting
def format_count(n: int) -> str:
    return f"{n:,}"


def _rate(per_s: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_s >= scale:
            return f"{per_s / scale:,.1f} {unit}/s"
    return f"{per_s:,.0f}/s"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if abs(s) < 0.01:
        return f"{s * 1e3:.1f} ms"  # batch latencies: a fraction of a millisecond matters
    if abs(s) < 1:
        return f"{s * 1e3:.0f} ms"
    if abs(s) < 120:
        return f"{s:.1f} s"
    if abs(s) < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_watermark(m: Metrics) -> str:
    """The watermark of ``m`` as the gauges show it: an integer one whose unit is
    declared as its UTC date and time (ISO 8601), a datetime as Python prints it, any
    other integer with thousands separators, ``-`` for none.

    Examples
    --------
    >>> import vstream as vs
    >>> from vstream.runtime.metrics_render import format_watermark
    >>> format_watermark(vs.Metrics(watermark=1_704_067_230_250, watermark_unit="ms"))
    '2024-01-01 00:00:30.250 UTC'
    >>> format_watermark(vs.Metrics(watermark=1_704_067_230))
    '1,704,067,230'
    """
    wm = m.watermark
    if wm is None:
        return "-"
    if isinstance(wm, int) and not isinstance(wm, bool):
        at = m.watermark_datetime
        if at is None:
            return f"{wm:,}"
        if at.microsecond % 1_000:
            spec = "microseconds"
        else:
            spec = "milliseconds" if at.microsecond else "seconds"
        return f"{at.replace(tzinfo=None).isoformat(sep=' ', timespec=spec)} UTC"
    return str(wm)


def _lag(m: Metrics) -> str:
    """The event-time lag and the clock it is measured on (see ``Metrics.lag_clock``)."""
    if m.event_time_lag_s is None or m.lag_clock is None:
        return format_seconds(m.event_time_lag_s)
    return f"{format_seconds(m.event_time_lag_s)} ({m.lag_clock} clock)"


def _gauges(m: Metrics) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the HTML and the text rendering."""
    return [
        ("state", "running" if m.running else ("stopped" if m.stopped else "finished")),
        ("events in", format_count(m.events_in)),
        ("events/s", _rate(m.events_per_s)),
        ("events out", format_count(m.events_out)),
        ("watermark", format_watermark(m)),
        ("event-time lag", _lag(m)),
        ("late events", format_count(m.late_events)),
        ("dead letters", format_count(m.dead_letters)),
        (
            "batch latency",
            f"{format_seconds(m.batch_latency_s)} (max {format_seconds(m.max_batch_latency_s)})",
        ),
        ("elapsed", format_seconds(m.elapsed_s)),
        ("checkpoints", format_count(m.checkpoints)),
        ("connected", "yes" if m.connected else "no"),
        ("source errors", format_count(m.source_errors)),
        ("split lag", format_lag(m.split_lag)),
    ]


def format_lag(lag: dict[str, int], shown: int = 3) -> str:
    """The total lag and the splits furthest behind, ``-`` when no source knows it.

    Examples
    --------
    >>> from vstream.runtime.metrics_render import format_lag
    >>> format_lag({"t/0": 5, "t/1": 1_200, "t/2": 0, "t/3": 7, "t/4": 9})
    '1,221 (t/1 1,200, t/4 9, t/3 7, +2 more)'
    >>> format_lag({})
    '-'
    """
    if not lag:
        return "-"
    worst = sorted(lag.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{name} {value:,}" for name, value in worst[:shown]]
    if len(worst) > shown:
        parts.append(f"+{len(worst) - shown} more")
    return f"{sum(lag.values()):,} ({', '.join(parts)})"


# ---------------------------------------------------------------------- gauges
def metrics_html(m: Metrics) -> str:
    """The gauges of a run as a small HTML block.

    Parameters
    ----------
    m
        A metrics snapshot (``job.metrics``, or ``collect(return_metrics=True)``).

    Examples
    --------
    >>> import vstream as vs
    >>> from vstream.notebook import metrics_html
    >>> out = metrics_html(vs.Metrics(events_in=1_234_567, events_per_s=12_300_000.0))
    >>> "events/s" in out, "1,234,567" in out, "12.3 M/s" in out
    (True, True, True)
    """
    alarm = {("connected", "no")}  # shown in red: a source cannot reach its broker
    cells = "".join(
        f'<div style="display: inline-block; margin: 2px 14px 2px 0">'
        f'<div style="color: #777; font-size: 10px">{html.escape(label)}</div>'
        f'<div style="font-size: 14px{"; color: #c00" * ((label, value) in alarm)}">'
        f"{html.escape(value)}</div></div>"
        for label, value in _gauges(m)
    )
    return f'<div class="vstream-metrics" style="{BOX_STYLE}">{cells}</div>'


def metrics_text(m: Metrics) -> str:
    """The gauges of a run as plain text, one ``label: value`` line each.

    Examples
    --------
    >>> import vstream as vs
    >>> from vstream.notebook import metrics_text
    >>> print(metrics_text(vs.Metrics(events_in=1500, event_time_lag_s=2.14)))
    state          finished
    events in      1,500
    events/s       0/s
    events out     0
    watermark      -
    event-time lag 2.1 s
    late events    0
    dead letters   0
    batch latency  0.0 ms (max 0.0 ms)
    elapsed        0.0 ms
    checkpoints    0
    connected      yes
    source errors  0
    split lag      -
    """
    gauges = _gauges(m)
    width = max(len(label) for label, _ in gauges)
    return "\n".join(f"{label:<{width}} {value}" for label, value in gauges)
