"""Build-time checks of Polars expressions: row-wise only, and the output schema."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import polars as pl
import polars.exceptions as plx

from vstream.errors import ColumnNotFoundError, ExpressionError, PipelineError

__all__ = [
    "check_row_wise",
    "expression_tree",
    "infer_schema",
    "non_row_wise_parts",
    "root_columns",
]

_WINDOW_HINT = (
    "stateless steps see one micro-batch at a time, so it would give per-batch answers; "
    "aggregate over event time with .window(...).agg(...), or use map_batches(...) if a "
    "per-batch result is really what you want"
)

# expression nodes that look at other rows
_REFUSED_NODES: dict[str, str] = {
    "Agg": "an aggregation",
    "Over": "a window function (.over)",
    "Len": "pl.len()",
    "Sort": "sort",
    "SortBy": "sort_by",
    "Gather": "gather",
    "Filter": "Expr.filter",
    "Slice": "slice/head/tail",
    "Explode": "explode",
    "Rolling": "rolling",
    "AnonymousFunction": "a Python function inside an expression",
}

# functions that look at other rows (Polars' serialized names)
_REFUSED_FUNCTIONS = frozenset(
    [
        "Diff",
        "Shift",
        "ShiftAndFill",
        "CumSum",
        "CumProd",
        "CumMin",
        "CumMax",
        "CumCount",
        "CumReduce",
        "CumFold",
        "Rank",
        "RollingExpr",
        "RollingExprBy",
        "Unique",
        "UniqueCounts",
        "ArgUnique",
        "ArgMin",
        "ArgMax",
        "ArgSort",
        "Mode",
        "Reverse",
        "FillNullWithStrategy",
        "Interpolate",
        "InterpolateBy",
        "PctChange",
        "EwmMean",
        "EwmMeanBy",
        "EwmStd",
        "EwmVar",
        "TopK",
        "TopKBy",
        "BottomK",
        "BottomKBy",
        "RLE",
        "RLEID",
        "Rle",
        "RleId",
        "GatherEvery",
        "Hist",
        "ValueCounts",
        "Entropy",
        "PeakMin",
        "PeakMax",
        "NUnique",
        "ApproxNUnique",
        "Implode",
        "IsFirstDistinct",
        "IsLastDistinct",
        "IsUnique",
        "IsDuplicated",
        "Sample",
        "SampleN",
        "SampleFrac",
        "Shuffle",
        "SearchSorted",
        "Skew",
        "Kurtosis",
        "Corr",
        "Cov",
        "Product",
        "Median",
        "Quantile",
        "Repeat",
        "Index",
        "IntRange",
        "IntRanges",
        "DateRange",
        "DatetimeRange",
        "TimeRange",
        "Reshape",
        "ArgWhere",
        "NullCount",
        "QCut",
        "DropNans",
        "DropNulls",
    ]
)


def _walk(node: Any) -> Iterator[str]:
    """Yield a description of every non-row-wise part of a serialized expression."""
    if isinstance(node, str):
        if node in _REFUSED_NODES:
            yield _REFUSED_NODES[node]
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "Agg" and isinstance(value, dict):
            kinds = ", ".join(k.lower() for k in value)
            yield f"an aggregation ({kinds})"
            yield from _walk(list(value.values()))
            continue
        if key in _REFUSED_NODES:
            yield _REFUSED_NODES[key]
        if key == "Eval" and isinstance(value, dict):
            # list.eval / list.unique / ...: the evaluation runs within each row's list
            yield from _walk(value.get("expr"))
            continue
        if key == "Function" and isinstance(value, dict):
            yield from _refused_function(value.get("function"))
            yield from _walk(value.get("input", []))
            continue
        if key == "Literal":
            continue
        yield from _walk(value)


# namespaces whose functions are row-wise except for these
_REFUSED_IN_NAMESPACE = {
    "Boolean": frozenset(
        {"Any", "All", "IsUnique", "IsDuplicated", "IsFirstDistinct", "IsLastDistinct"}
    ),
    "StringExpr": frozenset({"ConcatVertical"}),
}
# namespaces that work within one row's value (a list, an array, a struct, a date, ...)
_ROW_NAMESPACES = frozenset(
    {
        "ListExpr",
        "ArrayExpr",
        "StructExpr",
        "TemporalExpr",
        "BinaryExpr",
        "CategoricalExpr",
        "ExtensionExpr",
    }
)


def _refused_function(spec: Any) -> Iterator[str]:
    """Names of the non-row-wise parts of a serialized function spec: 'Shift',
    {'Diff': ...}, {'Boolean': 'Any'}, {'Bin': {'method': {'Quantiles': ...}}}, ..."""
    if isinstance(spec, str):
        if spec in _REFUSED_FUNCTIONS:
            yield spec
        return
    if not isinstance(spec, dict):
        return
    for name, inner in spec.items():
        if name == "FillNullWithStrategy" and inner in ("Zero", "One"):
            continue  # a constant of the column's type: row-wise
        if name in _REFUSED_FUNCTIONS:
            yield name
        elif name == "Bin" and isinstance(inner, dict):
            method = inner.get("method")
            if isinstance(method, dict) and {"Quantiles", "Ranks"} & set(method):
                yield "bin_quantiles/bin_ranks (bins from the batch's own values)"
        elif name in _REFUSED_IN_NAMESPACE:
            inner_name = (
                inner
                if isinstance(inner, str)
                else next(iter(inner), None)
                if (isinstance(inner, dict))
                else None
            )
            if inner_name in _REFUSED_IN_NAMESPACE[name]:
                yield f"{inner_name}"


def _has_key(node: Any, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(_has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(_has_key(v, key) for v in node)
    return False


def expression_tree(expr: pl.Expr, step: str, fix: str) -> Any:
    """The serialized tree of ``expr`` (parsed JSON); an expression with a Python function
    inside (``map_batches``, ``map_elements``) is refused, naming it, with ``fix``.

    Polars serializes a Python function by pickling it (or fails to, without
    cloudpickle); vstream could not run one row-wise or incrementally anyway.

    Examples
    --------
    >>> from vstream.plan.expressions import expression_tree
    >>> import polars as pl
    >>> expression_tree(pl.col("x") + 1, "select", "")["BinaryExpr"]["op"]
    'Plus'
    >>> expression_tree(pl.col("x").map_batches(abs), "select", "use Stream.map_batches(fn)")
    Traceback (most recent call last):
    ...
    vstream.errors.ExpressionError: select: col("x").python_udf() calls a Python function ...
    """
    try:
        tree = json.loads(expr.meta.serialize(format="json"))
    except Exception as exc:
        if "python_udf" not in str(expr) and "pickle" not in str(exc):
            msg = f"{step}: cannot inspect the expression {_short(expr)} ({_first_line(exc)})"
            raise ExpressionError(msg) from None
        tree = {"AnonymousFunction": None}
    if _has_key(tree, "AnonymousFunction"):
        msg = f"{step}: {_short(expr)} calls a Python function (map_batches, map_elements); {fix}"
        raise ExpressionError(msg)
    return tree


def non_row_wise_parts(tree: Any) -> list[str]:
    """What makes a serialized expression depend on other rows, once each.

    Examples
    --------
    >>> from vstream.plan.expressions import non_row_wise_parts
    >>> import json
    >>> import polars as pl
    >>> non_row_wise_parts(json.loads(pl.col("x").diff().abs().meta.serialize(format="json")))
    ['Diff']
    """
    return list(dict.fromkeys(_walk(tree)))


def check_row_wise(expr: pl.Expr, step: str) -> None:
    """Refuse an expression whose value for a row depends on other rows.

    The serialized expression tree is walked for aggregations, window functions and
    order-dependent functions; an evaluation on a small sample (whole frame against
    row by row) then catches what the list does not know.

    Examples
    --------
    >>> from vstream.plan.expressions import check_row_wise
    >>> import polars as pl
    >>> check_row_wise(pl.col("x") * 2, "with_columns")
    >>> check_row_wise(pl.col("x").diff(), "with_columns")
    Traceback (most recent call last):
    ...
    vstream.errors.ExpressionError: with_columns: the expression col("x").diff(...) ...
    """
    if not isinstance(expr, pl.Expr):
        msg = f"{step}: expected a Polars expression, got {type(expr).__name__} {expr!r}"
        raise ExpressionError(msg)
    fix = (
        "stateless steps take Polars expressions only: run a Python function on whole "
        "micro-batches with Stream.map_batches(fn) instead"
    )
    culprits = non_row_wise_parts(expression_tree(expr, step, fix))
    if culprits:
        msg = (
            f"{step}: the expression {_short(expr)} is not row-wise (it uses "
            f"{', '.join(culprits)}); {_WINDOW_HINT}"
        )
        raise ExpressionError(msg)


def check_row_wise_on_sample(exprs: list[pl.Expr], schema: pl.Schema, step: str) -> None:
    """Evaluate on a small sample, whole and row by row; a difference means not row-wise."""
    sample = _sample_frame(schema)
    if sample is None:
        return
    for expr in exprs:
        # with_columns broadcasts literals as the step will; a value that depends on the
        # whole frame (a mean, a rank, a length) then differs from the row-by-row one
        probe = expr.alias("__vstream_probe__")
        try:
            whole = sample.with_columns(probe).select("__vstream_probe__")
            rows = pl.concat(
                [
                    sample.slice(i, 1).with_columns(probe).select("__vstream_probe__")
                    for i in range(sample.height)
                ]
            )
        except Exception:
            continue  # sample values may not suit the expression (strict casts, ...)
        if whole.height != sample.height or not whole.equals(rows):
            msg = (
                f"{step}: the expression {_short(expr)} is not row-wise (its value for a row "
                f"depends on other rows); {_WINDOW_HINT}"
            )
            raise ExpressionError(msg)


def _sample_frame(schema: pl.Schema) -> pl.DataFrame | None:
    ints = [3, None, 1, 4, 2, 5]
    cols: list[pl.Series] = []
    for name, dtype in schema.items():
        try:
            if dtype.is_numeric() or dtype.is_temporal():
                s = pl.Series(name, ints, dtype=pl.Int64).cast(dtype)
            elif dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
                s = pl.Series(name, ["c", None, "a", "d", "b", "e"], dtype=pl.String)
                s = s if dtype == pl.String else pl.Series(name, [None] * 6, dtype=dtype)
            elif dtype == pl.Boolean:
                s = pl.Series(name, [True, None, False, True, False, True])
            else:
                s = pl.Series(name, [None] * 6, dtype=dtype)
        except Exception:
            s = pl.Series(name, [None] * 6, dtype=dtype)
        cols.append(s)
    try:
        return pl.DataFrame(cols)
    except Exception:
        return None


def infer_schema(
    step: str, schema: pl.Schema, apply: Callable[[pl.DataFrame], pl.DataFrame]
) -> pl.Schema:
    """The output schema of a step, found by running it on an empty frame of its input."""
    try:
        return apply(pl.DataFrame(schema=schema)).schema
    except plx.ColumnNotFoundError as exc:
        msg = (
            f"{step}: unknown column ({_first_line(exc)}); the input has the columns "
            f"{list(schema.names())}"
        )
        raise ColumnNotFoundError(msg) from exc
    except PipelineError:
        raise
    except Exception as exc:
        msg = f"{step}: {type(exc).__name__}: {_first_line(exc)} (input schema: {dict(schema)})"
        raise ExpressionError(msg) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _short(expr: pl.Expr, limit: int = 120) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def root_columns(exprs: Sequence[pl.Expr]) -> frozenset[str] | None:
    """The input columns expressions read (None when a wildcard or selector hides them).

    Examples
    --------
    >>> from vstream.plan.expressions import root_columns
    >>> import polars as pl
    >>> sorted(root_columns([pl.col("a") * pl.col("b"), pl.col("a").alias("c")]))
    ['a', 'b']
    >>> root_columns([pl.all()]) is None
    True
    """
    names: set[str] = set()
    for e in exprs:
        tree = e.meta.serialize(format="json")
        if any(k in tree for k in ('"Wildcard"', '"Selector"', '"Nth"', '"DtypeColumn"')):
            return None
        names.update(e.meta.root_names())
    return frozenset(names)
