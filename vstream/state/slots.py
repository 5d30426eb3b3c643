"""Struct-of-arrays aggregate state for windows (and joins later).

Aggregate fields are two matrices, ``F`` (float64) and ``I`` (int64), one row per field
and one column per slot; the kernels in :mod:`vstream.kernels.aggregate` update them. The
window operator snapshots the live columns as Arrow tables.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np
import pyarrow as pa

from vstream.errors import CheckpointError

__all__ = ["SlotStore", "StateTable", "grown", "grown_fields"]


class SlotStore:
    """Struct-of-arrays aggregate state, grown by doubling."""

    def __init__(self, nf: int, ni: int, init_f: np.ndarray, init_i: np.ndarray) -> None:
        self.cap = 0
        self.F = np.zeros((nf, 0), np.float64)
        self.I = np.zeros((ni, 0), np.int64)
        self.init_f = init_f
        self.init_i = init_i

    def grow_arrays(self, need: int) -> int:
        """Make room for ``need`` slots; returns the new capacity (0: unchanged)."""
        if need <= self.cap:
            return 0
        cap = max(1024, self.cap)
        while cap < need:
            cap *= 2
        self.F, self.I, self.cap = grown_fields(self.F, cap), grown_fields(self.I, cap), cap
        return cap


def grown(a: np.ndarray, cap: int, fill: int = 0) -> np.ndarray:
    out = np.full(cap, fill, a.dtype)
    out[: a.shape[0]] = a
    return out


def grown_fields(a: np.ndarray, cap: int) -> np.ndarray:
    """``a`` (fields x slots) with room for ``cap`` slots, the new ones zero."""
    out = np.zeros((a.shape[0], cap), a.dtype)
    out[:, : a.shape[1]] = a
    return out


class StateTable:
    """The columns of one state table read back from a checkpoint, checked before any
    kernel indexes with them (DESIGN.md "Untrusted input": a checkpoint is untrusted,
    and numba does not check bounds, so a key id past the key index or a slot number
    past the arrays would write into whatever memory follows them). Each check is one
    vectorised numpy pass over the column: O(state). A value that fails raises
    :class:`CheckpointError` naming the step, the table, the column and what is wrong.

    Examples
    --------
    >>> from vstream.state.slots import CheckpointError
    >>> from vstream.state.slots import StateTable
    >>> import pyarrow as pa
    >>> t = StateTable("window 'w'", {"slots": pa.table({"key": [0, 7]})}, "slots")
    >>> try:
    ...     t.ints("key", 0, 4, "ids of the 5 keys")
    ... except CheckpointError as e:
    ...     print(str(e).split("; ")[0])
    window 'w': restoring table 'slots', column 'key': 7 is above 4 (ids of the 5 keys)
    """

    def __init__(self, step: str, tables: dict[str, pa.Table], name: str) -> None:
        self.step, self.name = step, name
        if name not in tables:
            msg = (
                f"{step}: the checkpoint lacks the state table {name!r} (it has "
                f"{sorted(tables)}); it was damaged or written by another pipeline"
            )
            raise CheckpointError(msg)
        self.table = tables[name]

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    def refuse(self, column: str, what: str) -> NoReturn:
        msg = (
            f"{self.step}: restoring table {self.name!r}, column {column!r}: {what}; the "
            "checkpoint was damaged or edited"
        )
        raise CheckpointError(msg)

    def _wrong_type(self, column: str, col: pa.ChunkedArray, want: str) -> NoReturn:
        text = ", ".join(f"{f.name}: {f.type}" for f in self.table.schema)
        text = text if len(text) <= 200 else text[:197] + "..."
        msg = (
            f"{self.step}: restoring table {self.name!r} is {{{text}}}: column {column!r} "
            f"is {col.type}, not {want}; the checkpoint was damaged or edited"
        )
        raise CheckpointError(msg)

    def _column(self, column: str) -> pa.ChunkedArray:
        if column not in self.table.column_names:
            self.refuse(column, f"missing (the table has {self.table.column_names})")
        col = self.table.column(column)
        if col.null_count:
            self.refuse(column, f"{col.null_count} null value(s) where none can be")
        return col

    def ints(
        self, column: str, lo: int | None = None, hi: int | None = None, why: str = ""
    ) -> np.ndarray:
        """The column as int64, each value in ``[lo, hi]`` (``why`` says what it indexes)."""
        col = self._column(column)
        if not pa.types.is_integer(col.type):
            self._wrong_type(column, col, "integers")
        values = np.asarray(col.to_numpy())
        if values.dtype == np.uint64 and values.size and int(values.max()) > 2**63 - 1:
            self.refuse(column, f"{int(values.max())} does not fit int64")
        values = values.astype(np.int64, copy=False)
        reason = f" ({why})" if why else ""
        if values.size and lo is not None and (low := int(values.min())) < lo:
            self.refuse(column, f"{low} is below {lo}{reason}")
        if values.size and hi is not None and (high := int(values.max())) > hi:
            self.refuse(column, f"{high} is above {hi}{reason}")
        return values

    def bools(self, column: str) -> np.ndarray:
        col = self._column(column)
        if not pa.types.is_boolean(col.type):
            self._wrong_type(column, col, "booleans")
        return np.asarray(col.to_numpy())

    def floats(self, column: str) -> np.ndarray:
        col = self._column(column)
        if not pa.types.is_floating(col.type):
            self._wrong_type(column, col, "floats")
        return np.asarray(col.to_numpy())

    def distinct(self, columns: dict[str, np.ndarray], what: str) -> None:
        """Refuse two rows with the same values in ``columns`` (int64 arrays)."""
        n = next(iter(columns.values())).size
        if n < 2:
            return
        # one int64 per row where the columns' spans allow (a sort of one array: ~2x
        # faster than a lexsort), else a lexsort
        folded = np.zeros(n, np.int64)
        room = 1
        for v in columns.values():
            lo, span = int(v.min()), int(v.max()) - int(v.min()) + 1
            room *= span
            if room >= 1 << 62:
                break
            folded = folded * span + (v - lo)
        if room < 1 << 62:
            order = np.argsort(folded, kind="stable")
            same = folded[order[1:]] == folded[order[:-1]]
        else:
            order = np.lexsort(list(columns.values())[::-1])
            same = np.ones(n - 1, np.bool_)
            for v in columns.values():
                s = v[order]
                same &= s[1:] == s[:-1]
        if same.any():
            i = order[int(np.flatnonzero(same)[0])]
            row = {c: int(v[i]) for c, v in columns.items()}
            self.refuse(", ".join(columns), f"two rows hold {row} ({what})")
