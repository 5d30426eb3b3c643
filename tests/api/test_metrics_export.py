"""Job.serve_metrics: the job's metrics as a Prometheus endpoint, scraped over HTTP."""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import polars as pl
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import vstream as vs
from vstream.runtime.metrics import StepMetrics
from vstream.runtime.metrics_export import MetricsCollector

SCHEMA = {"ts": pl.Int64, "k": pl.String, "x": pl.Int64}
# 60 rows, two of them without event time (dead letters)
ROWS: list[dict[str, Any]] = [{"ts": t, "k": "ab"[t % 2], "x": t} for t in range(58)] + [
    {"ts": None, "k": "a", "x": 0},
    {"ts": None, "k": "b", "x": 0},
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# no proxy, whatever the environment says: the server is on this machine
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(url: str) -> Samples:
    with _OPENER.open(url, timeout=30) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        return _parse(reply.read().decode())


def _live(done: threading.Event) -> Any:
    """ROWS, then nothing until ``done``: the job keeps running with its input read."""

    def rows() -> Iterator[dict[str, Any]]:
        yield from ROWS
        done.wait(60)

    return rows


def _start(done: threading.Event) -> vs.Job:
    return (
        vs.from_records(_live(done), schema=SCHEMA, max_delay="5ms")
        .with_watermark("ts", 3, time_unit="ms")
        .filter(pl.col("x") >= 0)
        .window(vs.tumbling(10), by="k")
        .agg(pl.len(), pl.col("x").sum())
        .start()
    )


def _settle(job: vs.Job) -> vs.Metrics:
    """Wait until the job has read and processed every row of ROWS; its metrics then
    stay as they are (the source is idle, no window fires on wall-clock time)."""
    deadline = time.monotonic() + 60
    while True:
        m = job.metrics
        if m.events_in == len(ROWS) and m.steps:
            break
        assert time.monotonic() < deadline, f"the job did not read its input: {m}"
        time.sleep(0.01)
    job.state()  # runs in the job's loop between two steps: every batch read is through
    # the per-op counters (late events) are copied at a metrics tick: wait for one after it
    before = job.metrics.elapsed_s
    deadline = time.monotonic() + 60
    while True:
        m = job.metrics
        if m.elapsed_s > before:
            return m
        assert time.monotonic() < deadline, "the job's metrics did not tick"
        time.sleep(0.01)


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=10):
            return False
    except ConnectionRefusedError:
        return True


def test_a_scrape_gives_the_jobs_metrics_by_prometheus_names() -> None:
    done = threading.Event()
    job = _start(done)
    try:
        server = job.serve_metrics(port=0)
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        _settle(job)
        got = _scrape(server.url)
        m = job.metrics
    finally:
        done.set()
        job.stop()

    assert m.events_in == len(ROWS)
    assert m.dead_letters == 2
    assert m.events_out > 0
    run_wide = {
        "vstream_events_in_total": m.events_in,
        "vstream_batches_in_total": m.batches_in,
        "vstream_input_bytes_total": m.bytes_in,
        "vstream_events_out_total": m.events_out,
        "vstream_late_events_total": m.late_events,
        "vstream_dead_letters_total": m.dead_letters,
        "vstream_behind_watermark_events_total": m.behind_watermark,
        "vstream_checkpoints_total": m.checkpoints,
        "vstream_source_errors_total": m.source_errors,
        "vstream_running": 1,
        "vstream_connected": 1,
        "vstream_watermark": m.watermark,
        "vstream_last_checkpoint_epoch": 0,
    }
    for name, value in run_wide.items():
        assert got[name, ()] == value, name
    # gauges of wall-clock time move between the scrape and the snapshot: they are there
    for name in (
        "vstream_watermark_lag_seconds",
        "vstream_elapsed_seconds",
        "vstream_events_per_second",
        "vstream_batch_latency_seconds",
        "vstream_batch_latency_max_seconds",
    ):
        assert (name, ()) in got, name
    assert got["vstream_watermark_lag_seconds", ()] > 0

    # one series per step and counter, labelled with the step's key in metrics.steps
    assert len(m.steps) == 4  # source, watermark, filter, window
    for step, sm in m.steps.items():
        label = (("step", step),)
        assert got["vstream_step_rows_in_total", label] == sm.rows_in, step
        assert got["vstream_step_rows_out_total", label] == sm.rows_out, step
        assert got["vstream_step_batches_in_total", label] == sm.batches_in, step
        assert got["vstream_step_batches_out_total", label] == sm.batches_out, step
        for i, late in enumerate(sm.late_events):
            assert got["vstream_step_late_events_total", (("input", str(i)), *label)] == late
    window = next(step for step in m.steps if "window" in step)
    assert got["vstream_step_rows_in_total", (("step", window),)] == len(ROWS) - 2
    # every counter is a counter, named with _total
    text = generate_latest(_registry(m)).decode()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name


def _registry(m: vs.Metrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(lambda: m))
    return registry


