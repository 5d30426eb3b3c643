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

from vstream.ops.base import MIN_WM, Operator
from vstream.plan.joins import JoinSetup
from vstream.state.join import JoinState
from vstream.state.key_index import KeyIndex
from vstream.state.slots import StateTable

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "ROW",
    "JoinOperator",
    "clamp",
    "gather_rows",
    "key_frame",
    "new_key_index",
    "null_rows",
    "payload_of",
    "side_schemas",
    "take_rows",
]

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def clamp(x: int) -> int:
    return max(I64_MIN, min(I64_MAX, x))


def new_key_index(setup: JoinSetup) -> KeyIndex | None:
    """The key index of a join (None: it has no key columns)."""
    return KeyIndex(setup.key_schema) if len(setup.key_schema) else None


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
    #: what a checkpoint holds (set by each join)
    state: JoinState

    def __init__(self, name: str, setup: JoinSetup) -> None:
        super().__init__(name)
        self.setup = setup
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
        """The state's tables and ``meta``: the operator's progress, one row, a column
        per field (``in_wm.left``, ``late_events.right``, ... and ``extra``)."""
        out = self.state.snapshot()
        meta = {
            "in_wm.left": self._in_wm[0],
            "in_wm.right": self._in_wm[-1],
            "out_wm": self._out_wm,
            "late_events.left": self.late_by_input[0],
            "late_events.right": self.late_by_input[1],
            "peak_state_rows": self.peak_state_rows,
            **extra,
        }
        out["meta"] = pa.table({k: pa.array([v], pa.int64()) for k, v in meta.items()})
        return out

    def _base_restore(self, state: dict[str, pa.Table], extra: list[str]) -> dict[str, int]:
        """Take back a :meth:`_base_snapshot`, checked first (DESIGN.md "Untrusted
        input"): a bad table raises :class:`~vstream.errors.CheckpointError`. Returns
        the ``extra`` fields of ``meta``."""
        step = f"join step {self.name!r}"
        check = StateTable(step, state, "meta")
        if check.rows != 1:
            check.refuse("out_wm", f"{check.rows} rows, not 1")
        names = ["in_wm.left", "in_wm.right", "out_wm", "peak_state_rows", *extra]
        meta = {c: int(check.ints(c)[0]) for c in names}
        late = [int(check.ints(f"late_events.{s}", 0)[0]) for s in ("left", "right")]
        self.state.restore(state, step)
        self._in_wm[0] = meta["in_wm.left"]
        self._in_wm[-1] = meta["in_wm.right"]
        self._out_wm = meta["out_wm"]
        self.late_by_input = late
        self.late_events = late[0] + late[1]
        self.peak_state_rows = meta["peak_state_rows"]
        return meta

    def _compact_keys(self) -> None:
        """Forget the keys no kept row has (:meth:`JoinState.compact_keys`)."""
        if self.state.compact_keys(self.state_rows()):
            self._keys_renumbered()

    def _keys_renumbered(self) -> None:
        """Drop whatever caches key ids (sorted indexes, cursors)."""

    @property
    def keys(self) -> KeyIndex | None:
        """The key index both inputs share (None: the join has no key columns)."""
        return self.state.keys

    @property
    def n_keys(self) -> int:
        return self.state.n_keys

    def state_rows(self) -> int:
        raise NotImplementedError

    def late_counts(self) -> tuple[int, ...]:
        return tuple(self.late_by_input)
