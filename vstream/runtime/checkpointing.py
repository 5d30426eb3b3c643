"""Periodic checkpoints of a run, and resuming a run from its newest good checkpoint.

The executor calls :class:`Checkpointing` at micro-batch boundaries. A checkpoint of
epoch ``e`` is the executor's :class:`~vstream.runtime.run_state.RunState`
(:meth:`Executor.snapshot`) written as a manifest and Arrow files: per step id, its
watermarks, fingerprint and state tables; per source step id and split name, the
position of the last batch the operators consumed; per sink what it staged during epoch
``e``; the number of key groups keyed state is organised in (a checkpoint of another
number is refused: state cannot be re-grouped yet). Once it is on disk the sinks commit
(two-phase, see :class:`vstream.io.sinks.Sink`), then every source hears of it
(:meth:`vstream.io.base.Source.on_checkpoint_complete`).

Resuming reads the newest good checkpoint back into a RunState, judges the plan step by
step (a stateful step must find its id and fingerprint; stateless steps may change or
be added), and hands it to :meth:`Executor.restore`. Nothing here reads the executor's
or its operators' internals.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from vstream._duration import Duration, wall_seconds
from vstream.errors import (
    CheckpointError,
    CheckpointWarning,
    PipelineError,
    SourceError,
    VStreamError,
)
from vstream.plan.fingerprint import StepIdentity, step_difference
from vstream.runtime.run_state import RunState, StepState, check_key_groups
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
        self.epoch = 1  # the epoch being written
        self.finished = False  # resumed from a finished run: nothing to do
        #: what the user should hear of (damaged checkpoints skipped, nothing to do),
        #: warned at their call by the terminal that ran the job
        self.notes: list[str] = []
        self._batches = 0
        self._last = time.monotonic()
        self._lock_fd: int | None = None
        #: (seconds, bytes) of every checkpoint written in this run
        self.written: list[tuple[float, int]] = []
        #: per source step, its id and its source: told of every durable checkpoint
        self._sources = [
            (executor.step_ids[s].id, executor.graph.source_of[s]) for s in executor.sources
        ]
        for s in executor.sources:
            src = executor.graph.source_of[s]
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
        from and judge it against the plan, step by step."""
        for k, t in enumerate(self.ex.targets):  # first: a sink may refuse the dir
            t.sink.use_checkpoints(self.config.dir, k)
        for sid, src in self._sources:  # a source may keep a write-ahead log there
            src.use_checkpoints(self.config.dir, sid)
        self._lock()
        loaded = self.store.latest(self.notes)
        if loaded is None:
            return None
        # before anything acts on it (sinks recover in restore())
        where = f"the checkpoint in {str(self.config.dir)!r} (epoch {loaded.epoch})"
        check_key_groups(loaded.manifest["key_groups"], self.ex.key_groups, where)
        problems = judge(loaded.manifest, self.ex.step_ids)
        if problems:
            m = loaded.manifest
            versions = ""
            if m["polars"] != pl.__version__:
                versions = (
                    f" (it was written with Polars {m['polars']}, this is Polars "
                    f"{pl.__version__}: a step described by expression text may read "
                    "differently)"
                )
            msg = (
                f"the checkpoint in {str(self.config.dir)!r} (epoch {loaded.epoch}) was "
                f"written by a different pipeline: {'; '.join(problems)}{versions}. Restore "
                "the pipeline, or start it with a new checkpoint_dir (and a new output "
                "directory)"
            )
            raise CheckpointError(msg)
        return loaded

    def restore(self, loaded: LoadedCheckpoint | None) -> None:
        """After the sinks opened, before the sources do: recover sinks, then the
        executor from the checkpoint's RunState."""
        ex = self.ex
        m = loaded.manifest if loaded is not None else None
        if loaded is not None and m is not None and len(m["sinks"]) != len(ex.targets):
            msg = (
                f"the checkpoint in {str(loaded.path)!r} does not fit the pipeline: it has "
                f"{len(m['sinks'])} sinks, the run {len(ex.targets)}. Restore the pipeline "
                "and its input, or start it with a new checkpoint_dir (and a new output "
                "directory)"
            )
            raise CheckpointError(msg)
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
        where = f"the checkpoint in {str(loaded.path)!r}"
        self.notes.extend(ex.restore(run_state_of(loaded), where))

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
        state = ex.snapshot()
        state.epoch = epoch
        state.sinks = [t.sink.precommit(epoch) for t in ex.targets]
        manifest, tables = manifest_of(state)
        manifest["finished"] = finished
        manifest["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self.store.write(manifest, tables)
        for t, sink_state in zip(ex.targets, state.sinks, strict=True):
            t.sink.commit(epoch, sink_state)
        self.store.prune()
        self.epoch = epoch + 1
        self._batches = 0
        self._last = time.monotonic()
        ex.changed = False
        self.written.append((time.perf_counter() - t0, self.store.size_of(epoch)))
        ex.metrics.checkpoints += 1
        ex.metrics.last_checkpoint_epoch = epoch
        self._tell_sources(epoch, state)

    def _tell_sources(self, epoch: int, state: RunState) -> None:
        """The checkpoint of ``epoch`` is durable and the sinks committed: each source
        hears of it with its positions by split name, as the manifest holds them (a
        broker source commits its offsets or acknowledges its messages there)."""
        for sid, src in self._sources:
            positions = dict(state.positions.get(sid, {}))
            try:
                src.on_checkpoint_complete(epoch, positions)
            except VStreamError:
                raise
            except Exception as exc:
                msg = (
                    f"{src.label}: on_checkpoint_complete failed for checkpoint {epoch} "
                    f"({type(exc).__name__}: {exc}); the checkpoint is durable and the "
                    "sinks committed, so a restart resumes from it: fix the source's "
                    "hook (its offset commit or acknowledgement)"
                )
                raise SourceError(msg) from exc


# ---------------------------------------------------------------------- RunState <-> manifest
def manifest_of(state: RunState) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """The manifest body (without the store's own keys) and the tables of ``state``.
    A step's table ``t`` is stored as ``<step id>.t``."""
    tables: dict[str, pa.Table] = {}
    steps: list[dict[str, Any]] = []
    for sid, st in state.steps.items():
        for name, table in st.tables.items():
            tables[f"{sid}.{name}"] = table
        steps.append(
            {
                "id": sid,
                "label": st.label,
                "kind": st.kind,
                "stateful": st.stateful,
                "fingerprint": st.fingerprint,
                "anchor": st.anchor,
                "description": st.description,
                "in_wm": list(st.input_watermarks),
                "op_out_wm": st.output_watermark,
                "out_wm": st.emitted_watermark,
                "done": st.done,
                "finished": st.finished,
            }
        )
    sources = []
    for sid, positions in state.positions.items():
        ended = set(state.ended.get(sid, []))
        sources.append(
            {
                "step": sid,
                "label": state.source_labels.get(sid, sid),
                "splits": [
                    {"name": name, "position": pos, "ended": name in ended}
                    for name, pos in positions.items()
                ],
            }
        )
    manifest = {
        "epoch": state.epoch,
        "finished": False,
        "created": "",
        "polars": state.polars,
        "key_groups": state.key_groups,
        "steps": steps,
        "sources": sources,
        "sinks": state.sinks,
        "events_in": state.events_in,
    }
    return manifest, tables


def run_state_of(loaded: LoadedCheckpoint) -> RunState:
    """The RunState a checkpoint holds (its manifest passed :data:`RUN_MANIFEST`)."""
    m = loaded.manifest
    state = RunState(
        sinks=list(m["sinks"]),
        epoch=loaded.epoch,
        events_in=m["events_in"],
        polars=m["polars"],
        key_groups=m["key_groups"],
    )
    for info in m["steps"]:
        sid = info["id"]
        state.steps[sid] = StepState(
            label=info["label"],
            kind=info["kind"],
            stateful=info["stateful"],
            fingerprint=info["fingerprint"],
            anchor=info["anchor"],
            description=info["description"],
            input_watermarks=list(info["in_wm"]),
            output_watermark=info["op_out_wm"],
            emitted_watermark=info["out_wm"],
            done=info["done"],
            finished=info["finished"],
            tables=loaded.tables_of(sid),
        )
    for src in m["sources"]:
        sid = src["step"]
        state.source_labels[sid] = src["label"]
        state.positions[sid] = {sp["name"]: sp["position"] for sp in src["splits"]}
        state.ended[sid] = [sp["name"] for sp in src["splits"] if sp["ended"]]
    return state


def judge(manifest: dict[str, Any], now: list[StepIdentity]) -> list[str]:
    """What keeps a checkpoint (a manifest that passed :data:`RUN_MANIFEST`) from being
    restored into the plan whose steps are ``now``, one sentence per stateful step:
    each must find its id with the same fingerprint; a step another one replaced (same
    kind and upstream path, another configuration) is named with what changed, and a
    stateful step added or removed is refused. Stateless steps may change freely."""
    saved = {info["id"]: info for info in manifest["steps"]}
    ids_now = {i.id for i in now}
    matched: set[str] = set()
    problems: list[str] = []
    for ident in now:
        if not ident.stateful:
            if ident.id in saved:
                matched.add(ident.id)
            continue
        old = saved.get(ident.id)
        if old is not None:
            matched.add(ident.id)
            if old["fingerprint"] != ident.fingerprint or old["kind"] != ident.kind:
                diff = step_difference(old["description"], ident.description)
                problems.append(f"step {ident.label!r} changed {diff}")
            continue
        twin = next(
            (
                o
                for o in manifest["steps"]
                if o["id"] not in matched
                and o["id"] not in ids_now
                and o["anchor"] == ident.anchor
                and o["kind"] == ident.kind
            ),
            None,
        )
        if twin is not None:
            matched.add(twin["id"])
            diff = step_difference(twin["description"], ident.description)
            problems.append(f"step {ident.label!r} changed {diff}")
        else:
            problems.append(
                f"step {ident.label!r} ({ident.kind}) is not in it: stateful steps cannot "
                "be added to a checkpointed run"
            )
    for info in manifest["steps"]:
        if info["stateful"] and info["id"] not in matched:
            problems.append(
                f"its step {info['label']!r} ({info['kind']}) is not in the plan: stateful "
                "steps cannot be removed from a checkpointed run"
            )
    return problems[:3]
