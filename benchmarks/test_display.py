"""The live view must not slow the pipeline, and ``display()`` must return at once.

1. A job with a display whose frontend is slow (it sleeps in every refresh) against the
   same job without one.

Q1's shape (1 s tumbling windows by ``host``, 10 k hosts, Q1's aggregates) over
pre-generated telemetry batches, run as a background job (``start()``); the view renders
the full HTML dashboard (gauges, an Altair plot of mean cpu for the top 5 hosts, the
newest 20 rows of the 100 k kept) every 0.1 s and its sink then sleeps 0.2 s, as a
slow notebook frontend would. Alternating rounds, best of each. Target: the display
costs < 10 % of the throughput.

2. ``display()``'s return time in a fresh interpreter (the first display of a session:
   Altair not imported yet), against the same first frame drawn with the plot on the
   caller's thread (what display() did before issue 22 item 3): the time to the first
   frame with the plot and the last rendering's time (the plot's SVG, vl-convert's engine
   started for it) are noted too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import median

import polars as pl
import pyarrow as pa
from _bench import note, q1_aggs, size

import vstream as vs
from vstream.notebook.live import LiveView

N = size(30_000_000, 100_000)  # a few seconds a run: a display is for long jobs
TARGET = 0.10


def _batches() -> list[pa.RecordBatch]:
    frame = vs.datasets.telemetry(N, hosts=10_000, max_disorder="2s")
    return frame.to_arrow(compat_level=pl.CompatLevel.newest()).to_batches(max_chunksize=65_536)


def test_display_costs_little(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Timed by the job's own run time (``metrics.elapsed_s``): the view's wind-down
    after the job ended (its last sleep and rendering) is not the pipeline's cost."""
    batches = _batches()
    renders: list[int] = []
    best = {"with": float("inf"), "without": float("inf")}

    def job() -> vs.Job:
        return (
            vs.from_arrow(batches)
            .with_watermark("ts", "2s", time_unit="ms")
            .window(vs.tumbling("1s"), by="host")
            .agg(*q1_aggs())
            .start()
        )

    def slow_frontend(html: str) -> None:
        time.sleep(0.2)

    def one_round() -> None:
        j = job()
        j.join(timeout=600)
        best["without"] = min(best["without"], j.metrics.elapsed_s)
        j = job()
        view = LiveView(j, y="cpu", by="host", every=0.1, html=True, sink=slow_frontend)
        view.start()
        j.join(timeout=600)
        best["with"] = min(best["with"], j.metrics.elapsed_s)
        view.join(timeout=30)
        assert view.error is None
        renders.append(view.renders)

    if getattr(benchmark, "disabled", False):
        benchmark.pedantic(one_round, rounds=1, iterations=1)
        return
    one_round()  # warm-up: numba, Altair's import
    best = {"with": float("inf"), "without": float("inf")}
    benchmark.pedantic(one_round, rounds=3, iterations=1)
    cost = best["with"] / best["without"] - 1
    note(
        f"live display: {cost:+.1%} run time with a display re-rendered every 0.1 s whose "
        f"frontend sleeps 0.2 s a refresh ({max(renders)} renderings a run; "
        f"{N / best['without'] / 1e6:.1f} M events/s without, "
        f"{N / best['with'] / 1e6:.1f} with; best of 3 alternating rounds); "
        f"target < {TARGET:.0%}: {'met' if cost < TARGET else 'NOT met'}"
    )


def _first_display(plot_first: bool) -> dict[str, float]:
    """In this (fresh) process: a job paused mid-run with windows emitted, shown as
    ``display()`` shows it in Jupyter. ``plot_first``: draw the plot in the first frame on
    this thread, as before the live view loaded Altair in its own thread."""
    from vstream.notebook.bundle import dashboard, load_chart_libraries

    hold, reached = threading.Event(), threading.Event()
    batches: list[int] = []

    def pause(df: pl.DataFrame) -> pl.DataFrame:
        if df.height and len(batches) == 4:
            reached.set()
            hold.wait(120)
        batches.append(df.height)
        return df

    frame = vs.datasets.telemetry(200_000, hosts=200, max_disorder="2s")
    job = (
        vs.from_polars(frame, batch_size=20_000)
        .map_batches(pause)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(*q1_aggs())
        .start()
    )
    reached.wait(120)
    if plot_first:
        t0 = time.perf_counter()
        load_chart_libraries()
        dashboard(job.metrics, job.results, y="cpu", by="host", plot_mode="live")
        returned = time.perf_counter() - t0
        hold.set()
        job.join(timeout=120)
        return {"return_s": returned}
    frames: list[tuple[float, str]] = []
    plotted = threading.Event()

    def frontend(html: str) -> None:
        frames.append((time.perf_counter(), html))
        if "vstream-plot" in html:
            plotted.set()

    t0 = time.perf_counter()
    view = LiveView(job, y="cpu", by="host", every=0.5, html=True, sink=frontend).start()
    returned = time.perf_counter() - t0
    plotted.wait(120)
    first_plot = next(t for t, html in frames if "vstream-plot" in html) - t0
    hold.set()
    job.join(timeout=120)
    view.join(timeout=120)
    assert view.error is None, view.error
    assert "vstream-static" in frames[-1][1]
    return {"return_s": returned, "first_plot_s": first_plot, "last_render_s": view._took}


def _in_fresh_process(plot_first: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "plot-first" if plot_first else "display"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "1")},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_display_returns_at_once(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Alternating rounds in fresh interpreters; medians (a cold start varies)."""
    runs: dict[str, list[dict[str, float]]] = {"now": [], "before": []}

    def one_round() -> None:
        runs["now"].append(_in_fresh_process(plot_first=False))
        runs["before"].append(_in_fresh_process(plot_first=True))

    rounds = 1 if getattr(benchmark, "disabled", False) else 5
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)

    def mid(which: str, key: str) -> float:
        return median(r[key] for r in runs[which])

    note(
        f"display() in a fresh interpreter: returns in {mid('now', 'return_s') * 1e3:.0f} ms "
        f"(gauges and rows; drawing the plot first took {mid('before', 'return_s'):.2f} s), "
        f"the plot {mid('now', 'first_plot_s'):.2f} s after the call, the last rendering with "
        f"the plot's SVG {mid('now', 'last_render_s'):.2f} s; medians of {len(runs['now'])}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    print(json.dumps(_first_display(sys.argv[1] == "plot-first")))
