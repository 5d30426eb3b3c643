"""Row-wise steps over one batch: Polars expressions, renames, explode, map_batches, head,
row index."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from vstream.errors import PipelineError, VStreamError
from vstream.ops.base import MAX_WM, Chunk, Operator

if TYPE_CHECKING:
    from vstream.plan.nodes import StepKind, StepNode

__all__ = [
    "ConcatOp",
    "DeadLetterOp",
    "HeadOp",
    "RowIndexOp",
    "StatelessOp",
    "build_stateless",
    "filter_frame",
    "select_step",
    "step_function",
    "with_columns_step",
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
    if kept == 0 or df.width == 0:
        return df.clear()
    cols = [s.filter(mask) for s in df.iter_columns()]
    # hstack onto the first column: ~2.4 µs against ~8.5 µs for pl.DataFrame(cols) (9 columns;
    # filter_frame over 153 telemetry batches of 65,536 rows: 51.5 -> 49.1 ms, best of 31)
    return cols[0].to_frame().hstack(cols[1:])


def with_columns_step(
    exprs: list[pl.Expr], *, sequential: bool | None = None
) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The per-batch function of ``with_columns(exprs)``: sequential on a one-thread pool.

    With several expressions ``DataFrame.with_columns`` evaluates them in parallel on
    Polars' pool, and the calling thread is not one of the pool's, so even a one-thread
    pool costs a hand-off per call (~70-90 µs, more than the work on a micro-batch).
    ``with_columns_seq`` is the same query run in the calling thread. With one thread
    nothing can run in parallel anyway, so it is used then: 65,536 filtered telemetry
    rows, 2 expressions, ~150-160 -> ~75-80 µs a batch; 10 M rows in such batches,
    filter + with_columns, 92.7 -> 83.8 ms (best of 15 alternating rounds). A larger pool
    keeps the parallel path, which wins on large batches (1 M rows, 2 threads, 4
    expressions: ~1.6 ms against ~2.2 ms sequential). The pool size is fixed once Polars
    has run a query, as it has when a step is built (schema inference). ``sequential``
    overrides the choice.
    """
    if sequential is None:
        sequential = pl.thread_pool_size() == 1
    if sequential:
        return lambda df: df.with_columns_seq(exprs)
    return lambda df: df.with_columns(exprs)


def select_step(
    exprs: list[pl.Expr], *, sequential: bool | None = None
) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The per-batch function of ``select(exprs)``: ``select_seq`` on a one-thread pool,
    for the reason given in :func:`with_columns_step`."""
    if sequential is None:
        sequential = pl.thread_pool_size() == 1
    if sequential:
        return lambda df: df.select_seq(exprs)
    return lambda df: df.select(exprs)


def step_function(
    kind: StepKind,
    label: str,
    *,
    exprs: Sequence[pl.Expr] = (),
    columns: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    function: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    options: Mapping[str, bool] | None = None,
) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The per-batch function of a stateless step, from what the user asked: the one
    evaluation of every step, used to infer its schema when the step is built and to run
    it (:func:`build_stateless`).

    Examples
    --------
    >>> from vstream.ops.stateless import step_function
    >>> import polars as pl
    >>> fn = step_function("filter", "filter(x > 1)", exprs=[pl.col("x") > 1])
    >>> fn(pl.DataFrame({"x": [1, 2, 3]}))["x"].to_list()
    [2, 3]
    """
    if kind == "filter":
        predicate = pl.all_horizontal(exprs) if len(exprs) > 1 else exprs[0]
        return lambda df: filter_frame(df, predicate)
    if kind == "with_columns":
        run = with_columns_step(list(exprs))
        if not (options or {}).get("per_column"):
            return run
        # one expression per replaced column (StepNode's ``per_column``): projection
        # pushdown may leave out a column no step below reads, and its expression with it
        reads = [frozenset(e.meta.root_names()) for e in exprs]

        def present(df: pl.DataFrame) -> pl.DataFrame:
            have = set(df.columns)
            kept = [e for e, r in zip(exprs, reads, strict=True) if r <= have]
            return run(df) if len(kept) == len(reads) else with_columns_step(kept)(df)

        return present
    if kind == "select":
        return select_step(list(exprs))
    if kind == "drop":
        gone = list(columns)
        return lambda df: df.drop(gone)
    if kind == "rename":
        renamed = dict(mapping or {})
        return lambda df: df.rename(renamed)
    if kind == "explode":
        exploded = list(columns)
        # only the flags given: Polars versions differ in which explode takes
        flags = dict(options or {})
        return lambda df: df.explode(exploded, **flags)
    if kind == "map_batches":
        if function is None:
            msg = f"{label}: a map_batches step without its function"
            raise PipelineError(msg)
        fn = function

        def checked(df: pl.DataFrame) -> pl.DataFrame:
            res = fn(df)
            if not isinstance(res, pl.DataFrame):
                msg = f"{label} must return a polars.DataFrame, got {type(res).__name__}"
                raise PipelineError(msg)
            return res

        return checked
    msg = f"{label}: unknown kind of stateless step {kind!r}"
    raise PipelineError(msg)


