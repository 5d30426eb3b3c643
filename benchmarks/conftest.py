"""Benchmark setup: one core, sizes from VSTREAM_BENCH_QUICK, ratios to peers reported.

Run: ``POLARS_MAX_THREADS=1 python -m pytest benchmarks`` (full sizes), or with
``VSTREAM_BENCH_QUICK=1 ... --benchmark-disable`` as CI does so the benchmarks never rot.
"""

from __future__ import annotations

import os

# before polars / numba are imported anywhere: measure one core
os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import sys
from pathlib import Path

# pytest imports test modules by path (importlib mode): make the shared module importable
sys.path.insert(0, str(Path(__file__).parent))
from _bench import NOTES, PAIRS, RESULTS


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not RESULTS and not NOTES:
        return
    tr = terminalreporter
    tr.section("vstream throughput (best round)")
    for name, (sec, events, nbytes) in RESULTS.items():
        extra = f", {nbytes / sec / 1e6:8.1f} MB/s" if nbytes else ""
        tr.write_line(
            f"{name:45s} {events / sec / 1e6:8.2f} M events/s ({sec * 1e3:8.1f} ms){extra}"
        )
    for ours, peer in PAIRS:
        if ours in RESULTS and peer in RESULTS:
            ratio = RESULTS[peer][0] / RESULTS[ours][0]
            tr.write_line(f"ratio {ours} / {peer}: {ratio:.2f}x")
    for line in NOTES:
        tr.write_line(line)
