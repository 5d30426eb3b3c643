"""The micro-batch loop: pull from sources, push batches and watermarks through the graph."""

from __future__ import annotations

import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from vstream.errors import CheckpointError, PipelineError
from vstream.io.base import (
    Data,
    Reader,
    ReaderStatus,
    SplitAdded,
    SplitEnd,
    SplitPosition,
    unique_split_names,
)
from vstream.io.sinks import Sink
from vstream.kernels.keyhash import DEFAULT_KEY_GROUPS
from vstream.ops.base import MAX_WM, MIN_WM, Chunk, Operator
from vstream.plan.ids import StepIdentity, step_identities
from vstream.plan.nodes import Node
from vstream.runtime.checkpointing import CheckpointConfig, Checkpointing
from vstream.runtime.lower import event_time_clocks, lower
from vstream.runtime.metrics import Metrics, StepMetrics, set_watermark
from vstream.runtime.progress import Progress
from vstream.runtime.run_state import RunState, StepState, check_key_groups, restore_operator
from vstream.runtime.splits import SourceSplits, describe_splits

__all__ = ["Executor", "Target"]

_POLL = 0.02  # seconds to wait on the preferred source before trying the others
_TICK = 0.05  # seconds between wall-clock ticks (idleness, time-based flushes)

Emission = list[tuple[Chunk | None, int]]


@dataclass
class Target:
    """A branch of the plan and where its batches go."""

    node: Node
    sink: Sink


