"""The option sets of the Stream API as type aliases, as Polars keeps its ``Literal``s."""

from __future__ import annotations

from typing import Literal

import polars as pl

from vstream.io.sinks import SinkMode
from vstream.plan.windows import LateMode, TimeMode

__all__ = ["AsofStrategy", "IntoExpr", "JoinHow", "LateMode", "SinkMode", "TimeMode"]

#: what a column argument may be: an expression, a column name, or a literal value
IntoExpr = pl.Expr | str | int | float | bool | None
JoinHow = Literal["inner", "left", "full"]
AsofStrategy = Literal["backward", "forward", "nearest"]
#: the units an integer event-time column may declare
TIME_UNITS = ("ns", "us", "ms", "s")
