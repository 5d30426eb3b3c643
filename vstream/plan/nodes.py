"""Logical plan nodes: what a Stream is. Building one checks it; no data moves here."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl

from vstream._dtypes import physical_int64
from vstream._duration import TimeUnit
from vstream.io._schema import polars_schema
from vstream.io.base import Source

__all__ = [
    "source_columns",
    "ConcatNode",
    "DeadLettersNode",
    "EventTime",
    "HeadNode",
    "Node",
    "RowIndexNode",
    "SourceNode",
    "StepKind",
    "StepNode",
    "WatermarkNode",
    "import_path",
]

_ids = itertools.count()

#: what a stateless step does; ``map_batches`` is the only one that holds a callable;
#: ``explode`` is the one that may give a row several output rows (or none)
StepKind = Literal["filter", "with_columns", "select", "drop", "rename", "explode", "map_batches"]


@dataclass(frozen=True, slots=True)
class EventTime:
    """The event-time column of a stream and how its watermark is made."""

    column: str
    dtype: pl.DataType
    unit: TimeUnit | None  # None: a plain integer column with no declared unit
    delay: int  # max out-of-orderness, in the column's unit
    idle_timeout: float | None  # seconds of wall-clock time
    shift: int = 0  # event time = column + shift (window results carry window_end - 1)
    # a second column: event time = the later of the two, each plus its shift (the
    # results of interval and windowed joins); a null (an outer join's missing side) is
    # skipped
    other: str | None = None
    other_shift: int = 0

    def of(self, df: pl.DataFrame) -> np.ndarray:
        """The event time of every row of ``df`` as int64 in the column's unit."""
        if self.other is None:
            ts = physical_int64(df.get_column(self.column))
            return ts + self.shift if self.shift else ts
        a = pl.col(self.column).to_physical().cast(pl.Int64) + self.shift
        b = pl.col(self.other).to_physical().cast(pl.Int64) + self.other_shift
        return df.select(pl.max_horizontal(a, b)).to_series().to_numpy()

    def to_python(self, value: int) -> Any:
        """A watermark value as the user sees it: None for the watermarks -inf (before
        any event) and +inf (the end of the input), a ``datetime`` for a Datetime column
        (in its time zone, as Polars' ``Series.item()`` gives it), else the integer.
        Never raises: a Datetime value that Python's ``datetime`` cannot hold (before
        year 1 or after 9999, in UTC or in the column's zone) stays an integer in the
        column's unit.

        Examples
        --------
        >>> import polars as pl
        >>> from vstream.plan.nodes import EventTime
        >>> et = EventTime("ts", pl.Datetime("ms"), "ms", 0, None)
        >>> et.to_python(86_400_000), et.to_python(2**62), et.to_python(2**63 - 1)
        (datetime.datetime(1970, 1, 2, 0, 0), 4611686018427387904, None)
        """
        if value in (-(2**63), 2**63 - 1):
            return None
        if isinstance(self.dtype, pl.Datetime):
            return _datetime_or_int(value, self.dtype)
        return value


_EPOCH = datetime(1970, 1, 1)
_PER_US = {"ms": 1_000, "us": 1, "ns": None}


def _datetime_or_int(value: int, dtype: pl.Datetime) -> datetime | int:
    """``value`` of ``dtype`` as a ``datetime`` (microseconds, truncated from ns as
    Polars does), or ``value`` itself where Python's calendar (years 1-9999) cannot hold
    it. Computed in Python: Polars panics (a ``BaseException``) beyond its own calendar."""
    per = _PER_US[dtype.time_unit or "us"]
    us = value // 1_000 if per is None else value * per
    try:
        out = _EPOCH + timedelta(microseconds=us)
        if dtype.time_zone is not None:
            try:
                zone = ZoneInfo(dtype.time_zone)
            except ZoneInfoNotFoundError:  # a zone Polars knows and Python does not
                local: datetime = pl.Series([value]).cast(dtype).item()  # inside the calendar
                return local
            out = out.replace(tzinfo=UTC).astimezone(zone)
    except (OverflowError, ValueError):  # beyond year 1-9999 (also once in local time)
        return value
    return out


