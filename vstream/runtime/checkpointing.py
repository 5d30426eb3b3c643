"""Periodic checkpoints of a run, and resuming a run from its newest good checkpoint.

The executor calls :class:`Checkpointing` at micro-batch boundaries. A checkpoint of
epoch ``e`` holds, per plan step, its watermarks and its state (``snapshot()``), per
source split the position of the last batch the operators consumed, and per sink what
it staged during epoch ``e``; once it is on disk the sinks commit (two-phase, see
:class:`vstream.io.sinks.Sink`).
"""

from __future__ import annotations

import datetime as dt
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from vstream._duration import Duration, wall_seconds
from vstream.errors import CheckpointError, CheckpointWarning, PipelineError
from vstream.io.base import SplitPosition
from vstream.plan.fingerprint import describe_plan, fingerprint, plan_difference
from vstream.plan.nodes import SourceNode
from vstream.state.checkpoint import RUN_MANIFEST, CheckpointStore, LoadedCheckpoint

if TYPE_CHECKING:
    from vstream.runtime.executor import Executor

__all__ = ["CheckpointConfig", "Checkpointing"]


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often a run checkpoints.

    ``interval_s`` (wall-clock seconds) or ``interval_batches`` (source batches) says
    when; ``keep`` complete checkpoints are kept, older ones deleted.
    """

    dir: Path
    interval_s: float | None = 10.0
    interval_batches: int | None = None
    keep: int = 3

    @classmethod
    def parse(
        cls,
        checkpoint_dir: str | os.PathLike[str] | None,
        interval: Duration | int,
        keep: int,
        where: str,
    ) -> CheckpointConfig | None:
        """Check a terminal call's options; None when ``checkpoint_dir`` is None."""
        if checkpoint_dir is None:
            return None
        if not isinstance(checkpoint_dir, str | os.PathLike):
            kind = type(checkpoint_dir).__name__
            msg = f"{where}: checkpoint_dir must be a path, got {kind}"
            raise PipelineError(msg)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            msg = f"{where}: keep_checkpoints must be an int >= 1, got {keep!r}"
            raise PipelineError(msg)
        if isinstance(interval, bool | float):
            msg = (
                f"{where}: checkpoint_interval={interval!r} is ambiguous; pass a duration "
                "such as '10s' for wall-clock time, or an int for a number of batches"
            )
            raise PipelineError(msg)
        if isinstance(interval, int):
            if interval < 1:
                msg = f"{where}: checkpoint_interval in batches must be >= 1, got {interval}"
                raise PipelineError(msg)
            return cls(Path(checkpoint_dir), None, interval, keep)
        seconds = wall_seconds(interval, "checkpoint_interval")
        return cls(Path(checkpoint_dir), seconds, None, keep)


def merge_configs(configs: list[CheckpointConfig | None], where: str) -> CheckpointConfig | None:
    """The one checkpoint setting of a job whose sinks may each name one."""
    given = [c for c in configs if c is not None]
    if not given:
        return None
    dirs = {os.path.abspath(c.dir) for c in given}
    if len(dirs) > 1:
        msg = (
            f"{where}: the sinks of one run name different checkpoint dirs {sorted(dirs)}; "
            "a run has one checkpoint: pass the same checkpoint_dir to each (or to "
            "collect_all / start_all)"
        )
        raise PipelineError(msg)
    if len(set(given)) > 1:
        msg = f"{where}: the sinks of one run ask for different checkpoint intervals"
        raise PipelineError(msg)
    return given[0]


