"""Tumbling and hopping windows: the logic around the pane kernels (Scotty-style slicing:
each event updates one pane; a window combines its panes when it fires).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from vstream.kernels.aggregate import apply_rows
from vstream.kernels.window import (
    compact_panes,
    count_below,
    fire_hopping,
    pane_slots,
    rebuild_index,
    take_final,
    take_panes,
    windows_of,
)
from vstream.ops.base import MAX_WM, MIN_WM
from vstream.ops.window.finalize import _final_leaves
from vstream.ops.window.setup import _KEY_SLACK
from vstream.plan import aggregates as A
from vstream.state.slots import grown, grown_fields

if TYPE_CHECKING:
    from vstream.ops.window.operator import WindowOp
    from vstream.state.window import PaneState

__all__: list[str] = []

_DIR_BYTES = 16 << 20  # the pane directory's budget (rows x keys x 4 bytes)
_DIR_HOT = 8 << 20  # ... and its size when 64 rows fit in less
_ONE_WAY_KEYS = 1 << 18  # more keys: one cached pane per key (the per-key cache <= 8 MB)
_I64_MAX = np.iinfo(np.int64).max
_FOLDED = (A.SUM_F, A.MEAN, A.MIN_F, A.MAX_F)  # what pane_slots may fold (see _folds)
_NO_KEYS = np.zeros(0, np.int32)  # take_final: return the key ids
_NO_DENSE = np.zeros(0, np.int32)  # pane_slots: the keys are ids
_NO_ROWS = np.zeros(0, np.int64)
_REV_KEYS = pl.Schema({"window": pl.Int64, "key": pl.Int32})


def _pow2_floor(x: int) -> int:
    return 1 << (x.bit_length() - 1) if x > 0 else 0


class _PaneLogic:
    """Tumbling and hopping windows over panes of gcd(size, slide)."""

    def __init__(self, op: WindowOp, state: PaneState) -> None:
        self.op = op
        self.st = state  # what a checkpoint holds; the rest here is rebuilt from it
        self.pane, self.s, self.n = state.config.pane, state.config.s, state.config.n
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
        # the aggregates apply_rows folds: all but the LEN leaf pane_slots counts
        prog, rows = op.prog, op.plan.len_field
        counted = np.flatnonzero((prog[:, 0] == A.LEN) & (prog[:, 4] == rows))[:1]
        self.prog = np.delete(prog, counted, axis=0)
        self._fold_plans: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        if state.slots.cap:  # a state with slots (restored, split, merged): index them
            cap = state.slots.cap
            if self.hopping:
                self.Pf, self.Sf = np.zeros((nf, cap)), np.zeros((nf, cap))
                self.Pi, self.Si = np.zeros((ni, cap), np.int64), np.zeros((ni, cap), np.int64)
                self.valid = np.zeros(cap, np.uint8)
            self._reserve(0)
            self._rehash(2 * state.n_slots + 2048)

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
        cap = self.st.reserve(self.st.n_slots + more)
        if cap and self.hopping:
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
        if self.tab.shape[0] < 2 * self.st.n_slots + 2048:
            self._rehash(2 * self.st.n_slots + 2048)

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
            self.tab, *self._dir(), self.st.slot_pane, self.st.slot_key, self.st.n_slots, False
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
        counts = np.array([self.st.n_slots, 0, 0, 0, MIN_WM, 0], np.int64)
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
        fired_end = None if self.st.fired_k is None else self.st.fired_k * s + nn
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
                self.st.n_slots = int(counts[0])
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
            apply_rows(rest, sl.F, sl.I, slots, Xf, Xi, M, vmap, self.st.seq)
        got: list[int] = counts.tolist()
        self.st.n_slots, n_late, n_dirty, _, mp, _ = got
        ok = ~late if n_late else None
        live = n - n_late
        if live:
            self.st.max_pane = mp if self.st.max_pane is None else max(self.st.max_pane, mp)
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
                ts, kid, geom, self.tab, self.st.slot_pane,
                self.st.slot_key, sl.F, sl.I, sl.init_f, sl.init_i, slots, late, dirty_p,
                dirty_k, counts, r, self.key_slot, self.key_pane, *self._dir(), fold, Xf,
                dense, deferred,
            )  # fmt: skip
            if r == ts.shape[0]:
                return
            self.st.n_slots = int(counts[0])
            self._rehash(4 * self.st.n_slots)

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
        self.st.distinct.append(frame.unique())

    def _nunique(self, keys: np.ndarray, ks: np.ndarray) -> dict[str, np.ndarray]:
        op = self.op
        out: dict[str, np.ndarray] = {}
        if not self.st.distinct:
            return {lf.name: np.zeros(len(keys), np.int64) for lf in op.nunique}
        store = pl.concat(self.st.distinct, how="vertical").unique()
        self.st.distinct = [store]
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
        got = q.join(self.st.rev, on=["window", "key"], how="left", maintain_order="left")
        rev = got.get_column("emitted").fill_null(-1).to_numpy() + 1
        new = q.with_columns(emitted=pl.Series(rev, dtype=pl.Int64))
        self.st.rev = pl.concat([self.st.rev.join(q, on=["window", "key"], how="anti"), new])
        return rev

    def used_slots(self) -> int:
        return self.st.n_slots

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
            self.st.slot_pane,
            self.st.slot_key,
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
        op.pending.append(self._emit(kk, ks, Fo, Io))

    def fire(self, wm: int, *, early: bool) -> list[pl.DataFrame]:
        op = self.op
        if wm == MIN_WM:
            return []
        s, n, pane, off = self.s, self.n, self.pane, op.setup.offset
        # every window k <= k_due has ended (end <= wm)
        if wm >= MAX_WM:
            if self.st.max_pane is None:
                return []
            k_due = self.st.max_pane // s
        else:
            k_due = ((wm - off) // pane - n) // s
        out: list[pl.DataFrame] = []
        if early:
            if self.st.max_pane is not None and self.st.n_slots:
                k_lo = k_due + 1 if self.st.fired_k is None else max(self.st.fired_k, k_due) + 1
                if self.st.max_pane // s >= k_lo:
                    out.append(self._fire_range(k_lo, self.st.max_pane // s, early=True))
            return out
        if self.st.max_pane is not None and self.st.n_slots:
            if self.st.fired_k is not None and (self.st.fired_k + 1) * s > MIN_WM // 2:
                k_lo = self.st.fired_k + 1
            else:
                # from the first window of the oldest live pane: nothing fired yet, or a
                # watermark near int64's minimum left fired_k so low that k * s overflows
                # int64 in the kernel (earlier windows hold no data)
                k_lo = -((-(int(self.st.slot_pane[: self.st.n_slots].min()) - n + 1)) // s)
                if self.st.fired_k is not None:
                    k_lo = max(k_lo, self.st.fired_k + 1)
            k_hi = min(k_due, self.st.max_pane // s)
            if k_hi >= k_lo:
                out.append(self._fire_range(k_lo, k_hi))
        # windows that ended are done even if they had no data yet: a late event must
        # not open them (it updates them only within the allowed lateness)
        self.st.fired_k = k_due if self.st.fired_k is None else max(self.st.fired_k, k_due)
        self._free(wm)
        return out

    def _fire_range(self, k_lo: int, k_hi: int, *, early: bool = False) -> pl.DataFrame:
        op = self.op
        sl = op.slots
        if self.s == 1 and self.n == 1:
            # tumbling: a pane is a window. One firing's rows come in slot order (order
            # within a firing is unspecified)
            if op.fin is not None:
                geom = np.array(
                    [self.pane, op.setup.offset, op.setup.size, op.plan.len_field], np.int64
                )
                fin = op.fin if op.nulls_seen else op.fin_no_nulls
                buf = op.scratch.get("selected", (max(self.st.slot_pane.shape[0], 1),), np.int32)
                # the key values themselves where the key index has them as an array
                # (revisions need the ids)
                values = None if op.keys is None or op.revisions else op.keys.key_values()
                kid, starts, ends, *outputs = take_final(
                    self.st.slot_pane, self.st.slot_key, sl.F, sl.I, self.st.n_slots, k_lo, k_hi,
                    fin, geom, buf, _NO_KEYS if values is None else values,
                )  # fmt: skip
                leaves = _final_leaves(op.plan, fin, tuple(outputs), op.fin_steps)
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
                self.st.slot_pane, self.st.slot_key, sl.F, sl.I, self.st.n_slots, k_lo, k_hi
            )
            return self._emit(kid, panes, Fo, Io)
        n_keys = len(op.keys) if op.keys is not None else 1
        if early:
            # windows still open: their panes may change, so nothing is kept
            m = self.st.n_slots
            cache = (
                np.empty((sl.F.shape[0], m)), np.empty((sl.I.shape[0], m), np.int64),
                np.empty((sl.F.shape[0], m)), np.empty((sl.I.shape[0], m), np.int64),
                np.zeros(m, np.uint8),
            )  # fmt: skip
        else:
            cache = (self.Pf, self.Pi, self.Sf, self.Si, self.valid)
        kid, ks, Fo, Io = fire_hopping(
            self.st.slot_pane, self.st.slot_key, sl.F, sl.I, self.st.n_slots, op.prog,
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
        self.st.free_below = max(self.st.free_below, free_below)
        if self.st.n_slots:
            dead = count_below(self.st.slot_pane, self.st.n_slots, free_below)
            # freed slots are never read again (their rows are late, no window takes
            # them): they are dropped once they are a quarter of the slots, not at every
            # firing (slide sweep, 0.5 s slide: compaction moved every slot at each batch,
            # 64 ms)
            if dead and (4 * dead >= self.st.n_slots or wm >= MAX_WM):
                self._drop_below(free_below)
        self.compact_keys()

    def _drop_below(self, free_below: int) -> None:
        """Drop the slots of panes below ``free_below`` (and what refers to them)."""
        sl = self.op.slots
        self.st.n_slots = compact_panes(
            self.st.slot_pane, self.st.slot_key, sl.F, sl.I, self.st.n_slots, free_below,
            self.Pf, self.Pi, self.Sf, self.Si, self.valid,
        )  # fmt: skip
        # the table and the per-key cache are cleared only if they were used: with
        # every pane in the directory (Q1) that was 1.5 MB of writes a batch
        in_table = rebuild_index(
            self.tab, *self._dir(), self.st.slot_pane, self.st.slot_key, self.st.n_slots,
            self.tab_used,
        )  # fmt: skip
        if self.tab_used:
            self.key_slot[:] = -1  # slots were renumbered
        self.tab_used = in_table > 0
        if self.st.distinct:
            self.st.distinct = [
                pl.concat(self.st.distinct).filter(pl.col("__p") >= free_below).unique()
            ]
        if self.st.rev.height:
            self.st.rev = self.st.rev.filter(pl.col("window") >= free_below // self.s)

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
        if not force and len(keys) <= factor * self.st.n_slots + slack:
            return
        st = self.st
        if force and st.n_slots and count_below(st.slot_pane, st.n_slots, st.free_below):
            self._drop_below(st.free_below)
        m = st.n_slots
        used = np.zeros(len(keys), np.bool_)
        used[self.st.slot_key[:m]] = True
        if self.st.rev.height:
            used[self.st.rev.get_column("key").to_numpy()] = True
        for frame in self.st.distinct:
            used[frame.get_column("__k").to_numpy()] = True
        live = np.flatnonzero(used)
        if len(keys) <= factor * live.size + slack:
            return
        self.st.keys, remap = keys.compacted(live)
        self.st.slot_key[:m] = remap[self.st.slot_key[:m]]
        if self.st.rev.height:
            self.st.rev = self.st.rev.with_columns(
                key=pl.Series(remap)[self.st.rev.get_column("key")]
            )
        self.st.distinct = [
            d.with_columns(__k=pl.Series(remap)[d.get_column("__k")]) for d in self.st.distinct
        ]
        # the pane directory is indexed by key id: index the slots again (this also
        # clears the table and the per-key cache)
        self._rehash(self.tab.shape[0])