class Node:
    """A logical operator: data only (:mod:`vstream.runtime.lower` builds the physical
    operator that runs it). ``inputs`` make the plan a graph; a node shared by several
    branches is one node, computed once per run."""

    def needs(self, wanted: set[str]) -> set[str] | None:
        """The input columns this node reads to produce the output columns ``wanted``
        (None: all of them). Sources then convert only those (projection pushdown)."""
        return None

    inputs: tuple[Node, ...] = ()
    schema: pl.Schema
    event_time: EventTime | None = None
    bounded: bool = True
    label: str = "node"
    #: the user-given step name (``name=``): the step's id in checkpoints (see
    #: :mod:`vstream.plan.ids`); None: an id derived from the step's configuration
    name: str | None = None

    def __init__(self) -> None:
        self.id = next(_ids)

    def can_dead_letter(self) -> bool:
        return False


class SourceNode(Node):
    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.schema = polars_schema(source.schema())
        self.bounded = source.bounded
        self.label = source.label

    def can_dead_letter(self) -> bool:
        return True


class StepNode(Node):
    """A stateless step, as data: what the user asked (``kind`` and its Polars expressions,
    columns, rename mapping, flags or, for ``map_batches`` only, a function), its output
    schema, and what it reads and writes (for projection pushdown and split statistics).

    The flags: ``explode``'s ``empty_as_null`` and ``keep_nulls``; ``per_column`` on a
    ``with_columns`` of one expression per column it replaces (``cast``, ``fill_null``,
    ``fill_nan``), each run only on batches that hold the columns it reads, so a column
    no step below reads is not read from the source for it.

    ``function_path`` is where a ``map_batches`` function can be imported from
    (``module:qualname``), None for a lambda or a closure: a plan is shipped to another
    process with it, and a function is never pickled.
    """

    #: the step's flags; none in a plan serialised before steps had flags
    options: Mapping[str, bool] = MappingProxyType({})

    def __init__(
        self,
        input: Node,
        label: str,
        kind: StepKind,
        schema: pl.Schema,
        event_time: EventTime | None,
        *,
        exprs: Sequence[pl.Expr] = (),
        columns: Sequence[str] = (),
        mapping: Mapping[str, str] | None = None,
        function: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
        options: Mapping[str, bool] | None = None,
        assigns: frozenset[str] | None = frozenset(),
        uses: frozenset[str] | None = frozenset(),
    ) -> None:
        super().__init__()
        self.inputs = (input,)
        self.label = label
        self.kind = kind
        self.exprs = tuple(exprs)
        self.columns = tuple(columns)
        self.mapping = dict(mapping or {})  # rename: old name -> new name
        self.options: Mapping[str, bool] = dict(options or {})
        self.function = function
        self.function_path = None if function is None else import_path(function)
        self.schema = schema
        self.event_time = event_time
        self.bounded = input.bounded
        # the columns this step computes (None: any column may change, as in map_batches)
        # and its renames (new name -> old name): file statistics of a source column bound
        # the event time only if it reaches with_watermark unchanged
        self.assigns = assigns
        self.renames = {new: old for old, new in self.mapping.items()}
        self.uses = uses  # the input columns its expressions read (None: unknown)

    def needs(self, wanted: set[str]) -> set[str] | None:
        if self.assigns is None or self.uses is None:
            return None
        if self.options.get("per_column"):
            # one expression per column it replaces, run only where that column is read
            # on (the operator skips the others): the columns not wanted are not needed
            need = wanted - self.assigns
            for e in self.exprs:
                if e.meta.output_name() in wanted:
                    need |= set(e.meta.root_names())
            return need
        if self.renames:  # renaming needs every renamed column present
            return {self.renames.get(c, c) for c in wanted} | set(self.renames.values())
        return (wanted - self.assigns) | self.uses


def import_path(fn: Callable[..., object]) -> str | None:
    """``module:qualname`` of a function importable by that name, else None (a lambda, a
    closure, a callable object).

    Examples
    --------
    >>> from vstream.plan.nodes import import_path
    >>> import math
    >>> import_path(math.sqrt), import_path(lambda x: x)
    ('math:sqrt', None)
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return f"{module}:{qualname}" if found is fn else None


class RowIndexNode(Node):
    """``with_row_index``: a column ``name`` first, numbering the rows from ``offset`` in
    the order they pass. The count is state (checkpointed), so the step is stateful; the
    API admits it only where that order is deterministic (one split, no operator that
    reorders rows upstream). With ``split_column`` the rows are numbered per source
    split, and that column (second) holds the split's name: any number of splits."""

    #: the column of split names when rows are numbered per split (None: one count)
    split_column: str | None = None

    def __init__(
        self,
        input: Node,
        name: str,
        offset: int,
        schema: pl.Schema,
        split_column: str | None = None,
    ) -> None:
        super().__init__()
        self.inputs = (input,)
        self.column = name
        self.offset = offset
        self.split_column = split_column
        self.schema = schema
        self.event_time = input.event_time
        self.bounded = input.bounded
        per = "" if split_column is None else f", split_column={split_column!r}"
        self.label = f"with_row_index({name!r}, offset={offset}{per})"

    def needs(self, wanted: set[str]) -> set[str] | None:
        return wanted - {self.column, self.split_column or self.column}


