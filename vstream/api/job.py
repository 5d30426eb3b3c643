"""Background runs: a stream running in a thread, observable while it runs."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from vstream.api.base import StreamBase
from vstream.api.sinks import LazySink, job_checkpoint, to_targets
from vstream.errors import PipelineError
from vstream.io.sinks import ResultsSink
from vstream.runtime.checkpointing import CheckpointConfig
from vstream.runtime.executor import Executor
from vstream.runtime.metrics import Metrics

if TYPE_CHECKING:
    from vstream._duration import TimeUnit
    from vstream.notebook.live import LiveView
    from vstream.runtime.metrics_export import MetricsServer

__all__ = ["Job"]


class Job:
    """A pipeline running in a background thread.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> job = vs.from_polars(pl.DataFrame({"a": range(10)}), batch_size=4).start()
    >>> job.join(timeout=30)
    >>> job.results.height, job.metrics.events_in
    (10, 10)
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vstream-job", daemon=True)
        #: the live view of the last display() call
        self.view: LiveView | None = None
        # metrics endpoints, closed when the run ends (_run's finally)
        self._servers: list[MetricsServer] = []
        self._ended = False
        self._servers_lock = threading.Lock()

    @classmethod
    def launch(
        cls,
        items: Sequence[StreamBase | LazySink],
        *,
        keep: int = 100_000,
        checkpoint: CheckpointConfig | None = None,
    ) -> Job:
        """Open the run of ``items`` and start its thread (what :meth:`Stream.start` and
        :func:`vstream.start_all` call; a source that cannot be opened fails here).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> from vstream.api.job import Job
        >>> job = Job.launch([vs.from_polars(pl.DataFrame({"x": [1, 2]}))])
        >>> job.join(timeout=30)
        >>> job.results.height
        2
        """
        config = job_checkpoint(items, checkpoint, "start")
        executor = Executor(to_targets(items, keep=keep), config)
        executor.open()  # a source that cannot be opened fails here, not in the thread
        if executor.checkpointing is not None:
            executor.checkpointing.warn(3)  # at the user's start() / start_all()
        job = cls(executor)
        job._thread.start()
        return job

    def _run(self) -> None:
        try:
            for _ in self._executor.run():
                pass
        except BaseException as exc:
            self._error = exc
        finally:
            with self._servers_lock:
                self._ended = True
                servers, self._servers = self._servers, []
            for server in servers:
                server.close()

    @property
    def running(self) -> bool:
        """Whether the job is still running.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> job = vs.from_polars(pl.DataFrame({"x": [1]})).start()
        >>> job.join(timeout=30)
        >>> job.running
        False
        """
        return self._thread.is_alive()

    def stop(self, *, drain: bool = False, timeout: float | None = 10.0) -> None:
        """Stop reading and end the job.

        With ``drain=True`` the input is treated as ended: watermarks go to +inf and
        every open window is emitted; otherwise open state is dropped. Sinks are flushed
        either way. A job with a checkpoint dir takes a last checkpoint instead of
        dropping its state (and marks it finished with ``drain=True``).

        Examples
        --------
        >>> import itertools
        >>> import vstream as vs
        >>> endless = vs.from_records(({"i": i} for i in itertools.count()), batch_size=100)
        >>> job = endless.start()
        >>> job.stop()
        >>> job.running, job.metrics.stopped
        (False, True)
        """
        self._executor.stop(drain=drain)
        self.join(timeout=timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the job to end (at most ``timeout`` seconds); re-raises the error that
        ended it, if any.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> job = vs.from_polars(pl.DataFrame({"x": [1, 2]})).start()
        >>> job.join(timeout=30)
        >>> job.running
        False
        """
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    @property
    def error(self) -> BaseException | None:
        """The error that ended the job, if any (:meth:`join` re-raises it).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> def boom(df: pl.DataFrame) -> pl.DataFrame:
        ...     if df.height:  # (the schema check calls it on an empty frame)
        ...         raise ValueError("bad batch")
        ...     return df
        >>> job = vs.from_polars(pl.DataFrame({"x": [1]})).map_batches(boom).start()
        >>> try:
        ...     job.join(timeout=30)
        ... except vs.VStreamError:
        ...     pass
        >>> type(job.error).__name__, "bad batch" in str(job.error)
        ('StepError', True)
        """
        return self._error

    @property
    def metrics(self) -> Metrics:
        """A snapshot of the job's metrics (:class:`vstream.Metrics`).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> job = vs.from_polars(pl.DataFrame({"x": range(5)}), batch_size=2).start()
        >>> job.join(timeout=30)
        >>> job.metrics.events_in, job.metrics.batches_in
        (5, 3)
        """
        return copy.deepcopy(self._executor.metrics)

    def serve_metrics(self, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the job's metrics over HTTP in the Prometheus text format, until the job
        ends (finishes, fails or is stopped) or the returned server is closed.

        Each scrape reads :attr:`metrics` then, so the numbers are as fresh as the job's
        last metrics tick (~50 ms). Counters end in ``_total`` (``vstream_events_in_total``,
        ``vstream_late_events_total``, ``vstream_source_errors_total``, ...), gauges carry
        their unit (``vstream_watermark_lag_seconds``, ``vstream_batch_latency_seconds``);
        per-step series have a ``step`` label (a key of ``metrics.steps``), the lag of
        each source split a ``split`` label (``vstream_split_lag_records``).

        Needs ``prometheus_client``: ``pip install "vstream[metrics]"``.

        Parameters
        ----------
        port
            The TCP port; 0 (the default) picks a free one, which the server reports.
            Give a fixed one for a Prometheus scrape config.
        host
            The address to bind. The default, 127.0.0.1, serves this machine only: the
            metrics name the plan's steps, their expressions and the sources' splits (topic
            and file names), which are not for everyone who can reach the port. Pass
            ``"0.0.0.0"`` (or one interface's address) to let another machine scrape it.

        Returns
        -------
        MetricsServer
            With ``host``, ``port``, ``url`` (``http://127.0.0.1:PORT/metrics``) and
            ``close()``; also a context manager. For a job that has already ended it is
            returned closed.

        Raises
        ------
        MissingDependencyError
            ``prometheus_client`` is not installed.
        OSError
            The port is taken, or the address is not one of this machine's.

        Examples
        --------
        >>> import urllib.request
        >>> import pyarrow as pa
        >>> import vstream as vs
        >>> job = vs.from_arrow(pa.table({"a": range(100_000)}), rate=1_000).start()  # 100 s
        >>> server = job.serve_metrics()
        >>> server.url  # doctest: +ELLIPSIS
        'http://127.0.0.1:.../metrics'
        >>> with urllib.request.urlopen(server.url, timeout=10) as reply:
        ...     "vstream_events_in_total" in reply.read().decode()
        True
        >>> job.stop()
        >>> server.closed
        True
        """
        from vstream.runtime.metrics_export import MetricsServer

        server = MetricsServer(lambda: self.metrics, port=port, host=host)
        with self._servers_lock:
            if not self._ended:
                self._servers.append(server)
                return server
        server.close()
        return server

    @property
    def results(self) -> pl.DataFrame:
        """The newest rows emitted by the first Stream target so far (up to ``keep``).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> job = vs.from_polars(pl.DataFrame({"x": range(10)})).start(keep=3)
        >>> job.join(timeout=30)
        >>> job.results["x"].to_list()
        [7, 8, 9]
        """
        for t in self._executor.targets:
            if isinstance(t.sink, ResultsSink):
                return t.sink.result()
        msg = "this job writes to sinks only; it keeps no results"
        raise AttributeError(msg)

    def display(
        self,
        *,
        y: str | None = None,
        by: str | None = None,
        x: str = "window_start",
        top: int = 5,
        rows: int = 20,
        every: float = 0.5,
    ) -> None:
        """Show the job live: gauges (events/s, watermark, event-time lag, late events,
        dead letters), a line plot of ``y`` over ``x`` for the ``top`` keys of ``by``,
        and the newest ``rows`` results, re-rendered in place every ``every`` seconds.

        Returns at once: the first frame shows the gauges and rows, and a background
        thread imports the plotting libraries, draws the plot and renders from snapshots,
        so the display never slows the pipeline. When the job ends (or ``stop()`` is
        called) it renders a last time, with the plot also as a static SVG, and the output
        keeps that state: a saved or re-opened notebook, an untrusted one or its HTML
        export shows the plot without a network; its text form is the dashboard as text.
        Outside Jupyter it prints a status line every few seconds and the dashboard as
        text at the end.

        The plot needs Altair (``pip install "vstream[notebook]"``): without it, ``y=``
        in Jupyter raises :class:`~vstream.MissingDependencyError`. Its static SVG needs
        vl-convert-python (in the same extra); without it the plot is the live chart only.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> job = vs.from_polars(pl.DataFrame({"x": [1, 2]})).start()
        >>> job.join(timeout=30)
        >>> job.display()  # doctest: +ELLIPSIS
        state...finished
        events in...2
        ...
        """
        from vstream.notebook.live import LiveView

        columns = self._time_columns()
        view = LiveView(
            self,
            y=y,
            by=by,
            x=x,
            top=top,
            rows=rows,
            every=every,
            time_unit=columns.get(x),
            time_columns=columns,
        )
        self.view = view.start()

    def _time_columns(self) -> dict[str, TimeUnit]:
        """The results' integer columns of event time (the event-time column, window
        bounds over it) with their declared unit: the live view shows them as dates
        (and plots such an ``x`` as dates). Empty without a declared unit."""
        for t in self._executor.targets:
            if isinstance(t.sink, ResultsSink):
                et, schema = t.node.event_time, t.node.schema
                if et is None or et.unit is None:
                    return {}
                times = {"window_start", "window_end", et.column, et.other}
                return {c: et.unit for c in schema if c in times and schema[c].is_integer()}
        return {}

    def state(self, window: int | str = 0) -> pl.DataFrame:
        """The open windows of a window step, with their aggregates so far: what they
        would emit if the input ended now (a ``pl.DataFrame`` of the step's output
        schema). Read between two micro-batches, so it is consistent; the job goes on.

        ``window`` picks the step: its position among the job's window steps (0: the
        first), or a text its label contains (``"by='host'"``).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"ts": [1, 2, 12], "k": ["a", "b", "a"]})
        >>> s = vs.from_polars(df).with_watermark("ts", 100)
        >>> job = s.window(vs.tumbling(10), by="k").agg(pl.len()).start()
        >>> job.join(timeout=30)  # the input ended: every window was emitted
        >>> job.state().height
        0
        """
        from vstream.ops.window import WindowOp

        ex = self._executor
        steps = [
            (ex.nodes[i].label, op) for i, op in enumerate(ex.ops) if isinstance(op, WindowOp)
        ]
        if not steps:
            msg = "this job has no window step: state() shows the open windows of one"
            raise PipelineError(msg)
        if isinstance(window, str):
            found = [op for label, op in steps if window in label]
            if len(found) != 1:
                labels = [label for label, _ in steps]
                msg = f"state({window!r}): {len(found)} window steps match, among {labels}"
                raise PipelineError(msg)
            op = found[0]
        else:
            if not 0 <= window < len(steps):
                msg = f"state({window}): the job has {len(steps)} window step(s)"
                raise PipelineError(msg)
            op = steps[window][1]
        got = ex.call(op.open_windows)
        assert isinstance(got, pl.DataFrame)
        return got

    def results_of(self, index: int) -> pl.DataFrame:
        """The newest rows of target ``index`` (as passed to ``start_all``).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2, 3]}))
        >>> job = vs.start_all([s.filter(pl.col("x") > 1), s.filter(pl.col("x") < 2)])
        >>> job.join(timeout=30)
        >>> job.results_of(0)["x"].to_list(), job.results_of(1)["x"].to_list()
        ([2, 3], [1])
        """
        sink = self._executor.targets[index].sink
        if not isinstance(sink, ResultsSink):
            msg = f"target {index} is a sink, not a Stream; it keeps no results"
            raise IndexError(msg)
        return sink.result()

    def __repr__(self) -> str:
        m = self._executor.metrics
        state = (
            "running"
            if self.running
            else ("failed" if self._error else ("stopped" if m.stopped else "finished"))
        )
        return f"<vstream.Job {state}: {m.summary()}>"
