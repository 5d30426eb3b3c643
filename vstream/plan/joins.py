"""Join plan nodes: what the user wrote, checked when the pipeline is built.

The output layout follows Polars: every left column, then the right columns without the
right key columns (kept for ``how="full"``, as Polars' default ``coalesce=False`` does;
as-of joins also drop the right time column when it has the left's name), a clashing
right name gets ``suffix``; windowed joins append ``window_start`` and ``window_end``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from vstream._duration import Duration, parse_duration, parse_signed_duration
from vstream.errors import EventTimeError, PipelineError, SchemaError
from vstream.kernels.join import BACKWARD, FORWARD, NEAREST
from vstream.plan.nodes import EventTime, Node
from vstream.plan.windows import (
    Hopping,
    Session,
    Tumbling,
    WindowSpec,
    join_window_offset,
    resolve,
)

__all__ = ["JoinNode", "JoinSetup", "build_join"]

_STRATEGIES = {"backward": BACKWARD, "forward": FORWARD, "nearest": NEAREST}
_MAX_BITS = 63  # an outer windowed join tracks matches per window in an int64 bitmask


@dataclass(frozen=True)
class JoinSetup:
    """A checked join: key and time columns, the predicate, and the output layout."""

    kind: str  # "interval" | "window" | "regular" | "asof" | "lookup"
    how: str  # "inner" | "left" | "full"
    left_keys: list[str]
    right_keys: list[str]
    key_schema: pl.Schema  # under the left side's names
    left_time: EventTime | None
    right_time: EventTime | None
    #: (right input column, output name) of the right columns in the output
    right_out: list[tuple[str, str]]
    left_out: list[str]
    schema: pl.Schema  # the output schema
    lower: int = 0  # interval / regular: lower <= right.t - left.t <= upper
    upper: int = 0
    size: int = 0  # windowed
    slide: int = 0
    offset: int = 0
    strategy: int = 0  # as-of (kernels.join.BACKWARD, ...)
    tolerance: int = -1  # as-of; -1: none
    table: pl.DataFrame | None = field(default=None, repr=False)  # static lookup table


class JoinNode(Node):
    """A two-input join (one input for a lookup against a static table)."""

    def __init__(self, inputs: tuple[Node, ...], setup: JoinSetup, label: str) -> None:
        super().__init__()
        self.inputs = inputs
        self.setup = setup
        self.schema = setup.schema
        self.label = label
        # a lookup ends with its events; an update stream may go on for ever
        self.bounded = (
            inputs[0].bounded if setup.kind == "lookup" else all(n.bounded for n in inputs)
        )
        self.event_time = _output_time(setup)


@dataclass(frozen=True)
class JoinArgs:
    """The user's arguments to one of the join methods."""

    kind: str
    on: str | Sequence[str] | None = None
    left_on: str | Sequence[str] | None = None
    right_on: str | Sequence[str] | None = None
    by: str | Sequence[str] | None = None
    by_left: str | Sequence[str] | None = None
    by_right: str | Sequence[str] | None = None
    how: str = "inner"
    suffix: str = "_right"
    lower: Duration | None = None
    upper: Duration | None = None
    window: WindowSpec | None = None
    ttl: Duration | None = None
    strategy: str = "backward"
    tolerance: Duration | None = None