class WatermarkNode(Node):
    def __init__(self, input: Node, event_time: EventTime, label: str) -> None:
        super().__init__()
        self.inputs = (input,)
        self.schema = input.schema
        self.event_time = event_time
        self.bounded = input.bounded
        self.label = label

    def needs(self, wanted: set[str]) -> set[str] | None:
        assert self.event_time is not None
        return wanted | {self.event_time.column}

    def can_dead_letter(self) -> bool:
        return True


class HeadNode(Node):
    def __init__(self, input: Node, n: int) -> None:
        super().__init__()
        self.inputs = (input,)
        self.n = n
        self.schema = input.schema
        self.event_time = input.event_time
        self.bounded = True
        self.label = f"head({n})"

    def needs(self, wanted: set[str]) -> set[str] | None:
        return wanted


class ConcatNode(Node):
    def __init__(self, inputs: tuple[Node, ...], event_time: EventTime | None) -> None:
        super().__init__()
        self.inputs = inputs
        self.schema = inputs[0].schema
        self.event_time = event_time
        self.bounded = all(n.bounded for n in inputs)
        self.label = f"concat({len(inputs)} inputs)"

    def needs(self, wanted: set[str]) -> set[str] | None:
        return wanted


class DeadLettersNode(Node):
    """Records refused anywhere upstream of ``of`` (sources, event-time assignment)."""

    SCHEMA = pl.Schema({"record": pl.String, "reason": pl.String, "step": pl.String})

    def __init__(self, of: Node) -> None:
        super().__init__()
        self.inputs = (of,)
        self.of = of
        self.schema = self.SCHEMA
        self.bounded = of.bounded
        self.label = "dead_letters"


def required_columns(order: list[Node], targets: list[Node]) -> dict[int, set[str] | None]:
    """Per node (by id), the columns its consumers read; None: all. ``order`` is
    topological. Targets keep every column; a late-events branch needs every column of
    its window's input (its rows come from there)."""
    req: dict[int, set[str] | None] = {t.id: None for t in targets}
    if any(isinstance(n, DeadLettersNode) for n in order):
        # refused rows are reported whole: keep every column
        return {n.id: None for n in order}

    def merge(node: Node, cols: set[str] | None) -> None:
        if node.id in req and req[node.id] is None:
            return
        req[node.id] = None if cols is None else (req.get(node.id) or set()) | cols

    for node in reversed(order):
        got = req.get(node.id, set())
        wanted = set(node.schema.names()) if got is None else got
        late_input = getattr(node, "late_input", None)
        if late_input is not None:
            merge(late_input, None if got is None else wanted)
        for parent in node.inputs:
            need = node.needs(wanted)
            merge(parent, None if need is None else need & set(parent.schema.names()))
    return req


def ancestors(nodes: list[Node]) -> list[Node]:
    """Every node the given nodes depend on (and they themselves), in topological order."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(n, False) for n in reversed(nodes)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            if node.id not in seen:
                seen.add(node.id)
                order.append(node)
            continue
        if node.id in seen:
            continue
        stack.append((node, True))
        for parent in reversed(node.inputs):
            if parent.id not in seen:
                stack.append((parent, False))
    return order


def source_columns(roots: list[Node]) -> dict[int, list[str]]:
    """Per source node (by id) that a run of ``roots`` reads only in part, the columns it
    reads, in schema order: the projection the runtime pushes into the source (a Parquet
    file then reads only these; the others are never read nor converted)."""
    order = ancestors(roots)
    req = required_columns(order, roots)
    out: dict[int, list[str]] = {}
    for node in order:
        cols = req.get(node.id)
        if isinstance(node, SourceNode) and cols is not None:
            names = node.schema.names()
            keep = [c for c in names if c in cols]
            if len(keep) < len(names):
                out[node.id] = keep
    return out
