"""Session windows: the logic around the session kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from vstream.kernels.window import session_fire, session_live, session_update
from vstream.ops.window.setup import _KEY_SLACK

if TYPE_CHECKING:
    from vstream.ops.window.operator import WindowOp
    from vstream.state.window import SessionState

__all__: list[str] = []


class _SessionLogic:
    """Session windows: per key, a linked list of live sessions in slot arrays."""

    def __init__(self, op: WindowOp, state: SessionState) -> None:
        self.op = op
        self.st = state  # what a checkpoint holds (the logic keeps nothing else)

    def used_slots(self) -> int:
        return int(self.st.counters[1])

    def _n_keys(self) -> int:
        return self.st.n_keys()

    def _reserve(self, more: int) -> None:
        self.st.reserve(more)

    def update(self, df, ts, kid, Xf, Xi, M, vmap, late, wm) -> int:  # type: ignore[no-untyped-def]
        """Fold a batch's rows into their sessions; returns the number of late rows."""
        op = self.op
        self._reserve(ts.shape[0])
        sl = op.slots
        st = op.setup
        s = self.st
        merged = np.full(s.cap if op.nunique else 0, -1, np.int32)
        end, slots = session_update(
            ts, kid, self._n_keys(), st.gap, st.lateness, wm, s.head, s.nxt, s.s_key,
            s.s_start, s.s_end, s.s_rev, s.s_final, s.s_dirty, s.free, s.counters, sl.F, sl.I,
            sl.init_f, sl.init_i, op.prog, Xf, Xi, M, vmap, s.seq, late, merged,
        )  # fmt: skip
        self.st.next_end = min(self.st.next_end, int(end))
        if op.nunique:
            self._add_distinct(df, slots, late, merged)
        # a fired session updated within the lateness is due at once
        if st.lateness > 0 and end <= wm:
            op.pending.extend(self.fire(wm, early=False))
        return int(late.sum())

    # n_unique: distinct (slot, value) rows; merged sessions move their rows to the new
    # slot, and rows of sessions that are gone are dropped after every firing
    def _add_distinct(self, df, slots, late, merged) -> None:  # type: ignore[no-untyped-def]
        op = self.op
        cols = [op.plan.inputs[lf.input] for lf in op.nunique if lf.input is not None]
        new = df.select(cols).with_columns(__s=pl.Series(slots, dtype=pl.Int64))
        if late.any():
            new = new.filter(pl.Series(~late))
        rows = new if self.st.distinct is None else pl.concat([self.st.distinct, new])
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
        self.st.distinct = pl.concat(frames).unique()

    def _purge_distinct(self) -> None:
        if self.st.distinct is None or not self.st.distinct.height:
            return
        live = session_live(self.st.head, self.st.nxt, self._n_keys(), self.st.cap)
        self.st.distinct = self.st.distinct.filter(pl.Series(live)[self.st.distinct["__s"]])

    def _nunique(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        want = pl.DataFrame({"__s": slots, "__i": np.arange(len(slots))})
        base = want.join(self.st.distinct, on="__s") if self.st.distinct is not None else None
        for lf in self.op.nunique:
            arr = np.zeros(len(slots), np.int64)
            if base is not None and base.height:
                assert lf.input is not None
                c = base.group_by("__i").agg(pl.col(lf.input).n_unique().alias("n"))
                arr[c["__i"].to_numpy()] = c["n"].to_numpy()
            out[lf.name] = arr
        return out

    def fire(self, wm: int, *, early: bool) -> list[pl.DataFrame]:
        if not early and wm < self.st.next_end:
            self.compact_keys()  # keys whose rows were all late have no session
            return []
        self._reserve(0)  # the key heads exist even before the first row
        op = self.op
        sl = op.slots
        s = self.st
        kid, start, end, rev, slots, Fo, Io, nxt_end = session_fire(
            s.head, s.nxt, s.s_key, s.s_start, s.s_end, s.s_rev, s.s_final, s.s_dirty, s.free,
            s.counters, sl.F, sl.I, self._n_keys(), wm, op.setup.lateness, early,
        )  # fmt: skip
        self.st.next_end = int(nxt_end)
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
        sessions = int(self.st.counters[1] - self.st.counters[0])
        if not force and n <= factor * sessions + slack:
            return
        self._reserve(0)  # a head for every key
        live = np.flatnonzero(self.st.head[:n] >= 0)
        if n <= factor * live.size + slack:
            return
        alive = session_live(self.st.head, self.st.nxt, n, self.st.cap)
        self.st.keys, remap = keys.compacted(live)
        self.st.s_key[alive] = remap[self.st.s_key[alive]]
        size = 1024
        while size < len(self.st.keys):
            size *= 2
        head = np.full(size, -1, np.int32)
        head[remap[live]] = self.st.head[live]
        self.st.head = head
