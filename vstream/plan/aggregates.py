"""Aggregation expressions -> incremental specs (chunk / combine / finalize).

``.agg(...)`` takes Polars expressions. Each is read through
``Expr.meta.serialize(format="json")``; every aggregation inside it (``pl.len()``,
``pl.col("x").mean()``, ...) becomes a *leaf*: a kernel kind with its state fields, which
the window kernels update per batch (chunk), merge across panes and sessions (combine) and
turn into a column when a window fires (finalize, in :mod:`vstream.ops.window`). What is
around the leaves (``.alias``, ``/``, ``.name.suffix``) is evaluated by Polars on the
finalized leaf columns, so its names and dtypes are exactly Polars'.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from vstream._dtypes import integer_like
from vstream.errors import ColumnNotFoundError, ExpressionError
from vstream.kernels.aggregate import (
    COUNT,
    COUNTED,
    FIELDS,
    FIRST_F,
    FIRST_I,
    LAST_F,
    LAST_I,
    LEN,
    MAX_F,
    MAX_I,
    MEAN,
    MIN_F,
    MIN_I,
    NULLS,
    NUNIQUE,
    SUM_F,
    SUM_I,
    VAR,
)
from vstream.plan.expressions import expression_tree, non_row_wise_parts

#: the kernel kinds re-exported: the window operator reads them beside the specs
__all__ = [
    "COUNT",
    "COUNTED",
    "FIELDS",
    "FIRST_F",
    "FIRST_I",
    "LAST_F",
    "LAST_I",
    "LEN",
    "MAX_F",
    "MAX_I",
    "MEAN",
    "MIN_F",
    "MIN_I",
    "NULLS",
    "NUNIQUE",
    "SUM_F",
    "SUM_I",
    "VAR",
    "AggLeaf",
    "AggPlan",
    "plan_aggregations",
]


_INCREMENTAL = ("Len", "Count", "Sum", "Mean", "Min", "Max", "First", "Last", "Var", "Std")
#: aggregations that skip nulls: over ``x.filter(pred)`` they equal those over
#: ``pl.when(pred).then(x)`` (a row-wise input column, nulls where pred does not hold)
_MASKABLE = ("Count", "Sum", "Mean", "Min", "Max", "Var", "Std")
_UDF_FIX = (
    "a window aggregation runs as incremental kernels and cannot call it: apply the "
    "function with Stream.map_batches(fn) before .window(...) (to compute an input column) "
    "or after .agg(...) (to transform the results)"
)
_SUGGEST = (
    "pl.len(), count, sum, mean, min, max, first, last, var, std, n_unique (count to std "
    "also of x.filter(pred)), their aliases and arithmetic on them"
)


@dataclass(frozen=True, slots=True)
class AggLeaf:
    """One incremental aggregation: its kernel kind, its input and its state fields."""

    kind: int
    name: str  # the leaf's temporary column name in the finalize frame
    input: str | None  # the temporary input column (None for pl.len())
    dtype: pl.DataType  # the leaf's result dtype, as Polars gives it
    input_dtype: pl.DataType | None
    ddof: int = 1
    std: bool = False
    f0: int = -1  # first float field
    i0: int = -1  # first int field
    # first / last of strings and other non-numeric values keep an id into a value
    # store of the operator (compacted to the live slots after every batch)
    stored: bool = False
    n0: int = -1  # the int field counting the input's nulls (kinds in COUNTED)
    # a leaf only other leaves read (the slot's rows, an input's nulls): not an output
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class AggPlan:
    """What ``.agg(...)`` computes: input projections, leaves, and the final expressions."""

    inputs: dict[str, pl.Expr]  # temporary input column -> row-wise expression
    leaves: list[AggLeaf]
    final: list[pl.Expr]  # over the leaf columns; one per output column
    schema: pl.Schema  # output aggregate columns
    n_float: int
    n_int: int
    len_field: int = -1  # the int field of the slot's rows (the LEN leaf), if any
    #: the leaves whose columns the final expressions read (not the hidden ones)
    outputs: tuple[AggLeaf, ...] = ()

    @property
    def float_columns(self) -> list[str]:
        """Input columns read as float64 (in this order in the kernels' float matrix)."""
        return _ordered({lf.input for lf in self.leaves if lf.input and reads_float(lf.kind)})

    @property
    def leaves_by_input(self) -> dict[str, pl.DataType]:
        """The dtype of every input column."""
        return {lf.input: lf.input_dtype for lf in self.leaves if lf.input and lf.input_dtype}

    @property
    def stored_columns(self) -> list[str]:
        """Input columns whose first / last values live in a value store."""
        return _ordered({lf.input for lf in self.leaves if lf.stored})

    @property
    def int_columns(self) -> list[str]:
        """Input columns read as int64 (physical values)."""
        return _ordered(
            {
                lf.input
                for lf in self.leaves
                if lf.input and not reads_float(lf.kind) and lf.kind not in (COUNT, NUNIQUE, NULLS)
            }
        )


def _ordered(names: set[str | None]) -> list[str]:
    return sorted(n for n in names if n is not None)


def reads_float(kind: int) -> bool:
    return kind in (SUM_F, MEAN, MIN_F, MAX_F, FIRST_F, LAST_F, VAR)


def _deserialize(node: Any) -> pl.Expr:
    return pl.Expr.deserialize(io.StringIO(json.dumps(node)), format="json")


def _empty_eval(schema: pl.Schema, expr: pl.Expr) -> pl.Schema:
    return pl.DataFrame(schema=schema).select(expr).schema


class _Planner:
    def __init__(self, schema: pl.Schema, step: str) -> None:
        self.schema = schema
        self.step = step
        self.inputs: dict[str, pl.Expr] = {}
        self._input_keys: dict[str, str] = {}
        self._input_dtypes: dict[str, pl.DataType] = {}
        self.leaves: list[AggLeaf] = []
        self._leaf_keys: dict[str, str] = {}
        self._nulls: dict[str, int] = {}  # input -> its NULLS field
        self.n_float = 0
        self.n_int = 0

    def fail(self, expr: pl.Expr, why: str) -> ExpressionError:
        return ExpressionError(
            f"{self.step}: cannot compute {expr} incrementally: {why}. Window aggregations "
            f"support {_SUGGEST}; for anything else collect the window's rows with "
            "map_batches or aggregate in Polars after collect()"
        )

    # ------------------------------------------------------------------ leaves
    def _input(self, node: Any, expr: pl.Expr) -> tuple[str, pl.DataType]:
        key = json.dumps(node, sort_keys=True)
        if key not in self._input_keys:
            e = _deserialize(node)
            culprits = non_row_wise_parts(node)
            if "Expr.filter" in culprits:
                why = (
                    f"its input {e} filters rows inside an expression; Expr.filter works "
                    "directly under sum, mean, min, max, count, var or std, as in "
                    "pl.col('x').filter(pred).mean(), or mask the value instead: "
                    "pl.when(pred).then(<value>).mean()"
                )
                raise self.fail(expr, why)
            if culprits:
                why = f"its input {e} is not row-wise (it uses {', '.join(culprits)})"
                raise self.fail(expr, why)
            name = f"__vs_in{len(self._input_keys)}"
            try:
                dtype = _empty_eval(self.schema, e.alias(name))[name]
            except pl.exceptions.PolarsError as exc:
                why = f"its input {e} fails on the stream's schema ({exc})"
                raise self.fail(expr, why) from None
            self._input_keys[key] = name
            self.inputs[name] = e.alias(name)
            self._input_dtypes[name] = dtype
        name = self._input_keys[key]
        return name, self._input_dtypes[name]

    def leaf(self, node: Any, expr: pl.Expr) -> dict[str, str]:
        """Register the aggregation ``node`` (a JSON dict) and return its replacement."""
        key = json.dumps(node, sort_keys=True)
        if key in self._leaf_keys:
            name = self._leaf_keys[key]
            # a hidden leaf asked for by the user (pl.len() after a mean) is an output now
            self.leaves = [
                lf if lf.name != name else dataclasses.replace(lf, hidden=False)
                for lf in self.leaves
            ]
            return {"Column": name}
        name = f"__vs_agg{len(self.leaves)}"
        leaf_expr = _deserialize(node)
        try:
            dtype = _empty_eval(self.schema, leaf_expr.alias(name))[name]
        except pl.exceptions.PolarsError as exc:
            raise self.fail(expr, f"Polars rejects it on the stream's schema ({exc})") from None
        if node == "Len":
            kind, inp, in_dtype, ddof, std = LEN, None, None, 1, False
        else:
            ((op, arg),) = node["Agg"].items()
            ddof, std = 1, False
            if op in ("Var", "Std"):
                arg, ddof = arg
                std = op == "Std"
            elif op in ("Min", "Max", "Count"):
                if op == "Count" and arg.get("include_nulls"):
                    op = "Len"
                arg = arg["input"]
            if op not in (*_INCREMENTAL, "NUnique"):
                raise self.fail(expr, f"{op} is not an incremental aggregation")
            if isinstance(arg, dict) and "Filter" in arg:
                arg = self._masked(op, arg, expr)
            inp, in_dtype = self._input(arg, expr)
            kind = self._kind(op, in_dtype, expr)
        n0 = -1
        if kind in COUNTED:
            assert inp is not None
            n0 = self._nulls_field(inp, in_dtype)
            name = f"__vs_agg{len(self.leaves)}"  # after the hidden leaves it may add
        nf, ni = FIELDS[kind]
        stored = kind in (FIRST_I, LAST_I) and not integer_like(in_dtype)
        leaf = AggLeaf(
            kind, name, inp, dtype, in_dtype, ddof, std, self.n_float, self.n_int, stored, n0
        )
        self.n_float += nf
        self.n_int += ni
        self.leaves.append(leaf)
        self._leaf_keys[key] = name
        return {"Column": name}

    def _masked(self, op: str, node: Any, expr: pl.Expr) -> Any:
        """The input of an aggregation of ``x.filter(pred)`` (Polars: over the rows where
        ``pred`` holds) as ``pl.when(pred).then(x)``, for the aggregations that skip
        nulls (a null predicate drops the row in both)."""
        value, mask = node["Filter"]["input"], _deserialize(node["Filter"]["by"])
        if isinstance(value, dict) and "Filter" in value:
            # Polars evaluates the second predicate on the unfiltered rows (a shape error)
            inner = _deserialize(value["Filter"]["by"])
            why = f"two filters in a row: combine their predicates, .filter(({inner}) & ({mask}))"
            raise self.fail(expr, why)
        if op not in _MASKABLE:
            name = {"Len": "len", "NUnique": "n_unique"}.get(op, op.lower())
            instead = (
                f"count the rows where it holds with ({mask}).sum()"
                if op == "Len"
                else "filter the stream before .window(...) if every aggregate is over the "
                "same rows"
            )
            why = (
                f"{name} of a filtered column is not supported in windows (Expr.filter works "
                f"under {', '.join(o.lower() for o in _MASKABLE)}); {instead}"
            )
            raise self.fail(expr, why)
        culprits = non_row_wise_parts(node["Filter"]["by"])
        if culprits:
            why = f"the filter predicate {mask} is not row-wise (it uses {', '.join(culprits)})"
            raise self.fail(expr, why)
        masked = pl.when(mask).then(_deserialize(value))
        return json.loads(masked.meta.serialize(format="json"))

    def _nulls_field(self, inp: str, in_dtype: pl.DataType | None) -> int:
        """The int field counting ``inp``'s nulls, shared by every counted leaf of it;
        the slot's rows (a LEN leaf, hidden unless asked for) come with the first."""
        if inp not in self._nulls:
            if json.dumps("Len") not in self._leaf_keys:
                self._hidden(LEN, "Len", None, pl.UInt32(), None)
            self._nulls[inp] = self.n_int
            self._hidden(NULLS, f"nulls {inp}", inp, pl.UInt32(), in_dtype)
        return self._nulls[inp]

    def _hidden(
        self, kind: int, key: str, inp: str | None, dtype: pl.DataType, in_dtype: Any
    ) -> None:
        name = f"__vs_agg{len(self.leaves)}"
        leaf = AggLeaf(
            kind, name, inp, dtype, in_dtype, f0=self.n_float, i0=self.n_int, hidden=True
        )
        self.n_float += FIELDS[kind][0]
        self.n_int += FIELDS[kind][1]
        self.leaves.append(leaf)
        self._leaf_keys[json.dumps(key, sort_keys=True)] = name

    def _kind(self, op: str, dtype: pl.DataType, expr: pl.Expr) -> int:
        numeric = dtype.is_numeric() or dtype == pl.Boolean
        int_like = integer_like(dtype)
        if op == "Len":
            return LEN
        if op == "Count":
            return COUNT
        if op == "NUnique":
            return NUNIQUE
        if op in ("Sum", "Mean", "Var", "Std") and not (numeric or (op == "Mean" and int_like)):
            raise self.fail(expr, f"{op.lower()} needs a numeric column, the input is {dtype}")
        if op == "Sum":
            return SUM_F if dtype.is_float() else SUM_I
        if op == "Mean":
            return MEAN
        if op in ("Var", "Std"):
            return VAR
        if op in ("First", "Last") and not (dtype.is_float() or int_like):
            return FIRST_I if op == "First" else LAST_I  # values kept in a store
        if not (dtype.is_float() or int_like):
            raise self.fail(
                expr,
                f"{op.lower()} of a {dtype} column is not supported in windows yet "
                "(numeric, boolean and temporal columns are)",
            )
        table = {
            "Min": (MIN_F, MIN_I),
            "Max": (MAX_F, MAX_I),
            "First": (FIRST_F, FIRST_I),
            "Last": (LAST_F, LAST_I),
        }
        f, i = table[op]
        return f if dtype.is_float() else i

    # ------------------------------------------------------------------ walking
    def rewrite(self, node: Any, expr: pl.Expr, function: str | None = None) -> Any:
        """Replace every aggregation under ``node`` by a column of its result."""
        if node == "Len" or (isinstance(node, dict) and "Agg" in node):
            return self.leaf(node, expr)
        if isinstance(node, dict):
            if set(node) & {"Column", "Selector", "Columns", "Nth", "DtypeColumn"}:
                if function is not None:
                    why = f"{function} is not an incremental aggregation"
                else:
                    why = (
                        f"{_deserialize(node)} is used outside an aggregation (in a window, "
                        "every column must be aggregated, e.g. pl.col(...).first())"
                    )
                raise self.fail(expr, why)
            if "Window" in node or "Over" in node:
                raise self.fail(expr, "window functions (.over) do not apply to windows")
            if "Function" in node and isinstance(node["Function"], dict):
                fn = node["Function"].get("function")
                function = next(iter(fn)) if isinstance(fn, dict) else str(fn)
            return {k: self.rewrite(v, expr, function) for k, v in node.items()}
        if isinstance(node, list):
            return [self.rewrite(v, expr, function) for v in node]
        return node


def _expand(expr: pl.Expr, schema: pl.Schema) -> list[pl.Expr]:
    """One expression per output column (``pl.col("a", "b").mean()`` is two)."""
    if not expr.meta.has_multiple_outputs():
        return [expr]
    tree = json.loads(expr.meta.serialize(format="json"))
    selectors: list[Any] = []

    def find(node: Any) -> None:
        if isinstance(node, dict):
            if "Selector" in node or "Columns" in node or "DtypeColumn" in node:
                selectors.append(node)
                return
            for v in node.values():
                find(v)
        elif isinstance(node, list):
            for v in node:
                find(v)

    find(tree)
    if len(selectors) != 1:
        return [expr]  # let the planner explain what it cannot do
    sel = selectors[0]
    names = pl.DataFrame(schema=schema).select(_deserialize(sel)).columns

    def subst(node: Any, name: str) -> Any:
        if node is sel:
            return {"Column": name}
        if isinstance(node, dict):
            return {k: subst(v, name) for k, v in node.items()}
        if isinstance(node, list):
            return [subst(v, name) for v in node]
        return node

    return [_deserialize(subst(tree, n)) for n in names]


def plan_aggregations(
    exprs: list[pl.Expr], schema: pl.Schema, step: str, reserved: list[str]
) -> AggPlan:
    """Map ``.agg(...)`` expressions to incremental leaves, or refuse with a clear error.

    Examples
    --------
    >>> from vstream.plan.aggregates import plan_aggregations
    >>> import polars as pl
    >>> plan = plan_aggregations(
    ...     [pl.len(), pl.col("x").mean(), (pl.col("x").sum() / pl.len()).alias("avg")],
    ...     pl.Schema({"x": pl.Float64}),
    ...     "agg",
    ...     [],
    ... )
    >>> [leaf.kind for leaf in plan.outputs], list(plan.schema)
    ([0, 4, 2], ['len', 'x', 'avg'])
    """
    if not exprs:
        msg = f"{step}: give at least one aggregation, e.g. .agg(pl.len())"
        raise ExpressionError(msg)
    planner = _Planner(schema, step)
    final: list[pl.Expr] = []
    out: dict[str, pl.DataType] = {}
    for expr in exprs:
        # before anything evaluates it: a Python function would run on the empty frame
        expression_tree(expr, step, _UDF_FIX)
        for e in _expand(expr, schema):
            try:
                out_schema = _empty_eval(schema, e)
            except pl.exceptions.ColumnNotFoundError as exc:
                msg = (
                    f"{step}: {e} refers to a column the stream lacks ({exc}); "
                    f"it has {list(schema)}"
                )
                raise ColumnNotFoundError(msg) from None
            except pl.exceptions.PolarsError as exc:
                msg = f"{step}: {e} fails on the stream's schema: {exc}"
                raise ExpressionError(msg) from None
            ((name, dtype),) = out_schema.items()
            tree = json.loads(e.meta.serialize(format="json"))
            rewritten = _deserialize(planner.rewrite(tree, e))
            final.append(rewritten.alias(name))
            if name in out or name in reserved:
                msg = (
                    f"{step}: the output column {name!r} appears twice (or clashes with a "
                    "key or window column); give it another name with .alias(...)"
                )
                raise ExpressionError(msg)
            out[name] = dtype
    lens = [lf.i0 for lf in planner.leaves if lf.kind == LEN]
    return AggPlan(
        planner.inputs,
        planner.leaves,
        final,
        pl.Schema(out),
        planner.n_float,
        planner.n_int,
        lens[0] if lens else -1,
        tuple(lf for lf in planner.leaves if not lf.hidden),
    )
