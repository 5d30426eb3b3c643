"""The window operator: batches in, the watermark, emission, snapshot and restore.

Config (what the user wrote) lives in :mod:`vstream.plan.windows` and arrives resolved as
a :class:`~vstream.plan.windows.WindowSetup`; the state is ``WindowOp.state``, a
:class:`~vstream.state.window.PaneState` or :class:`~vstream.state.window.SessionState`
that the pane and session logic (:mod:`~vstream.ops.window.panes`,
:mod:`~vstream.ops.window.sessions`) update in place.
"""

from __future__ import annotations

import math
import time

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import units_per_day
from vstream.errors import VStreamError
from vstream.kernels.window import time_bounds
from vstream.ops.base import MAX_WM, MIN_WM, Chunk, Operator
from vstream.ops.watermark import dead_letters
from vstream.ops.window.fields import window_fields
from vstream.ops.window.finalize import _final_steps, _finalize, _fused_finalize
from vstream.ops.window.inputs import _init_values, _Inputs, _Scratch
from vstream.ops.window.panes import _PaneLogic
from vstream.ops.window.sessions import _SessionLogic
from vstream.ops.window.zones import to_instants, to_local
from vstream.plan import aggregates as A
from vstream.plan.windows import WindowSetup, valid_times
from vstream.state.key_index import KeyIndex
from vstream.state.slots import SlotStore, StateTable
from vstream.state.window import PaneState, SessionState, WindowStateConfig

__all__ = ["WindowOp"]

_REV = "revision"


