"""Session windows: the logic around the session kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.kernels.window import (
    session_fire,
    session_live,
    session_order,
    session_update,
)
from vstream.ops.window.setup import _KEY_SLACK
from vstream.state.slots import StateTable, grown

if TYPE_CHECKING:
    from vstream.ops.window.operator import WindowOp

__all__: list[str] = []

_I64_MAX = np.iinfo(np.int64).max


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
