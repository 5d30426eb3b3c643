"""Windows: ``Stream.window(...)``'s argument parsing (WindowBuilder), ``.agg(...)``, and
the windowed result with its late-events branch."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from vstream._duration import Duration, parse_duration, unit_to_ns, wall_seconds
from vstream.api._parse import flatten, short
from vstream.api.base import named, set_name
from vstream.api.options import LateMode, TimeMode
from vstream.api.stream import Stream
from vstream.errors import (
    ColumnNotFoundError,
    DurationError,
    EventTimeError,
    ExpressionError,
    PipelineError,
    SchemaError,
)
from vstream.plan.aggregates import plan_aggregations
from vstream.plan.ids import check_step_name
from vstream.plan.windows import (
    LateEventsNode,
    WindowNode,
    WindowSetup,
    WindowSpec,
    calendar_spec,
    processing_time,
    resolve,
)

__all__ = ["WindowBuilder", "WindowedStream"]


class WindowBuilder:
    """A stream grouped into windows; :meth:`agg` says what to compute per window."""

    def __init__(
        self,
        stream: Stream,
        spec: WindowSpec,
        by: str | Sequence[str] | None,
        *,
        allowed_lateness: Duration,
        late: LateMode,
        early: Duration | float | None,
        time: TimeMode,
        name: str | None = None,
    ) -> None:
        self._stream = stream
        keys = [] if by is None else [by] if isinstance(by, str) else list(by)
        step = named(f"window({spec}{', by=' + repr(by) if by is not None else ''})", name)
        self._step = step
        self._name = None if name is None else check_step_name(name, step)
        schema = stream.schema
        for k in keys:
            if not isinstance(k, str):
                msg = f"{step}: by must be column names, got {k!r}"
                raise PipelineError(msg)
            if k not in schema:
                msg = f"{step}: no key column {k!r}; the stream has {stream.columns}"
                raise ColumnNotFoundError(msg)
            dt = schema[k]
            if dt.is_float() or dt.is_nested() or isinstance(dt, pl.Object | pl.Null):
                msg = (
                    f"{step}: key column {k!r} is {dt}; keys must be integer, string, "
                    "categorical, boolean or temporal (cast floats, e.g. to Int64, first)"
                )
                raise SchemaError(msg)
        if len(set(keys)) != len(keys):
            msg = f"{step}: a key column appears twice in by={keys}"
            raise PipelineError(msg)
        if time not in ("event", "processing"):
            msg = f"{step}: time must be 'event' or 'processing', got {time!r}"
            raise PipelineError(msg)
        if late not in ("drop", "side"):
            msg = f"{step}: late must be 'drop' or 'side', got {late!r}"
            raise PipelineError(msg)
        et = stream.node.event_time
        if time == "event":
            if et is None:
                msg = (
                    f"{step}: the stream has no event time; call .with_watermark(column, "
                    "max_out_of_orderness) before .window(...), or use time='processing'"
                )
                raise EventTimeError(msg)
            unit = et.unit
            tcol: str | None = et.column
            tdtype = et.dtype
            ns = unit_to_ns(unit) if unit is not None else 1
        else:
            tdtype, ns = processing_time()
            unit, tcol = "us", None
        kind, size, slide, offset, gap = resolve(spec, unit, step)
        # days and weeks count local calendar days on a time-zone-aware column
        calendar = calendar_spec(spec, tdtype, tcol, step)
        lateness = parse_duration(allowed_lateness, unit, what=f"{step} allowed_lateness")
        if lateness < 0:
            msg = f"{step}: allowed_lateness must be >= 0, got {allowed_lateness!r}"
            raise DurationError(msg)
        early_s = None if early is None else wall_seconds(early, f"{step} early")
        if early_s is not None and early_s <= 0:
            msg = f"{step}: early must be a positive wall-clock interval, got {early!r}"
            raise DurationError(msg)
        self._parts = dict(
            kind=kind,
            size=size,
            slide=slide,
            offset=offset,
            gap=gap,
            by=keys,
            key_schema=pl.Schema({k: schema[k] for k in keys}),
            time_column=tcol,
            event_time=et if time == "event" else None,
            time_dtype=tdtype,
            ns_per_unit=ns,
            lateness=lateness,
            late_side=late == "side",
            early=early_s,
            calendar=calendar,
        )

    def agg(self, *aggs: pl.Expr | Sequence[pl.Expr], **named: pl.Expr) -> WindowedStream:
        """Compute aggregations per key and window: Polars expressions such as
        ``pl.len()``, ``pl.col("cpu").mean()``, ``pl.col("x").sum() / pl.len()``.

        The output has the columns ``*by, window_start, window_end, [revision],
        *aggregates``, one row per key and window with data, emitted when the watermark
        passes the window's end.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"ts": [0, 1, 2], "k": ["a", "b", "a"], "x": [1, 2, 3]})
        >>> out = (
        ...     vs.from_polars(df)
        ...     .with_watermark("ts", 0)
        ...     .window(vs.tumbling(10), by="k")
        ...     .agg(n=pl.len(), total=pl.col("x").sum())
        ...     .collect()
        ... )
        >>> out.sort("k").select("k", "n", "total").rows()
        [('a', 2, 4), ('b', 1, 2)]
        """
        exprs: list[pl.Expr] = []
        for a in flatten(aggs):
            if isinstance(a, str):
                a = pl.col(a)
            if not isinstance(a, pl.Expr):
                msg = f"{self._step}.agg: expected Polars expressions, got {a!r}"
                raise ExpressionError(msg)
            exprs.append(a)
        exprs.extend(e.alias(name) for name, e in named.items())
        parts = self._parts
        keys: list[str] = parts["by"]  # type: ignore[assignment]
        reserved = [*keys, "window_start", "window_end"]
        revisions = bool(parts["lateness"]) or parts["early"] is not None
        if revisions:
            reserved.append("revision")
        step = f"{self._step}.agg(...)"
        plan = plan_aggregations(exprs, self._stream.schema, step, reserved)
        tdtype = parts["time_dtype"]
        out: dict[str, pl.DataType] = {k: self._stream.schema[k] for k in keys}
        out["window_start"] = tdtype  # type: ignore[assignment]
        out["window_end"] = tdtype  # type: ignore[assignment]
        if revisions:
            out["revision"] = pl.UInt32()
        out.update(plan.schema)
        setup = WindowSetup(aggs=plan, schema=pl.Schema(out), **parts)  # type: ignore[arg-type]
        label = f"{self._step}.agg({', '.join(short(e, 40) for e in exprs)})"
        node = set_name(WindowNode(self._stream.node, setup, label), self._name, label)
        return WindowedStream(node)


class WindowedStream(Stream):
    """The result of a window aggregation: a Stream, plus its late-events branch."""

    def late_events(self) -> Stream:
        """The input rows that were late for all their windows (with ``late="side"``),
        as a branch of the same plan: collect it with :func:`vstream.collect_all`.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> batches = [pl.DataFrame({"ts": [5, 30]}), pl.DataFrame({"ts": [1]})]
        >>> w = (
        ...     vs.from_arrow([b.to_arrow() for b in batches])
        ...     .with_watermark("ts", 0)
        ...     .window(vs.tumbling(10), late="side")
        ...     .agg(pl.len())
        ... )
        >>> main, late = vs.collect_all([w, w.late_events()])
        >>> late["ts"].to_list()
        [1]
        """
        node = self._node
        assert isinstance(node, WindowNode)
        if not node.setup.late_side:
            msg = (
                f"{node.label}: late_events() needs late='side' in .window(...); "
                "late events are otherwise dropped (and counted in the metrics)"
            )
            raise PipelineError(msg)
        return Stream(LateEventsNode(node))