class WindowOp(Operator):
    """Window aggregation over one input; emits rows when the watermark closes windows."""

    def __init__(self, name: str, setup: WindowSetup) -> None:
        super().__init__(name)
        self.setup = setup
        self.plan = setup.aggs
        self.prog, init_f, init_i = _init_values(self.plan)
        self.inputs = _Inputs(self.plan)
        self.revisions = setup.lateness > 0 or setup.early is not None
        self.ticking = setup.early is not None or setup.time_column is None
        self._next_early = time.monotonic() + (setup.early or 0.0)
        self.pending: list[pl.DataFrame] = []
        self._proc_wm = MIN_WM
        self.nunique = [lf for lf in self.plan.leaves if lf.kind == A.NUNIQUE]
        renames = []
        for name, e in zip(self.plan.schema, self.plan.final, strict=True):
            base = e.meta.undo_aliases()
            if not base.meta.is_column():
                break
            renames.append((name, base.meta.output_name()))
        self._renames = renames if len(renames) == len(self.plan.final) else None
        self.fin = _fused_finalize(self.plan)
        # until an input has a null, the NULLS fields are all 0: a firing skips them
        self.nulls_seen = False
        if self.fin is not None:
            self.fin_no_nulls = self.fin.copy()
            self.fin_no_nulls[:, 4] = -1
            self.fin_steps = _final_steps(self.plan, self.fin)
        self.scratch = _Scratch()  # per-batch arrays of the window logic
        # event times the windows can represent (processing time: the wall clock is)
        self.times = valid_times(setup) if setup.time_column is not None else None
        # config + logic + state: what a checkpoint holds is self.state, an object of
        # vstream.state.window that the logic (self.logic) updates in place
        pane = math.gcd(setup.size, setup.slide) if setup.kind != "session" else 1
        self.state_config = WindowStateConfig(
            f"window step {name!r}",
            setup.key_schema if setup.by else None,
            window_fields(self.plan, init_f, init_i),
            self._time_range(),
            pane=pane,
            s=setup.slide // pane,
            n=setup.size // pane,
            offset=setup.offset,
            gap=setup.gap,
            lateness=setup.lateness,
        )
        if setup.kind == "session":
            self.state: PaneState | SessionState = SessionState(self.state_config)
        else:
            self.state = PaneState(self.state_config)
        self.logic = self._new_logic()

    def _new_logic(self) -> _PaneLogic | _SessionLogic:
        if isinstance(self.state, SessionState):
            return _SessionLogic(self, self.state)
        return _PaneLogic(self, self.state)

    def load(self, state: PaneState | SessionState) -> None:
        """Run on ``state`` from now on (a restored, split or merged state of this
        step): the logic's caches are built again around it."""
        ours, theirs = self.state_config.fields, state.config.fields
        if type(state) is not type(self.state) or (ours.floats, ours.ints) != (
            theirs.floats,
            theirs.ints,
        ):
            msg = (
                f"window step {self.name!r}: the state given is of another window step "
                "(another kind of window or other aggregates); load a state of this step"
            )
            raise VStreamError(msg)
        self.state = state
        self.logic = self._new_logic()
        self.nulls_seen = True  # the state may have counted nulls

    @property
    def keys(self) -> KeyIndex | None:
        """The key index of the state (None: no keys)."""
        return self.state.keys

    @property
    def slots(self) -> SlotStore:
        """The aggregate fields of the state's slots."""
        return self.state.slots

    @property
    def stores(self) -> dict[str, pl.Series]:
        """The state's value stores (first / last of non-numeric columns)."""
        return self.state.stores

    # ------------------------------------------------------------------ runtime
    def _local_wm(self, wm: int) -> int:
        """Local windows (``setup.zone``): the watermark as a local wall-clock time,
        below which the clock will never read again: the lower of the local times at
        ``wm`` and at ``wm + zone_back`` (past a DST overlap the clock steps back). A
        window fires when this reaches its local end, so at the last instant the clock
        shows its end (for an end in an overlap: the later one)."""
        st = self.setup
        if st.zone is None or wm in (MIN_WM, MAX_WM):
            return wm
        assert self.times is not None
        lo, hi = self.times
        if not lo <= wm <= hi:  # beyond every event the step takes: no local time needed
            return wm
        at = np.array([wm, min(wm + st.zone_back, hi)], np.int64)
        local = to_local(at, st.time_dtype)
        return wm + int(min(local[0] - at[0], local[1] - at[1]))

    def _wm(self) -> int:
        wm = self.input_watermark
        if self.setup.time_column is None and wm != MAX_WM:
            return self._proc_wm  # processing time: the wall clock, from tick()
        return wm

    def _now(self) -> int:
        return time.time_ns() // self.setup.ns_per_unit

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        before = self._local_wm(self._wm())
        if chunk is not None and chunk.df.height:
            self._on_rows(chunk.df, before)
        self._in_wm[port] = max(self._in_wm[port], watermark)
        wm = self._wm()
        if self.setup.time_column is None and wm == MAX_WM:
            self._proc_wm = MAX_WM
        frames = self.pending
        self.pending = []
        frames.extend(self.logic.fire(self._local_wm(wm), early=False))
        self._out_wm = max(self._out_wm, wm)
        return [Chunk(f) for f in frames if f.height], self._out_wm

    def _on_rows(self, df: pl.DataFrame, wm: int) -> None:
        st = self.setup
        n = df.height
        if st.time_column is None:
            ts = np.full(n, max(self._now(), self._proc_wm), np.int64)
        else:
            assert st.event_time is not None
            ts = st.event_time.of(df)
            assert self.times is not None
            lo, hi = time_bounds(ts)
            if lo < self.times[0] or hi > self.times[1]:
                df, ts = self._refuse_times(df, ts)
                n = df.height
                if not n:
                    return
            if st.zone is not None:
                ts = to_local(ts, st.time_dtype)  # the windows are cut in local time
        # the pane logic looks up the ids of dense integer keys itself (not for n_unique,
        # which needs them as an array)
        keys = None
        if self.keys is not None and isinstance(self.logic, _PaneLogic) and not self.nunique:
            keys = self.keys.dense_keys(df)
        if keys is not None:
            kid = None
        elif self.keys is not None:
            kid = self.keys.ids(df)
        else:
            kid = np.zeros(n, np.int32)
        Xf, Xi, M, vmap = self.inputs.build(df, self.stores)
        if not self.nulls_seen and vmap.max() >= 0:
            self.nulls_seen = True
        late = self.scratch.get("late", (n,), np.bool_)
        late[:] = False
        if keys is not None:
            assert isinstance(self.logic, _PaneLogic)
            n_late = self.logic.update(df, ts, kid, Xf, Xi, M, vmap, late, wm, keys)
        else:
            n_late = self.logic.update(df, ts, kid, Xf, Xi, M, vmap, late, wm)
        if self.stores:
            self._compact_stores()
        self.state.seq += n
        if n_late:
            self.late_events += n_late
            if st.late_side:
                self.emit_side("late_events", df.filter(pl.Series(late)))

    def _refuse_times(self, df: pl.DataFrame, ts: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
        """Send the rows whose windows the step cannot represent to the dead letters;
        the others and their event times."""
        assert self.times is not None
        assert self.setup.event_time is not None
        lo, hi = self.times
        bad = (ts < lo) | (ts > hi)
        et = self.setup.event_time
        column = et.column if et.other is None else f"{et.column}/{et.other}"
        unit = f" {et.unit}" if et.unit is not None else ""
        reason = (
            f"event time in column {column!r} outside the range this window step can "
            f"represent ({lo} to {hi}{unit} as {self.setup.time_dtype}): its windows would "
            "not fit the column's type; check the event times, or use a smaller window "
            "or allowed_lateness"
        )
        self.emit_side("dead_letters", dead_letters(df.filter(pl.Series(bad)), reason, self.name))
        ok = ~bad
        return df.filter(pl.Series(ok)), ts[ok]

    def _compact_stores(self) -> None:
        """Keep only the stored values that live slots refer to (ids renumbered)."""
        used = self.logic.used_slots()
        sl = self.slots
        for name, store in self.stores.items():
            fields = [lf.i0 for lf in self.plan.leaves if lf.stored and lf.input == name]
            if not store.len():
                continue
            refs = np.clip(np.concatenate([sl.I[f, :used] for f in fields]), 0, store.len() - 1)
            uniq, inv = np.unique(refs, return_inverse=True)
            self.stores[name] = store.gather(uniq)
            for i, f in enumerate(fields):
                sl.I[f, :used] = inv[i * used : (i + 1) * used]
        if isinstance(self.logic, _PaneLogic):
            # the hopping partials hold the old ids: computed again when next needed
            self.logic.valid[:] = 0

    def tick(self, now: float) -> bool:
        st = self.setup
        moved = False
        if st.time_column is None and self._proc_wm != MAX_WM:
            wm = self._now()
            if wm > self._proc_wm:
                self._proc_wm = wm
                moved = True
        if st.early is not None and now >= self._next_early:
            self._next_early = now + st.early
            self.pending.extend(self.logic.fire(self._local_wm(self._wm()), early=True))
            moved = moved or bool(self.pending)
        return moved

    # ------------------------------------------------------------------ output
    def result(
        self,
        kid: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        rev: np.ndarray | None,
        Fo: np.ndarray,
        Io: np.ndarray,
        nunique: dict[str, np.ndarray] | None = None,
        leaves: dict[str, pl.Series] | None = None,
        key_cols: list[pl.Series] | None = None,
    ) -> pl.DataFrame:
        """Output rows from emitted state: keys (of the key ids ``kid``, unless given as
        ``key_cols``), window bounds, finalized aggregates (from the state fields ``Fo`` /
        ``Io``, or already finalized in ``leaves``)."""
        st = self.setup
        cols: list[pl.Series] = []
        if key_cols is not None:
            cols.extend(key_cols)
        elif self.keys is not None:
            cols.extend(self.keys.key_columns(kid))
        tdt = st.time_dtype
        if st.zone is not None and len(start):
            # local bounds: a window covers its events' instants from the earliest
            # instant of its start to the latest of its end (DST overlaps)
            start = to_instants(start, tdt, "earliest")
            end = to_instants(end, tdt, "latest")
        start_s, end_s = pl.Series("window_start", start), pl.Series("window_end", end)
        cols.append(start_s if tdt == pl.Int64 else start_s.cast(tdt))
        cols.append(end_s if tdt == pl.Int64 else end_s.cast(tdt))
        if self.revisions:
            assert rev is not None
            cols.append(pl.Series(_REV, rev, pl.Int64).cast(pl.UInt32))
        if not len(kid):
            return pl.DataFrame(schema=st.schema)
        if leaves is None:
            leaves = {
                lf.name: _finalize(lf, Fo, Io, nunique, self.stores, self.plan.len_field)
                for lf in self.plan.outputs
            }
        if self._renames is not None:  # every output is a leaf: skip the Polars select
            cols.extend(leaves[src].alias(dst) for dst, src in self._renames)
            return pl.DataFrame(cols)
        aggs = pl.DataFrame(list(leaves.values())).select(self.plan.final)
        return pl.DataFrame(cols).hstack(aggs)

    # ------------------------------------------------------------------ state
    def open_windows(self) -> pl.DataFrame:
        """The windows not emitted yet, with their aggregates so far, as rows of the
        output schema (what they would emit if the input ended now). The state itself
        is left as it is: a copy (through :meth:`snapshot`) is fired."""
        copy = WindowOp(self.name, self.setup)
        copy.restore(self.snapshot())
        return copy.fire_all()

    def fire_all(self) -> pl.DataFrame:
        """Fire every window of the state, as the end of the input does (the state is
        consumed): the rows of the output schema."""
        frames = [f for f in self.logic.fire(MAX_WM, early=False) if f.height]
        if not frames:
            return pl.DataFrame(schema=self.setup.schema)
        return pl.concat(frames, how="vertical")

    def snapshot(self) -> dict[str, pa.Table]:
        self.logic.compact_keys(force=True)  # a checkpoint holds live keys only
        out = self.state.snapshot()
        meta = {
            "in_wm": self._in_wm[0],
            "out_wm": self._out_wm,
            "late_events": self.late_events,
        }
        out["meta"] = pa.table({k: [v] for k, v in meta.items()})
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        """Take back a :meth:`snapshot`. The tables are untrusted (DESIGN.md "Untrusted
        input"): every value a kernel indexes with (key ids, slot numbers, panes, the
        values' store positions) is checked first, vectorised, and a bad one raises
        :class:`CheckpointError` naming the table, the column and what is wrong; the
        step's state is replaced only once every table passed."""
        step = f"window step {self.name!r}"
        meta = StateTable(step, state, "meta")
        if meta.rows != 1:
            meta.refuse("in_wm", f"{meta.rows} rows, not 1")
        in_wm, out_wm = int(meta.ints("in_wm")[0]), int(meta.ints("out_wm")[0])
        late_events = int(meta.ints("late_events", 0)[0])
        fresh = type(self.state)(self.state_config)
        fresh.restore(state)
        self.load(fresh)
        self._in_wm[0], self._out_wm = in_wm, out_wm
        self.late_events = late_events

    def _time_range(self) -> tuple[int, int]:
        """The event times state may hold (local ones: a day either way)."""
        if self.times is None:
            return MIN_WM + 1, MAX_WM - 1
        lo, hi = self.times
        dtype = self.setup.time_dtype
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            lo, hi = lo - units_per_day(dtype), hi + units_per_day(dtype)
        return lo, hi
