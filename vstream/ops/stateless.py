"""Row-wise steps over one batch: Polars expressions, renames, map_batches, head."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pyarrow as pa

from vstream.errors import VStreamError
from vstream.ops.base import MAX_WM, Chunk, Operator

__all__ = [
    "ConcatOp",
    "DeadLetterOp",
    "HeadOp",
    "StatelessOp",
    "filter_frame",
]


def filter_frame(df: pl.DataFrame, predicate: pl.Expr) -> pl.DataFrame:
    """``df.filter(predicate)`` (null counts as false), column by column.

    ``DataFrame.filter`` goes through the query engine, a fixed ~150 µs a call that
    weighs on micro-batches; evaluating the mask and filtering each Series skips it
    (10 M telemetry rows in 65,536-row batches, filter + with_columns: 117 -> 104 ms).
    """
    mask = df.select(predicate).to_series()
    kept = mask.sum()
    if kept == df.height:
        return df
    if kept == 0:
        return df.clear()
    return pl.DataFrame([s.filter(mask) for s in df.iter_columns()])


class StepError(VStreamError):
    """A step failed on a batch at run time."""


class StatelessOp(Operator):
    """Applies ``fn`` (a chain of Polars calls) to every batch; order and splits are kept."""

    def __init__(
        self,
        name: str,
        fn: Callable[[pl.DataFrame], pl.DataFrame],
        schema: pl.Schema | None = None,
    ) -> None:
        super().__init__(name)
        self._fn = fn
        self._schema = schema

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        try:
            df = self._fn(chunk.df)
        except Exception as exc:
            msg = f"{self.name} failed on a batch of {chunk.df.height} rows: {exc}"
            raise StepError(msg) from exc
        if self._schema is not None and df.schema != self._schema:
            msg = (
                f"{self.name} returned the schema {dict(df.schema)} but the pipeline was "
                f"built for {dict(self._schema)}; a map_batches function must always "
                "return the same columns and types"
            )
            raise StepError(msg)
        return [Chunk(df, chunk.split)] if df.height else []


class HeadOp(Operator):
    """Passes the first ``n`` rows, then ends its output (watermark +inf)."""

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name)
        self._left = n
        self.done = n == 0

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        if self._left <= 0:
            return []
        df = chunk.df.head(self._left)
        self._left -= df.height
        if self._left <= 0:
            self.done = True
        return [Chunk(df, chunk.split)] if df.height else []

    def output_watermark(self) -> int:
        return MAX_WM if self.done else self.input_watermark

    def snapshot(self) -> dict[str, pa.Table]:
        return {"head": pa.table({"remaining": pa.array([self._left], pa.int64())})}

    def restore(self, state: dict[str, pa.Table]) -> None:
        if set(state) != {"head"}:
            msg = f"{self.name}: expected a snapshot with the table 'head', got {sorted(state)}"
            raise VStreamError(msg)
        self._left = int(state["head"].column("remaining")[0].as_py())
        self.done = self._left <= 0


class ConcatOp(Operator):
    """The union of several inputs; its watermark is the minimum of theirs."""

    def __init__(self, name: str, n_inputs: int) -> None:
        self.n_inputs = n_inputs
        super().__init__(name)

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        return [chunk]


class DeadLetterOp(Operator):
    """The dead-letter branch: its rows arrive as side output of the steps upstream."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.pending: list[pl.DataFrame] = []

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        out = [Chunk(df) for df in self.pending]
        self.pending = []
        self._in_wm[port] = max(self._in_wm[port], watermark)
        # dead letters have no event time: the branch only ends with its input
        self._out_wm = MAX_WM if self._in_wm[port] == MAX_WM else self._out_wm
        return out, self._out_wm

    def snapshot(self) -> dict[str, pa.Table]:
        """Rows not yet handed on (none between two micro-batches, as the runtime hands
        them on in the same step)."""
        if not self.pending:
            return {}
        return {"pending": pl.concat(self.pending, how="vertical").to_arrow()}

    def restore(self, state: dict[str, pa.Table]) -> None:
        if set(state) - {"pending"}:
            msg = f"{self.name}: expected the table 'pending', got {sorted(state)}"
            raise VStreamError(msg)
        frame = pl.from_arrow(state["pending"]) if "pending" in state else None
        self.pending = [frame] if isinstance(frame, pl.DataFrame) and frame.height else []
