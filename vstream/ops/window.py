"""Keyed window aggregation: the operator around the pane and session kernels.

Config (what the user wrote) lives in :mod:`vstream.plan.windows`; this module is the
logic the runtime runs; the state it owns is the slot arrays in :class:`PaneState` and
:class:`SessionState`, snapshotted as Arrow tables.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import numpy_int, physical_int64
from vstream._dtypes import units_per_day as _per_day
from vstream.errors import VStreamError
from vstream.kernels import window as W
from vstream.kernels.aggregate import apply_rows, final_mean
from vstream.kernels.window import (
    compact_panes,
    count_below,
    fire_hopping,
    pane_slots,
    rebuild_index,
    session_fire,
    session_live,
    session_order,
    session_update,
    take_final,
    take_panes,
    time_bounds,
    windows_of,
)
from vstream.ops.base import MAX_WM, MIN_WM, Chunk, Operator
from vstream.ops.watermark import dead_letters
from vstream.plan import aggregates as A
from vstream.plan.aggregates import AggPlan
from vstream.plan.windows import WindowSetup, valid_times
from vstream.state.key_index import KeyIndex
from vstream.state.slots import SlotStore, StateTable, grown, grown_fields

__all__ = ["WindowOp", "WindowSetup"]

_REV = "revision"
_DIR_BYTES = 16 << 20  # the pane directory's budget (rows x keys x 4 bytes)
_DIR_HOT = 8 << 20  # ... and its size when 64 rows fit in less
_ONE_WAY_KEYS = 1 << 18  # more keys: one cached pane per key (the per-key cache <= 8 MB)
_KEY_SLACK = 65_536  # dead keys a window's key index may hold beyond its live ones (x2)
_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min
_FOLDED = (A.SUM_F, A.MEAN, A.MIN_F, A.MAX_F)  # what pane_slots may fold (see _folds)
_NO_KEYS = np.zeros(0, np.int32)  # take_final: return the key ids
_NO_DENSE = np.zeros(0, np.int32)  # pane_slots: the keys are ids
_NO_ROWS = np.zeros(0, np.int64)
_REV_KEYS = pl.Schema({"window": pl.Int64, "key": pl.Int32})
_REV_SCHEMA = pl.Schema({"window": pl.Int64, "key": pl.Int32, "emitted": pl.Int64})


def _polars_local(ts: np.ndarray, dtype: pl.Datetime) -> np.ndarray:
    s = pl.Series(ts, dtype=pl.Int64).cast(dtype).dt.replace_time_zone(None)
    return s.to_physical().to_numpy()


@lru_cache(maxsize=64)
def zone_table(zone: str, unit: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The changes of a zone's UTC offset from 1970 to 2100: ``(at, offset, lo, hi)``,
    the instants of the changes (ascending, in ``unit``), the offset from each on
    (``offset[0]``: before the first one) and the range of instants the table covers.
    Each change is found to the second (zones change on whole seconds) by bisecting
    between the hours where the offset differs."""
    per_s = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    dtype = pl.Datetime("ms", zone)
    utc = pl.datetime_range(
        datetime(1970, 1, 1), datetime(2100, 1, 1), "1h", time_unit="ms", time_zone="UTC",
        eager=True,
    ).to_physical().to_numpy()  # fmt: skip
    offsets = _polars_local(utc, dtype) - utc
    change = np.flatnonzero(np.diff(offsets)) + 1
    lo, hi = utc[change - 1] // 1_000, utc[change] // 1_000  # seconds: same offset at lo
    before = offsets[change - 1]
    while (hi - lo > 1).any():
        mid = (lo + hi) // 2
        same = (_polars_local(mid * 1_000, dtype) - mid * 1_000) == before
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    at = hi * per_s
    offset = np.concatenate([offsets[:1], offsets[change]]) // 1_000 * per_s
    return at, offset, int(utc[0] // 1_000 * per_s), int(utc[-1] // 1_000 * per_s)


def to_local(ts: np.ndarray, dtype: pl.DataType) -> np.ndarray:
    """The local wall-clock times (as int64 in the column's unit) of the instants ``ts``
    of a time-zone-aware ``dtype``: a search in the zone's offset changes from 1970 to
    2100 (65,536 rows ~5.3 -> ~1 ms against Polars' replace_time_zone, which serves
    instants outside those years)."""
    assert isinstance(dtype, pl.Datetime)
    assert dtype.time_zone is not None
    if not len(ts):
        return ts.astype(np.int64)
    at, offset, lo, hi = zone_table(dtype.time_zone, dtype.time_unit or "us")
    first, last = time_bounds(ts)
    if first < lo or last > hi:
        return _polars_local(ts, dtype)
    out: np.ndarray = ts + offset[np.searchsorted(at, ts, side="right")]
    return out


def to_instants(local: np.ndarray, dtype: pl.DataType, ambiguous: str) -> np.ndarray:
    """The instants (int64, UTC) of local wall-clock times in the zone of ``dtype``: a
    time the clock shows twice (a DST overlap) is its ``ambiguous`` ("earliest" or
    "latest") instant; a time it skips (a DST gap) is the instant it jumps over it."""
    assert isinstance(dtype, pl.Datetime)
    naive = pl.Series(local, dtype=pl.Int64).cast(pl.Datetime(dtype.time_unit))
    out = naive.dt.replace_time_zone(
        dtype.time_zone,
        ambiguous=ambiguous,  # type: ignore[arg-type]
        non_existent="null",
    ).to_physical()
    if out.null_count():
        # in a gap: the offset from a day before is the one the clock jumps from, and
        # the local time minus it is the jump (for a bound on the grid, the usual case)
        before = local - _per_day(dtype)
        off = to_local(before, dtype) - before
        out = out.fill_null(pl.Series(local - off))
    return out.to_numpy()


def _pow2_floor(x: int) -> int:
    return 1 << (x.bit_length() - 1) if x > 0 else 0


def _init_values(plan: AggPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prog = np.zeros((len(plan.leaves), 5), np.int64)
    init_f = np.zeros(plan.n_float, np.float64)
    init_i = np.zeros(plan.n_int, np.int64)
    fcols = plan.float_columns
    icols = plan.int_columns
    vcols = sorted({lf.input for lf in plan.leaves if lf.input is not None})
    for a, lf in enumerate(plan.leaves):
        x = -1
        if lf.input is not None and lf.kind not in (A.COUNT, A.NUNIQUE, A.NULLS):
            x = fcols.index(lf.input) if A._reads_float(lf.kind) else icols.index(lf.input)
        v = vcols.index(lf.input) if lf.input is not None else -1
        prog[a] = (lf.kind, x, v, lf.f0, lf.i0)
        if lf.kind == A.FIRST_F:
            init_i[lf.i0] = _I64_MAX
        elif lf.kind == A.FIRST_I:
            init_i[lf.i0 + 1] = _I64_MAX
        elif lf.kind in (A.LAST_F,):
            init_i[lf.i0] = -1
        elif lf.kind == A.LAST_I:
            init_i[lf.i0 + 1] = -1
        elif lf.kind in (A.MIN_F, A.MAX_F):
            init_f[lf.f0] = np.nan  # no number seen yet (see kernels.aggregate)
        elif lf.kind == A.MIN_I:
            init_i[lf.i0] = _I64_MAX
        elif lf.kind == A.MAX_I:
            init_i[lf.i0] = _I64_MIN
    return prog, init_f, init_i


class _Scratch:
    """Arrays reused from one batch to the next for what does not outlive a batch (slots
    and late flags): fresh memory every batch cost more than filling it (Q1's slots:
    pane_slots ~142 -> ~118 ms of 10 M events)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = np.empty(shape, dtype)
            self._arrays[name] = a
        return a


class _Inputs:
    """A batch's aggregate inputs as the kernels take them: float and int columns, and
    the validity of the columns that have nulls in this batch."""

    def __init__(self, plan: AggPlan) -> None:
        self.plan = plan
        self.exprs = list(plan.inputs.values())
        # inputs that are plain columns are read directly: a Polars select costs ~0.4 ms
        self.direct: dict[str, str] = {}
        for name, e in plan.inputs.items():
            base = e.meta.undo_aliases()
            if base.meta.is_column():
                self.direct[name] = base.meta.output_name()
        if len(self.direct) == len(self.exprs):
            self.exprs = []
        self.fcols = plan.float_columns
        self.icols = plan.int_columns
        self.vcols = sorted({lf.input for lf in plan.leaves if lf.input is not None})

    def build(
        self, df: pl.DataFrame, stores: dict[str, pl.Series]
    ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """The float and int input columns (tuples of read-only 1-D arrays, the batch's
        own buffers where they already are float64 / int64 without nulls), the validity
        masks and which mask each input uses (-1: no nulls in this batch)."""
        n = df.height
        vals: pl.DataFrame | dict[str, pl.Series]
        if self.exprs:
            vals = df.select(self.exprs)
        else:  # the columns themselves (a frame of them cost ~45 µs a batch)
            vals = {name: df.get_column(col) for name, col in self.direct.items()}
        floats: list[np.ndarray] = []
        ints: list[np.ndarray] = []
        vmap = np.full(max(len(self.vcols), 1), -1, np.int64)
        masks: list[np.ndarray] = []
        if self.plan.inputs:
            for v, name in enumerate(self.vcols):
                s = vals[name]
                if s.null_count():
                    vmap[v] = len(masks)
                    masks.append(s.is_not_null().to_numpy())
            for name in self.fcols:
                s = vals[name]
                if s.null_count():
                    s = s.fill_null(0)
                floats.append(
                    s.to_numpy() if s.dtype == pl.Float64 else s.cast(pl.Float64).to_numpy()
                )
            for name in self.icols:
                s = vals[name]
                if name in stores:  # values kept in the store; the kernels see their ids
                    store = stores[name]
                    ints.append(np.arange(store.len(), store.len() + n, dtype=np.int64))
                    stores[name] = store.append(s)
                    continue
                if s.null_count():
                    s = s.fill_null(0) if s.dtype != pl.Boolean else s.fill_null(False)
                ints.append(physical_int64(s))
        M = np.stack(masks) if masks else np.ones((1, 1), np.bool_)
        return _columns(floats, np.float64), _columns(ints, np.int64), M, vmap


def _columns(cols: list[np.ndarray], dtype: type) -> tuple[np.ndarray, ...]:
    """Columns as the kernels take them: C-contiguous, read-only (a zero-copy view of a
    batch is; numba compiles one version for a tuple of one array type), at least one
    (an empty placeholder is never read). Against copying them into one matrix a batch,
    Q1 end to end in alternating processes: 366 -> 350 ms."""
    out = []
    for c in cols or [np.empty(0, dtype)]:
        a: np.ndarray = np.ascontiguousarray(c, dtype)
        if a.flags.writeable:
            a = a.view()
            a.flags.writeable = False
        out.append(a)
    return tuple(out)


class WindowOp(Operator):
    """Window aggregation over one input; emits rows when the watermark closes windows."""

    def __init__(self, name: str, setup: WindowSetup) -> None:
        super().__init__(name)
        self.setup = setup
        self.plan = setup.aggs
        self.prog, init_f, init_i = _init_values(self.plan)
        self.inputs = _Inputs(self.plan)
        self.keys = KeyIndex(setup.key_schema) if setup.by else None
        self.slots = SlotStore(self.plan.n_float, self.plan.n_int, init_f, init_i)
        self.revisions = setup.lateness > 0 or setup.early is not None
        self.seq = 0  # arrival number of the next row (first / last)
        self.ticking = setup.early is not None or setup.time_column is None
        self._next_early = time.monotonic() + (setup.early or 0.0)
        self._pending: list[pl.DataFrame] = []
        self._proc_wm = MIN_WM
        self.nunique = [lf for lf in self.plan.leaves if lf.kind == A.NUNIQUE]
        self.stores: dict[str, pl.Series] = {
            name: pl.Series(name, [], dtype=self.plan.leaves_by_input[name])
            for name in self.plan.stored_columns
        }
        renames = []
        for name, e in zip(self.plan.schema, self.plan.final, strict=True):
            base = e.meta.undo_aliases()
            if not base.meta.is_column():
                break
            renames.append((name, base.meta.output_name()))
        self._renames = renames if len(renames) == len(self.plan.final) else None
        self._fin = _fused_finalize(self.plan)
        # until an input has a null, the NULLS fields are all 0: a firing skips them
        self.nulls_seen = False
        if self._fin is not None:
            self._fin_no_nulls = self._fin.copy()
            self._fin_no_nulls[:, 4] = -1
            self._fin_steps = _final_steps(self.plan, self._fin)
        self.scratch = _Scratch()  # per-batch arrays of the window logic
        # event times the windows can represent (processing time: the wall clock is)
        self.times = valid_times(setup) if setup.time_column is not None else None
        if setup.kind == "session":
            self.state: _PaneLogic | _SessionLogic = _SessionLogic(self)
        else:
            self.state = _PaneLogic(self)

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
        frames = self._pending
        self._pending = []
        frames.extend(self.state.fire(self._local_wm(wm), early=False))
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
        if self.keys is not None and isinstance(self.state, _PaneLogic) and not self.nunique:
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
            assert isinstance(self.state, _PaneLogic)
            n_late = self.state.update(df, ts, kid, Xf, Xi, M, vmap, late, wm, keys)
        else:
            n_late = self.state.update(df, ts, kid, Xf, Xi, M, vmap, late, wm)
        if self.stores:
            self._compact_stores()
        self.seq += n
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
        used = self.state.used_slots()
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
        if isinstance(self.state, _PaneLogic):
            # the hopping partials hold the old ids: computed again when next needed
            self.state.valid[:] = 0

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
            self._pending.extend(self.state.fire(self._local_wm(self._wm()), early=True))
            moved = moved or bool(self._pending)
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
        frames = [f for f in copy.state.fire(MAX_WM, early=False) if f.height]
        if not frames:
            return pl.DataFrame(schema=self.setup.schema)
        return pl.concat(frames, how="vertical")

    def snapshot(self) -> dict[str, pa.Table]:
        self.state.compact_keys(force=True)  # a checkpoint holds live keys only
        out = self.state.snapshot()
        if self.keys is not None:
            for k, v in self.keys.snapshot().items():
                out[f"keys.{k}"] = v
        meta = {
            "seq": self.seq,
            "in_wm": self._in_wm[0],
            "out_wm": self._out_wm,
            "late_events": self.late_events,
        }
        out["meta"] = pa.table({k: [v] for k, v in meta.items()})
        for name, store in self.stores.items():
            out[f"store.{name}"] = store.to_frame().to_arrow()
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        """Take back a :meth:`snapshot`. The tables are untrusted (DESIGN.md "Untrusted
        input"): every value a kernel indexes with (key ids, slot numbers, panes, the
        values' store positions) is checked first, vectorised, and a bad one raises
        :class:`CheckpointError` naming the table, the column and what is wrong."""
        step = f"window step {self.name!r}"
        meta = StateTable(step, state, "meta")
        if meta.rows != 1:
            meta.refuse("seq", f"{meta.rows} rows, not 1")
        seq = int(meta.ints("seq", 0)[0])
        in_wm, out_wm = int(meta.ints("in_wm")[0]), int(meta.ints("out_wm")[0])
        late_events = int(meta.ints("late_events", 0)[0])
        if self.keys is not None:
            keys = {k[5:]: v for k, v in state.items() if k.startswith("keys.")}
            self.keys.restore(keys, step=f"{step}, key index (table 'keys.keys')")
        for name in self.stores:
            store = StateTable(step, state, f"store.{name}")
            if store.table.num_columns != 1:
                store.refuse(name, f"{store.table.num_columns} columns, not 1")
            self.stores[name] = pl.DataFrame(store.table).to_series()
        self.state.restore(state)
        self.seq, self._in_wm[0], self._out_wm = seq, in_wm, out_wm
        self.late_events = late_events
        self.nulls_seen = True  # the restored state may have counted nulls

    def _checked_fields(self, table: StateTable, idx: np.ndarray | None = None) -> None:
        """The aggregate fields of ``table`` (``f*``, ``i*``) into the slots ``0..rows``
        (or ``idx``), each checked: no nulls, and where a field is a position in a store
        of values (first / last of a non-numeric column), inside that store."""
        sl = self.slots
        m = table.rows
        for f in range(sl.F.shape[0]):
            sl.F[f, :m] = table.floats(f"f{f}")
        refs = {lf.i0: lf.input for lf in self.plan.leaves if lf.stored}
        for i in range(sl.I.shape[0]):
            store = refs.get(i)
            if store is None:
                sl.I[i, :m] = table.ints(f"i{i}")
            else:
                size = self.stores[store].len()
                why = f"positions in the {size} stored values of {store!r}"
                sl.I[i, :m] = table.ints(f"i{i}", 0, size - 1, why)

    def _n_keys(self) -> int:
        return len(self.keys) if self.keys is not None else 1

    def _time_range(self) -> tuple[int, int]:
        """The event times state may hold (local ones: a day either way)."""
        if self.times is None:
            return MIN_WM + 1, MAX_WM - 1
        lo, hi = self.times
        dtype = self.setup.time_dtype
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            lo, hi = lo - _per_day(dtype), hi + _per_day(dtype)
        return lo, hi


def _masked(values: np.ndarray, null: np.ndarray | None, name: str) -> pl.Series:
    if null is None or not null.any():
        return pl.Series(name, values)
    return pl.Series(name, pa.array(values, mask=null))


def _finalize(
    lf: A.AggLeaf,
    Fo: np.ndarray,
    Io: np.ndarray,
    nunique: dict[str, np.ndarray] | None,
    stores: dict[str, pl.Series],
    rows: int,
) -> pl.Series:
    """Output leaf ``lf`` of the state fields ``Fo`` / ``Io`` (``rows``: the int field of
    the slots' rows, for the non-null rows of the counted kinds)."""
    k, f0, i0, name = lf.kind, lf.f0, lf.i0, lf.name
    if k in A.COUNTED:
        nn = Io[rows] - Io[lf.n0]
    if lf.stored:
        assert lf.input is not None
        s = stores[lf.input].gather(Io[i0]).alias(name)
        null = np.flatnonzero(Io[i0 + 2] == 1)
        return s.scatter(null, None) if len(null) else s
    if k in (A.LEN, A.COUNT, A.SUM_I) and (typed := numpy_int(lf.dtype)) is not None:
        # never null; numpy's astype wraps integer sums as Polars' cast does, at a tenth
        # of the cost of Series.cast (Q1's len, 9 M rows: 17 ms)
        return pl.Series(name, (nn if k == A.COUNT else Io[i0]).astype(typed, copy=False))
    if k == A.LEN:
        s = pl.Series(name, Io[i0])
    elif k == A.COUNT:
        s = pl.Series(name, nn)
    elif k == A.NUNIQUE:
        assert nunique is not None
        s = pl.Series(name, nunique[name])
    elif k == A.SUM_F:
        s = pl.Series(name, Fo[f0])
    elif k == A.SUM_I:
        s = pl.Series(name, Io[i0])
    elif k == A.MEAN:
        vals, empty = final_mean(Fo[f0], nn)
        s = _masked(vals, nn == 0, name) if empty else pl.Series(name, vals)
        s = _mean_typed(s, lf)
    elif k in (A.MIN_F, A.MAX_F):
        s = _masked(Fo[f0], nn == 0, name)  # only NaNs seen: NaN
    elif k in (A.MIN_I, A.MAX_I):
        s = _masked(Io[i0], nn == 0, name)
    elif k in (A.FIRST_F, A.LAST_F):
        s = _masked(Fo[f0], Io[i0 + 1] == 1, name)
    elif k in (A.FIRST_I, A.LAST_I):
        s = _masked(Io[i0], Io[i0 + 2] == 1, name)
    elif k == A.VAR:
        n = Io[i0]
        denom = n - lf.ddof
        with np.errstate(invalid="ignore", divide="ignore"):
            var = Fo[f0 + 1] / denom
            var = np.where(var < 0, 0.0, var)
            vals = np.sqrt(var) if lf.std else var
        s = _masked(vals, denom <= 0, name)
    else:  # pragma: no cover - plan_aggregations only makes the kinds above
        msg = f"unknown aggregate kind {k}"
        raise VStreamError(msg)
    return _typed(s, lf)


def _temporal(lf: A.AggLeaf) -> bool:
    """Whether the leaf's input is temporal (its mean is truncated to the unit)."""
    dtype = lf.input_dtype
    return dtype is not None and not (dtype.is_numeric() or dtype == pl.Boolean)


def _mean_typed(s: pl.Series, lf: A.AggLeaf) -> pl.Series:
    """A mean's float values; temporal means are truncated to their unit."""
    return s.cast(pl.Int64) if _temporal(lf) else s


def _typed(s: pl.Series, lf: A.AggLeaf) -> pl.Series:
    if s.dtype != lf.dtype:
        # integer sums wrap like Polars' (Int32 sum of Int32 values); nulls stay null
        s = s.cast(lf.dtype, wrap_numerical=lf.dtype.is_integer() and s.dtype.is_integer())
    return s


_FIN_CODES = {
    A.LEN: W.FIN_INT,
    A.COUNT: W.FIN_COUNT,
    A.SUM_I: W.FIN_INT,
    A.SUM_F: W.FIN_FLOAT,
    A.MEAN: W.FIN_MEAN,
    A.MIN_F: W.FIN_MINMAX_F,
    A.MAX_F: W.FIN_MINMAX_F,
    A.MIN_I: W.FIN_MINMAX_I,
    A.MAX_I: W.FIN_MINMAX_I,
}
_FIN_MATRIX = {
    W.FIN_INT: "i",
    W.FIN_MINMAX_I: "i",
    W.FIN_U32: "u",
    W.FIN_COUNT: "u",
    W.FIN_FLOAT: "f",
    W.FIN_MEAN: "f",
    W.FIN_MINMAX_F: "f",
}


def _fused_finalize(plan: AggPlan) -> np.ndarray | None:
    """The ``fin`` table of :func:`~vstream.kernels.window.take_final` when every leaf
    finalizes from its fields and the slots' rows (no first / last, var, n_unique or
    value stores); one row per output leaf."""
    rows = []
    used = {"f": 0, "i": 0, "u": 0}  # rows of the float, int and UInt32 outputs
    for lf in plan.outputs:
        code = _FIN_CODES.get(lf.kind)
        if code is None or lf.stored or (code == W.FIN_COUNT and lf.dtype != pl.UInt32):
            return None
        if code == W.FIN_INT and lf.kind == A.LEN and lf.dtype == pl.UInt32:
            code = W.FIN_U32  # len, written as Polars types it
        matrix = _FIN_MATRIX[code]
        rows.append((code, lf.f0, lf.i0, used[matrix], lf.n0))
        used[matrix] += 1
    return np.array(rows, np.int64).reshape(-1, 5)


def _final_steps(plan: AggPlan, fin: np.ndarray) -> list[tuple[int, int, bool]]:
    """Per output leaf of a ``fin`` table: its code, its output row and whether its
    column is the output as it is (already of the leaf's dtype, not a temporal mean),
    worked out once rather than with Polars dtype comparisons every firing."""
    steps = []
    for a, lf in enumerate(plan.outputs):
        code, o = int(fin[a, 0]), int(fin[a, 3])
        natural = pl.Int64 if code in (W.FIN_INT, W.FIN_MINMAX_I) else pl.Float64
        temporal_mean = lf.kind == A.MEAN and _temporal(lf)
        steps.append((code, o, lf.dtype == natural and not temporal_mean))
    return steps


def _final_leaves(
    plan: AggPlan,
    fin: np.ndarray,
    outputs: tuple[np.ndarray, ...],
    steps: list[tuple[int, int, bool]] | None = None,
) -> dict[str, pl.Series]:
    """The leaf columns from :func:`~vstream.kernels.window.take_final`'s outputs
    ``(Of, Oi, Ou, nulls, null)``, typed as :func:`_finalize` types them (``steps``:
    :func:`_final_steps` of ``fin``, if known)."""
    Of, Oi, Ou, nulls, null = outputs
    out = {}
    for a, (lf, (code, o, plain)) in enumerate(
        zip(plan.outputs, steps or _final_steps(plan, fin), strict=True)
    ):
        name = lf.name
        if code in (W.FIN_U32, W.FIN_COUNT):
            out[name] = pl.Series(name, Ou[o])
            continue
        if plain and not nulls[a]:
            out[name] = pl.Series(name, Oi[o] if code in (W.FIN_INT, W.FIN_MINMAX_I) else Of[o])
            continue
        if code == W.FIN_INT and (typed := numpy_int(lf.dtype)) is not None:
            out[name] = pl.Series(name, Oi[o].astype(typed, copy=False))
            continue
        vals = Oi[o] if code in (W.FIN_INT, W.FIN_MINMAX_I) else Of[o]
        s = _masked(vals, null[a] if nulls[a] else None, name)
        out[name] = _typed(_mean_typed(s, lf) if code == W.FIN_MEAN else s, lf)
    return out


# ---------------------------------------------------------------------- panes
class _PaneLogic:
    """Tumbling and hopping windows over panes of gcd(size, slide)."""

    def __init__(self, op: WindowOp) -> None:
        self.op = op
        st = op.setup
        self.pane = math.gcd(st.size, st.slide)
        self.s = st.slide // self.pane
        self.n = st.size // self.pane
        self.n_slots = 0
        self.slot_pane = np.zeros(0, np.int64)
        self.slot_key = np.zeros(0, np.int32)
        self.tab = np.zeros(0, np.int32)
        self.tab_used = False  # whether the table or the per-key cache may hold entries
        # per key, the slots of its last few panes (a cache in front of the table)
        self.ways = 8
        self.key_slot = np.full(1024 * self.ways, -1, np.int32)
        self.key_pane = np.zeros(1024 * self.ways, np.int64)
        self.dir_rows = np.zeros((0, 0), np.int32)  # the pane directory (see pane_slots)
        self.dir_pane = np.full(0, MIN_WM, np.int64)
        # hopping: each slot's block prefix / suffix, kept between firings (fire_hopping)
        self.hopping = (self.s, self.n) != (1, 1)
        nf, ni = op.slots.F.shape[0], op.slots.I.shape[0]
        self.Pf, self.Sf = np.zeros((nf, 0)), np.zeros((nf, 0))
        self.Pi, self.Si = np.zeros((ni, 0), np.int64), np.zeros((ni, 0), np.int64)
        self.valid = np.zeros(0, np.uint8)
        self.fired_k: int | None = None  # windows with index <= fired_k have fired
        self.free_below = MIN_WM  # slots of panes below this are free (dropped lazily)
        self.max_pane: int | None = None
        # revisions: emissions so far per (window index, key), while the window is kept
        self.rev = pl.DataFrame(schema=_REV_SCHEMA)
        self.distinct: list[pl.DataFrame] = []  # n_unique: distinct (pane, key, value)
        # the aggregates apply_rows folds: all but the LEN leaf pane_slots counts
        prog, rows = op.prog, op.plan.len_field
        counted = np.flatnonzero((prog[:, 0] == A.LEN) & (prog[:, 4] == rows))[:1]
        self.prog = np.delete(prog, counted, axis=0)
        self._fold_plans: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def _reserve(self, more: int) -> None:
        n_keys = len(self.op.keys) if self.op.keys is not None else 1
        if self.key_slot.shape[0] < n_keys * self.ways:
            if n_keys > _ONE_WAY_KEYS:
                self.ways = 1  # many keys: one cached pane each keeps the cache small
            size = 1024
            while size < n_keys:
                size *= 2
            size *= self.ways
            self.key_slot = np.full(size, -1, np.int32)
            self.key_pane = np.zeros(size, np.int64)
        cap = self.op.slots.grow_arrays(self.n_slots + more)
        if cap:
            self.slot_pane = grown(self.slot_pane, cap)
            self.slot_key = grown(self.slot_key, cap)
            if self.hopping:
                self.valid = grown(self.valid, cap)
                self.Pf, self.Sf = grown_fields(self.Pf, cap), grown_fields(self.Sf, cap)
                self.Pi, self.Si = grown_fields(self.Pi, cap), grown_fields(self.Si, cap)
        if self.dir_rows.shape[1] < n_keys and self.dir_pane.shape[0] != 1:
            # the pane directory: rows x key capacity int32, at most _DIR_BYTES; with too
            # many keys for 64 rows it is dropped (1 = off for good) and the table serves.
            # Rows are as wide as the keys (+1/8 to grow into), and only as many as fit
            # _DIR_HOT: a pane claiming a row clears it, so every byte of the directory
            # is written again as panes go by (Q1, 10 k keys: 256 rows of 64 KB -> 128
            # of 40 KB, pane_slots 177 -> 136 ms)
            width = (n_keys + n_keys // 8 + 15) // 16 * 16
            rows = _pow2_floor(_DIR_BYTES // (4 * width))
            if rows >= 64:
                rows = min(256, max(64, _pow2_floor(_DIR_HOT // (4 * width))))
                self.dir_rows = np.zeros((rows, width), np.int32)
                self.dir_pane = np.full(rows, MIN_WM, np.int64)
            else:
                self.dir_rows = np.zeros((0, 0), np.int32)
                self.dir_pane = np.full(1, MIN_WM, np.int64)
            self._rehash(self.tab.shape[0])
        if self.tab.shape[0] < 2 * self.n_slots + 2048:
            self._rehash(2 * self.n_slots + 2048)

    def _dir(self) -> tuple[np.ndarray, np.ndarray]:
        if self.dir_pane.shape[0] == 1:  # off
            return self.dir_rows, self.dir_pane[:0]
        return self.dir_rows, self.dir_pane

    def _rehash(self, need: int) -> None:
        # the table holds the live slots at <= 1/2 load: sized by the state, not by the
        # batch, so it stays in cache (pane_slots asks for more when it fills up)
        size = 2048
        while size < need:
            size *= 2
        self.tab = np.zeros(size, np.int32)
        in_table = rebuild_index(
            self.tab, *self._dir(), self.slot_pane, self.slot_key, self.n_slots, False
        )
        self.tab_used = in_table > 0
        self.key_slot[:] = -1

    def update(self, df, ts, kid, Xf, Xi, M, vmap, late, wm, keys=None) -> int:  # type: ignore[no-untyped-def]
        """Fold a batch's rows into their panes; returns the number of late rows.

        ``keys`` (instead of the key ids ``kid``): the batch's integer keys, the key
        index's dense id array and its base (``KeyIndex.dense_keys``); pane_slots looks
        the ids up, and the rows of keys without an id yet go through a second call
        once the key index has given them one."""
        op = self.op
        n = ts.shape[0]
        self._reserve(n)
        dirty_p = np.empty(n if op.setup.lateness > 0 else 0, np.int64)
        dirty_k = np.empty(n if op.setup.lateness > 0 else 0, np.int32)
        sl = op.slots
        slots = op.scratch.get("slots", (n,), np.int32)
        counts = np.array([self.n_slots, 0, 0, 0, MIN_WM, 0], np.int64)
        st = op.setup
        s, nn, pane, off, lat = self.s, self.n, self.pane, st.offset, st.lateness
        lo = -(2**63)
        late_below, dirty_below = lo, lo
        if wm != MIN_WM:
            # pane p is past every window's lateness when its last window (k = p // s)
            # has end + L <= wm; it is in a fired window when its first one has end <= wm
            late_below = (((wm - lat - off) // pane - nn) // s + 1) * s
            dirty_below = (((wm - off) // pane - nn) // s) * s + nn if lat else lo
        geom = np.array(
            [
                pane, off, max(late_below, lo + 1), max(dirty_below, lo + 1), self.ways,
                op.plan.len_field, 0, 0 if keys is None else keys[2],
            ],
            np.int64,
        )  # fmt: skip
        # a row in a pane of a fired window (behind the watermark) changes the pane: the
        # partials cached from it are stale
        fired_end = None if self.fired_k is None else self.fired_k * s + nn
        if (
            self.hopping
            and fired_end is not None
            and n
            and (int(ts.min()) - off) // pane < fired_end
        ):
            self.valid[:] = 0
        fold, rest = self._folds(vmap)
        geom[6] = len(rest) > 0  # whether apply_rows needs the rows' slots
        if keys is None:
            self._slots(ts, kid, geom, slots, late, dirty_p, dirty_k, counts, fold, Xf)
        else:
            deferred = op.scratch.get("deferred", (n,), np.int64)
            self._slots(
                ts, keys[0], geom, slots, late, dirty_p, dirty_k, counts, fold, Xf, keys[1],
                deferred,
            )  # fmt: skip
            if counts[5]:
                # keys new to the key index: ids for them, then their rows, in order
                rows = deferred[: counts[5]].copy()
                ids = op.keys.ids_of(keys[0][rows])  # type: ignore[union-attr]
                self.n_slots = int(counts[0])
                self._reserve(len(rows))  # more keys: the directory and cache may grow
                part = np.empty(len(rows), np.int32)
                cols = tuple(x[rows] if x.shape[0] == n else x for x in Xf)
                not_late = np.zeros(len(rows), np.bool_)  # (late rows were never deferred)
                self._slots(
                    ts[rows], ids, geom, part, not_late, dirty_p, dirty_k, counts, fold, cols
                )
                slots[rows] = part
        if counts[3]:
            self.tab_used = True  # rows went through the table and the per-key cache
        if rest.shape[0]:  # what pane_slots did not fold
            apply_rows(rest, sl.F, sl.I, slots, Xf, Xi, M, vmap, op.seq)
        got: list[int] = counts.tolist()
        self.n_slots, n_late, n_dirty, _, mp, _ = got
        ok = ~late if n_late else None
        live = n - n_late
        if live:
            self.max_pane = mp if self.max_pane is None else max(self.max_pane, mp)
        if op.nunique and live:
            panes = (ts - op.setup.offset) // self.pane
            self._add_distinct(df, panes, kid, ok)
        if n_dirty:
            self._reemit(dirty_p[:n_dirty], dirty_k[:n_dirty], wm)
        return n_late

    def _slots(  # type: ignore[no-untyped-def]
        self, ts, kid, geom, slots, late, dirty_p, dirty_k, counts, fold, Xf,
        dense=_NO_DENSE, deferred=_NO_ROWS,
    ) -> None:  # fmt: skip
        """pane_slots over every row, the table grown whenever it fills up."""
        sl = self.op.slots
        # the per-key cache's ways as the cache is now: _reserve between two calls of one
        # batch (the deferred rows' new keys) may have cut them to one (out-of-bounds
        # writes into key_slot with the batch's old geom)
        geom[4] = self.ways
        r = 0
        while True:
            r = pane_slots(
                ts, kid, geom, self.tab, self.slot_pane,
                self.slot_key, sl.F, sl.I, sl.init_f, sl.init_i, slots, late, dirty_p,
                dirty_k, counts, r, self.key_slot, self.key_pane, *self._dir(), fold, Xf,
                dense, deferred,
            )  # fmt: skip
            if r == ts.shape[0]:
                return
            self.n_slots = int(counts[0])
            self._rehash(4 * self.n_slots)

    def _folds(self, vmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The aggregates pane_slots folds, as its ``fold`` rows (up to three float
        sums, means, mins and maxes whose input has no nulls in this batch), and the
        ``prog`` rows of the others that have work in this batch (the slots' rows are
        counted by pane_slots too; a count is rows - nulls, and an input without nulls
        has none to count)."""
        key = vmap.tobytes()
        got = self._fold_plans.get(key)
        if got is None:
            prog = self.prog
            nullable = [prog[a, 2] >= 0 and vmap[prog[a, 2]] >= 0 for a in range(len(prog))]
            simple = [a for a in range(len(prog)) if prog[a, 0] in _FOLDED and not nullable[a]]
            idle = [
                a
                for a in range(len(prog))
                if prog[a, 0] == A.COUNT or (prog[a, 0] == A.NULLS and not nullable[a])
            ]
            fold = prog[simple[:3]][:, [0, 3, 1]].copy()  # (kind, float field, input column)
            got = (fold.reshape(-1, 3), np.delete(prog, simple[:3] + idle, axis=0))
            self._fold_plans[key] = got
        return got

    def _add_distinct(self, df, panes, kid, ok) -> None:  # type: ignore[no-untyped-def]
        vals = df.select([self.op.plan.inputs[lf.input] for lf in self.op.nunique])  # type: ignore[index]
        frame = vals.with_columns(__p=pl.Series(panes), __k=pl.Series(kid))
        if ok is not None:
            frame = frame.filter(pl.Series(ok))
        self.distinct.append(frame.unique())

    def _nunique(self, keys: np.ndarray, ks: np.ndarray) -> dict[str, np.ndarray]:
        op = self.op
        out: dict[str, np.ndarray] = {}
        if not self.distinct:
            return {lf.name: np.zeros(len(keys), np.int64) for lf in op.nunique}
        store = pl.concat(self.distinct, how="vertical").unique()
        self.distinct = [store]
        wanted = pl.DataFrame({"__k": keys, "__w": ks, "__i": np.arange(len(keys))})
        first = -((-(pl.col("__p") - self.n + 1)) // self.s)
        exploded = store.with_columns(__w=pl.int_ranges(first, pl.col("__p") // self.s + 1))
        exploded = exploded.explode("__w").join(wanted, on=["__k", "__w"])
        for lf in op.nunique:
            assert lf.input is not None
            counts = exploded.group_by("__i").agg(pl.col(lf.input).n_unique().alias("n"))
            arr = np.zeros(len(keys), np.int64)
            arr[counts["__i"].to_numpy()] = counts["n"].to_numpy()
            out[lf.name] = arr
        return out

    def _emit(
        self,
        kid: np.ndarray,
        ks: np.ndarray,
        Fo: np.ndarray,
        Io: np.ndarray,
        leaves: dict[str, pl.Series] | None = None,
        bounds: tuple[np.ndarray, np.ndarray] | None = None,
        key_cols: list[pl.Series] | None = None,
    ) -> pl.DataFrame:
        op = self.op
        if bounds is None:
            starts = ks * (self.s * self.pane)
            starts += op.setup.offset
            ends = starts + op.setup.size
        else:
            starts, ends = bounds
        rev = self.bump(ks, kid) if op.revisions else None
        nunique = self._nunique(kid, ks) if op.nunique else None
        return op.result(kid, starts, ends, rev, Fo, Io, nunique, leaves, key_cols)

    def bump(self, ks: np.ndarray, kid: np.ndarray) -> np.ndarray:
        """The revision of each emitted (window, key): 0 the first time, then 1, 2, ..."""
        q = pl.DataFrame(
            {"window": ks.astype(np.int64), "key": kid.astype(np.int32)}, schema=_REV_KEYS
        )
        got = q.join(self.rev, on=["window", "key"], how="left", maintain_order="left")
        rev = got.get_column("emitted").fill_null(-1).to_numpy() + 1
        new = q.with_columns(emitted=pl.Series(rev, dtype=pl.Int64))
        self.rev = pl.concat([self.rev.join(q, on=["window", "key"], how="anti"), new])
        return rev

    def used_slots(self) -> int:
        return self.n_slots

    def _reemit(self, panes: np.ndarray, keys: np.ndarray, wm: int) -> None:
        """Windows that already fired and got late rows within the lateness: emit again."""
        op = self.op
        s, n, L = self.s, self.n, op.setup.lateness
        pairs = np.unique(np.stack([panes, keys.astype(np.int64)]), axis=1)
        first = -((-(pairs[0] - n + 1)) // s)
        last = pairs[0] // s
        counts = last - first + 1
        ks = np.repeat(first, counts) + (
            np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        kk = np.repeat(pairs[1], counts)
        ends = (ks * s + n) * self.pane + op.setup.offset
        keep = (ends <= wm) & (ends + L > wm)
        ks, kk = ks[keep], kk[keep]
        if not len(ks):
            return
        both = np.unique(np.stack([ks, kk]), axis=1)
        ks, kk = both[0].copy(), both[1].astype(np.int32)
        sl = op.slots
        Fo, Io = windows_of(
            self.tab,
            self.slot_pane,
            self.slot_key,
            sl.F,
            sl.I,
            op.prog,
            sl.init_f,
            sl.init_i,
            s,
            n,
            ks,
            kk,
            *self._dir(),
        )
        op._pending.append(self._emit(kk, ks, Fo, Io))

    def fire(self, wm: int, *, early: bool) -> list[pl.DataFrame]:
        op = self.op
        if wm == MIN_WM:
            return []
        s, n, pane, off = self.s, self.n, self.pane, op.setup.offset
        # every window k <= k_due has ended (end <= wm)
        if wm >= MAX_WM:
            if self.max_pane is None:
                return []
            k_due = self.max_pane // s
        else:
            k_due = ((wm - off) // pane - n) // s
        out: list[pl.DataFrame] = []
        if early:
            if self.max_pane is not None and self.n_slots:
                k_lo = k_due + 1 if self.fired_k is None else max(self.fired_k, k_due) + 1
                if self.max_pane // s >= k_lo:
                    out.append(self._fire_range(k_lo, self.max_pane // s, early=True))
            return out
        if self.max_pane is not None and self.n_slots:
            if self.fired_k is not None and (self.fired_k + 1) * s > MIN_WM // 2:
                k_lo = self.fired_k + 1
            else:
                # from the first window of the oldest live pane: nothing fired yet, or a
                # watermark near int64's minimum left fired_k so low that k * s overflows
                # int64 in the kernel (earlier windows hold no data)
                k_lo = -((-(int(self.slot_pane[: self.n_slots].min()) - n + 1)) // s)
                if self.fired_k is not None:
                    k_lo = max(k_lo, self.fired_k + 1)
            k_hi = min(k_due, self.max_pane // s)
            if k_hi >= k_lo:
                out.append(self._fire_range(k_lo, k_hi))
        # windows that ended are done even if they had no data yet: a late event must
        # not open them (it updates them only within the allowed lateness)
        self.fired_k = k_due if self.fired_k is None else max(self.fired_k, k_due)
        self._free(wm)
        return out

    def _fire_range(self, k_lo: int, k_hi: int, *, early: bool = False) -> pl.DataFrame:
        op = self.op
        sl = op.slots
        if self.s == 1 and self.n == 1:
            # tumbling: a pane is a window. One firing's rows come in slot order (order
            # within a firing is unspecified)
            if op._fin is not None:
                geom = np.array(
                    [self.pane, op.setup.offset, op.setup.size, op.plan.len_field], np.int64
                )
                fin = op._fin if op.nulls_seen else op._fin_no_nulls
                buf = op.scratch.get("selected", (max(self.slot_pane.shape[0], 1),), np.int32)
                # the key values themselves where the key index has them as an array
                # (revisions need the ids)
                values = None if op.keys is None or op.revisions else op.keys.key_values()
                kid, starts, ends, *outputs = take_final(
                    self.slot_pane, self.slot_key, sl.F, sl.I, self.n_slots, k_lo, k_hi,
                    fin, geom, buf, _NO_KEYS if values is None else values,
                )  # fmt: skip
                leaves = _final_leaves(op.plan, fin, tuple(outputs), op._fin_steps)
                # the windows' numbers only for revisions (n_unique never comes here)
                ks = (starts - op.setup.offset) // self.pane if op.revisions else starts
                key_cols = None
                if values is not None:
                    assert op.keys is not None
                    key_cols = [pl.Series(op.keys.columns[0], kid)]
                return self._emit(
                    kid, ks, sl.F[:, :0], sl.I[:, :0], leaves, (starts, ends), key_cols
                )
            kid, panes, Fo, Io = take_panes(
                self.slot_pane, self.slot_key, sl.F, sl.I, self.n_slots, k_lo, k_hi
            )
            return self._emit(kid, panes, Fo, Io)
        n_keys = len(op.keys) if op.keys is not None else 1
        if early:
            # windows still open: their panes may change, so nothing is kept
            m = self.n_slots
            cache = (
                np.empty((sl.F.shape[0], m)), np.empty((sl.I.shape[0], m), np.int64),
                np.empty((sl.F.shape[0], m)), np.empty((sl.I.shape[0], m), np.int64),
                np.zeros(m, np.uint8),
            )  # fmt: skip
        else:
            cache = (self.Pf, self.Pi, self.Sf, self.Si, self.valid)
        kid, ks, Fo, Io = fire_hopping(
            self.slot_pane, self.slot_key, sl.F, sl.I, self.n_slots, op.prog,
            self.s, self.n, k_lo, k_hi, n_keys, *cache,
        )  # fmt: skip
        return self._emit(kid, ks, Fo, Io)

    def _free(self, wm: int) -> None:
        """Drop panes whose every window is past its lateness."""
        op = self.op
        s, n, pane, off, L = self.s, self.n, self.pane, op.setup.offset, op.setup.lateness
        if wm >= MAX_WM:
            free_below = _I64_MAX
        else:
            # pane p is free when its last window (k = p // s) has end + L <= wm
            k_closed = ((wm - L - off) // pane - n) // s  # last closed window
            free_below = (k_closed + 1) * s  # panes below this are in closed windows only
            free_below = max(free_below, MIN_WM)  # (a watermark near int64's minimum)
        self.free_below = max(self.free_below, free_below)
        if self.n_slots:
            dead = count_below(self.slot_pane, self.n_slots, free_below)
            # freed slots are never read again (their rows are late, no window takes
            # them): they are dropped once they are a quarter of the slots, not at every
            # firing (slide sweep, 0.5 s slide: compaction moved every slot at each batch,
            # 64 ms)
            if dead and (4 * dead >= self.n_slots or wm >= MAX_WM):
                self._drop_below(free_below)
        self.compact_keys()

    def _drop_below(self, free_below: int) -> None:
        """Drop the slots of panes below ``free_below`` (and what refers to them)."""
        sl = self.op.slots
        self.n_slots = compact_panes(
            self.slot_pane, self.slot_key, sl.F, sl.I, self.n_slots, free_below,
            self.Pf, self.Pi, self.Sf, self.Si, self.valid,
        )  # fmt: skip
        # the table and the per-key cache are cleared only if they were used: with
        # every pane in the directory (Q1) that was 1.5 MB of writes a batch
        in_table = rebuild_index(
            self.tab, *self._dir(), self.slot_pane, self.slot_key, self.n_slots,
            self.tab_used,
        )  # fmt: skip
        if self.tab_used:
            self.key_slot[:] = -1  # slots were renumbered
        self.tab_used = in_table > 0
        if self.distinct:
            self.distinct = [pl.concat(self.distinct).filter(pl.col("__p") >= free_below).unique()]
        if self.rev.height:
            self.rev = self.rev.filter(pl.col("window") >= free_below // self.s)

    def compact_keys(self, *, force: bool = False) -> None:
        """Release the ids of keys with nothing live: the key index keeps only the keys of
        live slots (open windows and windows kept for the allowed lateness), renumbered
        0.. in id order, and every id held here is mapped to its new one (DESIGN.md:
        memory is O(live state), not O(keys ever seen)).

        Done when the index holds more than twice the live keys + ``_KEY_SLACK``
        (amortized O(1) a new key, as the joins do; nothing to count while the index is
        smaller than that many slots, which bound the live keys: Q1 never gets past the
        first comparison), or with ``force`` (a snapshot) whenever a key is dead."""
        op = self.op
        keys = op.keys
        if keys is None:
            return
        factor, slack = (1, 0) if force else (2, _KEY_SLACK)
        if not force and len(keys) <= factor * self.n_slots + slack:
            return
        if force and self.n_slots and count_below(self.slot_pane, self.n_slots, self.free_below):
            self._drop_below(self.free_below)
        m = self.n_slots
        used = np.zeros(len(keys), np.bool_)
        used[self.slot_key[:m]] = True
        if self.rev.height:
            used[self.rev.get_column("key").to_numpy()] = True
        for frame in self.distinct:
            used[frame.get_column("__k").to_numpy()] = True
        live = np.flatnonzero(used)
        if len(keys) <= factor * live.size + slack:
            return
        op.keys, remap = keys.compacted(live)
        self.slot_key[:m] = remap[self.slot_key[:m]]
        if self.rev.height:
            self.rev = self.rev.with_columns(key=pl.Series(remap)[self.rev.get_column("key")])
        self.distinct = [
            d.with_columns(__k=pl.Series(remap)[d.get_column("__k")]) for d in self.distinct
        ]
        # the pane directory is indexed by key id: index the slots again (this also
        # clears the table and the per-key cache)
        self._rehash(self.tab.shape[0])

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, pa.Table]:
        m = self.n_slots
        sl = self.op.slots
        live = np.flatnonzero(self.slot_pane[:m] >= self.free_below)
        cols: dict[str, np.ndarray] = {"pane": self.slot_pane[live], "key": self.slot_key[live]}
        for f in range(sl.F.shape[0]):
            cols[f"f{f}"] = sl.F[f, live]
        for i in range(sl.I.shape[0]):
            cols[f"i{i}"] = sl.I[i, live]
        rev = self.rev.to_arrow()
        meta = pa.table(
            {
                "fired_k": pa.array([self.fired_k], pa.int64()),
                "max_pane": pa.array([self.max_pane], pa.int64()),
            }
        )
        out = {"slots": pa.table(cols), "revisions": rev, "panes": meta}
        if self.distinct:
            out["distinct"] = pl.concat(self.distinct).unique().to_arrow()
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        op = self.op
        step = f"window step {op.name!r}"
        slots = StateTable(step, state, "slots")
        m = slots.rows
        n_keys = op._n_keys()
        lo, hi = op._time_range()
        off, pane = op.setup.offset, self.pane
        p_lo, p_hi = (lo - off) // pane, (hi - off) // pane
        span = f"panes of the event times the step takes: {p_lo}..{p_hi}"
        key_why = f"ids of the {n_keys} keys of the key index"
        panes = slots.ints("pane", p_lo, p_hi, span)
        keys = slots.ints("key", 0, n_keys - 1, key_why)
        slots.distinct({"pane": panes, "key": keys}, "one slot a pane and key")
        rev_t = StateTable(step, state, "revisions")
        k_lo, k_hi = (p_lo - self.n) // self.s, p_hi // self.s + 1
        windows = rev_t.ints("window", k_lo, k_hi, f"window numbers {k_lo}..{k_hi}")
        rev_keys = rev_t.ints("key", 0, n_keys - 1, key_why)
        rev_t.ints("emitted", 0)
        rev_t.distinct({"window": windows, "key": rev_keys}, "one count a window and key")
        meta_t = StateTable(step, state, "panes")
        if meta_t.rows != 1:
            meta_t.refuse("fired_k", f"{meta_t.rows} rows, not 1")
        meta = meta_t.table.to_pylist()[0]
        fired_k, max_pane = meta.get("fired_k"), meta.get("max_pane")
        for name, v in (("fired_k", fired_k), ("max_pane", max_pane)):
            if v is not None and not isinstance(v, int):
                meta_t.refuse(name, f"{v!r} is not an integer")
        if m and (max_pane is None or max_pane < int(panes.max())):
            meta_t.refuse("max_pane", f"{max_pane} is below the slots' pane {panes.max()}")
        if max_pane is not None and not p_lo <= max_pane <= p_hi:
            meta_t.refuse("max_pane", f"{max_pane} is not one of the {span}")
        # the last window fired follows the watermark, which other inputs or the wall
        # clock may take past the event times the step takes: any int64 watermark's
        w_lo = ((MIN_WM - off) // pane - self.n) // self.s
        w_hi = (MAX_WM - off) // pane // self.s
        if fired_k is not None and not w_lo <= fired_k <= w_hi:
            meta_t.refuse("fired_k", f"{fired_k} is no watermark's window: {w_lo}..{w_hi}")
        distinct = None
        if "distinct" in state:
            d = StateTable(step, state, "distinct")
            d.ints("__p", p_lo, p_hi, span)
            d.ints("__k", 0, n_keys - 1, key_why)
            distinct = pl.DataFrame(d.table)
        # checked: into the arrays
        self.n_slots = 0
        self._reserve(m)
        self.slot_pane[:m] = panes
        self.slot_key[:m] = keys
        op._checked_fields(slots)
        self.n_slots = m
        self.free_below = MIN_WM  # the snapshot holds live slots only
        self.valid[:] = 0
        self._rehash(2 * m + 2048)
        self.rev = pl.DataFrame(rev_t.table, schema=_REV_SCHEMA)
        self.fired_k, self.max_pane = fired_k, max_pane
        self.distinct = [distinct] if distinct is not None else []


# ---------------------------------------------------------------------- sessions
_SESSION_ARRAYS = ("nxt", "s_key", "s_start", "s_end", "s_rev", "s_final", "s_dirty", "free")


class _SessionLogic:
    """Session windows: per key, a linked list of live sessions in slot arrays."""

    def __init__(self, op: WindowOp) -> None:
        self.op = op
        self.head = np.full(0, -1, np.int32)
        self.cap = 0
        self.nxt = np.zeros(0, np.int32)
        self.s_key = np.zeros(0, np.int32)
        self.s_start = np.zeros(0, np.int64)
        self.s_end = np.zeros(0, np.int64)
        self.s_rev = np.zeros(0, np.int64)
        self.s_final = np.zeros(0, np.bool_)
        self.s_dirty = np.zeros(0, np.bool_)
        self.free = np.zeros(0, np.int32)
        self.counters = np.zeros(3, np.int64)  # free slots, slots used, late rows
        self.next_end = _I64_MAX
        self.distinct: pl.DataFrame | None = None

    def used_slots(self) -> int:
        return int(self.counters[1])

    def _n_keys(self) -> int:
        return len(self.op.keys) if self.op.keys is not None else 1

    def _reserve(self, more: int) -> None:
        need = int(self.counters[1]) + more
        cap = self.op.slots.grow_arrays(need)
        if cap:
            for name in (
                "nxt",
                "s_key",
                "s_start",
                "s_end",
                "s_rev",
                "s_final",
                "s_dirty",
                "free",
            ):
                setattr(self, name, grown(getattr(self, name), cap))
            self.cap = cap
        nk = self._n_keys()
        if self.head.shape[0] < nk:
            size = max(1024, self.head.shape[0])
            while size < nk:
                size *= 2
            self.head = grown(self.head, size, -1)

    def update(self, df, ts, kid, Xf, Xi, M, vmap, late, wm) -> int:  # type: ignore[no-untyped-def]
        """Fold a batch's rows into their sessions; returns the number of late rows."""
        op = self.op
        self._reserve(ts.shape[0])
        sl = op.slots
        st = op.setup
        merged = np.full(self.cap if op.nunique else 0, -1, np.int32)
        end, slots = session_update(
            ts, kid, self._n_keys(), st.gap, st.lateness, wm, self.head, self.nxt,
            self.s_key, self.s_start, self.s_end, self.s_rev, self.s_final, self.s_dirty,
            self.free, self.counters, sl.F, sl.I, sl.init_f, sl.init_i, op.prog,
            Xf, Xi, M, vmap, op.seq, late, merged,
        )  # fmt: skip
        self.next_end = min(self.next_end, int(end))
        if op.nunique:
            self._add_distinct(df, slots, late, merged)
        # a fired session updated within the lateness is due at once
        if st.lateness > 0 and end <= wm:
            op._pending.extend(self.fire(wm, early=False))
        return int(late.sum())

    # n_unique: distinct (slot, value) rows; merged sessions move their rows to the new
    # slot, and rows of sessions that are gone are dropped after every firing
    def _add_distinct(self, df, slots, late, merged) -> None:  # type: ignore[no-untyped-def]
        op = self.op
        cols = [op.plan.inputs[lf.input] for lf in op.nunique if lf.input is not None]
        new = df.select(cols).with_columns(__s=pl.Series(slots, dtype=pl.Int64))
        if late.any():
            new = new.filter(pl.Series(~late))
        rows = new if self.distinct is None else pl.concat([self.distinct, new])
        moved = np.flatnonzero(merged >= 0)
        if len(moved):
            to = np.arange(merged.shape[0], dtype=np.int64)
            to[moved] = merged[moved]
            while True:  # follow chains (a session merged into one merged again)
                nxt = to[to]
                if np.array_equal(nxt, to):
                    break
                to = nxt
            rows = rows.with_columns(__s=pl.Series(to)[rows["__s"]])
        frames = [rows]
        self.distinct = pl.concat(frames).unique()

    def _purge_distinct(self) -> None:
        if self.distinct is None or not self.distinct.height:
            return
        live = session_live(self.head, self.nxt, self._n_keys(), self.cap)
        self.distinct = self.distinct.filter(pl.Series(live)[self.distinct["__s"]])

    def _nunique(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        want = pl.DataFrame({"__s": slots, "__i": np.arange(len(slots))})
        base = want.join(self.distinct, on="__s") if self.distinct is not None else None
        for lf in self.op.nunique:
            arr = np.zeros(len(slots), np.int64)
            if base is not None and base.height:
                assert lf.input is not None
                c = base.group_by("__i").agg(pl.col(lf.input).n_unique().alias("n"))
                arr[c["__i"].to_numpy()] = c["n"].to_numpy()
            out[lf.name] = arr
        return out

    def fire(self, wm: int, *, early: bool) -> list[pl.DataFrame]:
        if not early and wm < self.next_end:
            self.compact_keys()  # keys whose rows were all late have no session
            return []
        self._reserve(0)  # the key heads exist even before the first row
        op = self.op
        sl = op.slots
        kid, start, end, rev, slots, Fo, Io, nxt_end = session_fire(
            self.head, self.nxt, self.s_key, self.s_start, self.s_end, self.s_rev,
            self.s_final, self.s_dirty, self.free, self.counters, sl.F, sl.I,
            self._n_keys(), wm, op.setup.lateness, early,
        )  # fmt: skip
        self.next_end = int(nxt_end)
        nunique = self._nunique(slots) if op.nunique and len(kid) else None
        if op.nunique:
            self._purge_distinct()
        out = [op.result(kid, start, end, rev, Fo, Io, nunique)] if len(kid) else []
        if not early:
            self.compact_keys()  # after the keys of the rows above are taken
        return out

    def compact_keys(self, *, force: bool = False) -> None:
        """Release the ids of keys without a live session (open, or kept for the allowed
        lateness): the key index keeps only the keys with a session, renumbered, and the
        key heads and the sessions' keys follow (DESIGN.md: memory is O(live state)).
        The n_unique rows and the revisions are per session slot: slots do not move.

        Done when the index holds more than twice the live sessions + ``_KEY_SLACK``
        (each live key has one, so that bounds the live keys: amortized O(1) a new key,
        and nothing is counted before), or with ``force`` (a snapshot) whenever a key
        has no session."""
        op = self.op
        keys = op.keys
        if keys is None:
            return
        n = len(keys)
        factor, slack = (1, 0) if force else (2, _KEY_SLACK)
        sessions = int(self.counters[1] - self.counters[0])
        if not force and n <= factor * sessions + slack:
            return
        self._reserve(0)  # a head for every key
        live = np.flatnonzero(self.head[:n] >= 0)
        if n <= factor * live.size + slack:
            return
        alive = session_live(self.head, self.nxt, n, self.cap)
        op.keys, remap = keys.compacted(live)
        self.s_key[alive] = remap[self.s_key[alive]]
        size = 1024
        while size < len(op.keys):
            size *= 2
        head = np.full(size, -1, np.int32)
        head[remap[live]] = self.head[live]
        self.head = head

    def snapshot(self) -> dict[str, pa.Table]:
        self._reserve(0)  # a head for every key
        n_live = int(self.counters[1] - self.counters[0])
        idx = session_order(self.head, self.nxt, self._n_keys(), n_live)
        sl = self.op.slots
        cols: dict[str, np.ndarray] = {
            "key": self.s_key[idx],
            "start": self.s_start[idx],
            "end": self.s_end[idx],
            "emitted": self.s_rev[idx],
            "final": self.s_final[idx],
            "dirty": self.s_dirty[idx],
        }
        for f in range(sl.F.shape[0]):
            cols[f"f{f}"] = sl.F[f, idx]
        for i in range(sl.I.shape[0]):
            cols[f"i{i}"] = sl.I[i, idx]
        out = {"sessions": pa.table(cols)}
        if self.distinct is not None:
            # slots are renumbered on restore: store the session's position instead
            pos = np.full(max(self.cap, 1), -1, np.int64)
            pos[idx] = np.arange(len(idx))
            d = self.distinct.with_columns(__s=pl.Series(pos)[self.distinct["__s"]])
            out["distinct"] = d.to_arrow()
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        op = self.op
        step = f"window step {op.name!r}"
        t = StateTable(step, state, "sessions")
        m = t.rows
        n_keys = op._n_keys()
        gap = op.setup.gap
        lo, hi = op._time_range()
        keys = t.ints("key", 0, n_keys - 1, f"ids of the {n_keys} keys of the key index")
        start = t.ints("start", lo, hi, "a session starts at an event time the step takes")
        end = t.ints("end", lo + gap, hi + gap, "a session ends an event time + the gap")
        # end - start >= gap, without wrapping: the difference is exact as uint64
        short = (end < start) | ((end - start).view(np.uint64) < np.uint64(gap))
        if short.any():
            j = int(np.flatnonzero(short)[0])
            t.refuse("end", f"session {j} is [{start[j]}, {end[j]}), shorter than the gap {gap}")
        emitted = t.ints("emitted", -1, None, "emissions so far, -1: none")
        final, dirty = t.bools("final"), t.bools("dirty")
        distinct = None
        if "distinct" in state:
            d = StateTable(step, state, "distinct")
            pos = d.ints("__s", -1, m - 1, f"positions of the {m} sessions (-1: none)")
            # rows of sessions that were gone at the snapshot belong to none
            distinct = pl.DataFrame(d.table).filter(pl.Series(pos >= 0))
        # checked: into the arrays
        self.counters[:] = 0
        self._reserve(m)
        self.head[:] = -1
        self.s_key[:m] = keys
        self.s_start[:m] = start
        self.s_end[:m] = end
        self.s_rev[:m] = emitted
        self.s_final[:m] = final
        self.s_dirty[:m] = dirty
        op._checked_fields(t)
        # relink: each key's list in slot order, as the snapshot listed it (merges then
        # combine in the same order: the same floats); vectorised, by (key, slot)
        order = np.lexsort((np.arange(m), keys))
        first = np.ones(m, np.bool_)
        first[1:] = keys[order[1:]] != keys[order[:-1]]
        after = np.full(m, -1, np.int32)
        after[:-1] = np.where(first[1:], -1, order[1:])
        self.nxt[order] = after
        self.head[keys[order[first]]] = order[first]
        self.counters[1] = m
        self.distinct = distinct
        # the next watermark with work (see session_fire): an end, or a lateness' end
        waiting = ~self.s_final[:m] | self.s_dirty[:m]
        due = np.where(waiting, self.s_end[:m], self.s_end[:m] + self.op.setup.lateness)
        self.next_end = int(due.min()) if m else _I64_MAX
