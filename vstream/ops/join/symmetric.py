"""Symmetric joins: interval, windowed and regular (TTL)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.errors import VStreamError
from vstream.kernels.join import RANGE, WINDOWS, evict_before, probe_pairs, settle_windows
from vstream.ops.base import MAX_WM, MIN_WM, Chunk
from vstream.ops.join.base import (
    I64_MAX,
    JoinOperator,
    clamp,
    new_key_index,
    payload_of,
    side_schemas,
)
from vstream.plan.joins import JoinSetup
from vstream.state.join import JoinSideState, SymmetricJoinState


class SymmetricJoinOp(JoinOperator):
    """Interval, windowed and regular (TTL) joins: each new row probes the other side's
    kept rows; a pair is emitted when its second row arrives.

    Lateness (DESIGN.md "Lateness in joins") is judged against the join's watermark ``W``,
    the minimum of both inputs', never against a row's own input alone: a windowed join's
    row is late once all its windows have ended (``W >= end``), an interval join's left
    row once ``W > t + max(upper, 0)``, a right row once ``W > t + max(-lower, 0)`` (a
    pair with ``right.t - left.t`` in ``[lower, upper]`` completes at the later time). A
    side's rows retire when no row of the other side that is not late can still be their
    partner (outer joins emit their unmatched rows then), and the output watermark stays
    at or before the event time (the later of the two) of every pair still to come.
    """

    state: SymmetricJoinState

    def __init__(self, name: str, setup: JoinSetup) -> None:
        super().__init__(name, setup)
        self.state = SymmetricJoinState(new_key_index(setup), side_schemas(setup))
        self.windowed = setup.kind == "window"
        self.outer = (setup.how in ("left", "full"), setup.how == "full")
        self._pending: list[pl.DataFrame] = []
        self._settled_wm = [MIN_WM, MIN_WM]
        # the columns each side keeps for the output
        self._keep = (
            list(setup.left_out),
            list(dict.fromkeys(src for src, _ in setup.right_out)),
        )
        # interval / regular: how far behind the join watermark a row of each side may
        # be and still complete a pair
        self._reach = (max(setup.upper, 0), max(-setup.lower, 0))

    def _open_from(self, wm: int) -> int:
        """Windowed: the start of the first window still open at watermark ``wm`` (the
        first that ends after it); the windows before it are closed."""
        if wm == MIN_WM:
            return MIN_WM
        st = self.setup
        return clamp(((wm - st.offset - st.size) // st.slide + 1) * st.slide + st.offset)

    def _late_before(self, port: int) -> int:
        wm = self.input_watermark
        if wm == MIN_WM:
            return MIN_WM
        if self.windowed:
            return self._open_from(wm)  # every window of an earlier row has ended
        return clamp(wm - self._reach[port])

    def _retire_before(self, s: int) -> int:
        """Interval / regular: rows of side ``s`` before this time can meet no partner:
        the other side's rows still to come that are not late are at or after its
        :meth:`_late_before` (none come once it has ended)."""
        if self._in_wm[1 - s] == MAX_WM:
            return MAX_WM
        first = self._late_before(1 - s)
        if first == MIN_WM:
            return MIN_WM
        st = self.setup
        # left row t pairs with right.t <= t + upper; right row t with left.t <= t - lower
        return clamp(first - st.upper) if s == 0 else clamp(first + st.lower)

    def _pairs_from(self) -> int:
        """No pair still to come has an event time (the later of its two) before this."""
        wm = self.input_watermark
        if wm in (MIN_WM, MAX_WM):
            return wm
        if self.windowed:  # both rows of a pair are in a window still open
            return self._open_from(wm)
        st = self.setup
        # a pair needs a row still to come of an input that has not ended
        firsts = []
        if self._in_wm[0] != MAX_WM:  # a left row t and its partner, at t + lower
            firsts.append(self._late_before(0) + max(st.lower, 0))
        if self._in_wm[1] != MAX_WM:  # a right row t and its partner, at t - upper
            firsts.append(self._late_before(1) + max(-st.upper, 0))
        return clamp(min(firsts))

    def state_rows(self) -> int:
        return self.sides[0].live + self.sides[1].live

    @property
    def sides(self) -> tuple[JoinSideState, JoinSideState]:
        """The rows each side keeps (the state's)."""
        return self.state.sides

    def _keys_renumbered(self) -> None:
        for side in self.sides:
            side.invalidate_index()

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        out = self._pending
        self._pending = []
        if chunk is not None and chunk.df.height:
            out.extend(self._on_rows(port, chunk.df))
        if watermark > self._in_wm[port]:
            self._in_wm[port] = watermark
            out.extend(self._retire())
            self._compact_keys()
        self.peak_state_rows = max(self.peak_state_rows, self.state_rows())
        wm = self._pairs_from()
        for s in (0, 1):
            if self.outer[s]:  # its kept rows and those still to come may go unmatched
                wm = min(wm, self.sides[s].low)
                if self._in_wm[s] != MAX_WM:
                    wm = min(wm, self._late_before(s))
        self._out_wm = max(self._out_wm, wm)
        return [Chunk(f) for f in out if f.height], self._out_wm

    def _on_rows(self, port: int, df: pl.DataFrame) -> list[pl.DataFrame]:
        st = self.setup
        df, ts = self._arrivals(port, df)
        if not df.height:
            return []
        kid = self._key_ids(port, df)
        if not self.outer[port] and (kid < 0).any():
            ok = kid >= 0
            df, ts, kid = df.filter(ok), ts[ok], kid[ok]
            if not df.height:  # only null keys, which match nothing
                return []
        payload = payload_of(df, self._keep[port])
        other = self.sides[1 - port]
        mine = self.sides[port]
        bits = np.zeros(df.height, np.int64)
        out: list[pl.DataFrame] = []
        # windowed: the rows pair in the windows still open only; the closed ones before
        # (their partners may be gone) are skipped, for the outer join's unmatched too
        w_min = self._late_before(port) if self.windowed else MIN_WM
        next_j: np.ndarray | int = 0
        if w_min != MIN_WM and self._open_from(int(ts.min())) < w_min:
            st_ = self.setup
            first = ((ts - st_.offset - st_.size) // st_.slide + 1) * st_.slide + st_.offset
            next_j = np.maximum((w_min - first) // st_.slide, 0)
        if other.live:
            if port == 0:
                lo, hi = st.lower, st.upper
            else:
                lo, hi = -st.upper, -st.lower
            (order, sorted_t, seg_lo, seg_hi), tail = other.index(self.n_keys, df.height)
            pi, sr, ws = probe_pairs(
                ts,
                kid,
                bits,
                order,
                sorted_t,
                seg_lo,
                seg_hi,
                other.t,
                other.kid,
                other.bits,
                np.int64(tail),
                np.int64(other.n),
                np.int64(WINDOWS if self.windowed else RANGE),
                np.int64(clamp(lo)),
                np.int64(clamp(hi)),
                np.int64(st.size),
                np.int64(st.slide),
                np.int64(st.offset),
                np.int64(w_min),
            )
            if pi.size:
                mine_rows = payload[pi]
                other_rows = other.payload[sr]
                left, right = (mine_rows, other_rows) if port == 0 else (other_rows, mine_rows)
                out.append(self._assemble(left, right, pi.size, ws if self.windowed else None))
        mine.append(payload, ts, kid, bits, next_j)
        return out

    def _retire(self) -> list[pl.DataFrame]:
        st = self.setup
        out: list[pl.DataFrame] = []
        for s in (0, 1):
            side = self.sides[s]
            if not side.live:
                continue
            if self.windowed:
                # a row of the other side still to come pairs in the windows still open
                # at the join watermark (in none once that side has ended)
                wm = MAX_WM if self._in_wm[1 - s] == MAX_WM else self.input_watermark
                if wm == MIN_WM:
                    continue
                if wm <= self._settled_wm[s] and side.n == side.settled_n:
                    continue  # nothing new: no window can have closed since
                # the first window to end among the live rows' (that of the oldest row):
                # until it ends there is nothing to settle (settling scans the side:
                # 0.7 s of Nexmark q7's 2.9 s when done on every watermark step)
                first_end = (
                    ((side.low - st.offset - st.size) // st.slide + 1) * st.slide
                    + st.offset
                    + st.size
                )
                if side.low != I64_MAX and wm < first_end:
                    continue
                self._settled_wm[s] = wm
                rows, starts, dead, low = settle_windows(
                    side.t,
                    side.alive,
                    side.bits,
                    side.next_j,
                    np.int64(side.n),
                    np.int64(wm),
                    np.int64(st.size),
                    np.int64(st.slide),
                    np.int64(st.offset),
                    self.outer[s],
                )
            else:
                thresh = self._retire_before(s)
                if thresh <= side.low:
                    continue  # no live row is that old (a join without ttl: never)
                rows, dead, low = evict_before(
                    side.t,
                    side.alive,
                    side.bits,
                    np.int64(side.n),
                    np.int64(thresh),
                    self.outer[s],
                )
                starts = None
            side.low = int(low)
            if rows.size:
                got = side.payload[rows]
                left, right = (got, None) if s == 0 else (None, got)
                out.append(self._assemble(left, right, rows.size, starts))
            side.live -= int(dead)
            if side.n - side.live > max(self.retire_batch, side.live):
                side.compact()
            side.settled_n = side.n
        return out

    def snapshot(self) -> dict[str, pa.Table]:
        if self._pending:
            msg = f"{self.name}: snapshot between process() calls only"
            raise VStreamError(msg)
        settled = self._settled_wm
        return self._base_snapshot(
            **{"settled_wm.left": settled[0], "settled_wm.right": settled[1]}
        )

    def restore(self, state: dict[str, pa.Table]) -> None:
        meta = self._base_restore(state, ["settled_wm.left", "settled_wm.right"])
        self._settled_wm = [meta["settled_wm.left"], meta["settled_wm.right"]]
