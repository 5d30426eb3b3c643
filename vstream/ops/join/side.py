"""One join input's kept rows (symmetric and as-of joins)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.kernels.join import sort_by_key_time
from vstream.ops.join.base import BITS_COL, I64_MAX, KID_COL, NEXT_COL, TIME_COL
from vstream.state.slots import grown


class JoinSide:
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
        self.low = I64_MAX  # smallest event time among live rows
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
            pl.Series(TIME_COL, self.t[:m]),
            pl.Series(KID_COL, self.kid[:m]),
            pl.Series(BITS_COL, self.bits[:m]),
            pl.Series(NEXT_COL, self.next_j[:m]),
        ).to_arrow()

    @classmethod
    def from_table(cls, schema: pl.Schema, table: pa.Table, n_keys: int) -> JoinSide:
        """A side holding the rows of a :meth:`to_table` snapshot."""
        df = pl.DataFrame(table)
        side = cls(schema)
        t = df.get_column(TIME_COL).to_numpy().astype(np.int64)
        kid = df.get_column(KID_COL).to_numpy().astype(np.int32)
        side.append(df.select(schema.names()), t, kid, df.get_column(BITS_COL).to_numpy())
        side.next_j[: side.n] = df.get_column(NEXT_COL).to_numpy()
        return side