def _names(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _output_time(st: JoinSetup) -> EventTime | None:
    lt, rt = st.left_time, st.right_time
    if st.kind in ("asof", "lookup") or lt is None:
        return lt
    assert rt is not None
    other = next((dst for src, dst in st.right_out if src == rt.column), None)
    return EventTime(lt.column, lt.dtype, lt.unit, 0, None, lt.shift, other, rt.shift)


def _keys(
    step: str, left: Node, right_schema: pl.Schema, lk: list[str], rk: list[str]
) -> pl.Schema:
    if len(lk) != len(rk):
        msg = f"{step}: {len(lk)} left key column(s) {lk} but {len(rk)} right {rk}"
        raise PipelineError(msg)
    for side, cols, schema in (("left", lk, left.schema), ("right", rk, right_schema)):
        for c in cols:
            if not isinstance(c, str):
                msg = f"{step}: key columns must be column names, got {c!r}"
                raise PipelineError(msg)
            if c not in schema:
                msg = f"{step}: the {side} input has no key column {c!r}; it has {schema.names()}"
                raise SchemaError(msg)
    if len(set(lk)) != len(lk):
        msg = f"{step}: a key column appears twice in {lk}"
        raise PipelineError(msg)
    for a, b in zip(lk, rk, strict=True):
        da, db = left.schema[a], right_schema[b]
        if da != db:
            msg = (
                f"{step}: key {a!r} is {da} on the left but {b!r} is {db} on the right; "
                f"cast one side first, e.g. .with_columns(pl.col({b!r}).cast(pl.{da}))"
            )
            raise SchemaError(msg)
        if da.is_nested() or isinstance(da, pl.Object | pl.Null):
            msg = f"{step}: key column {a!r} is {da}; join keys must be scalar values"
            raise SchemaError(msg)
    return pl.Schema({a: left.schema[a] for a in lk})


def _layout(
    step: str,
    left: pl.Schema,
    right: pl.Schema,
    drop: set[str],
    suffix: str,
    extra: dict[str, pl.DataType],
) -> tuple[list[str], list[tuple[str, str]], pl.Schema]:
    out: dict[str, pl.DataType] = dict(left.items())
    right_out = []
    for c, dt in right.items():
        if c in drop:
            continue
        name = c + suffix if c in out or c in extra else c
        if name in out or name in extra:
            msg = f"{step}: the right column {c!r} would be named {name!r}, which exists"
            raise SchemaError(msg)
        out[name] = dt
        right_out.append((c, name))
    for c, dt in extra.items():
        if c in out:
            msg = f"{step}: the output needs a column {c!r}; rename the input's {c!r} first"
            raise SchemaError(msg)
        out[c] = dt
    return list(left.names()), right_out, pl.Schema(out)


def _time(step: str, node: Node, side: str) -> EventTime:
    et = node.event_time
    if et is None:
        msg = (
            f"{step}: the {side} input has no event time; call .with_watermark(column, "
            "max_out_of_orderness) on it first (a stream-stream join keeps state until the "
            "watermarks prove no partner can come)"
        )
        raise EventTimeError(msg)
    return et


def _time_type(et: EventTime) -> str:
    if isinstance(et.dtype, pl.Datetime):
        return str(et.dtype)
    unit = f"time_unit={et.unit!r}" if et.unit is not None else "no time_unit"
    return f"{et.dtype} ({unit})"


def _same_time_hint(lt: EventTime, rt: EventTime) -> str:
    """How to give the right input the left's event-time type (before its watermark)."""
    col, ldt, rdt = rt.column, lt.dtype, rt.dtype
    if isinstance(ldt, pl.Datetime) and isinstance(rdt, pl.Datetime):
        if ldt.time_unit != rdt.time_unit:
            fix = f"pl.col({col!r}).dt.cast_time_unit({ldt.time_unit!r})"
        elif ldt.time_zone is None or rdt.time_zone is None:
            fix = f"pl.col({col!r}).dt.replace_time_zone({ldt.time_zone!r})"
        else:
            fix = f"pl.col({col!r}).dt.convert_time_zone({ldt.time_zone!r})"
        return f"e.g. .with_columns({fix}) on the right input before its .with_watermark(...)"
    if isinstance(ldt, pl.Datetime):
        zone = f", {ldt.time_zone!r}" if ldt.time_zone is not None else ""
        return (
            f"e.g. .with_columns(pl.col({col!r}).cast(pl.Datetime({ldt.time_unit!r}{zone}))) "
            f"on the right input (integers in {ldt.time_unit} since the epoch) before its "
            ".with_watermark(...)"
            + (
                f", or .with_watermark(..., time_unit={ldt.time_unit!r}, as_datetime=True) on it"
                if ldt.time_zone is None
                else ""
            )
        )
    if isinstance(rdt, pl.Datetime):
        return (
            f"e.g. .with_columns(pl.col({col!r}).dt.epoch({lt.unit or 'ms'!r})) on the right "
            "input before its .with_watermark(...)"
        )
    if ldt != rdt:
        return f"e.g. .with_columns(pl.col({col!r}).cast(pl.{ldt})) on the right input"
    if rt.unit is None:
        return f"declare time_unit={lt.unit!r} in the right input's .with_watermark(...) too"
    if lt.unit is None:
        return f"declare time_unit={rt.unit!r} in the left input's .with_watermark(...) too"
    return (
        "declare the same time_unit in both .with_watermark(...) calls, scaling one "
        f"column first (e.g. from {rt.unit} to {lt.unit} on the right input)"
    )


def _times(step: str, left: Node, right: Node) -> tuple[EventTime, EventTime]:
    """Both inputs' event times, checked to be comparable."""
    lt, rt = _time(step, left, "left"), _time(step, right, "right")
    if lt.dtype != rt.dtype or lt.unit != rt.unit:
        msg = (
            f"{step}: the event times differ in type: {lt.column!r} is {_time_type(lt)} on "
            f"the left, {rt.column!r} is {_time_type(rt)} on the right; give both the same "
            f"type and unit: {_same_time_hint(lt, rt)}"
        )
        raise SchemaError(msg)
    if lt.other is not None or rt.other is not None:
        msg = (
            f"{step}: an input is itself the result of an interval, windowed or regular "
            "join, whose event time spans two columns; joining it again is not supported"
        )
        raise EventTimeError(msg)
    return lt, rt


def build_join(
    step: str,
    left: Node,
    right: Node | None,
    args: JoinArgs,
    *,
    table: pl.DataFrame | None = None,
) -> JoinNode:
    """Check the arguments and make the join node (``right`` None: a static ``table``)."""
    kind = args.kind
    right_schema = right.schema if right is not None else pl.Schema(table.schema)  # type: ignore[union-attr]
    allowed = {
        "asof": ("left",),
        "lookup": ("inner", "left"),
    }.get(kind, ("inner", "left", "full"))
    how = "left" if kind == "asof" else args.how
    if how not in allowed:
        hint = " (swap the two inputs for a right join)" if how == "right" else ""
        msg = f"{step}: how must be one of {list(allowed)}, got {how!r}{hint}"
        raise PipelineError(msg)
    if not isinstance(args.suffix, str) or not args.suffix:
        msg = f"{step}: suffix must be a non-empty string, got {args.suffix!r}"
        raise PipelineError(msg)
    if kind == "asof":
        return _asof(step, left, right, right_schema, args)
    # key columns
    if args.on is not None and (args.left_on is not None or args.right_on is not None):
        msg = f"{step}: pass either on= or left_on= and right_on=, not both"
        raise PipelineError(msg)
    if args.on is not None:
        lk = rk = _names(args.on)
    else:
        lk, rk = _names(args.left_on), _names(args.right_on)
    if not lk:
        msg = f"{step}: say which columns to join on: on='key' (or left_on= and right_on=)"
        raise PipelineError(msg)
    key_schema = _keys(step, left, right_schema, lk, rk)
    drop = set() if how == "full" else set(rk)
    extra: dict[str, pl.DataType] = {}
    if kind == "lookup":
        if table is not None:
            keys = table.select(rk).drop_nulls()  # a null key matches nothing
            dup = keys.filter(keys.is_duplicated())
            if dup.height:
                msg = (
                    f"{step}: the lookup table has {dup.height} rows whose key {rk} another row "
                    f"has too (e.g. {dup.row(0)}); a lookup needs one row per key: deduplicate "
                    f"it first, e.g. table.unique(subset={rk!r}, keep='last')"
                )
                raise SchemaError(msg)
        lout, rout, schema = _layout(step, left.schema, right_schema, drop, args.suffix, extra)
        setup = JoinSetup(
            kind, how, lk, rk, key_schema, left.event_time, None, rout, lout, schema,
            table=table,
        )  # fmt: skip
        inputs = (left,) if right is None else (left, right)
        return JoinNode(inputs, setup, step)
    assert right is not None
    lt, rt = _times(step, left, right)
    unit = lt.unit
    params: dict[str, Any] = {}
    if kind == "interval":
        if args.lower is None or args.upper is None:
            missing = [n for n in ("lower", "upper") if getattr(args, n) is None]
            msg = (
                f"{step}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                "missing: an interval join needs both bounds "
                "(right.t - left.t must lie between them), e.g. lower='-5s', upper='5s' "
                "pairs rows at most 5 s apart"
            )
            raise PipelineError(msg)
        lower = parse_signed_duration(args.lower, unit, what=f"{step} lower")
        upper = parse_signed_duration(args.upper, unit, what=f"{step} upper")
        if lower > upper:
            msg = (
                f"{step}: lower ({args.lower!r}) is after upper ({args.upper!r}), so no pair "
                "could ever match (right.t - left.t must lie between them): swap them, "
                f"lower={args.upper!r}, upper={args.lower!r}"
            )
            raise PipelineError(msg)
        params = {"lower": lower, "upper": upper}
    elif kind == "window":
        spec = args.window
        if not isinstance(spec, Tumbling | Hopping):
            if isinstance(spec, str):
                note = f", e.g. window=vs.tumbling({spec!r})"
            elif isinstance(spec, Session):
                note = " (session windows are not supported in joins)"
            else:
                note = ""
            msg = (
                f"{step}: window must be vs.tumbling(...) or vs.hopping(...), got {spec!r}" + note
            )
            raise PipelineError(msg)
        _, size, slide, offset, _ = resolve(spec, unit, step)
        # on a time-zone-aware column, the windows a window step would cut (local time)
        offset = join_window_offset(spec, lt, slide, offset, step)
        n_windows = -(-size // slide)
        if how != "inner" and n_windows > _MAX_BITS:
            msg = (
                f"{step}: an outer (how={how!r}) windowed join supports up to {_MAX_BITS} "
                f"windows per event; {spec} puts each event in {n_windows}: use a slide of "
                f"at least size / {_MAX_BITS}, or how='inner' (no limit)"
            )
            raise PipelineError(msg)
        params = {"size": size, "slide": slide, "offset": offset}
        extra = {"window_start": lt.dtype, "window_end": lt.dtype}
    else:  # regular
        if args.ttl is None:
            if not (left.bounded and right.bounded):
                msg = (
                    f"{step}: a join of unbounded streams needs ttl= (how long a row waits "
                    "for partners, in event time), or window= for a windowed join; without "
                    "it the state would grow for ever"
                )
                raise PipelineError(msg)
            params = {"lower": -(2**63), "upper": 2**63 - 1}
        else:
            ttl = parse_duration(args.ttl, unit, what=f"{step} ttl")
            params = {"lower": -ttl, "upper": ttl}
    lout, rout, schema = _layout(step, left.schema, right_schema, drop, args.suffix, extra)
    setup = JoinSetup(kind, how, lk, rk, key_schema, lt, rt, rout, lout, schema, **params)
    return JoinNode((left, right), setup, step)


def _asof(
    step: str, left: Node, right: Node | None, right_schema: pl.Schema, args: JoinArgs
) -> JoinNode:
    if right is None:
        msg = f"{step}: the right input must be a Stream with event time"
        raise PipelineError(msg)
    lt, rt = _times(step, left, right)
    lon = args.left_on if args.left_on is not None else args.on
    ron = args.right_on if args.right_on is not None else args.on
    for side, name, et in (("left", lon, lt), ("right", ron, rt)):
        if name is not None and name != et.column:
            msg = (
                f"{step}: the as-of column must be the {side} input's event-time column "
                f"{et.column!r}, got {name!r}"
            )
            raise EventTimeError(msg)
    if args.by is not None and (args.by_left is not None or args.by_right is not None):
        msg = f"{step}: pass either by= or by_left= and by_right=, not both"
        raise PipelineError(msg)
    lk = _names(args.by if args.by is not None else args.by_left)
    rk = _names(args.by if args.by is not None else args.by_right)
    key_schema = _keys(step, left, right_schema, lk, rk) if (lk or rk) else pl.Schema()
    if args.strategy not in _STRATEGIES:
        msg = f"{step}: strategy must be one of {list(_STRATEGIES)}, got {args.strategy!r}"
        raise PipelineError(msg)
    strategy = _STRATEGIES[args.strategy]
    tolerance = -1
    if args.tolerance is not None:
        tolerance = parse_duration(args.tolerance, lt.unit, what=f"{step} tolerance")
    elif strategy != BACKWARD and not (left.bounded and right.bounded):
        msg = (
            f"{step}: strategy={args.strategy!r} on an unbounded input needs tolerance=: "
            "without it no left row could be emitted before the right input ends"
        )
        raise PipelineError(msg)
    drop = set(rk)
    if rt.column == lt.column:
        drop.add(rt.column)
    lout, rout, schema = _layout(step, left.schema, right_schema, drop, args.suffix, {})
    setup = JoinSetup(
        "asof", "left", lk, rk, key_schema, lt, rt, rout, lout, schema,
        strategy=strategy, tolerance=tolerance,
    )  # fmt: skip
    return JoinNode((left, right), setup, step)