def test_the_server_stops_with_the_job() -> None:
    done = threading.Event()
    job = _start(done)
    try:
        server = job.serve_metrics()
        assert _scrape(server.url)["vstream_running", ()] == 1
    finally:
        done.set()
        job.stop()
    assert not job.running
    # closed in the job's thread before it ended: the port is released by now
    assert server.closed
    assert _refused("127.0.0.1", server.port)
    server.close()  # closing again does nothing


def test_the_server_stops_when_the_job_finishes_by_itself() -> None:
    done = threading.Event()
    job = (
        vs.from_records(_live(done), schema=SCHEMA, max_delay="5ms", bounded=True)
        .with_watermark("ts", 3)
        .start()
    )
    server = job.serve_metrics()
    assert _scrape(server.url)["vstream_running", ()] == 1
    done.set()  # the generator returns: the bounded input ends, and so does the job
    job.join(timeout=60)
    assert not job.running
    assert server.closed
    assert _refused("127.0.0.1", server.port)


def test_close_stops_serving_while_the_job_runs() -> None:
    done = threading.Event()
    job = _start(done)
    try:
        with job.serve_metrics() as server:
            _scrape(server.url)
        assert server.closed
        assert _refused("127.0.0.1", server.port)
        assert job.running
        again = job.serve_metrics()  # a new endpoint for the same job
        assert _scrape(again.url)["vstream_running", ()] == 1
    finally:
        done.set()
        job.stop()
    assert again.closed


def test_binds_the_loopback_address_unless_told_otherwise() -> None:
    done = threading.Event()
    job = _start(done)
    try:
        server = job.serve_metrics()
        assert server.host == "127.0.0.1"
        assert server._httpd.socket.getsockname()[0] == "127.0.0.1"
        # another address when told (127.0.0.2: loopback too, on Linux; nothing leaves)
        other = job.serve_metrics(host="127.0.0.2")
        assert other._httpd.socket.getsockname()[0] == "127.0.0.2"
        assert other.url == f"http://127.0.0.2:{other.port}/metrics"
        assert _scrape(other.url)["vstream_running", ()] == 1
        assert _refused("127.0.0.1", other.port)
    finally:
        done.set()
        job.stop()


def test_a_job_that_has_ended_gets_a_closed_server() -> None:
    job = vs.from_polars(pl.DataFrame({"x": [1, 2]})).start()
    job.join(timeout=60)
    server = job.serve_metrics()
    assert server.closed
    assert _refused("127.0.0.1", server.port)


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = vs.from_polars(pl.DataFrame({"x": [1, 2]})).start()
    job.join(timeout=60)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.delitem(sys.modules, "vstream.runtime.metrics_export")
    with pytest.raises(vs.MissingDependencyError, match=r'pip install "vstream\[metrics\]"'):
        job.serve_metrics()
    with pytest.raises(ImportError):  # what a user who guards the import catches
        job.serve_metrics()


def test_families_of_datetime_watermarks_split_lag_and_join_state() -> None:
    m = vs.Metrics(
        watermark=datetime(2024, 1, 1, 0, 0, 10),
        event_time_lag_s=2.5,
        split_lag={"t/0": 5, "t/1": 1_200},
        steps={"[j] join": StepMetrics(rows_in=9, late_events=(1, 3), state_rows=4)},
    )
    m.steps["[j] join"].peak_state_rows = 7
    got = _parse(generate_latest(_registry(m)).decode())
    assert got["vstream_watermark_timestamp_seconds", ()] == 1_704_067_210.0  # naive: UTC
    assert ("vstream_watermark", ()) not in got
    assert got["vstream_watermark_lag_seconds", ()] == 2.5
    assert got["vstream_split_lag_records", (("split", "t/0"),)] == 5
    assert got["vstream_split_lag_records", (("split", "t/1"),)] == 1_200
    step = ("step", "[j] join")
    assert got["vstream_step_late_events_total", (("input", "0"), step)] == 1
    assert got["vstream_step_late_events_total", (("input", "1"), step)] == 3
    assert got["vstream_step_state_rows", (step,)] == 4
    assert got["vstream_step_state_rows_max", (step,)] == 7
    # no event time: neither the watermark nor its lag
    bare = _parse(generate_latest(_registry(vs.Metrics())).decode())
    assert not {name for name, _ in bare} & {
        "vstream_watermark",
        "vstream_watermark_timestamp_seconds",
        "vstream_watermark_lag_seconds",
    }


def test_an_integer_watermark_with_a_unit_is_also_a_timestamp() -> None:
    m = vs.Metrics(watermark=1_704_067_210_500, watermark_unit="ms")
    got = _parse(generate_latest(_registry(m)).decode())
    assert got["vstream_watermark", ()] == 1_704_067_210_500  # the integer, as it is
    assert got["vstream_watermark_timestamp_seconds", ()] == 1_704_067_210.5
    no_unit = _parse(generate_latest(_registry(vs.Metrics(watermark=10))).decode())
    assert no_unit["vstream_watermark", ()] == 10
    assert ("vstream_watermark_timestamp_seconds", ()) not in no_unit
