"""Join operators: symmetric (interval, windowed, regular), as-of, and lookup.

Config (what the user wrote, checked) is a :class:`JoinSetup` built in
:mod:`vstream.plan.joins`; this module is what the runtime runs. Both inputs share one
:class:`~vstream.state.key_index.KeyIndex` (the right side's key columns are read under
the left side's names), so a key has the same id on both sides. A null in a key column
matches nothing (as in Polars); such rows still appear, unmatched, in outer joins.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import physical_int64
from vstream.errors import VStreamError
from vstream.kernels.hashing import dense_lookup
from vstream.kernels.join import (
    RANGE,
    WINDOWS,
    asof_keep,
    asof_probe,
    evict_before,
    probe_pairs,
    settle_windows,
    sort_by_key_time,
)
from vstream.ops.base import MAX_WM, MIN_WM, Chunk, Operator
from vstream.plan.joins import JoinSetup
from vstream.state.key_index import KeyIndex
from vstream.state.slots import grown

__all__ = ["AsofJoinOp", "JoinSetup", "LookupJoinOp", "SymmetricJoinOp"]

_T, _KID, _BITS, _NEXT = "__t__", "__key_id__", "__matched__", "__next_window__"
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


def _clamp(x: int) -> int:
    return max(_I64_MIN, min(_I64_MAX, x))


def _key_frame(df: pl.DataFrame, cols: list[str], names: list[str]) -> pl.DataFrame:
    keys = df.select(cols)
    return keys.rename(dict(zip(cols, names, strict=True))) if cols != names else keys


def _gather(df: pl.DataFrame, idx: np.ndarray) -> pl.DataFrame:
    """Rows ``idx`` of ``df``; -1 gives a row of nulls."""
    # Polars' own index type (UInt32): an Int64 index would be cast first
    if idx.size and idx.min() < 0:
        if idx.max() < 0:
            return _nulls(df.schema, idx.size)
        missing = idx < 0
        return df[pl.Series(pa.array(np.where(missing, 0, idx).astype(np.uint32), mask=missing))]
    return df[pl.Series(idx.astype(np.uint32))]


def _take(df: pl.DataFrame, mask: np.ndarray) -> pl.DataFrame:
    """The rows where ``mask`` is set (a gather: cheaper than ``filter`` on a numpy mask)."""
    return df[np.flatnonzero(mask)]


def _nulls(schema: pl.Schema, n: int) -> pl.DataFrame:
    return pl.DataFrame([pl.Series(c, dtype=dt).clear(n) for c, dt in schema.items()])


#: the payload of a side the output takes no column from (a right input of only key and
#: time columns): Polars frames without columns have no rows, so the rows need a column
_ROW = "__row__"


def _side_schemas(st: JoinSetup) -> tuple[pl.Schema, pl.Schema]:
    """The payload schema of each side (the columns the output takes from it)."""
    left = pl.Schema({c: st.schema[c] for c in st.left_out} or {_ROW: pl.Boolean})
    right = pl.Schema({src: st.schema[dst] for src, dst in st.right_out} or {_ROW: pl.Boolean})
    return left, right


def _payload(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """The columns ``cols`` of ``df`` (a placeholder column when there are none)."""
    if cols:
        return df.select(cols)
    return pl.DataFrame([pl.Series(_ROW, np.zeros(df.height, np.bool_))])


class _JoinBase(Operator):
    n_inputs = 2
    #: how many retired (symmetric) or new (as-of) rows to gather before compacting or
    #: evicting: amortizes the scan (tests set it low to retire on every step)
    retire_batch = 4096

    def __init__(self, name: str, setup: JoinSetup) -> None:
        super().__init__(name)
        self.setup = setup
        self.keys = KeyIndex(setup.key_schema) if len(setup.key_schema) else None
        self.late_by_input = [0, 0]
        self.peak_state_rows = 0

    def _key_ids(self, port: int, df: pl.DataFrame) -> np.ndarray:
        """Key ids of a batch of input ``port`` (-1 for keys with a null)."""
        st = self.setup
        cols = st.left_keys if port == 0 else st.right_keys
        assert self.keys is not None
        return self.keys.ids(_key_frame(df, cols, st.left_keys), nulls_match=False)

    def _late_before(self, port: int) -> int:
        """Rows of input ``port`` with an event time before this are late (judged against
        the watermarks from before their batch): no partner can come for them any more."""
        raise NotImplementedError

    def _arrivals(self, port: int, df: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """A batch of input ``port`` and its event times, without its late rows
        (:meth:`_late_before`): they are counted, sent to the late side output, and left
        out of the join."""
        et = self.setup.left_time if port == 0 else self.setup.right_time
        assert et is not None
        ts = et.of(df)
        wm = self._late_before(port)
        if wm == MIN_WM or ts.size == 0 or ts.min() >= wm:
            return df, ts
        late = ts < wm
        n = int(late.sum())
        self.late_events += n
        self.late_by_input[port] += n
        self.emit_side("late_events" if port == 0 else "late_events.1", df.filter(late))
        keep = ~late
        return df.filter(keep), ts[keep]

    def _assemble(
        self,
        left: pl.DataFrame | None,
        right: pl.DataFrame | None,
        n: int,
        wstart: np.ndarray | None = None,
    ) -> pl.DataFrame:
        """Output rows from left and right payload rows (None: that side is null)."""
        st = self.setup
        cols: list[pl.Series] = []
        lschema = st.schema
        for c in st.left_out:
            cols.append(
                left.get_column(c) if left is not None else pl.Series(c, dtype=lschema[c]).clear(n)
            )
        for src, dst in st.right_out:
            if right is not None:
                cols.append(right.get_column(src).alias(dst))
            else:
                cols.append(pl.Series(dst, dtype=lschema[dst]).clear(n))
        if wstart is not None:
            tdt = lschema["window_start"]
            cols.append(pl.Series("window_start", wstart).cast(tdt))
            cols.append(pl.Series("window_end", wstart + st.size).cast(tdt))
        return pl.DataFrame(cols)

    def _base_snapshot(self, **extra: int) -> dict[str, pa.Table]:
        out: dict[str, pa.Table] = {}
        if self.keys is not None:
            out["keys"] = self.keys.snapshot()["keys"]
        meta = {
            "in_wm_0": self._in_wm[0],
            "in_wm_1": self._in_wm[-1],
            "out_wm": self._out_wm,
            "late_0": self.late_by_input[0],
            "late_1": self.late_by_input[1],
            "peak_state_rows": self.peak_state_rows,
            **extra,
        }
        out["meta"] = pa.table({k: pa.array([v], pa.int64()) for k, v in meta.items()})
        return out

    def _base_restore(self, state: dict[str, pa.Table], tables: list[str]) -> dict[str, int]:
        missing = [t for t in ["meta", *tables] if t not in state]
        if self.keys is not None and "keys" not in state:
            missing.append("keys")
        if missing:
            msg = f"{self.name}: the snapshot lacks the table(s) {missing} (got {sorted(state)})"
            raise VStreamError(msg)
        meta: dict[str, int] = state["meta"].to_pylist()[0]
        self._in_wm[0] = meta["in_wm_0"]
        self._in_wm[-1] = meta["in_wm_1"]
        self._out_wm = meta["out_wm"]
        self.late_by_input = [meta["late_0"], meta["late_1"]]
        self.late_events = meta["late_0"] + meta["late_1"]
        self.peak_state_rows = meta["peak_state_rows"]
        if self.keys is not None:
            self.keys.restore({"keys": state["keys"]})
        return meta

    def _live_key_ids(self) -> list[np.ndarray]:
        """The key ids the state still refers to (arrays to be renumbered in place)."""
        raise NotImplementedError

    def _compact_keys(self) -> None:
        """Forget keys no kept row has (a join on request ids sees each key once or
        twice): once the index holds many more keys than the state, rebuild it with the
        live ones and renumber. Amortized O(1) a key."""
        # at 2x (not 4x) the live keys the hash table stays smaller and cache-friendlier:
        # Nexmark q7 (a key a price) 2.0 -> 1.8 s
        if self.keys is None or len(self.keys) <= 2 * self.state_rows() + 65_536:
            return  # (every kept row has at most one key: a cheap bound first)
        arrays = self._live_key_ids()
        used = np.zeros(len(self.keys), np.bool_)
        for a in arrays:
            used[a[a >= 0]] = True
        live = np.flatnonzero(used)  # sorted, as np.unique gave (which sorts: slower)
        if len(self.keys) <= 2 * live.size + 65_536:
            return
        self.keys, remap = self.keys.compacted(live)
        for a in arrays:
            ok = a >= 0
            a[ok] = remap[a[ok]]
        self._keys_renumbered()

    def _keys_renumbered(self) -> None:
        """Drop whatever caches key ids (sorted indexes, cursors)."""

    @property
    def n_keys(self) -> int:
        return len(self.keys) if self.keys is not None else 1

    def state_rows(self) -> int:
        raise NotImplementedError

    def late_counts(self) -> tuple[int, ...]:
        return tuple(self.late_by_input)


# ---------------------------------------------------------------------- symmetric joins
class _Side:
    """One input's rows kept for future partners, in arrival order."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema  # of the payload: the columns the output takes from this side
        self.frames: list[pl.DataFrame] = []
        self._payload: pl.DataFrame | None = None
        self.n = 0
        self.live = 0
        self.t = np.zeros(0, np.int64)
        self.kid = np.zeros(0, np.int32)
        self.alive = np.zeros(0, np.bool_)
        self.bits = np.zeros(0, np.int64)  # matched: bit 0, or bit j for the j-th window
        self.next_j = np.zeros(0, np.int64)  # windowed: the first window not yet settled
        self.low = _I64_MAX  # smallest event time among live rows
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._indexed = 0  # rows 0.._indexed are in the index
        self.settled_n = 0  # windowed: rows when windows were last settled

    @property
    def payload(self) -> pl.DataFrame:
        """The kept rows as one frame. The batches appended since the last rechunk are
        chunks of it until they hold 1/8 of its rows (or there are 16 of them): copying
        every row on each read made a join with large state quadratic (Nexmark q3)."""
        if self._payload is None:
            if not self.frames:
                self._payload = pl.DataFrame(schema=self.schema)
                self.frames = [self._payload]
            elif len(self.frames) == 1:
                self._payload = self.frames[0]
            else:
                tail = sum(f.height for f in self.frames[1:])
                whole = tail * 8 >= self.frames[0].height or len(self.frames) > 16
                self._payload = pl.concat(self.frames, rechunk=whole)
                if whole:
                    self.frames = [self._payload]
        return self._payload

    def invalidate_index(self) -> None:
        self._index = None

    def index(
        self, n_keys: int, probes: int
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
        """The live rows sorted by (key, time) (order, times, each key's positions), and
        the first row not in it (rows added since, scanned by the probe).

        Built again when scanning the rows added since would cost ``probes`` rows more
        than sorting everything. Retired rows may stay in it: no probe can match them (a
        probe row is never late, and a row retires only when no such row can match it; a
        windowed probe pairs in open windows only).
        """
        n = self.n
        if self._index is None or (n - self._indexed) * probes > max(n, 4096):
            kid = np.where(self.alive[:n], self.kid[:n], -1).astype(np.int32)
            self._index = sort_by_key_time(kid, self.t[:n], np.int64(n_keys))
            self._indexed = n
        return self._index, self._indexed

    def append(
        self,
        df: pl.DataFrame,
        ts: np.ndarray,
        kid: np.ndarray,
        bits: np.ndarray,
        next_j: np.ndarray | int = 0,
    ) -> None:
        m = df.height
        need = self.n + m
        if need > self.t.shape[0]:
            cap = max(1024, self.t.shape[0])
            while cap < need:
                cap *= 2
            self.t = grown(self.t, cap)
            self.kid = grown(self.kid, cap)
            self.alive = grown(self.alive, cap)
            self.bits = grown(self.bits, cap)
            self.next_j = grown(self.next_j, cap)
        s = slice(self.n, need)
        self.t[s] = ts
        self.kid[s] = kid
        self.alive[s] = True
        self.bits[s] = bits
        self.next_j[s] = next_j
        self.frames.append(df)
        self._payload = None if len(self.frames) > 1 else df
        self.n = need
        self.live += m
        if m:
            self.low = min(self.low, int(ts.min()))

    def compact(self) -> None:
        """Drop retired rows (payload and arrays) and relink the chains."""
        keep = np.flatnonzero(self.alive[: self.n])
        payload = self.payload[keep] if keep.size else self.payload.clear()
        self.frames = [payload]
        self._payload = payload
        m = keep.size
        for name in ("t", "kid", "bits", "next_j"):
            arr = getattr(self, name)
            arr[:m] = arr[keep]
        self.alive[:m] = True
        self.alive[m : self.n] = False
        self._index = None
        self.n = m
        self.live = m

    def to_table(self) -> pa.Table:
        """The live rows: payload columns plus event time, key id and match state."""
        self.compact()
        m = self.n
        return self.payload.with_columns(
            pl.Series(_T, self.t[:m]),
            pl.Series(_KID, self.kid[:m]),
            pl.Series(_BITS, self.bits[:m]),
            pl.Series(_NEXT, self.next_j[:m]),
        ).to_arrow()

    @classmethod
    def from_table(cls, schema: pl.Schema, table: pa.Table, n_keys: int) -> _Side:
        """A side holding the rows of a :meth:`to_table` snapshot."""
        df = pl.DataFrame(table)
        side = cls(schema)
        t = df.get_column(_T).to_numpy().astype(np.int64)
        kid = df.get_column(_KID).to_numpy().astype(np.int32)
        side.append(df.select(schema.names()), t, kid, df.get_column(_BITS).to_numpy())
        side.next_j[: side.n] = df.get_column(_NEXT).to_numpy()
        return side


class SymmetricJoinOp(_JoinBase):
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

    def __init__(self, name: str, setup: JoinSetup) -> None:
        super().__init__(name, setup)
        self._schemas = _side_schemas(setup)
        self.sides = (_Side(self._schemas[0]), _Side(self._schemas[1]))
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
        return _clamp(((wm - st.offset - st.size) // st.slide + 1) * st.slide + st.offset)

    def _late_before(self, port: int) -> int:
        wm = self.input_watermark
        if wm == MIN_WM:
            return MIN_WM
        if self.windowed:
            return self._open_from(wm)  # every window of an earlier row has ended
        return _clamp(wm - self._reach[port])

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
        return _clamp(first - st.upper) if s == 0 else _clamp(first + st.lower)

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
        return _clamp(min(firsts))

    def state_rows(self) -> int:
        return self.sides[0].live + self.sides[1].live

    def _live_key_ids(self) -> list[np.ndarray]:
        for side in self.sides:  # retired rows go first: their ids may be dropped
            if side.n > side.live:
                side.compact()
        return [side.kid[: side.n] for side in self.sides]

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
        payload = _payload(df, self._keep[port])
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
                np.int64(_clamp(lo)),
                np.int64(_clamp(hi)),
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
                if side.low != _I64_MAX and wm < first_end:
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
        out = self._base_snapshot(settled_0=self._settled_wm[0], settled_1=self._settled_wm[1])
        out["left"] = self.sides[0].to_table()
        out["right"] = self.sides[1].to_table()
        if self._pending:
            msg = f"{self.name}: snapshot between process() calls only"
            raise VStreamError(msg)
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        meta = self._base_restore(state, ["left", "right"])
        self._settled_wm = [meta["settled_0"], meta["settled_1"]]
        sides = [
            _Side.from_table(self._schemas[s], state[name], self.n_keys)
            for s, name in enumerate(("left", "right"))
        ]
        self.sides = (sides[0], sides[1])


# ---------------------------------------------------------------------- as-of join
class AsofJoinOp(_JoinBase):
    """As-of join: left rows wait until the right watermark settles their answer; the
    right side keeps, per key, what a future left row may still match.

    Lateness (DESIGN.md "Lateness in joins"): a left row is late once the join's
    watermark (the minimum of both inputs') has passed it: the right rows before that
    may be gone (a left row behind its own input's watermark still waits for a lagging
    right input). A right row is late once the right watermark has passed it: the left
    rows up to that watermark have had their answers already.
    """

    retire_batch = 1024

    def __init__(self, name: str, setup: JoinSetup) -> None:
        super().__init__(name, setup)
        self._schemas = _side_schemas(setup)
        self.right = _Side(self._schemas[1])
        self._rkeep = list(dict.fromkeys(src for src, _ in setup.right_out))
        assert setup.left_time is not None
        self._left_schema = pl.Schema({c: setup.schema[c] for c in setup.left_out})
        self.pending: list[tuple[pl.DataFrame, np.ndarray, np.ndarray, int]] = []
        self.n_pending = 0
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        # what the probe reads, packed (built with the sorted index)
        self._rows = np.zeros((0, 2), np.int64)
        self._keys = np.zeros((0, 3), np.int64)
        self._kept_after_evict = 0
        self._evict_bound = MIN_WM
        # a left row is settled once right_wm > t + wait
        self._wait = setup.tolerance if setup.strategy != 0 and setup.tolerance >= 0 else None

    def state_rows(self) -> int:
        return self.right.n + self.n_pending

    def _live_key_ids(self) -> list[np.ndarray]:
        return [self.right.kid[: self.right.n], *(p[2] for p in self.pending)]

    def _keys_renumbered(self) -> None:
        self._sorted = None

    def _pending_low(self) -> int:
        return min((p[3] for p in self.pending), default=_I64_MAX)

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
            self.pending.append((df, ts, kid, int(ts.min())))
            self.n_pending += df.height
            return
        ok = kid >= 0  # a right row with a null key matches nothing
        if not ok.all():
            df, ts, kid = df.filter(ok), ts[ok], kid[ok]
        self.right.append(_payload(df, self._rkeep), ts, kid, np.zeros(df.height, np.int64))
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
        return _clamp(rwm - self._wait)

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
        if bound is None or not self.pending:
            return []
        ready: list[tuple[pl.DataFrame, np.ndarray, np.ndarray]] = []
        waiting = []
        for df, ts, kid, low in self.pending:
            if bound == MAX_WM or ts.max() < bound:
                ready.append((df, ts, kid))
            elif low < bound:
                m = ts < bound
                ready.append((_take(df, m), ts[m], kid[m]))
                rest = ~m
                ts2 = ts[rest]
                waiting.append((_take(df, rest), ts2, kid[rest], int(ts2.min())))
            else:
                waiting.append((df, ts, kid, low))
        self.pending = waiting
        self.n_pending = sum(p[0].height for p in waiting)
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
            right = _gather(self.right.payload, rows)
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
        floor = _clamp(bound - tol) if tol >= 0 and bound != MAX_WM else _I64_MIN
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
        out["right"] = self.right.to_table()
        self._sorted = None  # to_table compacted the right rows
        self._kept_after_evict = self.right.n
        if self.pending:
            frames = [
                df.with_columns(pl.Series(_T, ts), pl.Series(_KID, kid))
                for df, ts, kid, _ in self.pending
            ]
            out["pending"] = pl.concat(frames).to_arrow()
        else:
            schema = pl.Schema({**dict(self._left_schema), _T: pl.Int64(), _KID: pl.Int32()})
            out["pending"] = pl.DataFrame(schema=schema).to_arrow()
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        meta = self._base_restore(state, ["right", "pending"])
        self._evict_bound = meta["evict_bound"]
        self.right = _Side.from_table(self._schemas[1], state["right"], self.n_keys)
        self._sorted = None
        self._kept_after_evict = self.right.n
        pending = pl.DataFrame(state["pending"])
        self.pending = []
        self.n_pending = pending.height
        if pending.height:
            ts = pending.get_column(_T).to_numpy().astype(np.int64)
            kid = pending.get_column(_KID).to_numpy().astype(np.int32)
            self.pending = [(pending.drop(_T, _KID), ts, kid, int(ts.min()))]


# ---------------------------------------------------------------------- lookup join
class LookupJoinOp(_JoinBase):
    """Enrich each event with the row of a table for its key: a static table, or the
    latest row per key of an update stream (input 1), read up to its current end before
    each event batch. The output keeps the events' event time and watermark."""

    def __init__(self, name: str, setup: JoinSetup, *, updates: bool) -> None:
        self.n_inputs = 2 if updates else 1
        super().__init__(name, setup)
        self._rkeep = list(dict.fromkeys(src for src, _ in setup.right_out))
        self.rowmap = np.full(1024, -1, np.int64)
        self._key_cols = [f"__key_{i}__" for i in range(len(setup.left_keys))]
        self.payload = pl.DataFrame(
            schema={
                **{c: setup.schema[d] for c, d in setup.right_out},
                **dict(zip(self._key_cols, setup.key_schema.dtypes(), strict=True)),
            }
        )
        self._frames: list[pl.DataFrame] = []
        self._dense: np.ndarray | None = None
        self._dense_base = 0
        if setup.table is not None:
            self._update(setup.table)  # one row per key: checked when the join was built

    def state_rows(self) -> int:
        return self.payload.height + sum(f.height for f in self._frames)

    def _table(self) -> pl.DataFrame:
        if self._frames:
            self.payload = pl.concat([self.payload, *self._frames], rechunk=True)
            self._frames = []
        return self.payload

    def _update(self, df: pl.DataFrame) -> None:
        ids = self._key_ids(1, df)
        ok = ids >= 0
        if not ok.all():  # a table row with a null key matches nothing
            df, ids = df.filter(ok), ids[ok]
        if not df.height:
            return
        n_keys = self.n_keys
        if n_keys > self.rowmap.shape[0]:
            cap = self.rowmap.shape[0]
            while cap < n_keys:
                cap *= 2
            self.rowmap = grown(self.rowmap, cap, -1)
        base = self.state_rows()
        rev_ids = ids[::-1]
        uniq, first_rev = np.unique(rev_ids, return_index=True)
        self.rowmap[uniq] = base + (ids.size - 1 - first_rev)
        # the keys too (under the left names): a probe checks them on the rows it gathers
        keys = _key_frame(df, self.setup.right_keys, self._key_cols)
        self._frames.append(pl.concat([df.select(self._rkeep), keys], how="horizontal"))
        live = int(np.count_nonzero(self.rowmap >= 0))
        if self.state_rows() > 2 * live + 65_536:
            self._compact()
        self._refresh_dense()

    def _refresh_dense(self) -> None:
        """For one integer key in a compact range (ids, codes): the table row of each key
        value in a flat array, so a probe is one cache-friendly read, not a hash probe."""
        self._dense = None
        known = self.keys.int_keys() if self.keys is not None else None
        if known is None or not len(known[0]):
            return
        values, null = known
        valid = ~null
        if not valid.any():
            return
        rows = self.rowmap[: values.size][valid]
        values = values[valid]
        lo, hi = int(values.min()), int(values.max())
        if hi - lo >= 4 * values.size + 65_536 or rows.max(initial=0) >= 2**31:
            return
        dense = np.full(hi - lo + 1, -1, np.int32)
        dense[values - lo] = rows
        self._dense, self._dense_base = dense, lo

    def _compact(self) -> None:
        table = self._table()
        used = np.flatnonzero(self.rowmap >= 0)
        rows = self.rowmap[used]
        self.payload = table[rows]
        self.rowmap[used] = np.arange(used.size)
        self._refresh_dense()

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        out: list[Chunk] = []
        if chunk is not None and chunk.df.height:
            if port == 1:
                self._update(chunk.df)
            else:
                out.append(Chunk(self._probe(chunk.df), chunk.split))
        self._in_wm[port] = max(self._in_wm[port], watermark)
        if port == 0:
            self._out_wm = max(self._out_wm, self._in_wm[0])
            if self._in_wm[0] == MAX_WM:
                self.done = True
        self.peak_state_rows = max(self.peak_state_rows, self.state_rows())
        return out, self._out_wm

    def _probe(self, df: pl.DataFrame) -> pl.DataFrame:
        st = self.setup
        assert self.keys is not None
        if self._dense is not None:
            col = df.get_column(st.left_keys[0])
            nulls = col.null_count()
            values = physical_int64(col.fill_null(self._dense_base - 1) if nulls else col)
            rows = dense_lookup(values, np.int64(self._dense_base), self._dense)
            if nulls:
                rows[col.is_null().to_numpy()] = -1
        else:
            # hashed keys: found without the index's own check, which would gather the
            # stored keys; the table rows gathered below carry the keys to compare
            ids = self.keys.find(df.select(st.left_keys), exact=False)
            rows = np.where(ids >= 0, self.rowmap[np.maximum(ids, 0)], -1)
        if st.how == "inner":
            hit = rows >= 0
            if not hit.all():
                df, rows = df.filter(hit), rows[hit]
        right = _gather(self._table(), rows)
        if self._dense is None and self.keys.hashed:
            same = right.select(
                pl.all_horizontal(
                    pl.col(k).eq_missing(df.get_column(c))
                    for k, c in zip(self._key_cols, st.left_keys, strict=True)
                )
            ).to_series()
            wrong = (rows >= 0) & ~same.to_numpy()
            if wrong.any():  # an unknown key shares a known key's hash: no match
                rows[wrong] = -1
                if st.how == "inner":
                    df, rows = df.filter(~wrong), rows[~wrong]
                right = _gather(self._table(), rows)
        return self._assemble(df, right, df.height)

    def snapshot(self) -> dict[str, pa.Table]:
        out = self._base_snapshot()
        table = self._table()
        used = np.flatnonzero(self.rowmap >= 0)
        rows = table[self.rowmap[used]] if used.size else table.clear()
        out["table"] = rows.with_columns(pl.Series(_KID, used.astype(np.int32))).to_arrow()
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        self._base_restore(state, ["table"])
        table = pl.DataFrame(state["table"])
        kid = table.get_column(_KID).to_numpy().astype(np.int64)
        self.rowmap = np.full(max(1024, self.n_keys), -1, np.int64)
        self.rowmap[kid] = np.arange(kid.size)
        self.payload = table.drop(_KID)
        self._refresh_dense()
        self._frames = []
