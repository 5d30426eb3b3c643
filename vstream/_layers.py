"""The layers of the package, lowest first: a unit imports only from itself and from
units before it (tests/test_architecture.py checks every import, deferred ones too;
imports under ``if TYPE_CHECKING:`` never run and are exempt).
"""

from __future__ import annotations

__all__ = ["LAYERS", "rank"]

#: unit (a top-level module or package of ``vstream``, "vstream" for the package itself)
#: in import order, lowest first
LAYERS: tuple[str, ...] = (
    "errors",  # the VStreamError hierarchy
    "_layers",
    "_duration",  # private utilities: durations, dtypes, file names, Jupyter detection
    "_dtypes",
    "_files",
    "_jupyter",
    "datasets",  # deterministic generators (plain Polars)
    "kernels",  # numba kernels over numpy arrays
    "aggregates",  # aggregate specs
    "state",  # state objects, key index, checkpoint store
    "io",  # sources and sinks
    "plan",  # the logical plan: pure data
    "ops",  # physical operators
    "runtime",  # lowering, executor, checkpointing, metrics
    "distributed",  # the Ray runner
    "notebook",  # live display in Jupyter
    "api",  # the fluent Stream API: builds plans, starts runs
    "testing",  # helpers for users' tests
    "vstream",  # the public package (__init__)
    "cli",  # the command line, a user of the public package
)

_RANK = {unit: i for i, unit in enumerate(LAYERS)}


def rank(unit: str) -> int:
    """The position of ``unit`` in :data:`LAYERS` (lower imports nothing higher)."""
    return _RANK[unit]