class Checkpointing:
    """Takes a run's checkpoints and resumes it from the newest good one."""

    def __init__(self, config: CheckpointConfig, executor: Executor) -> None:
        self.config = config
        self.store = CheckpointStore(config.dir, config.keep, schema=RUN_MANIFEST)
        self.ex = executor
        self.plan = describe_plan(executor.nodes)
        self.fingerprint = fingerprint(self.plan)
        self.epoch = 1  # the epoch being written
        self.finished = False  # resumed from a finished run: nothing to do
        #: what the user should hear of (damaged checkpoints skipped, nothing to do),
        #: warned at their call by the terminal that ran the job
        self.notes: list[str] = []
        self.resume: dict[int, dict[int, SplitPosition]] = {}
        self._batches = 0
        self._last = time.monotonic()
        self._lock_fd: int | None = None
        #: (seconds, bytes) of every checkpoint written in this run
        self.written: list[tuple[float, int]] = []
        for s in executor.sources:
            src = executor.nodes[s].source  # type: ignore[attr-defined]
            if not src.replayable:
                msg = (
                    f"checkpoint_dir: {src.label} cannot be replayed from a checkpoint (a "
                    "one-shot iterator); pass a list, or a function returning a fresh "
                    "iterable, so a restart can read it again from its position"
                )
                raise CheckpointError(msg)

    # ------------------------------------------------------------------ resuming
    def _lock(self) -> None:
        """Hold ``checkpoint_dir/.lock`` for the run: two runs of one checkpoint at once
        would delete each other's staged files. The OS drops the lock if we die."""
        import fcntl

        self.config.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            msg = (
                f"checkpoint_dir {str(self.config.dir)!r} is in use by another run (in this "
                "or another process); stop it first, or give this run its own checkpoint_dir"
            )
            raise CheckpointError(msg) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the checkpoint dir (the run is over)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock

    def open_sinks(self) -> LoadedCheckpoint | None:
        """Before the sinks open: take the checkpoint dir, find the checkpoint to resume
        from and check it."""
        for k, t in enumerate(self.ex.targets):  # first: a sink may refuse the dir
            t.sink.use_checkpoints(self.config.dir, k)
        self._lock()
        loaded = self.store.latest(self.notes)
        if loaded is None:
            return None
        m = loaded.manifest
        if m.get("fingerprint") != self.fingerprint:
            old = m.get("plan")
            diff = plan_difference(old, self.plan) if isinstance(old, list) else "?"
            msg = (
                f"the checkpoint in {str(self.config.dir)!r} (epoch {loaded.epoch}) was "
                f"written by a different pipeline: {diff}. Restore the pipeline, or start "
                "it with a new checkpoint_dir (and a new output directory)"
            )
            raise CheckpointError(msg)
        return loaded

    def _check_shape(self, loaded: LoadedCheckpoint) -> None:
        """The checkpoint's steps, sources and sinks are this run's (the manifest's types
        were checked when it was read; this checks it against the plan)."""
        ex, m = self.ex, loaded.manifest
        problems = []
        if len(m["nodes"]) != len(ex.ops):
            problems.append(f"it has {len(m['nodes'])} steps, the plan {len(ex.ops)}")
        else:
            for op, info in zip(ex.ops, m["nodes"], strict=True):
                if len(info["in_wm"]) != len(op._in_wm):
                    problems.append(
                        f"step {info['label']!r} has {len(info['in_wm'])} input "
                        f"watermarks in it, {len(op._in_wm)} inputs in the plan"
                    )
        nodes = [src["node"] for src in m["sources"]]
        if nodes != list(ex.sources):
            problems.append(f"its sources are steps {nodes}, the plan's {list(ex.sources)}")
        else:
            for src in m["sources"]:
                have, want = len(src["splits"]), len(ex.split_ids[src["node"]])
                if have != want:
                    problems.append(
                        f"source {src['label']!r} has {have} splits in it, {want} now "
                        "(its input changed?)"
                    )
                    continue
                # positions go by split order: another file in a slot would be resumed
                # at the position of the one it replaced. File names only, so that a
                # run from another working directory (relative vs absolute) still fits
                node = ex.nodes[src["node"]]
                now = node.source.splits()
                for k, (sp, name) in enumerate(zip(src["splits"], now, strict=True)):
                    if os.path.basename(sp["name"]) != os.path.basename(name):
                        problems.append(
                            f"split {k} of source {src['label']!r} was {sp['name']!r}, it "
                            f"is {name!r} now (files added or removed?)"
                        )
                        break
        if len(m["sinks"]) != len(ex.targets):
            problems.append(f"it has {len(m['sinks'])} sinks, the run {len(ex.targets)}")
        if problems:
            msg = (
                f"the checkpoint in {str(loaded.path)!r} does not fit the pipeline: "
                + "; ".join(problems)
                + ". Restore the pipeline and its input, or start it with a new "
                "checkpoint_dir (and a new output directory)"
            )
            raise CheckpointError(msg)

    def restore(self, loaded: LoadedCheckpoint | None) -> None:
        """After the sinks opened, before the sources do: recover sinks, operators,
        watermarks and source positions."""
        ex = self.ex
        if loaded is not None:
            self._check_shape(loaded)
        m = loaded.manifest if loaded is not None else None
        sink_states = m["sinks"] if m is not None else [None] * len(ex.targets)
        epoch = loaded.epoch if loaded is not None else 0
        for t, state in zip(ex.targets, sink_states, strict=True):
            t.sink.recover(epoch, state)
        self.epoch = epoch + 1
        if loaded is None or m is None:
            return
        if m.get("finished"):
            self.finished = True
            self.notes.append(
                f"the run checkpointed in {str(self.config.dir)!r} finished (epoch "
                f"{loaded.epoch}, {m.get('created')}): nothing to do. Use a new "
                "checkpoint_dir to run it again"
            )
            return
        for i, (op, info) in enumerate(zip(ex.ops, m["nodes"], strict=True)):
            tables = loaded.tables_of(f"{i:03d}")
            if tables:
                _restore_op(op, tables, ex.nodes[i].label, loaded)
            op._in_wm = list(info["in_wm"])
            op._out_wm = int(info["op_out_wm"])
            op.done = bool(info["done"])
            ex.out_wm[i] = int(info["out_wm"])
            ex.finished[i] = bool(info["finished"])
        for src in m["sources"]:
            s = int(src["node"])
            resume: dict[int, SplitPosition] = {}
            for k, sp in enumerate(src["splits"]):
                sid = ex.split_ids[s][k]
                if sp["position"] is not None:
                    ex.positions[sid] = sp["position"]
                if sp["ended"]:
                    ex.ended_splits.add(sid)
                resume[k] = SplitPosition(sp["position"], bool(sp["ended"]))
            self.resume[s] = resume

    def warn(self, stacklevel: int) -> None:
        """Warn of the notes, pointing at the user's call."""
        for note in self.notes:
            warnings.warn(note, CheckpointWarning, stacklevel=stacklevel + 1)
        self.notes = []

    # ------------------------------------------------------------------ writing
    def due(self, batches: int) -> bool:
        """Count ``batches`` source batches; True when a checkpoint is due."""
        self._batches += batches
        cfg = self.config
        if cfg.interval_batches is not None:
            return self._batches >= cfg.interval_batches
        assert cfg.interval_s is not None
        # an idle run does not write the same state again and again
        return self.ex.changed and time.monotonic() - self._last >= cfg.interval_s

    def checkpoint(self, *, finished: bool = False) -> None:
        """Write a checkpoint of the run as it stands between two batches, then commit
        the sinks' staged files."""
        t0 = time.perf_counter()
        ex = self.ex
        epoch = self.epoch
        sinks = [t.sink.precommit(epoch) for t in ex.targets]
        tables: dict[str, pa.Table] = {}
        nodes: list[dict[str, Any]] = []
        for i, op in enumerate(ex.ops):
            for name, table in op.snapshot().items():
                tables[f"{i:03d}.{name}"] = table
            nodes.append(
                {
                    "label": ex.nodes[i].label,
                    "in_wm": list(op._in_wm),
                    "op_out_wm": op._out_wm,
                    "done": op.done,
                    "out_wm": ex.out_wm[i],
                    "finished": ex.finished[i],
                }
            )
        sources = []
        for s in ex.sources:
            node = ex.nodes[s]
            assert isinstance(node, SourceNode)
            names = node.source.splits()
            sources.append(
                {
                    "node": s,
                    "label": node.label,
                    "splits": [
                        {
                            "name": name,
                            "position": ex.positions.get(sid),
                            "ended": sid in ex.ended_splits or ex.finished[s],
                        }
                        for name, sid in zip(names, ex.split_ids[s], strict=True)
                    ],
                }
            )
        manifest = {
            "epoch": epoch,
            "finished": finished,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "fingerprint": self.fingerprint,
            "plan": self.plan,
            "nodes": nodes,
            "sources": sources,
            "sinks": sinks,
            "events_in": ex.metrics.events_in,
        }
        self.store.write(manifest, tables)
        for t, state in zip(ex.targets, sinks, strict=True):
            t.sink.commit(epoch, state)
        self.store.prune()
        self.epoch = epoch + 1
        self._batches = 0
        self._last = time.monotonic()
        ex.changed = False
        self.written.append((time.perf_counter() - t0, self.store.size_of(epoch)))
        ex.metrics.checkpoints += 1
        ex.metrics.last_checkpoint_epoch = epoch


