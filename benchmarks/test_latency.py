"""Latency: events replayed in real time through a tumbling window, from the arrival of
the event that closes a window to the emission of that window's result.

Input: ``vs.datasets.telemetry(n, hosts=1000, events_per_second=RATE,
max_disorder="10ms")`` as 65,536-row Arrow batches (Polars' string_view layout), built
before timing, replayed by ``vs.from_arrow(batches, rate=RATE, max_delay=D)``: event
time advances with the replay, so it follows the wall clock. Pipeline:
``with_watermark("ts", "10ms", time_unit="ms")``, per ``host_id`` 13 ms tumbling windows
with ``pl.len()`` and ``pl.col("cpu").mean()``, into a callback that notes
``time.perf_counter()`` and the ``window_end`` values of each output batch. Windows are
13 ms (a prime number of ms) so that their ends fall at every phase of the 5, 20 and
100 ms micro-batches: 10 ms windows would line up with them and measure one phase only.

For a window ending at ``W``, the closing event is the first row ``i`` (in release order)
whose arrival moves the watermark to ``W`` or beyond: the first with
``max(ts[:i + 1]) - bound >= W`` (the watermark moves per micro-batch, after the batch
holding that row). Its arrival is its release time, ``release_start + i / RATE`` (the
source's schedule, :class:`vstream.io.memory.ArrowSource`); the window's latency is the
emission time of the first output batch holding ``W`` minus that. Windows that no row
closes (emitted by the flush at the end of input) are left out. The latency splits into
the wait for the micro-batch (from the closing event's arrival to the time its batch is
due: ``max_delay`` after the batch's first row, or when its 65,536th row arrives) and
the pipeline (from the batch's due time to the emission).

Rates 100 k and 1 M events/s x max_delay 5, 20, 100 ms, 4 s of replay each (~300
windows); ``VSTREAM_BENCH_QUICK=1``: 0.3 s each, only checked to run. Numba is compiled
by a run on a small table first. Target (issue): p99 <= 2 x max_delay at 1 M events/s;
recorded in the notes, not asserted (the VM is shared).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from _bench import QUICK, note

import vstream as vs

RATES = (100_000, 1_000_000)
MAX_DELAYS_MS = (5, 20, 100)
SECONDS = 0.3 if QUICK else 4.0  # of replay per run
WINDOW_MS = 13
BOUND_MS = 10
BATCH = 65_536  # from_arrow's batch_size with a rate
TARGET = 2.0  # p99 <= TARGET x max_delay at 1 M events/s

_data: dict[int, tuple[list[pa.RecordBatch], np.ndarray]] = {}


def _input(rate: int) -> tuple[list[pa.RecordBatch], np.ndarray]:
    """The batches for ``rate`` events/s and their event times (made once per rate)."""
    if rate not in _data:
        n = int(rate * SECONDS)
        frame = vs.datasets.telemetry(
            n, hosts=1_000, events_per_second=rate, max_disorder=f"{BOUND_MS}ms"
        )
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        _data[rate] = (table.to_batches(max_chunksize=BATCH), frame["ts"].to_numpy())
    return _data[rate]


def _pipeline(source: vs.Stream) -> vs.Stream:
    return (
        source.with_watermark("ts", f"{BOUND_MS}ms", time_unit="ms")
        .window(vs.tumbling(f"{WINDOW_MS}ms"), by="host_id")
        .agg(pl.len(), pl.col("cpu").mean())
    )


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    """Compile the kernels (and warm Polars) outside the timing."""
    frame = vs.datasets.telemetry(200_000, hosts=1_000, events_per_second=1_000_000)
    for bs in (5_000, 65_536):
        _pipeline(vs.from_arrow(frame.to_arrow(), batch_size=bs)).sink_callback(lambda df: None)


def _rows_per_batch(rate: int, max_delay: float) -> int:
    """Rows of a replayed micro-batch (ArrowSource's rule): those released within
    max_delay of its first, at most BATCH."""
    return BATCH if max_delay * rate >= BATCH - 1 else int(max_delay * rate) + 1


@dataclass
class Latencies:
    """One run's figures, per closed window, in ms."""

    latency: np.ndarray  # closing event's arrival -> the window's emission
    wait: np.ndarray  # closing event's arrival -> its micro-batch is due
    pipeline: np.ndarray  # micro-batch due -> the window's emission
    rows_per_batch: int
    elapsed: float  # s, the whole run
    full_gcs: int  # garbage collections of the oldest generation during the run
    longest_full_gc_ms: float


def _measure(rate: int, delay_ms: int) -> Latencies:
    batches, ts = _input(rate)
    delay = delay_ms / 1e3
    emitted: list[tuple[float, np.ndarray]] = []

    def record(df: pl.DataFrame) -> None:
        emitted.append((time.perf_counter(), df.get_column("window_end").unique().to_numpy()))

    # a full collection walks every object of the process: note any during the run
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started and info["generation"] == 2:
            pauses.append(time.perf_counter() - started[0])

    stream = vs.from_arrow(batches, rate=rate, max_delay=f"{delay_ms}ms")
    gc.callbacks.append(on_gc)
    t = time.perf_counter()
    try:
        _pipeline(stream).sink_callback(record)
    finally:
        elapsed = time.perf_counter() - t
        gc.callbacks.remove(on_gc)
    start = stream._node.source.release_start  # type: ignore[attr-defined]
    emission: dict[int, float] = {}
    for at, window_ends in emitted:
        for w in window_ends.tolist():
            emission.setdefault(w, at)
    ends = np.array(sorted(emission), np.int64)
    emitted_at = np.array([emission[w] for w in ends.tolist()])
    # the first row whose arrival moves the watermark (max ts so far - bound) to >= W
    closing = np.searchsorted(np.maximum.accumulate(ts), ends + BOUND_MS, side="left")
    closed = closing < len(ts)  # the others are emitted by the final flush
    closing, emitted_at = closing[closed], emitted_at[closed]
    arrival = start + closing / rate
    # when the closing row's batch is due: at its last row when cut by count, max_delay
    # after its first when cut by time, at the last row of the data for the final batch
    per = _rows_per_batch(rate, delay)
    first = closing // per * per
    last = np.minimum(first + per, len(ts)) - 1
    due = start + (last / rate if per == BATCH else np.minimum(first / rate + delay, last / rate))
    return Latencies(
        latency=(emitted_at - arrival) * 1e3,
        wait=(due - arrival) * 1e3,
        pipeline=(emitted_at - due) * 1e3,
        rows_per_batch=per,
        elapsed=elapsed,
        full_gcs=len(pauses),
        longest_full_gc_ms=max(pauses, default=0.0) * 1e3,
    )


def _pcts(ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"{p50:.1f} / {p99:.1f} / {ms.max():.1f}"


@pytest.mark.parametrize("delay_ms", MAX_DELAYS_MS)
@pytest.mark.parametrize("rate", RATES)
def test_window_close_latency(benchmark, rate: int, delay_ms: int) -> None:  # type: ignore[no-untyped-def]
    found: list[Latencies] = []
    benchmark.pedantic(lambda: found.append(_measure(rate, delay_ms)), rounds=1, iterations=1)
    run = found[0]
    assert run.latency.size >= (200 if not QUICK else 1)
    assert run.elapsed >= 0.9 * SECONDS  # paced, not read at once
    for key in ("latency", "wait", "pipeline"):
        ms: np.ndarray = getattr(run, key)
        benchmark.extra_info[f"{key} ms p50/p99/max"] = [
            *np.percentile(ms, [50, 99]).tolist(),
            float(ms.max()),
        ]
    target = ""
    if rate == max(RATES):
        met = "met" if np.percentile(run.latency, 99) <= TARGET * delay_ms else "NOT met"
        target = f"; target p99 <= {TARGET * delay_ms:g} ms: {met}"
    note(
        f"latency at {rate / 1e6:g} M events/s, max_delay {delay_ms} ms "
        f"({run.rows_per_batch:,}-row batches, {run.latency.size} windows), p50 / p99 / max "
        f"ms: {_pcts(run.latency)} (wait for the batch {_pcts(run.wait)}; pipeline "
        f"{_pcts(run.pipeline)}); {run.full_gcs} full GCs{target}"
    )
