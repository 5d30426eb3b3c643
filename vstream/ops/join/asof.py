"""The as-of join."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.kernels.join import asof_keep, asof_probe, sort_by_key_time
from vstream.ops.base import MAX_WM, MIN_WM, Chunk
from vstream.ops.join.base import (
    I64_MIN,
    JoinOperator,
    clamp,
    gather_rows,
    new_key_index,
    payload_of,
    side_schemas,
    take_rows,
)
from vstream.plan.joins import JoinSetup
from vstream.state.join import AsofJoinState, JoinSideState


class AsofJoinOp(JoinOperator):
    """As-of join: left rows wait until the right watermark settles their answer; the
    right side keeps, per key, what a future left row may still match.

    Lateness (DESIGN.md "Lateness in joins"): a left row is late once the join's
    watermark (the minimum of both inputs') has passed it: the right rows before that
    may be gone (a left row behind its own input's watermark still waits for a lagging
    right input). A right row is late once the right watermark has passed it: the left
    rows up to that watermark have had their answers already.
    """

    retire_batch = 1024

    state: AsofJoinState

    def __init__(self, name: str, setup: JoinSetup) -> None:
        super().__init__(name, setup)
        self._rkeep = list(dict.fromkeys(src for src, _ in setup.right_out))
        assert setup.left_time is not None
        left = pl.Schema({c: setup.schema[c] for c in setup.left_out})
        self.state = AsofJoinState(new_key_index(setup), side_schemas(setup)[1], left)
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        # what the probe reads, packed (built with the sorted index)
        self._rows = np.zeros((0, 2), np.int64)
        self._keys = np.zeros((0, 3), np.int64)
        self._kept_after_evict = 0
        self._evict_bound = MIN_WM
        # a left row is settled once right_wm > t + wait
        self._wait = setup.tolerance if setup.strategy != 0 and setup.tolerance >= 0 else None

    @property
    def right(self) -> JoinSideState:
        """The right rows a left row may still match (the state's)."""
        return self.state.right

    def state_rows(self) -> int:
        return self.state.right.n + self.state.pending.n

    def _keys_renumbered(self) -> None:
        self._sorted = None

    def _pending_low(self) -> int:
        return self.state.pending.low()

    def _late_before(self, port: int) -> int:
        return self.input_watermark if port == 0 else self._in_wm[1]

    def _left_from(self) -> int:
        """Left rows still to come that are not late are at or after this."""
        return MAX_WM if self._in_wm[0] == MAX_WM else self.input_watermark

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        if chunk is not None and chunk.df.height:
            self._on_rows(port, chunk.df)
        self._in_wm[port] = max(self._in_wm[port], watermark)
        out = self._emit_ready()
        self._evict()
        self._compact_keys()
        self.peak_state_rows = max(self.peak_state_rows, self.state_rows())
        wm = min(self._left_from(), self._pending_low())
        self._out_wm = max(self._out_wm, wm)
        return [Chunk(f) for f in out if f.height], self._out_wm

    def _on_rows(self, port: int, df: pl.DataFrame) -> None:
        st = self.setup
        df, ts = self._arrivals(port, df)
        if not df.height:
            return
        kid = self._key_ids(port, df) if st.left_keys else np.zeros(df.height, np.int32)
        if port == 0:
            self.state.pending.append(df, ts, kid)
            return
        ok = kid >= 0  # a right row with a null key matches nothing
        if not ok.all():
            df, ts, kid = df.filter(ok), ts[ok], kid[ok]
        self.right.append(payload_of(df, self._rkeep), ts, kid, np.zeros(df.height, np.int64))
        self._sorted = None

    def _ready_bound(self) -> int | None:
        """Left rows with t < bound are settled (None: none yet)."""
        rwm = self._in_wm[1]
        if rwm == MAX_WM:
            return MAX_WM
        if rwm == MIN_WM:
            return None
        st = self.setup
        if st.strategy == 0:
            return rwm
        if self._wait is None:
            return None  # forward / nearest without tolerance: at the end of the input
        return clamp(rwm - self._wait)

    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._sorted is None:
            r = self.right
            n_keys = self.n_keys
            self._sorted = sort_by_key_time(r.kid[: r.n], r.t[: r.n], np.int64(n_keys))
            order, sorted_t, lo, hi = self._sorted
            # packed for the probe: (time, row) per position, (lo, hi, cursor) per key
            self._rows = np.stack([sorted_t, order], axis=1)
            self._keys = np.stack([lo, hi, np.zeros_like(lo)], axis=1)
        return self._sorted

    def _emit_ready(self) -> list[pl.DataFrame]:
        bound = self._ready_bound()
        pending = self.state.pending
        if bound is None or not pending.chunks:
            return []
        ready: list[tuple[pl.DataFrame, np.ndarray, np.ndarray]] = []
        waiting = []
        for df, ts, kid, low in pending.chunks:
            if bound == MAX_WM or ts.max() < bound:
                ready.append((df, ts, kid))
            elif low < bound:
                m = ts < bound
                ready.append((take_rows(df, m), ts[m], kid[m]))
                rest = ~m
                ts2 = ts[rest]
                waiting.append((take_rows(df, rest), ts2, kid[rest], int(ts2.min())))
            else:
                waiting.append((df, ts, kid, low))
        pending.chunks = waiting
        pending.n = sum(p[0].height for p in waiting)
        if not ready:
            return []
        left = pl.concat([r[0] for r in ready]) if len(ready) > 1 else ready[0][0]
        ts = np.concatenate([r[1] for r in ready])
        kid = np.concatenate([r[2] for r in ready])
        st = self.setup
        if self.right.n:
            self._index()
            rows = asof_probe(
                ts, kid, self._rows, self._keys, np.int64(st.strategy), np.int64(st.tolerance)
            )
            right = gather_rows(self.right.payload, rows)
        else:
            right = None
        return [self._assemble(left, right, left.height)]

    def _evict(self) -> None:
        r = self.right
        if not r.n:
            return
        bound = min(self._left_from(), self._pending_low())
        if bound == MIN_WM or bound <= self._evict_bound:
            return
        fresh = r.n - self._kept_after_evict
        if fresh < max(self.retire_batch, self._kept_after_evict) and bound != MAX_WM:
            return
        self._evict_bound = bound
        order, sorted_t, lo, hi = self._index()
        tol = self.setup.tolerance
        floor = clamp(bound - tol) if tol >= 0 and bound != MAX_WM else I64_MIN
        keep = asof_keep(
            sorted_t, lo, hi, np.int64(bound), self.setup.strategy != 1, np.int64(floor)
        )
        rows = np.sort(order[keep])
        r.alive[: r.n] = False
        r.alive[rows] = True
        r.compact()
        self._sorted = None
        self._kept_after_evict = r.n

    def snapshot(self) -> dict[str, pa.Table]:
        out = self._base_snapshot(evict_bound=self._evict_bound)
        self._sorted = None  # the snapshot compacted the right rows
        self._kept_after_evict = self.right.n
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        meta = self._base_restore(state, ["evict_bound"])
        self._evict_bound = meta["evict_bound"]
        self._sorted = None
        self._kept_after_evict = self.right.n
