"""Argument parsing shared by the API modules: expressions as Polars takes them, and the
short labels that name a step in errors and in ``explain()``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from vstream.api.options import IntoExpr


def to_expr(value: IntoExpr, *, str_as_col: bool = True) -> pl.Expr:
    if isinstance(value, pl.Expr):
        return value
    if isinstance(value, str) and str_as_col:
        return pl.col(value)
    return pl.lit(value)


def selector(expr: pl.Expr) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda df: df.select(expr)


def flatten(items: Sequence[Any]) -> tuple[Any, ...]:
    """Accept lists of expressions as Polars does: ``select([a, b])`` is ``select(a, b)``."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, list | tuple):
            out.extend(item)
        else:
            out.append(item)
    return tuple(out)


def call_label(step: str, exprs: Sequence[object], named: Mapping[str, object]) -> str:
    parts = [short(e) for e in exprs] + [f"{k}={short(v)}" for k, v in named.items()]
    return f"{step}({', '.join(parts)})"


def short(value: object, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
