"""The shell every join operator shares: the checked config
(:class:`vstream.plan.joins.JoinSetup`), the
key index both inputs share, lateness, output assembly, the common snapshot.

Both inputs share one :class:`~vstream.state.key_index.KeyIndex` (the right side's key
columns are read under the left side's names), so a key has the same id on both sides. A
null in a key column matches nothing (as in Polars); such rows still appear, unmatched,
in outer joins.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.errors import VStreamError
from vstream.ops.base import MIN_WM, Operator
from vstream.plan.joins import JoinSetup
from vstream.state.key_index import KeyIndex

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "BITS_COL",
    "KID_COL",
    "NEXT_COL",
    "TIME_COL",
    "ROW",
    "JoinOperator",
    "clamp",
    "gather_rows",
    "key_frame",
    "null_rows",
    "payload_of",
    "side_schemas",
    "take_rows",
]

#: the columns a snapshot adds to a side's payload
TIME_COL, KID_COL, BITS_COL, NEXT_COL = "__t__", "__key_id__", "__matched__", "__next_window__"
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def clamp(x: int) -> int:
    return max(I64_MIN, min(I64_MAX, x))


def key_frame(df: pl.DataFrame, cols: list[str], names: list[str]) -> pl.DataFrame:
    keys = df.select(cols)
    return keys.rename(dict(zip(cols, names, strict=True))) if cols != names else keys


def gather_rows(df: pl.DataFrame, idx: np.ndarray) -> pl.DataFrame:
    """Rows ``idx`` of ``df``; -1 gives a row of nulls."""
    # Polars' own index type (UInt32): an Int64 index would be cast first
    if idx.size and idx.min() < 0:
        if idx.max() < 0:
            return null_rows(df.schema, idx.size)
        missing = idx < 0
        return df[pl.Series(pa.array(np.where(missing, 0, idx).astype(np.uint32), mask=missing))]
    return df[pl.Series(idx.astype(np.uint32))]


def take_rows(df: pl.DataFrame, mask: np.ndarray) -> pl.DataFrame:
    """The rows where ``mask`` is set (a gather: cheaper than ``filter`` on a numpy mask)."""
    return df[np.flatnonzero(mask)]


def null_rows(schema: pl.Schema, n: int) -> pl.DataFrame:
    return pl.DataFrame([pl.Series(c, dtype=dt).clear(n) for c, dt in schema.items()])


#: the payload of a side the output takes no column from (a right input of only key and
#: time columns): Polars frames without columns have no rows, so the rows need a column
ROW = "__row__"


def side_schemas(st: JoinSetup) -> tuple[pl.Schema, pl.Schema]:
    """The payload schema of each side (the columns the output takes from it)."""
    left = pl.Schema({c: st.schema[c] for c in st.left_out} or {ROW: pl.Boolean})
    right = pl.Schema({src: st.schema[dst] for src, dst in st.right_out} or {ROW: pl.Boolean})
    return left, right


def payload_of(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """The columns ``cols`` of ``df`` (a placeholder column when there are none)."""
    if cols:
        return df.select(cols)
    return pl.DataFrame([pl.Series(ROW, np.zeros(df.height, np.bool_))])


class JoinOperator(Operator):
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
        return self.keys.ids(key_frame(df, cols, st.left_keys), nulls_match=False)

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
