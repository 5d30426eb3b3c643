"""RunState: everything a run needs to go on later, as plain data.

:meth:`vstream.runtime.executor.Executor.snapshot` returns one between two micro-batches
and :meth:`~vstream.runtime.executor.Executor.restore` takes one back; checkpoints
(:mod:`vstream.runtime.checkpointing`) write and read them and touch nothing else of
the executor or its operators. Steps are keyed by their stable step id
(:mod:`vstream.plan.ids`) and source splits by name (a file's path relative to its
source's directory), never by position, so a checkpoint survives a stateless step added
elsewhere in the plan and a file added to a source directory.

Examples
--------
>>> from vstream.runtime.run_state import StepState
>>> from vstream.runtime.run_state import RunState
>>> import pyarrow as pa
>>> st = RunState(
...     steps={"head-1": StepState("head(3)", "head", True, "f", "a", {}, [5], 5, 5, False,
...                                False, {"count": pa.table({"n": [2]})})},
...     positions={"source-1": {"a.parquet": 200}},
...     ended={"source-1": ["a.parquet"]},
... )
>>> st.key_groups
128
>>> st.steps["head-1"].tables["count"].num_rows, st.positions["source-1"]["a.parquet"]
(1, 200)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from vstream.errors import CheckpointError
from vstream.kernels.keyhash import DEFAULT_KEY_GROUPS

if TYPE_CHECKING:
    from vstream.ops.base import Operator

__all__ = ["RunState", "StepState", "check_key_groups", "restore_operator"]


@dataclass
class StepState:
    """One step of a run: what it is (to judge whether its state still fits the plan)
    and where it stands (watermarks, state tables)."""

    label: str
    kind: str
    stateful: bool
    fingerprint: str
    anchor: str
    #: the step's configuration (:func:`vstream.plan.ids.describe`), to say what changed
    description: dict[str, Any]
    #: the watermark of each input, as the operator last saw it
    input_watermarks: list[int]
    #: the operator's output watermark
    output_watermark: int
    #: the watermark the runtime last passed on from the step (may trail the operator's)
    emitted_watermark: int
    #: the operator needs no more input (a head that has its rows)
    done: bool
    #: the step's input has ended (sources)
    finished: bool
    #: the operator's ``snapshot()``
    tables: dict[str, pa.Table] = field(default_factory=dict)


@dataclass
class RunState:
    """A run between two micro-batches, as plain data (Arrow tables and JSON values)."""

    #: per step id, in the plan's topological order
    steps: dict[str, StepState] = field(default_factory=dict)
    #: per source step id, per split name: the position after the last batch the
    #: operators consumed (None: nothing consumed yet)
    positions: dict[str, dict[str, object | None]] = field(default_factory=dict)
    #: per source step id, the names of the splits whose end the operators have seen
    ended: dict[str, list[str]] = field(default_factory=dict)
    #: per source step id, its label (for messages)
    source_labels: dict[str, str] = field(default_factory=dict)
    #: per sink, what it staged during the epoch (its pending files), as it returned it
    sinks: list[dict[str, Any]] = field(default_factory=list)
    #: the epoch this state closes (0: none yet)
    epoch: int = 0
    events_in: int = 0
    #: the Polars version that ran (informational: expression display text may change)
    polars: str = ""
    #: the number G of key groups keyed state is organised in (the unit of rescaling,
    #: :mod:`vstream.kernels.keyhash`): fixed for the life of a checkpointed run
    key_groups: int = DEFAULT_KEY_GROUPS


def check_key_groups(saved: int, now: int, where: str) -> None:
    """Refuse a state of ``saved`` key groups for a run of ``now``: state cannot be
    re-grouped (yet), and a key's group decides where its state lives.

    Examples
    --------
    >>> from vstream.runtime.run_state import check_key_groups
    >>> check_key_groups(128, 128, "the run state")
    >>> check_key_groups(64, 128, "the run state")
    Traceback (most recent call last):
    ...
    vstream.errors.CheckpointError: the run state holds keyed state in 64 key groups, ...
    """
    if saved != now:
        msg = (
            f"{where} holds keyed state in {saved} key groups, this run uses {now}; "
            f"state cannot be re-grouped yet: run it with {saved} key groups, or start "
            "with a new checkpoint_dir (and a new output directory)"
        )
        raise CheckpointError(msg)


def restore_operator(op: Operator, tables: dict[str, pa.Table], label: str, where: str) -> None:
    """``op.restore(tables)``; whatever the tables make it raise (a missing column, a wrong
    type, a Polars panic on a broken extension type) refuses the state."""
    from polars.exceptions import PanicException

    try:
        op.restore(tables)
        # what the operator made of the tables has the types it writes itself: a table
        # of other types (another step's, or edited) is refused before a kernel sees it
        again = op.snapshot()
        for name, table in tables.items():
            want = again.get(name)
            if want is not None and not want.schema.equals(table.schema, check_metadata=False):
                have, writes = _schema_text(table.schema), _schema_text(want.schema)
                msg = f"table {name!r} is {have}, the step writes {writes}"
                raise CheckpointError(msg)
    except (Exception, PanicException) as exc:
        kind = type(exc).__name__
        msg = (
            f"{where} holds state that step {label!r} cannot take ({kind}: {exc}; tables "
            f"{sorted(tables)}). It was damaged or written by another pipeline: remove it "
            "to fall back to the previous checkpoint, or start afresh with a new "
            "checkpoint_dir (and a new output directory)"
        )
        raise CheckpointError(msg) from exc


def _schema_text(schema: pa.Schema) -> str:
    text = ", ".join(f"{f.name}: {f.type}" for f in schema)
    return "{" + (text if len(text) <= 200 else text[:197] + "...") + "}"