class Executor:
    """Runs a plan graph once, for all its targets.

    Single-threaded over operators (readers prefetch in their own threads). Each step
    takes one event from the source that is furthest behind in event time and pushes
    what it causes through the nodes below that source, in topological order.
    """

    def __init__(
        self,
        targets: list[Target],
        checkpoint: CheckpointConfig | None = None,
        progress: Progress | None = None,
        *,
        key_groups: int = DEFAULT_KEY_GROUPS,
    ) -> None:
        if isinstance(key_groups, bool) or not isinstance(key_groups, int):
            msg = f"Executor: key_groups must be an int, got {type(key_groups).__name__}"
            raise PipelineError(msg)
        if not 1 <= key_groups <= 2**31 - 1:
            msg = f"Executor: key_groups must be in [1, 2**31 - 1], got {key_groups}"
            raise PipelineError(msg)
        #: the number G of key groups keyed state is organised in (the unit of
        #: rescaling); recorded in every RunState, and a state of another G is refused
        self.key_groups = key_groups
        self.targets = targets
        #: a bar updated on the metrics tick (bounded foreground runs), closed by run()
        self.progress = progress
        # the physical graph: steps by position, their operators, and what the loop
        # needs to know of them (vstream.runtime.lower)
        graph = lower([t.node for t in targets])
        self.graph = graph
        self.nodes = graph.nodes
        self.index = graph.index
        self.ops: list[Operator] = graph.ops
        #: per node, its stable id and fingerprint (what a RunState keys it by)
        self.step_ids: list[StepIdentity] = step_identities(self.nodes)
        n = len(self.nodes)
        # per node, the positions of its inputs; the dead-letter branches
        self.parents = graph.parents
        self.dead_letter_nodes = graph.collectors
        self.children = graph.children
        self.out_wm = [MIN_WM] * n
        self.finished = [False] * n
        self.sinks: dict[int, list[Sink]] = {}
        for t, j in zip(targets, graph.targets, strict=True):
            self.sinks.setdefault(j, []).append(t.sink)
        # the job's watermark gauge: the targets with an event time, except those fed by a
        # side output (late events, dead letters), whose watermark stays at -inf until
        # their input ends
        side_fed = {k for c in graph.collectors for k in graph.down[c]}
        self._wm_targets = [
            j
            for j in dict.fromkeys(graph.targets)
            if self.nodes[j].event_time is not None and j not in side_fed
        ]
        self._clocks = event_time_clocks(graph, self._wm_targets)  # what lags are measured on
        # rows a target's sink takes are events out, except refused records
        self._counts_out = [j not in graph.dead_letter_outputs for j in range(n)]
        self.step_metrics = [StepMetrics() for _ in range(n)]
        self.metrics = Metrics()
        # the same StepMetrics objects, updated in place: building the dict per step costs
        self._steps_view = {
            f"[{n.id}] {n.label}": self.step_metrics[i] for i, n in enumerate(self.nodes)
        }
        self._dead_uncollected = 0
        self._stop = threading.Event()
        self._drain = False
        #: calls to run in the loop's thread between two steps (Job.state)
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = (
            queue.SimpleQueue()
        )
        self._readers: dict[int, Reader] | None = None
        #: global split id -> position after the last batch consumed
        self.positions: dict[int, object] = {}
        #: global ids of the splits whose end the operators have seen
        self.ended_splits: set[int] = set()
        #: per source node, where its splits go on (split index -> position), set by
        #: restore() and taken by open()
        self.resume: dict[int, dict[int, SplitPosition]] = {}
        self.changed = False
        self._batch_time = 0.0  # seconds and count of batches since the last metrics tick
        self._batch_count = 0
        # lookup joins: the sources of their update streams, read ahead of the events
        self.table_sources = graph.table_sources
        self._tables_primed: set[int] = set()
        # a head() can finish a branch before its sources end, and so can a lookup join
        # whose events end before its (perhaps endless) update stream
        self._may_end_early = graph.may_end_early
        self._t0 = time.perf_counter()
        self._wire_sources()
        self.dead_routes = graph.dead_routes
        self.late_routes = graph.late_routes
        # operators driven by the wall clock too (processing time, early results)
        self.ticking = graph.ticking
        self.tick_origin = graph.tick_origin
        # projection pushdown: a source converts only the columns someone downstream reads
        # (and is opened with the columns the run reads, graph.read_columns)
        self.source_columns = graph.source_columns
        self.checkpointing = Checkpointing(checkpoint, self) if checkpoint is not None else None

    # ------------------------------------------------------------------ wiring
    def _wire_sources(self) -> None:
        graph = self.graph
        self.sources = graph.sources
        self.down = graph.down
        # splits are global ints in the loop, indexes in a reader, names (per source step
        # id) in a RunState; splits that appear while running get the next global ids
        self.splits: dict[int, SourceSplits] = {}
        next_id = 0
        for s in self.sources:
            names = unique_split_names(graph.source_of[s].split_names())
            self.splits[s] = SourceSplits(self.nodes[s].label, names, first_id=next_id)
            next_id += len(names)
        self._next_split = next_id
        self.split_namers = [op for op in self.ops if op.names_splits]
        for s in self.sources:
            for k, sid in self.splits[s].ids.items():
                for op in self.split_namers:
                    op.split_named(sid, self.splits[s].names[k])
        self.wm_ops = graph.watermarks
        for s in self.sources:
            src = graph.source_of[s]
            for j in self.wm_ops[s]:
                op = self.ops[j]
                if not src.bounded:
                    op.expect_splits()
                bound = graph.bound_columns[s, j]
                lowers = None if bound is None else src.split_lower_bounds(*bound)
                for k, sid in self.splits[s].ids.items():
                    op.register_split(
                        sid,
                        lower=None if lowers is None else lowers[k],
                        started=src.concurrent_splits,
                        name=f"{self.step_ids[s].id}/{self.splits[s].names[k]}",
                    )

    def _add_split(self, s: int, ev: SplitAdded) -> None:
        """A split that appeared while running: a global id, and a watermark that starts
        at the source's current one (it holds the watermark there until its data comes,
        and never drags it back: what was emitted stays on time)."""
        sp = self.splits[s]
        _, name = sp.add(ev.split, ev.name, next_id=self._next_split)
        sid = self._next_split
        self._next_split += 1
        for op in self.split_namers:
            op.split_named(sid, name)
        src = self.graph.source_of[s]
        for j in self.wm_ops[s]:
            op = self.ops[j]
            op.register_split(
                sid,
                lower=op.emitted_watermark(),
                started=src.concurrent_splits,
                name=f"{self.step_ids[s].id}/{name}",
            )
        self.changed = True  # a checkpoint now holds one more split

    def _poll_status(self, s: int, reader: Reader) -> None:
        """On the tick: what the reader says of its splits (a lagging or disconnected
        split is never idle) and which ended splits leave the run's state."""
        sp = self.splits[s]
        sp.status = status = reader.status()
        if self.wm_ops[s]:
            held = sp.held(status)
            waiting = status is not None and not (status.connected and status.caught_up)
            for j in self.wm_ops[s]:
                self.ops[j].hold_splits(held, source=waiting)
        retired = reader.retired_splits()
        if retired or sp.retiring:
            self._retire(s, [*retired, *sp.retiring])

    def _retire(self, s: int, indexes: list[int]) -> None:
        for sid in self.splits[s].retire(indexes, self.ended_splits):
            self.positions.pop(sid, None)
            self.ended_splits.discard(sid)
            for j in self.wm_ops[s]:
                self.ops[j].forget_split(sid)
            self.changed = True

    # ------------------------------------------------------------------ pushing
    def _drain_side(self, j: int) -> None:
        op = self.ops[j]
        if not op.side:
            return
        for name, frames in op.side.items():
            if name == "dead_letters":
                rows = sum(f.height for f in frames)
                self.metrics.dead_letters += rows
                routes = self.dead_routes.get(j, [])
                if not routes:
                    self._dead_uncollected += rows
                for k in routes:
                    self.ops[k].collect(frames)
            elif name.startswith("late_events"):
                port = int(name.partition(".")[2] or 0)
                for k in self.late_routes.get((j, port), []):
                    self.ops[k].collect(frames)
        op.side = {}

    def _push(self, origin: int, first: Emission, force: set[int] | None = None) -> None:
        self.changed = True  # something to checkpoint since the last checkpoint
        emitted: dict[int, Emission] = {origin: first}
        self._deliver(origin, first)
        for j in self.down[origin]:
            if j == origin:
                continue
            op = self.ops[j]
            calls: list[tuple[int, Emission]] = []
            for port, parent in enumerate(self.parents[j]):
                em = emitted.get(parent)
                if em:
                    calls.append((port, em))
            wake = (force is not None and j in force) or (
                j in self.dead_letter_nodes and op.has_pending()
            )
            if not calls and not wake:
                continue
            if not calls:
                calls = [(0, [(None, op.port_watermark(0))])]
            out: Emission = []
            last = self.out_wm[j]
            sm = self.step_metrics[j]
            for port, em in calls:
                for chunk, wm in em:
                    if chunk is not None:
                        sm.rows_in += chunk.df.height
                        sm.batches_in += 1
                    chunks, w = op.process(port, chunk, wm)
                    if op.side:
                        self._drain_side(j)
                    for c in chunks[:-1]:
                        out.append((c, last))
                    if chunks:
                        out.append((chunks[-1], w))
                    elif w != last:
                        out.append((None, w))
                    last = w
            self.out_wm[j] = last
            if out:
                emitted[j] = out
                self._deliver(j, out)

    def _deliver(self, j: int, out: Emission) -> None:
        sm = self.step_metrics[j]
        sinks = self.sinks.get(j)
        for chunk, _ in out:
            if chunk is None:
                continue
            sm.rows_out += chunk.df.height
            sm.batches_out += 1
            if sinks:
                for sink in sinks:
                    sink.write(chunk.df)
                if self._counts_out[j]:
                    self.metrics.events_out += chunk.df.height

    # ------------------------------------------------------------------ run state
    def snapshot(self) -> RunState:
        """The run as it stands between two micro-batches, as plain data (sinks' staged
        files are the checkpoint's to add: staging is an action of the sinks)."""
        state = RunState(
            events_in=self.metrics.events_in, polars=pl.__version__, key_groups=self.key_groups
        )
        for i, (ident, op) in enumerate(zip(self.step_ids, self.ops, strict=True)):
            state.steps[ident.id] = StepState(
                label=ident.label,
                kind=ident.kind,
                stateful=ident.stateful,
                fingerprint=ident.fingerprint,
                anchor=ident.anchor,
                description=ident.description,
                input_watermarks=op.input_watermarks(),
                output_watermark=op.emitted_watermark(),
                emitted_watermark=self.out_wm[i],
                done=op.done,
                finished=self.finished[i],
                tables=op.snapshot(),
            )
        for s in self.sources:
            sid = self.step_ids[s].id
            sp = self.splits[s]
            pairs = [(sp.names[k], g) for k, g in sp.ids.items()]
            state.source_labels[sid] = self.nodes[s].label
            state.positions[sid] = {name: self.positions.get(g) for name, g in pairs}
            state.ended[sid] = [
                name for name, g in pairs if g in self.ended_splits or self.finished[s]
            ]
        return state

    def restore(self, state: RunState, where: str = "the run state") -> list[str]:
        """Take back a :meth:`snapshot` (before :meth:`open`), step by step id and split
        by name; returns notes for the user (files gone or added since).

        A stateful step ``state`` lacks is refused (:class:`CheckpointError`; a caller
        that judges a changed plan says why before); a stateless step it lacks (added
        since) starts from its inputs' watermarks. A split it lacks (a file added to the
        source's directory) is read from its start; one it has that is gone is noted.
        A state of another number of key groups than the run's is refused.
        """
        check_key_groups(state.key_groups, self.key_groups, where)
        notes: list[str] = []
        for i, (ident, op) in enumerate(zip(self.step_ids, self.ops, strict=True)):
            saved = state.steps.get(ident.id)
            if saved is None:
                if ident.stateful:
                    msg = f"{where} has no state for step {ident.label!r} ({ident.id})"
                    raise CheckpointError(msg)
                ins = [self.out_wm[p] for p in self.parents[i]] or [MIN_WM]
                low = min(ins)
                if ident.kind in ("dead_letters", "late_events"):
                    out = MAX_WM if low == MAX_WM else MIN_WM  # as DeadLetterOp does
                else:
                    out = low
                op.set_watermarks(ins[: len(op.input_watermarks())], out)
                self.out_wm[i] = out
                continue
            n = len(op.input_watermarks())
            if len(saved.input_watermarks) != n:
                msg = (
                    f"{where}: step {saved.label!r} has {len(saved.input_watermarks)} input "
                    f"watermarks in it, {n} inputs in the plan"
                )
                raise CheckpointError(msg)
            if saved.tables:
                restore_operator(op, saved.tables, ident.label, where)
            op.set_watermarks(saved.input_watermarks, saved.output_watermark)
            op.done = saved.done
            self.out_wm[i] = saved.emitted_watermark
            self.finished[i] = saved.finished
        self.resume = {}
        for s in self.sources:
            sid, label = self.step_ids[s].id, self.nodes[s].label
            if sid not in state.positions:
                msg = f"{where} has no split positions for source {label!r} ({sid})"
                raise CheckpointError(msg)
            had = state.positions[sid]
            ended = set(state.ended.get(sid, []))
            sp = self.splits[s]
            names = list(sp.names.values())
            resume: dict[int, SplitPosition] = {}
            for k, g in sp.ids.items():
                name = sp.names[k]
                if name not in had:
                    continue  # added since: read from its start
                pos = had[name]
                if pos is not None:
                    self.positions[g] = pos
                if name in ended:
                    self.ended_splits.add(g)
                resume[k] = SplitPosition(pos, name in ended)
            known = set(names)
            gone = [name for name in had if name not in known]
            new = [name for name in names if name not in had]
            if gone and self.graph.source_of[s].bounded:
                # (an unbounded source's splits come and go: retired watched files)
                notes.append(
                    f"{label}: {describe_splits(gone)} of the checkpointed run "
                    f"{'is' if len(gone) == 1 else 'are'} gone; the run goes on without "
                    f"{'it' if len(gone) == 1 else 'them'}"
                )
            if new and self.finished[s]:
                notes.append(
                    f"{label}: {describe_splits(new)} appeared after the source had ended in the "
                    "checkpointed run and cannot be read by it; read "
                    f"{'it' if len(new) == 1 else 'them'} with a new checkpoint_dir"
                )
            self.resume[s] = resume
        return notes

    # ------------------------------------------------------------------ running
    def stop(self, drain: bool = False) -> None:
        """Ask the loop to end after the current step (``drain``: as if the input ended)."""
        self._drain = drain
        self._stop.set()

    def _progress(self, s: int) -> int:
        best = MAX_WM
        for j in self.wm_ops[s]:
            op = self.ops[j]
            for sid in self.splits[s].ids.values():
                w = op.split_watermark(sid)
                if w is not None:
                    best = min(best, w)
        return MIN_WM if best == MAX_WM and not self.wm_ops[s] else best

    def _finish_source(self, s: int, readers: dict[int, Reader]) -> None:
        for sid in list(self.splits[s].ids.values()):
            if sid not in self.ended_splits:
                self._split_end(s, sid)
        st = self.splits[s].status
        self.splits[s].status = None if st is None else ReaderStatus(errors=st.errors)
        self.finished[s] = True
        self.out_wm[s] = MAX_WM
        self._push(s, [(None, MAX_WM)])
        readers.pop(s).close()

    def _split_end(self, s: int, sid: int) -> None:
        self.ended_splits.add(sid)
        force = set()
        for j in self.wm_ops[s]:
            self.ops[j].split_ended(sid)
            force.add(j)
        if force:
            self._push(s, [], force)

    def _targets_done(self) -> bool:
        done = [False] * len(self.nodes)
        for i, op in enumerate(self.ops):
            parents = self.parents[i]
            done[i] = (
                self.finished[i] or op.done or (bool(parents) and all(done[p] for p in parents))
            )
        return all(done[j] for j in self.graph.targets)

    def open(self) -> None:
        """Open sinks and sources (in the caller's thread, so errors surface at once)."""
        if self._readers is not None:
            return
        self._t0 = time.perf_counter()
        cp = self.checkpointing
        readers: dict[int, Reader] = {}
        if cp is not None:
            try:
                loaded = cp.open_sinks()
                for t in self.targets:
                    t.sink.open(t.node.schema)
                cp.restore(loaded)
            except BaseException:
                cp.close()
                raise
            if cp.finished:
                cp.close()
                self._readers = readers
                return
        else:
            for t in self.targets:
                t.sink.open(t.node.schema)
        try:
            for s in self.sources:
                if self.finished[s]:
                    continue  # ended before the checkpoint this run resumes from
                source = self.graph.source_of[s]
                resume = self.resume.get(s) or None
                readers[s] = source.open(resume, columns=self.graph.read_columns[s])
                if (on := self.graph.align.get(s)) is not None:
                    readers[s].align(*on)  # splits in event-time order (lower._align_on)
        except BaseException:
            for r in readers.values():
                r.close()
            if cp is not None:
                cp.close()
            raise
        self._readers = readers

    def run(self, deadline: float | None = None) -> Generator[None, None, None]:
        """Run to the end; yields after every step (so callers can stream results)."""
        self.open()
        readers = self._readers
        assert readers is not None
        self.metrics.running = True
        rr = 0
        last_tick = time.monotonic()
        cp = self.checkpointing
        # how the loop ended: the input ("input"), or a stop or timeout ("paused"), which
        # with checkpoints keeps the state for the next run instead of flushing it
        ended = "input"
        try:
            while readers:
                if self._stop.is_set():
                    self.metrics.stopped = True  # ended by stop(), input left
                    if not self._drain:
                        ended = "paused"
                        break
                    deadline = 0.0
                if deadline is not None and time.monotonic() >= deadline:
                    self.metrics.stopped = True
                    if cp is not None and not self._drain:
                        ended = "paused"
                        break
                    for s in list(readers):
                        self._finish_source(s, readers)
                    break
                live = list(readers)
                if len(live) > 1:
                    rr += 1
                    order = sorted(
                        live, key=lambda s: (self._progress(s), (live.index(s) - rr) % len(live))
                    )
                else:
                    order = live
                if self.table_sources and self._read_tables(readers):
                    order = [s for s in order if s not in self.table_sources] or order
                event = None
                origin = -1
                for k, s in enumerate(order):
                    event = readers[s].poll(_POLL if k == 0 else 0.0)
                    if event is not None or readers[s].exhausted:
                        origin = s
                        break
                now = time.monotonic()
                tick = now - last_tick >= _TICK
                if tick:
                    # the statuses before the event: after a step longer than
                    # idle_timeout (a JIT compile, a slow sink) the splits whose data
                    # waited meanwhile must not meet it judged idle on older statuses
                    self._poll_statuses()
                if origin >= 0 and event is None:
                    self._finish_source(origin, readers)
                elif event is not None:
                    self._on_event(origin, event)
                # at a micro-batch boundary: every operator has taken the last event
                if cp is not None and cp.due(int(isinstance(event, Data))):
                    cp.checkpoint()
                if tick:
                    last_tick = now
                    self._tick(now)
                    self._update_metrics()
                while not self._calls.empty():
                    self._serve(*self._calls.get_nowait())
                yield
                if self._may_end_early and self._targets_done():
                    break
            if cp is not None and not cp.finished:
                for s, reader in readers.items():
                    self._poll_status(s, reader)  # splits retired since the last tick
                cp.checkpoint(finished=ended == "input")
        finally:
            for r in readers.values():
                r.close()
            self.metrics.running = False
            while not self._calls.empty():  # asked while the loop was ending
                self._serve(*self._calls.get_nowait())
            if cp is not None:
                cp.close()
            self._update_metrics()
            if self.progress is not None:
                self.progress.close()
            # sinks are closed whatever ended the run: rows they accepted are written
            self._close_sinks()

    def call(self, fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run ``fn`` between two steps of the loop (in its thread, where the operators'
        state is consistent), or at once when the loop is not running."""
        if not self.metrics.running:
            return fn()
        done: Future[object] = Future()
        self._calls.put((fn, done))
        try:
            return done.result(timeout)
        except FutureTimeout:
            if not self.metrics.running and done.set_running_or_notify_cancel():
                return fn()  # the loop ended before serving it
            raise

    @staticmethod
    def _serve(fn: Callable[[], object], done: Future[object]) -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)

    def _on_event(self, s: int, event: object) -> None:
        if isinstance(event, Data):
            self._on_data(s, event)
        elif isinstance(event, SplitEnd):
            self._split_end(s, self.splits[s].gid(event.split))
        elif isinstance(event, SplitAdded):
            self._add_split(s, event)

    def _read_tables(self, readers: dict[int, Reader]) -> bool:
        """Read the update streams of lookup joins up to their current end (a bounded one
        to its end) before the next event batch. The first time, an unbounded one is read
        until it pauses (its reader thread has just started and may not have caught up
        with what is already there). True if other sources remain."""
        for s in self.table_sources:
            first = s not in self._tables_primed
            self._tables_primed.add(s)
            while s in readers:
                bounded = self.nodes[s].bounded
                event = readers[s].poll(_POLL if bounded or first else 0.0)
                if event is None:
                    if readers[s].exhausted:
                        self._finish_source(s, readers)
                    elif bounded:
                        continue  # its reader has not caught up yet: wait for it
                    break
                self._on_event(s, event)
        return any(s not in self.table_sources for s in readers)

    def _close_sinks(self) -> None:
        errors = []
        for t in self.targets:
            try:
                t.sink.close()
            except Exception as exc:
                errors.append(exc)
        if errors and sys.exc_info()[1] is None:
            raise errors[0]

    def warn_uncollected(self, stacklevel: int) -> None:
        """Warn (pointing at the user's call) if records were refused and nobody saw them,
        and of what checkpointing has to say (damaged checkpoints skipped, ...)."""
        if self.checkpointing is not None:
            self.checkpointing.warn(stacklevel + 1)
        if self._dead_uncollected:
            warnings.warn(
                f"{self._dead_uncollected} records were refused (dead letters) and no branch "
                "collects them: add stream.dead_letters() to vs.collect_all([...]) to see "
                "them with their reasons",
                stacklevel=stacklevel + 1,
            )

    def _on_data(self, s: int, ev: Data) -> None:
        t0 = time.perf_counter()
        sid = self.splits[s].gid(ev.split)
        # what a checkpoint records: the position after the last batch the operators took,
        # not whatever the reader has prefetched into its queue
        self.positions[sid] = ev.position
        if ev.dead is not None and ev.dead.num_rows:
            self.metrics.events_in += ev.dead.num_rows
            self.ops[s].emit_side("dead_letters", pl.DataFrame(ev.dead))
            self._drain_side(s)
        first: Emission = []
        if ev.batch is not None and ev.batch.num_rows:
            rb: pa.RecordBatch = ev.batch
            cols = self.source_columns[s]
            if cols is not None:
                rb = rb.select(cols)  # zero-copy; unread (string) columns are never converted
            # the DataFrame constructor: same result as pl.from_arrow at half its cost
            df = pl.DataFrame(rb)
            self.metrics.events_in += rb.num_rows
            self.metrics.batches_in += 1
            # the Arrow buffers' sizes: O(columns). Polars' estimated_size walks string
            # views (~120 µs a 65,536-row telemetry batch, 15% of filter + with_columns)
            self.metrics.bytes_in += rb.get_total_buffer_size()
            first = [(Chunk(df, sid), self.out_wm[s])]
        if first or ev.dead is not None:
            self._push(s, first)
        # the batch's time through every operator to the sinks (the live view's gauge)
        took = time.perf_counter() - t0
        self._batch_time += took
        self._batch_count += 1
        self.metrics.max_batch_latency_s = max(self.metrics.max_batch_latency_s, took)

    def _poll_statuses(self) -> None:
        for s, reader in (self._readers or {}).items():
            self._poll_status(s, reader)

    def _tick(self, now: float) -> None:
        """Wall-clock work: idleness and time-based flushes (the readers' statuses are
        read just before, ahead of the event of the same step)."""
        for s in self.sources:
            force = {j for j in self.wm_ops[s] if self.ops[j].tick(now)}
            if force and not self.finished[s]:
                self._push(s, [], force)
        for j in self.ticking:
            s = self.tick_origin[j]
            if self.ops[j].tick(now) and not self.finished[s]:
                self._push(s, [], {j})
        for t in self.targets:
            t.sink.tick(now)

    def _update_metrics(self) -> None:
        m = self.metrics
        if self._batch_count:
            m.batch_latency_s = self._batch_time / self._batch_count
            self._batch_time, self._batch_count = 0.0, 0
        m.elapsed_s = time.perf_counter() - self._t0
        m.events_per_s = m.events_in / m.elapsed_s if m.elapsed_s > 0 else 0.0
        m.late_events = sum(op.late_events for op in self.ops)
        m.behind_watermark = sum(op.behind_watermark for op in self.ops)
        if self._wm_targets:
            j = min(self._wm_targets, key=lambda i: self.out_wm[i])
            et = self.nodes[j].event_time
            assert et is not None
            assigners, live = self._clocks[j]
            newest = max((self.ops[w].max_event_time for w in assigners), default=MIN_WM)
            set_watermark(m, et, self.out_wm[j], newest, live)
        for op, sm in zip(self.ops, self.step_metrics, strict=True):
            by_input = op.late_counts()
            if by_input is not None:
                sm.late_events = by_input
            elif op.late_events:
                sm.late_events = (op.late_events,)
            rows = op.state_rows()
            if rows is not None:
                sm.state_rows = rows
                sm.peak_state_rows = max(sm.peak_state_rows, op.peak_state_rows)
        m.steps = self._steps_view
        self._source_metrics(m)
        if self.progress is not None:
            self.progress.update(m.events_in, m.elapsed_s)

    def _source_metrics(self, m: Metrics) -> None:
        """Transient source errors, connection and per-split lag, from the statuses the
        readers gave on the last tick."""
        errors, connected, lag = 0, True, {}
        for s in self.sources:
            sp = self.splits[s]
            st = sp.status
            if st is None:
                continue
            errors += st.errors
            connected = connected and st.connected
            for name, value in sp.lags(st).items():
                lag[f"{self.step_ids[s].id}/{name}" if name in lag else name] = value
        m.source_errors, m.connected, m.split_lag = errors, connected, lag
