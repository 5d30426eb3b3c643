"""A run's metrics as a Prometheus endpoint (``Job.serve_metrics``), via ``prometheus_client``.

The names follow Prometheus' conventions: a ``vstream_`` prefix, base units in the name
(``_seconds``, ``_bytes``), counters ending in ``_total``; per-step series carry a ``step``
label (the key of :attr:`Metrics.steps`), per-split lag a ``split`` label. A collector
reads the job's metrics when Prometheus scrapes, so no thread copies them in between.

``prometheus_client`` is an optional dependency (the ``metrics`` extra): importing this
module without it raises :class:`~vstream.errors.MissingDependencyError`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from vstream.errors import MissingDependencyError
from vstream.runtime.metrics import Metrics

try:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised with the module hidden
    msg = 'serving metrics to Prometheus needs prometheus_client: pip install "vstream[metrics]"'
    raise MissingDependencyError(msg) from exc

__all__ = ["MetricsCollector", "MetricsServer", "metric_families"]

#: (name, Metrics attribute, help) of the run-wide counters
_COUNTERS = (
    ("vstream_events_in_total", "events_in", "Records read from the sources, dead letters too."),
    ("vstream_batches_in_total", "batches_in", "Micro-batches read from the sources."),
    ("vstream_input_bytes_total", "bytes_in", "In-memory size of the batches read."),
    ("vstream_events_out_total", "events_out", "Rows delivered to the outputs."),
    (
        "vstream_late_events_total",
        "late_events",
        "Events dropped as late or sent to the late output.",
    ),
    ("vstream_dead_letters_total", "dead_letters", "Records refused as bad input."),
    (
        "vstream_behind_watermark_events_total",
        "behind_watermark",
        "Events already behind the watermark when they arrived.",
    ),
    ("vstream_checkpoints_total", "checkpoints", "Checkpoints written in this run."),
    (
        "vstream_source_errors_total",
        "source_errors",
        "Transient errors the sources met and retried.",
    ),
)

#: (name, Metrics attribute, help) of the run-wide gauges that are always known
_GAUGES = (
    ("vstream_elapsed_seconds", "elapsed_s", "Wall-clock run time."),
    ("vstream_events_per_second", "events_per_s", "Events read per second of run time."),
    (
        "vstream_batch_latency_seconds",
        "batch_latency_s",
        "Mean time a source batch takes to the sinks, over the last metrics tick.",
    ),
    (
        "vstream_batch_latency_max_seconds",
        "max_batch_latency_s",
        "Longest time a source batch took to the sinks so far.",
    ),
    (
        "vstream_last_checkpoint_epoch",
        "last_checkpoint_epoch",
        "Epoch of the newest checkpoint (0: none).",
    ),
)

#: (name, StepMetrics attribute, help) of the per-step counters
_STEP_COUNTERS = (
    ("vstream_step_rows_in_total", "rows_in", "Rows into the step."),
    ("vstream_step_rows_out_total", "rows_out", "Rows out of the step."),
    ("vstream_step_batches_in_total", "batches_in", "Batches into the step."),
    ("vstream_step_batches_out_total", "batches_out", "Batches out of the step."),
)


def _timestamp(wm: datetime) -> float:
    # a naive Datetime column holds UTC wall time, as Polars reads it
    return (wm if wm.tzinfo is not None else wm.replace(tzinfo=UTC)).timestamp()


def metric_families(m: Metrics) -> list[Metric]:
    """The metric families of one metrics snapshot, as a Prometheus scrape shows them.

    Parameters
    ----------
    m
        A metrics snapshot (``job.metrics``).

    Examples
    --------
    >>> import vstream as vs
    >>> from vstream.runtime.metrics_export import metric_families
    >>> families = {f.name: f for f in metric_families(vs.Metrics(events_in=7))}
    >>> families["vstream_events_in"].type, families["vstream_events_in"].samples[0].value
    ('counter', 7.0)
    """
    out: list[Metric] = []
    for name, attr, doc in _COUNTERS:
        counter = CounterMetricFamily(name, doc)
        counter.add_metric([], float(getattr(m, attr)))
        out.append(counter)
    for name, attr, doc in _GAUGES:
        out.append(GaugeMetricFamily(name, doc, value=float(getattr(m, attr))))
    out.append(
        GaugeMetricFamily("vstream_running", "1 while the run is going.", value=int(m.running))
    )
    out.append(
        GaugeMetricFamily(
            "vstream_connected",
            "1 when every running source reaches its broker or directory.",
            value=int(m.connected),
        )
    )
    if m.event_time_lag_s is not None:
        out.append(
            GaugeMetricFamily(
                "vstream_watermark_lag_seconds",
                "How far the lowest output watermark is behind: the wall clock minus it for "
                "live sources, the newest event time seen minus it for replayed data.",
                value=m.event_time_lag_s,
            )
        )
    at = m.watermark_datetime  # an integer watermark too, where its unit is declared
    if at is not None:
        out.append(
            GaugeMetricFamily(
                "vstream_watermark_timestamp_seconds",
                "The lowest output watermark, as Unix time.",
                value=_timestamp(at),
            )
        )
    if isinstance(m.watermark, int) and not isinstance(m.watermark, bool):
        out.append(
            GaugeMetricFamily(
                "vstream_watermark",
                "The lowest output watermark, in the event-time column's unit.",
                value=m.watermark,
            )
        )
    lag = GaugeMetricFamily(
        "vstream_split_lag_records",
        "How far a source split is behind its end (Kafka: high watermark minus position).",
        labels=["split"],
    )
    for split, records in sorted(m.split_lag.items()):
        lag.add_metric([split], records)
    out.append(lag)
    out.extend(_step_families(m))
    return out


def _step_families(m: Metrics) -> Iterator[Metric]:
    steps = list(m.steps.items())  # in plan order
    for name, attr, doc in _STEP_COUNTERS:
        counter = CounterMetricFamily(name, doc, labels=["step"])
        for step, sm in steps:
            counter.add_metric([step], getattr(sm, attr))
        yield counter
    late = CounterMetricFamily(
        "vstream_step_late_events_total",
        "Late events a window or join step dropped, per input (0: the first).",
        labels=["step", "input"],
    )
    state = GaugeMetricFamily(
        "vstream_step_state_rows", "Rows a join step holds in state now.", labels=["step"]
    )
    peak = GaugeMetricFamily(
        "vstream_step_state_rows_max",
        "Most rows a join step has held in state so far.",
        labels=["step"],
    )
    for step, sm in steps:
        for i, n in enumerate(sm.late_events):
            late.add_metric([step, str(i)], n)
        if sm.state_rows or sm.peak_state_rows:
            state.add_metric([step], sm.state_rows)
            peak.add_metric([step], sm.peak_state_rows)
    yield from (late, state, peak)


class MetricsCollector(Collector):
    """A Prometheus collector that asks ``get`` for the metrics at each scrape."""

    def __init__(self, get: Callable[[], Metrics]) -> None:
        self._get = get

    def collect(self) -> Iterator[Metric]:
        """The families of the current metrics (called by the registry on a scrape)."""
        yield from metric_families(self._get())

    def describe(self) -> list[Metric]:
        """Nothing: the registry need not know the names ahead of a scrape."""
        return []


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # no line on stderr per scrape


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds up the interpreter's exit


#: how often the server's loop checks for close(): the most a job's end waits on it
_POLL_S = 0.05


class MetricsServer:
    """An HTTP endpoint serving a run's metrics in the Prometheus text format.

    Made by :meth:`vstream.Job.serve_metrics`; serves until :meth:`close` or until the job
    ends. ``url`` is the address to scrape (any path serves the same metrics).

    Attributes
    ----------
    host, port
        The address the server is bound to (``port`` is the one picked for ``port=0``).
    """

    def __init__(self, get: Callable[[], Metrics], *, port: int, host: str) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(get))
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server = type("MetricsHTTPServer", (_Threading,), {"address_family": family})
        self._httpd: WSGIServer = make_server(host, port, make_wsgi_app(registry), server, _Quiet)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_S},
            name="vstream-metrics",
            daemon=True,
        )
        self._thread.start()
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def closed(self) -> bool:
        """Whether the server has stopped (``close()``, or the job ended)."""
        return self._closed

    def close(self) -> None:
        """Stop serving and release the port; returns once the socket is closed.
        Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._httpd.shutdown()  # ends serve_forever, which checks every _POLL_S
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"<vstream.MetricsServer {state} {self.url}>"
