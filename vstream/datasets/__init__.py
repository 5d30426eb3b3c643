"""Deterministic synthetic data, for examples, tests and benchmarks.

Two datasets: synthetic telemetry (:func:`telemetry` and its Arrow forms, in
:mod:`vstream.datasets.telemetry`) and the events of the Nexmark online-auction benchmark
(:func:`nexmark` and its Arrow forms, in :mod:`vstream.datasets.nexmark`; its model is
described there). Both are vectorized with numpy, drawn chunk by chunk from random streams
seeded by ``seed`` and the chunk, and never depend on the wall clock.
"""

from vstream.datasets.nexmark import Nexmark, NexmarkKind, nexmark, nexmark_arrow, nexmark_batches
from vstream.datasets.telemetry import telemetry, telemetry_arrow, telemetry_batches

__all__ = [
    "Nexmark",
    "NexmarkKind",
    "nexmark",
    "nexmark_arrow",
    "nexmark_batches",
    "telemetry",
    "telemetry_arrow",
    "telemetry_batches",
]