def _restore_op(
    op: Any, tables: dict[str, pa.Table], label: str, loaded: LoadedCheckpoint
) -> None:
    """``op.restore(tables)``; whatever the tables make it raise (a missing column, a wrong
    type, a Polars panic on a broken extension type) refuses the checkpoint."""
    from polars.exceptions import PanicException

    try:
        op.restore(tables)
        # what the operator made of the tables has the types it writes itself: a table
        # of other types (another step's, or edited) is refused before a kernel sees it
        again = op.snapshot()
        for name, table in tables.items():
            want = again.get(name)
            if want is not None and not want.schema.equals(table.schema, check_metadata=False):
                have, writes = _types(table.schema), _types(want.schema)
                msg = f"table {name!r} is {have}, the step writes {writes}"
                raise CheckpointError(msg)
    except (Exception, PanicException) as exc:
        kind = type(exc).__name__
        msg = (
            f"the checkpoint in {str(loaded.path)!r} holds state that step {label!r} cannot "
            f"take ({kind}: {exc}; tables {sorted(tables)}). It was damaged or written by "
            "another pipeline: remove it to fall back to the previous checkpoint, or start "
            "afresh with a new checkpoint_dir (and a new output directory)"
        )
        raise CheckpointError(msg) from exc


def _types(schema: pa.Schema) -> str:
    text = ", ".join(f"{f.name}: {f.type}" for f in schema)
    return "{" + (text if len(text) <= 200 else text[:197] + "...") + "}"