def build_stateless(node: StepNode) -> StatelessOp:
    """The operator that runs a stateless step of the logical plan.

    Examples
    --------
    >>> from vstream.ops.stateless import Chunk
    >>> from vstream.ops.stateless import build_stateless
    >>> import polars as pl
    >>> import vstream as vs
    >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2]})).with_columns(y=pl.col("x") * 2)
    >>> op = build_stateless(s._node)
    >>> op.name, op.on_batch(0, Chunk(pl.DataFrame({"x": [5]})))[0].df.rows()
    ('with_columns(y=[(col("x")) * (dyn int: 2)])', [(5, 10)])
    """
    fn = step_function(
        node.kind,
        node.label,
        exprs=node.exprs,
        columns=node.columns,
        mapping=node.mapping,
        function=node.function,
        options=node.options,
    )
    # a map_batches function may return other columns than on the empty frame
    return StatelessOp(node.label, fn, node.schema if node.kind == "map_batches" else None)


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


class RowIndexOp(Operator):
    """Adds the column ``name`` first: the rows' positions in the order they pass, from
    ``offset`` (Polars' ``with_row_index`` over the whole stream). The next position is
    its state, so a run restored from a checkpoint numbers on where it stood.

    With ``split_column`` the positions count per source split (each from ``offset``)
    and that column, second, holds the split's name; the state is the next position of
    each split, by name."""

    def __init__(
        self, name: str, column: str, offset: int, split_column: str | None = None
    ) -> None:
        super().__init__(name)
        self._column = column
        self._offset = offset
        self._next = offset
        self._split_column = split_column
        self.names_splits = split_column is not None
        self._names: dict[int, str] = {}
        self._next_of: dict[str, int] = {}

    def split_named(self, split: int, name: str) -> None:
        self._names[split] = name

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        split = None
        if self._split_column is None:
            start = self._next
        else:
            split = self._names.get(chunk.split)
            if split is None:
                msg = f"{self.name}: a batch of split {chunk.split}, which the run never named"
                raise StepError(msg)
            start = self._next_of.get(split, self._offset)
        try:
            df = chunk.df.with_row_index(self._column, offset=start)
        except Exception as exc:  # beyond Polars' index type (UInt32 unless built for u64)
            msg = f"{self.name} failed at row {start}: {exc}"
            raise StepError(msg) from exc
        if split is None:
            self._next += chunk.df.height
        else:
            self._next_of[split] = start + chunk.df.height
            column = self._split_column
            assert column is not None  # a split name is looked up only with a split column
            df.insert_column(
                1, pl.repeat(split, df.height, dtype=pl.String, eager=True).alias(column)
            )
        return [Chunk(df, chunk.split)] if df.height else []

    def snapshot(self) -> dict[str, pa.Table]:
        if self._split_column is not None:
            names = sorted(self._next_of)
            return {
                "row_index": pa.table(
                    {
                        "split": pa.array(names, pa.string()),
                        "next": pa.array([self._next_of[n] for n in names], pa.int64()),
                    }
                )
            }
        return {"row_index": pa.table({"next": pa.array([self._next], pa.int64())})}

    def restore(self, state: dict[str, pa.Table]) -> None:
        want = ["next"] if self._split_column is None else ["split", "next"]
        table = state.get("row_index")
        if set(state) != {"row_index"} or table is None or table.column_names != want:
            msg = f"{self.name}: expected a snapshot with the table 'row_index' (columns {want})"
            raise VStreamError(msg)
        values = table.column("next").to_pylist()
        if not all(isinstance(v, int) and v >= 0 for v in values):
            msg = f"{self.name}: the snapshot's next row indexes are {values!r}, not ints >= 0"
            raise VStreamError(msg)
        if self._split_column is None:
            if len(values) != 1:
                msg = f"{self.name}: the snapshot holds {len(values)} next row indexes, not one"
                raise VStreamError(msg)
            self._next = values[0]
            return
        names = table.column("split").to_pylist()
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            msg = f"{self.name}: the snapshot's split names are not distinct strings"
            raise VStreamError(msg)
        self._next_of = dict(zip(names, values, strict=True))


class ConcatOp(Operator):
    """The union of several inputs; its watermark is the minimum of theirs."""

    def __init__(self, name: str, n_inputs: int) -> None:
        self.n_inputs = n_inputs
        super().__init__(name)

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        return [chunk]


class DeadLetterOp(Operator):
    """The dead-letter branch: its rows arrive as side output of the steps upstream."""

    collects_side = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.pending: list[pl.DataFrame] = []

    def collect(self, frames: list[pl.DataFrame]) -> None:
        self.pending.extend(frames)

    def has_pending(self) -> bool:
        return bool(self.pending)

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
