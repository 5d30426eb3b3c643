"""State shared by the benchmark modules: sizes, measured results, peer pairs."""

from __future__ import annotations

import os

QUICK = os.environ.get("VSTREAM_BENCH_QUICK", "") not in ("", "0")

#: name -> (seconds per round, events per round, bytes per round)
RESULTS: dict[str, tuple[float, int, int]] = {}

#: (ours, peer) pairs whose ratio the summary reports
PAIRS: list[tuple[str, str]] = []


def size(full: int, quick: int) -> int:
    """The full size, or the quick one under VSTREAM_BENCH_QUICK=1."""
    return quick if QUICK else full
