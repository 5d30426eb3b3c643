"""The fluent Stream API. Every method builds and checks a plan node; nothing runs until a
terminal call (``collect``, ``iter_batches``, ``sink_*``, ``start``)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

import polars as pl
import pyarrow as pa

from vstream._duration import Duration, TimeUnit, parse_duration, unit_to_ns, wall_seconds
from vstream.errors import (
    ColumnNotFoundError,
    DurationError,
    EventTimeError,
    ExpressionError,
    PipelineError,
    SchemaError,
    UnboundedError,
)
from vstream.io.sinks import (
    CallbackSink,
    CollectSink,
    ParquetSink,
    ResultsSink,
    Sink,
    SinkMode,
    takes_epoch,
)
from vstream.ops.stateless import filter_frame, select_step, with_columns_step
from vstream.ops.window import WindowSetup
from vstream.plan.aggregates import plan_aggregations
from vstream.plan.explain import explain
from vstream.plan.expressions import (
    check_row_wise,
    check_row_wise_on_sample,
    infer_schema,
    root_columns,
)
from vstream.plan.nodes import (
    ConcatNode,
    DeadLettersNode,
    EventTime,
    HeadNode,
    Node,
    StepNode,
    WatermarkNode,
)
from vstream.plan.windows import (
    LateEventsNode,
    LateMode,
    TimeMode,
    WindowNode,
    WindowSpec,
    calendar_spec,
    processing_time,
    resolve,
)
from vstream.runtime.checkpointing import CheckpointConfig, merge_configs
from vstream.runtime.executor import Executor, Target
from vstream.runtime.metrics import Metrics
from vstream.runtime.progress import Progress, describe, run_total, wants_progress

if TYPE_CHECKING:
    from vstream.runtime.job import Job

__all__ = [
    "JoinedStream",
    "LazySink",
    "Stream",
    "TableStream",
    "WindowBuilder",
    "WindowedStream",
    "collect_all",
    "concat",
    "start_all",
    "table",
]

IntoExpr = pl.Expr | str | int | float | bool | None
JoinHow = Literal["inner", "left", "full"]
AsofStrategy = Literal["backward", "forward", "nearest"]
_TIME_UNITS = ("ns", "us", "ms", "s")


def _to_expr(value: IntoExpr, *, str_as_col: bool = True) -> pl.Expr:
    if isinstance(value, pl.Expr):
        return value
    if isinstance(value, str) and str_as_col:
        return pl.col(value)
    return pl.lit(value)


def _selector(expr: pl.Expr) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda df: df.select(expr)


def _flatten(items: Sequence[Any]) -> tuple[Any, ...]:
    """Accept lists of expressions as Polars does: ``select([a, b])`` is ``select(a, b)``."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, list | tuple):
            out.extend(item)
        else:
            out.append(item)
    return tuple(out)


def _label(step: str, exprs: Sequence[object], named: Mapping[str, object]) -> str:
    parts = [_short(e) for e in exprs] + [f"{k}={_short(v)}" for k, v in named.items()]
    return f"{step}({', '.join(parts)})"


def _short(value: object, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Stream:
    """A lazily built stream of micro-batches, the streaming counterpart of a LazyFrame.

    Build one with a source (:func:`vstream.from_polars`, :func:`vstream.from_parquet`,
    ...), chain steps, then run it with a terminal call.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> df = pl.DataFrame({"ts": [1, 2, 3], "host": ["a", "b", "a"], "cpu": [10.0, -1.0, 30.0]})
    >>> (
    ...     vs.from_polars(df, batch_size=2)
    ...     .filter(pl.col("cpu") >= 0)
    ...     .with_columns(load=pl.col("cpu") / 100)
    ...     .collect()
    ... )
    shape: (2, 4)
    ┌─────┬──────┬──────┬──────┐
    │ ts  ┆ host ┆ cpu  ┆ load │
    │ --- ┆ ---  ┆ ---  ┆ ---  │
    │ i64 ┆ str  ┆ f64  ┆ f64  │
    ╞═════╪══════╪══════╪══════╡
    │ 1   ┆ a    ┆ 10.0 ┆ 0.1  │
    │ 3   ┆ a    ┆ 30.0 ┆ 0.3  │
    └─────┴──────┴──────┴──────┘
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    # ------------------------------------------------------------------ properties
    @property
    def schema(self) -> pl.Schema:
        """The schema of the stream's batches, known before running."""
        return self._node.schema

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self._node.schema.names())

    @property
    def event_time(self) -> str | None:
        """The event-time column set by :meth:`with_watermark`, if any."""
        et = self._node.event_time
        return None if et is None else et.column

    @property
    def is_bounded(self) -> bool:
        """Whether the input ends by itself (files, DataFrames, ``head``)."""
        return self._node.bounded

    def __repr__(self) -> str:
        return f"<vstream.Stream {self._node.label!r}: {dict(self.schema)}>"

    def _repr_html_(self) -> str:
        """The plan with its schemas, as Jupyter shows a Stream (see :meth:`explain`)."""
        from vstream.notebook.render import plan_html  # altair loads only when displayed

        return plan_html(self)

    def explain(self) -> str:
        """The plan as text: every step with its output schema, sources at the leaves.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2]})).filter(pl.col("x") > 1)
        >>> print(s.explain())  # doctest: +ELLIPSIS
        [...] filter([(col("x")) > (dyn int: 1)])
        │  {x: Int64}
        └─ [...] from_polars(2 rows, batch_size=65536)
              {x: Int64}
        """
        return explain([self._node])

    # ------------------------------------------------------------------ event time
    def with_watermark(
        self,
        column: str | pl.Expr,
        max_out_of_orderness: Duration = 0,
        *,
        idle_timeout: Duration | float | None = None,
        time_unit: TimeUnit | None = None,
    ) -> Stream:
        """Declare the event-time column and how far out of order events may arrive.

        Each source split tracks ``max(event time seen) - max_out_of_orderness``; the
        stream's watermark is the minimum over unfinished, non-idle splits and never
        decreases. Rows with a null event time go to :meth:`dead_letters`.

        Parameters
        ----------
        column
            An integer or ``pl.Datetime`` column: its name or ``pl.col(name)``. A computed
            event time is added as a column first (``.with_columns(ts=...)``).
        max_out_of_orderness
            How late an event may be relative to the newest one seen: an int in the
            column's unit, or a Polars duration string / timedelta (for an integer
            column only when ``time_unit`` is declared).
        idle_timeout
            Wall-clock time (duration string, timedelta or seconds) after which a split
            without data stops holding the watermark back; when every split is idle the
            watermark follows the wall clock.
        time_unit
            The unit of an integer event-time column: ``"ns"``, ``"us"``, ``"ms"``, ``"s"``.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"ts": [1_000, 3_000, 2_000]})
        >>> vs.from_polars(df).with_watermark("ts", "1s", time_unit="ms").event_time
        'ts'
        >>> vs.from_polars(df).with_watermark(pl.col("ts"), 1_000).event_time
        'ts'
        """
        if isinstance(column, pl.Expr):
            if not column.meta.is_column():
                if column.meta.output_name(raise_if_undetermined=False) is None:
                    fix = "it may select several columns: name one, as in pl.col('ts')"
                else:
                    fix = (
                        "add it as a column first, .with_columns(ts=<the expression>), "
                        "then call .with_watermark('ts', ...)"
                    )
                msg = (
                    f"with_watermark({column}): the event time must be one column, given by "
                    f"its name or as pl.col(name), not an expression; {fix}"
                )
                raise EventTimeError(msg)
            column = column.meta.output_name()
        elif not isinstance(column, str):
            msg = (
                f"with_watermark({column!r}): the event-time column is given by its name "
                f"(a str) or as pl.col(name); got {type(column).__name__}"
            )
            raise EventTimeError(msg)
        step = f"with_watermark({column!r})"
        if self._node.event_time is not None:
            msg = (
                f"{step}: the stream already has event time {self._node.event_time.column!r}; "
                "call with_watermark once per stream"
            )
            raise EventTimeError(msg)
        if column not in self.schema:
            msg = f"{step}: no column {column!r}; the stream has {self.columns}"
            raise ColumnNotFoundError(msg)
        dtype = self.schema[column]
        unit: TimeUnit | None
        if isinstance(dtype, pl.Datetime):
            unit = dtype.time_unit
            if time_unit is not None and time_unit != unit:
                msg = f"{step}: time_unit={time_unit!r} but the column is {dtype} (unit {unit!r})"
                raise EventTimeError(msg)
        elif dtype.is_integer():
            if time_unit is not None and time_unit not in _TIME_UNITS:
                msg = f"{step}: time_unit must be one of {_TIME_UNITS}, got {time_unit!r}"
                raise EventTimeError(msg)
            unit = time_unit
        else:
            hint = (
                " (cast it with pl.col(...).cast(pl.Datetime('ms')) first)"
                if dtype in (pl.Date, pl.String)
                else ""
            )
            msg = (
                f"{step}: the event-time column must be an integer or Datetime, "
                f"{column!r} is {dtype}{hint}"
            )
            raise EventTimeError(msg)
        delay = parse_duration(max_out_of_orderness, unit, what=f"{step} max_out_of_orderness")
        idle = None if idle_timeout is None else wall_seconds(idle_timeout, f"{step} idle_timeout")
        et = EventTime(column, dtype, unit, delay, idle)
        shown = (
            f"{max_out_of_orderness}"
            if not isinstance(max_out_of_orderness, timedelta)
            else (f"{delay}{unit}")
        )
        label = f"with_watermark({column!r}, max_out_of_orderness={shown})"
        return Stream(WatermarkNode(self._node, et, label))

    # ------------------------------------------------------------------ stateless steps
    def _step(
        self,
        label: str,
        fn: Callable[[pl.DataFrame], pl.DataFrame],
        *,
        exprs: Sequence[pl.Expr] = (),
        check_schema: bool = False,
        assigns: frozenset[str] | None = frozenset(),
        renames: dict[str, str] | None = None,
        uses: frozenset[str] | None = None,
    ) -> Stream:
        for e in exprs:
            check_row_wise(e, label)
        schema = infer_schema(label, self.schema, fn)
        if exprs:
            check_row_wise_on_sample(list(exprs), self.schema, label)
        et = self._node.event_time
        if et is not None and et.column not in schema:
            et = None  # the event-time column was dropped: downstream has no event time
        roots = root_columns(exprs)
        node = StepNode(
            self._node,
            label,
            fn,
            schema,
            et,
            check_schema=check_schema,
            assigns=assigns,
            renames=renames,
            uses=None if roots is None else roots | (uses or frozenset()),
        )
        return Stream(node)

    def _guard_time_column(self, label: str, names: list[str]) -> None:
        et = self._node.event_time
        if et is not None and et.column in names:
            msg = (
                f"{label}: assigns the event-time column {et.column!r} after with_watermark; "
                "compute it before with_watermark, or write the result to another column"
            )
            raise EventTimeError(msg)

    def filter(self, *predicates: pl.Expr, **constraints: Any) -> Stream:
        """Keep the rows where every predicate is true (row-wise Polars expressions).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"x": [1, 5, 3]})).filter(pl.col("x") > 2)
        >>> s.collect()["x"].to_list()
        [5, 3]
        """
        predicates = _flatten(predicates)
        label = f"filter({', '.join(_short(p) for p in predicates) or ''}"
        label += (
            (", " if predicates and constraints else "")
            + ", ".join(f"{k}={v!r}" for k, v in constraints.items())
            + ")"
        )
        exprs = [pl.col(k) == v for k, v in constraints.items()]
        for p in predicates:
            if isinstance(p, str) or not isinstance(p, pl.Expr):
                kind = type(p).__name__
                msg = f"{label}: a predicate must be a Polars expression, got {kind} {p!r}"
                raise ExpressionError(msg)
            exprs.append(p)
        if not exprs:
            msg = "filter() needs at least one predicate"
            raise ExpressionError(msg)
        for e in exprs:
            check_row_wise(e, label)
            dtype = infer_schema(label, self.schema, _selector(e)).dtypes()[0]
            if dtype not in (pl.Boolean, pl.Null):
                msg = f"{label}: the predicate {_short(e)} is {dtype}, not Boolean"
                raise ExpressionError(msg)
        predicate = pl.all_horizontal(exprs) if len(exprs) > 1 else exprs[0]
        return self._step(label, lambda df: filter_frame(df, predicate), exprs=exprs)

    def with_columns(self, *exprs: IntoExpr, **named: IntoExpr) -> Stream:
        """Add or replace columns with row-wise Polars expressions.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"ms": [1500]})).with_columns(s=pl.col("ms") / 1000)
        >>> s.collect()["s"].to_list()
        [1.5]
        """
        exprs = _flatten(exprs)
        es = [_to_expr(e) for e in exprs] + [_to_expr(v).alias(k) for k, v in named.items()]
        label = _label("with_columns", exprs, named)
        for e in es:
            check_row_wise(e, label)
        names = infer_schema(label, self.schema, lambda df: df.select(es)).names()
        self._guard_time_column(label, names)
        # a replaced column keeps its place, so the source must still deliver it
        replaced = frozenset(n for n in names if n in self.schema)
        return self._step(
            label, with_columns_step(es), exprs=es, assigns=frozenset(names), uses=replaced
        )

    def select(self, *exprs: IntoExpr, **named: IntoExpr) -> Stream:
        """Keep or compute columns with row-wise Polars expressions.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"a": [1], "b": [2]}))
        >>> s.select("b", c=pl.col("a") + 1).columns
        ['b', 'c']
        """
        exprs = _flatten(exprs)
        es = [_to_expr(e) for e in exprs] + [_to_expr(v).alias(k) for k, v in named.items()]
        label = _label("select", exprs, named)
        if not es:
            msg = "select() needs at least one column or expression"
            raise ExpressionError(msg)
        for e in es:
            check_row_wise(e, label)
        computed: set[str] = set()
        for e in es:
            out = infer_schema(label, self.schema, _selector(e)).names()
            passthrough = (
                e.meta.is_column()
                and e.meta.output_name() in self.schema
                and (e.meta.root_names() == [e.meta.output_name()])
            )
            if not passthrough:
                computed.update(out)
        self._guard_time_column(label, sorted(computed))
        return self._step(label, select_step(es), exprs=es, assigns=frozenset(computed))

    def drop(self, *columns: str | Any) -> Stream:
        """Remove columns: names (all must exist) or Polars selectors.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"a": [1], "b": [2]})).drop("a").columns
        ['b']
        """
        label = f"drop({', '.join(_short(c) for c in columns)})"
        kept = infer_schema(label, self.schema, lambda df: df.drop(*columns)).names()
        gone = [c for c in self.schema.names() if c not in kept]
        return self._step(label, lambda df: df.drop(gone), uses=frozenset(gone))

    def rename(self, mapping: Mapping[str, str]) -> Stream:
        """Rename columns; the event-time column may be renamed too.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"a": [1]})).rename({"a": "b"}).columns
        ['b']
        """
        mapping = dict(mapping)
        label = f"rename({mapping})"
        missing = [c for c in mapping if c not in self.schema]
        if missing:
            msg = f"{label}: no column {missing[0]!r}; the stream has {self.columns}"
            raise ColumnNotFoundError(msg)
        out = self._step(
            label,
            lambda df: df.rename(mapping),
            renames={new: old for old, new in mapping.items()},
        )
        et = self._node.event_time
        if et is not None and (et.column in mapping or et.other in mapping):
            node = out._node
            assert isinstance(node, StepNode)
            # only the names change: a window result's time stays window_end - 1
            node.event_time = dataclasses.replace(
                et,
                column=mapping.get(et.column, et.column),
                other=None if et.other is None else mapping.get(et.other, et.other),
            )
        return out

    def map_batches(
        self,
        fn: Callable[[pl.DataFrame], pl.DataFrame],
        *,
        schema: Mapping[str, pl.DataType] | pl.Schema | None = None,
        name: str | None = None,
    ) -> Stream:
        """Apply any function to each micro-batch: the explicit escape hatch.

        The function sees one batch at a time, so anything it computes across rows is
        per batch. Its output schema is ``schema`` or, if not given, found by calling it
        on an empty frame when the pipeline is built.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"a": [1, 2]})).map_batches(lambda df: df * 10)
        >>> s.collect()["a"].to_list()
        [10, 20]
        """
        if not callable(fn):
            msg = f"map_batches takes a function of a polars.DataFrame, got {type(fn).__name__}"
            raise PipelineError(msg)
        label = f"map_batches({name or getattr(fn, '__name__', type(fn).__name__)})"
        if schema is not None:
            expected = pl.Schema(schema)
            out = Stream(
                StepNode(self._node, label, fn, expected, None, check_schema=True, assigns=None)
            )
        else:

            def checked(df: pl.DataFrame) -> pl.DataFrame:
                res = fn(df)
                if not isinstance(res, pl.DataFrame):
                    msg = f"{label} must return a polars.DataFrame, got {type(res).__name__}"
                    raise PipelineError(msg)
                return res

            out = self._step(label, checked, check_schema=True, assigns=None)
        et = self._node.event_time
        keeps_time = et is not None and out.schema.get(et.column) == et.dtype
        out._node.event_time = et if keeps_time else None
        return out

    def head(self, n: int) -> Stream:
        """The first ``n`` rows; bounds an unbounded stream so it can be collected.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"a": range(10)}), batch_size=3).head(4).collect().height
        4
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            msg = f"head(n): n must be an int >= 0, got {n!r}"
            raise PipelineError(msg)
        return Stream(HeadNode(self._node, n))

    # ------------------------------------------------------------------ windows
    def window(
        self,
        spec: WindowSpec,
        by: str | Sequence[str] | None = None,
        *,
        allowed_lateness: Duration = 0,
        late: LateMode = "drop",
        early: Duration | float | None = None,
        time: TimeMode = "event",
    ) -> WindowBuilder:
        """Group the stream into windows (per key ``by``); finish with ``.agg(...)``.

        Parameters
        ----------
        spec
            :func:`vstream.tumbling`, :func:`vstream.hopping` or :func:`vstream.session`.
        by
            Key column(s): integer, string, categorical, boolean or date; null keys form
            their own group. None: windows over all rows.
        allowed_lateness
            How long after firing a window keeps its state: a late event within it
            updates the window, which is emitted again with ``revision`` + 1.
        late
            ``"drop"`` (counted in the metrics) or ``"side"``: events late for all their
            windows also go to :meth:`WindowedStream.late_events`.
        early
            Wall-clock interval at which open windows emit their current partial result
            (with a ``revision`` column); the final result follows when the window fires.
        time
            ``"event"`` (the column set by :meth:`with_watermark`) or ``"processing"``
            (the wall clock at arrival; windows fire by the wall clock).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"ts": [0, 500, 1_500], "cpu": [1.0, 3.0, 5.0]})
        >>> (
        ...     vs.from_polars(df)
        ...     .with_watermark("ts", "1s", time_unit="ms")
        ...     .window(vs.tumbling("1s"))
        ...     .agg(pl.len(), pl.col("cpu").mean())
        ...     .collect()
        ... )
        shape: (2, 4)
        ┌──────────────┬────────────┬─────┬─────┐
        │ window_start ┆ window_end ┆ len ┆ cpu │
        │ ---          ┆ ---        ┆ --- ┆ --- │
        │ i64          ┆ i64        ┆ u32 ┆ f64 │
        ╞══════════════╪════════════╪═════╪═════╡
        │ 0            ┆ 1000       ┆ 2   ┆ 2.0 │
        │ 1000         ┆ 2000       ┆ 1   ┆ 5.0 │
        └──────────────┴────────────┴─────┴─────┘
        """
        return WindowBuilder(
            self, spec, by, allowed_lateness=allowed_lateness, late=late, early=early, time=time
        )

    def group_by(self, *by: Any, **kwargs: Any) -> None:
        """Not a streaming operation: a running group-by never ends. Use windows.

        Raises
        ------
        PipelineError
            Always, pointing to ``.window(...).agg(...)``.
        """
        msg = (
            "group_by(...) on a stream would never finish (its groups change with every "
            "event): aggregate over windows instead, e.g. "
            ".window(vs.tumbling('1m'), by=...).agg(...)"
        )
        raise PipelineError(msg)

    # ------------------------------------------------------------------ joins
    def join_asof(
        self,
        other: Stream,
        on: str | None = None,
        *,
        left_on: str | None = None,
        right_on: str | None = None,
        by: str | Sequence[str] | None = None,
        by_left: str | Sequence[str] | None = None,
        by_right: str | Sequence[str] | None = None,
        strategy: AsofStrategy = "backward",
        tolerance: Duration | None = None,
        suffix: str = "_right",
    ) -> JoinedStream:
        """Join each row to the right row with the nearest earlier (or later) time, as
        :meth:`polars.DataFrame.join_asof` does.

        Both inputs need event time; ``on`` is the event-time column (the default).
        ``backward`` takes the right row with the largest time ``<=`` the left row's,
        per key ``by``; ``forward`` the smallest ``>=``; ``nearest`` the closer one.
        A left row is emitted once the right watermark has passed its time (plus
        ``tolerance`` for forward and nearest), so each answer is final; ``forward`` and
        ``nearest`` on an unbounded input need ``tolerance``. The output keeps the left
        row's event time. The right side keeps, per key, the rows newer than the join's
        watermark (the lower of the two inputs') and the newest row at or before it. A
        left row is late once the join's watermark has passed it, so it can wait for a
        lagging right input; a right row is late once the right watermark has passed it
        (the left rows up to that time have been answered already).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> ev = pl.DataFrame({"ts": [5, 12, 30], "host": ["a", "a", "b"]})
        >>> dep = pl.DataFrame({"ts": [0, 10, 20], "host": ["a", "a", "b"], "ver": [1, 2, 7]})
        >>> left = vs.from_polars(ev).with_watermark("ts", 0)
        >>> right = vs.from_polars(dep).with_watermark("ts", 0)
        >>> left.join_asof(right, on="ts", by="host").collect().sort("ts")["ver"].to_list()
        [1, 2, 7]
        """
        from vstream.plan.joins import JoinArgs, build_join

        step = f"join_asof({_short(by or by_left or '', 30)}, strategy={strategy!r})"
        other = _stream_arg(step, other)
        args = JoinArgs(
            "asof", on, left_on, right_on, by, by_left, by_right,
            strategy=strategy, tolerance=tolerance, suffix=suffix,
        )  # fmt: skip
        return JoinedStream(build_join(step, self._node, other._node, args))

    def join_interval(
        self,
        other: Stream,
        on: str | Sequence[str] | None = None,
        *,
        left_on: str | Sequence[str] | None = None,
        right_on: str | Sequence[str] | None = None,
        lower: Duration,
        upper: Duration,
        how: JoinHow = "inner",
        suffix: str = "_right",
    ) -> JoinedStream:
        """Pair rows with the same key whose times satisfy
        ``left.t + lower <= right.t <= left.t + upper`` (``t``: each input's event-time
        column).

        Each pair is emitted once, when its second row arrives. A row is kept until the
        join's watermark (the lower of the two inputs') proves no partner can come; then
        ``how="left"`` (or ``"full"``) emits it with nulls if it found none. A row is late
        only when that watermark has passed the last time it could still pair:
        ``t + max(upper, 0)`` for a left row, ``t + max(-lower, 0)`` for a right row,
        never merely because it is behind its own input's watermark. The output has the columns of
        :meth:`polars.DataFrame.join` with the same ``how``, and the later of the two
        event times.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> req = pl.DataFrame({"ts": [0, 10], "id": [1, 2]})
        >>> resp = pl.DataFrame({"ts": [3, 50], "id": [1, 2], "code": [200, 500]})
        >>> a = vs.from_polars(req).with_watermark("ts", 0)
        >>> b = vs.from_polars(resp).with_watermark("ts", 0)
        >>> out = a.join_interval(b, on="id", lower=0, upper=30, how="left").collect()
        >>> out.sort("id").select("id", "code").rows()
        [(1, 200), (2, None)]
        """
        from vstream.plan.joins import JoinArgs, build_join

        step = f"join_interval({_short(on or left_on, 30)}, lower={lower!r}, upper={upper!r})"
        other = _stream_arg(step, other)
        args = JoinArgs(
            "interval", on, left_on, right_on, how=how, suffix=suffix, lower=lower, upper=upper
        )
        return JoinedStream(build_join(step, self._node, other._node, args))

    def join(
        self,
        other: Stream | TableStream | pl.DataFrame | pl.LazyFrame | pa.Table,
        on: str | Sequence[str] | None = None,
        *,
        left_on: str | Sequence[str] | None = None,
        right_on: str | Sequence[str] | None = None,
        how: JoinHow = "inner",
        window: WindowSpec | None = None,
        ttl: Duration | None = None,
        suffix: str = "_right",
    ) -> JoinedStream:
        """Join on key columns, as :meth:`polars.DataFrame.join` does.

        - ``other`` a Stream with ``window=vs.tumbling(...)`` or ``vs.hopping(...)``:
          a windowed join; pairs with the same key that share a window, once per shared
          window; the output appends ``window_start`` and ``window_end``.
        - ``other`` a Stream with ``ttl``: a regular join; pairs with the same key whose
          times are at most ``ttl`` apart, emitted when the second row arrives (rows are
          kept for ``ttl`` of event time past the join's watermark, the lower of the two
          inputs'). Without
          ``ttl`` both inputs must be bounded.
        - ``other`` a ``polars.DataFrame`` / ``LazyFrame`` (collected when the join is
          built) / ``pyarrow.Table`` (one row per key), or
          :func:`vstream.table` of a stream of updates (the latest row per key wins): a
          lookup. Before each event batch the update stream is read up to its current
          end, so each event sees the table as of its batch (processing time). The
          output keeps the events' event time.

        ``how`` is ``"inner"``, ``"left"`` or (stream-stream) ``"full"``; unmatched rows
        are emitted when the watermarks prove no partner can come. Stream-stream joins
        have the later of the two event times.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> hosts = pl.DataFrame({"host": ["a", "b"], "dc": ["eu", "us"]})
        >>> ev = vs.from_polars(pl.DataFrame({"host": ["b", "a", "c"], "cpu": [1, 2, 3]}))
        >>> ev.join(hosts, on="host", how="left").collect()["dc"].to_list()
        ['us', 'eu', None]
        """
        from vstream.plan.joins import JoinArgs, build_join

        if isinstance(other, pl.LazyFrame):
            other = other.collect()
        if isinstance(other, pl.DataFrame | pa.Table | TableStream):
            step = f"join(table, on={_short(on or left_on, 30)}, how={how!r})"
            if window is not None or ttl is not None:
                msg = f"{step}: window= and ttl= are for joins of two streams, not lookups"
                raise PipelineError(msg)
            args = JoinArgs("lookup", on, left_on, right_on, how=how, suffix=suffix)
            if isinstance(other, TableStream):
                return JoinedStream(build_join(step, self._node, other.stream._node, args))
            table = other if isinstance(other, pl.DataFrame) else pl.DataFrame(other)
            return JoinedStream(build_join(step, self._node, None, args, table=table))
        kind = "window" if window is not None else "regular"
        extra = f", window={window}" if window is not None else f", ttl={ttl!r}"
        step = f"join({_short(on or left_on, 30)}{extra}, how={how!r})"
        other = _stream_arg(step, other)
        if window is not None and ttl is not None:
            msg = f"{step}: pass window= (a windowed join) or ttl= (a regular join), not both"
            raise PipelineError(msg)
        args = JoinArgs(
            kind, on, left_on, right_on, how=how, suffix=suffix, window=window, ttl=ttl
        )
        return JoinedStream(build_join(step, self._node, other._node, args))

    # ------------------------------------------------------------------ branches
    def dead_letters(self) -> Stream:
        """The records refused anywhere upstream: columns ``record`` (the raw line or
        record as text; rows refused after parsing, e.g. for a null event time, are
        re-serialized as JSON), ``reason`` and ``step``. Collect it with the main output
        in one run with :func:`vstream.collect_all`.

        Examples
        --------
        >>> import vstream as vs
        >>> s = vs.from_ndjson([b'{"x": 1}', b'{"x": oops}', b'{"x": 2}'], schema={"x": pl.Int64})
        >>> main, dead = vs.collect_all([s, s.dead_letters()])
        >>> main["x"].to_list(), dead["record"].to_list()
        ([1, 2], ['{"x": oops}'])
        """
        return Stream(DeadLettersNode(self._node))

    # ------------------------------------------------------------------ terminals
    def collect(
        self,
        *,
        timeout: Duration | float | None = None,
        return_metrics: bool = False,
        progress: bool | None = None,
    ) -> Any:
        """Run to the end of the input and return the rows as a ``polars.DataFrame``.

        Refused on an unbounded stream unless it is bounded by :meth:`head` or
        ``timeout`` (after which the input is treated as ended). With
        ``return_metrics=True`` returns ``(DataFrame, Metrics)``.

        ``progress`` shows a bar of the rows read (of the sources' total, where they know
        it) once the run has lasted half a second: None shows it when stderr is a terminal
        or in Jupyter, True always, False never.
        """
        results, metrics = _run([self], timeout=timeout, stacklevel=2, progress=progress)
        return (results[0], metrics) if return_metrics else results[0]

    def iter_batches(self, *, timeout: Duration | float | None = None) -> Iterator[pl.DataFrame]:
        """Run and yield output batches as they are produced (works on unbounded input).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"a": range(5)}), batch_size=2)
        >>> [b.height for b in s.iter_batches()]
        [2, 2, 1]
        """
        sink = CollectSink()
        deadline = None if timeout is None else time.monotonic() + wall_seconds(timeout, "timeout")
        ex = Executor([Target(self._node, sink)])
        steps: Generator[None, None, None] = ex.run(deadline)
        try:
            for _ in steps:
                if sink.frames:
                    frames, sink.frames = sink.frames, []
                    yield from frames
            yield from sink.frames
            ex.warn_uncollected(2)
        finally:
            steps.close()

    def sink_parquet(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_file: int = 1_000_000,
        flush_interval: Duration | float | None = "10s",
        compression: str = "zstd",
        mode: SinkMode = "error",
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Any:
        """Write the stream to Parquet part files in a directory, or to one file.

        Each file is written in the sink's own directory beside the output
        (``.<name>.vstream/``, on the same file system) and renamed into the output when
        complete, so the output directory holds complete part files and nothing else:
        ``pl.read_parquet(path)``, ``pl.scan_parquet(path)`` and ``pyarrow.dataset`` read
        it at any moment. Returns the run's :class:`Metrics`, or a :class:`LazySink` with
        ``lazy=True`` for :func:`vstream.collect_all`.

        ``mode`` says what to do with a directory that already has content and is not
        this sink's own checkpointed output (as Spark's ``mode``): ``"error"`` refuses
        it, ``"overwrite"`` deletes its content first, ``"append"`` adds part files
        after the ones there. A directory holding another checkpointed run's output is
        refused whatever the mode.

        A path ending in ``.parquet`` (that is not an existing directory) is one file,
        for a bounded stream without checkpoints, as Polars' ``sink_parquet`` writes: it
        appears at the end of a run that did not fail, at once (written to a temporary
        file, then renamed); ``mode="error"`` refuses an existing file, ``"overwrite"``
        replaces it.

        With ``checkpoint_dir`` the run is exactly-once and restartable: every
        ``checkpoint_interval`` (a duration of wall-clock time, or an int number of
        source batches) it checkpoints its sources' positions, watermarks and state, and
        only then commits the part files written since the previous checkpoint
        (``part-<epoch>-<k>.parquet``). Running the same pipeline again with the same
        ``checkpoint_dir`` resumes from the newest good checkpoint, and the directory
        ends up with exactly the rows of an uninterrupted run. A ``timeout`` then
        pauses the run at a checkpoint instead of ending its input. The last
        ``keep_checkpoints`` checkpoints are kept.

        ``progress`` shows a bar of the rows read (of the sources' total, where they know
        it) once the run has lasted half a second: None shows it when stderr is a terminal
        or in Jupyter, True always, False never.

        Examples
        --------
        >>> import tempfile, os
        >>> import polars as pl
        >>> import vstream as vs
        >>> d = tempfile.mkdtemp()
        >>> s = vs.from_polars(pl.DataFrame({"x": range(10)}), batch_size=4)
        >>> out, ckpt = os.path.join(d, "out"), os.path.join(d, "ckpt")
        >>> _ = s.sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1)
        >>> pl.read_parquet(out).height
        10
        >>> _ = s.head(3).sink_parquet(os.path.join(d, "first.parquet"))  # one file
        >>> pl.read_parquet(os.path.join(d, "first.parquet")).height
        3
        """
        where = "sink_parquet"
        interval = (
            None if flush_interval is None else wall_seconds(flush_interval, "flush_interval")
        )
        config = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, where
        )
        sink = LazySink(
            self,
            lambda: ParquetSink(
                path,
                rows_per_file=rows_per_file,
                flush_interval=interval,
                compression=compression,
                mode=mode,
            ),
            checkpoint=config,
        )
        probe = sink._factory()  # validate the arguments now, not at run time
        assert isinstance(probe, ParquetSink)
        if probe.single and config is not None:
            msg = (
                f"{where}: a single Parquet file ({str(path)!r}) cannot be written "
                "exactly-once with checkpoint_dir; pass a directory (a path not ending in "
                ".parquet)"
            )
            raise PipelineError(msg)
        if probe.single and not self.is_bounded:
            msg = (
                f"{where}: {str(path)!r} is one Parquet file, written at the end of the "
                "input, and this stream is unbounded; write to a directory of part files "
                "(a path not ending in .parquet), or bound the stream with .head(n)"
            )
            raise PipelineError(msg)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=3, progress=progress)

    def sink_callback(
        self,
        fn: Callable[..., object],
        *,
        lazy: bool = False,
        timeout: Duration | float | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
        progress: bool | None = None,
    ) -> Any:
        """Call ``fn`` with every output batch (a ``polars.DataFrame``).

        With ``checkpoint_dir`` (see :meth:`sink_parquet`) the run checkpoints and
        resumes, and ``fn`` is called as ``fn(df, epoch)``. The guarantee is
        at-least-once: after a restart from the checkpoint of epoch ``e``, the rows of
        epoch ``e + 1`` onwards are delivered again, under the same epoch ids. To get
        exactly-once results, make the write idempotent per epoch: replace what an
        epoch wrote before (``DELETE ... WHERE epoch >= e``) rather than appending.
        ``progress``: as in :meth:`collect`.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> seen = []
        >>> _ = vs.from_polars(pl.DataFrame({"a": range(5)}), batch_size=2).sink_callback(
        ...     lambda df: seen.append(df.height))
        >>> seen
        [2, 2, 1]
        """
        config = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, "sink_callback"
        )
        with_epoch = config is not None
        if with_epoch and not takes_epoch(fn):
            msg = (
                "sink_callback: with checkpoint_dir the function is called as fn(df, epoch) "
                "(the epoch id lets it drop rows a restart delivers again); "
                f"{getattr(fn, '__name__', fn)!r} does not take two arguments"
            )
            raise PipelineError(msg)
        CallbackSink(fn)
        sink = LazySink(self, lambda: CallbackSink(fn, with_epoch=with_epoch), checkpoint=config)
        return sink if lazy else sink.run(timeout=timeout, stacklevel=3, progress=progress)

    def start(
        self,
        *,
        keep: int = 100_000,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_interval: Duration | int = "10s",
        keep_checkpoints: int = 3,
    ) -> Job:
        """Run in a background thread; see :class:`vstream.Job`.

        ``job.results`` holds the newest ``keep`` output rows while it runs. With
        ``checkpoint_dir`` the job checkpoints its state and positions (see
        :meth:`sink_parquet`); ``job.stop()`` then takes a last checkpoint and a later
        start resumes from it. The rows kept in memory are not part of a checkpoint.
        """
        from vstream.runtime.job import Job

        config = CheckpointConfig.parse(
            checkpoint_dir, checkpoint_interval, keep_checkpoints, "start"
        )
        return Job.launch([self], keep=keep, checkpoint=config)


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
    ) -> None:
        self._stream = stream
        keys = [] if by is None else [by] if isinstance(by, str) else list(by)
        step = f"window({spec}{', by=' + repr(by) if by is not None else ''})"
        self._step = step
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
        et = stream._node.event_time
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
        for a in _flatten(aggs):
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
        label = f"{self._step}.agg({', '.join(_short(e, 40) for e in exprs)})"
        return WindowedStream(WindowNode(self._stream._node, setup, label))


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


class JoinedStream(Stream):
    """The result of a join: a Stream, plus the late rows of each input."""

    def late_events(self, side: Literal["left", "right"] = "left") -> Stream:
        """The rows of the ``side`` input that arrived too late for the join (its
        watermark, the lower of the two inputs', had passed the last time they could still
        pair) and were left out of the join, as a branch of the same plan (collect it with
        :func:`vstream.collect_all`). They are also counted in ``Metrics.late_events``.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> left = vs.from_polars(pl.DataFrame({"ts": [0, 10], "k": [1, 1]}))
        >>> left = left.with_watermark("ts", 0)
        >>> right = vs.from_arrow(
        ...     [pl.DataFrame({"ts": [20], "k": [1]}).to_arrow(),
        ...      pl.DataFrame({"ts": [5], "k": [1]}).to_arrow()]
        ... ).with_watermark("ts", 0)
        >>> j = left.join_interval(right, on="k", lower=0, upper=30)
        >>> out, late = vs.collect_all([j, j.late_events("right")])
        >>> late["ts"].to_list()
        [5]
        """
        node = self._node
        if side not in ("left", "right"):
            msg = f"late_events: side must be 'left' or 'right', got {side!r}"
            raise PipelineError(msg)
        port = 0 if side == "left" else 1
        if port >= len(node.inputs):
            msg = f"{node.label}: a lookup against a static table has no right input"
            raise PipelineError(msg)
        return Stream(LateEventsNode(node, port))


class TableStream:
    """A stream of table updates to look up in: see :func:`table`."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def __repr__(self) -> str:
        return f"vs.table({self.stream!r})"


def table(updates: Stream) -> TableStream:
    """Use a stream of rows as a lookup table: the latest row per key wins.

    Pass it to :meth:`Stream.join`: ``events.join(vs.table(updates), on="host")``.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> upd = vs.from_polars(pl.DataFrame({"host": ["a", "a"], "dc": ["eu", "us"]}))
    >>> ev = vs.from_polars(pl.DataFrame({"host": ["a"]}))
    >>> ev.join(vs.table(upd), on="host").collect()["dc"].to_list()
    ['us']
    """
    if not isinstance(updates, Stream):
        msg = f"vs.table takes a Stream of updates, got {type(updates).__name__}"
        raise PipelineError(msg)
    return TableStream(updates)


def _stream_arg(step: str, other: object) -> Stream:
    if not isinstance(other, Stream):
        msg = f"{step}: the right input must be a vstream Stream, got {type(other).__name__}"
        raise PipelineError(msg)
    return other


class LazySink:
    """A sink not yet run: pass several to :func:`vstream.collect_all` to run them as one
    job over one plan, or call :meth:`run`."""

    def __init__(
        self,
        stream: Stream,
        factory: Callable[[], Sink],
        checkpoint: CheckpointConfig | None = None,
    ) -> None:
        self.stream = stream
        self._factory = factory
        self.checkpoint = checkpoint

    def run(
        self,
        *,
        timeout: Duration | float | None = None,
        stacklevel: int = 2,
        progress: bool | None = None,
    ) -> Metrics:
        """Run this sink alone; returns the run's metrics (``progress``: as in
        :meth:`Stream.collect`)."""
        _, metrics = _run([self], timeout=timeout, stacklevel=stacklevel, progress=progress)
        return metrics

    def start(self) -> Job:
        """Run in a background thread."""
        from vstream.runtime.job import Job

        return Job.launch([self], checkpoint=self.checkpoint)

    def __repr__(self) -> str:
        return f"<vstream.LazySink of {self.stream._node.label!r}>"


def _targets(items: Sequence[Stream | LazySink], keep: int | None = None) -> list[Target]:
    targets = []
    for item in items:
        if isinstance(item, Stream):
            sink: Sink = CollectSink() if keep is None else ResultsSink(keep)
            targets.append(Target(item._node, sink))
        elif isinstance(item, LazySink):
            targets.append(Target(item.stream._node, item._factory()))
        else:
            kind = type(item).__name__
            msg = f"expected Streams or lazy sinks (sink_*(..., lazy=True)), got {kind}"
            raise PipelineError(msg)
    return targets


def job_checkpoint(
    items: Sequence[Stream | LazySink], given: CheckpointConfig | None, where: str
) -> CheckpointConfig | None:
    """The checkpoint setting of a run: the one passed to it, or its sinks' one."""
    configs = [i.checkpoint for i in items if isinstance(i, LazySink)]
    return merge_configs([given, *configs], where)


def _run(
    items: Sequence[Stream | LazySink],
    *,
    timeout: Duration | float | None,
    stacklevel: int = 2,
    checkpoint: CheckpointConfig | None = None,
    progress: bool | None = None,
) -> tuple[list[pl.DataFrame | None], Metrics]:
    """Run items as one job; ``stacklevel`` of the user's call relative to our caller."""
    if not items:
        msg = "nothing to run: pass at least one Stream or lazy sink"
        raise PipelineError(msg)
    targets = _targets(items)
    if timeout is None:
        for item in items:
            stream = item if isinstance(item, Stream) else item.stream
            if isinstance(stream, Stream) and not stream.is_bounded:
                from vstream.plan.nodes import SourceNode, ancestors

                culprits = [
                    n.label
                    for n in ancestors([stream._node])
                    if isinstance(n, SourceNode) and not n.bounded
                ]
                msg = (
                    f"cannot run to the end of {', '.join(culprits)}: it is unbounded. "
                    "Bound it with .head(n), pass timeout='10s', or run it in the background "
                    "with .start()"
                )
                raise UnboundedError(msg)
    deadline = None if timeout is None else time.monotonic() + wall_seconds(timeout, "timeout")
    bar = None
    if wants_progress(progress):
        outputs = [t.node for t in targets]
        bar = Progress(run_total(outputs), describe(outputs))
    ex = Executor(targets, job_checkpoint(items, checkpoint, "collect_all"), progress=bar)
    for _ in ex.run(deadline):
        pass
    ex.warn_uncollected(stacklevel + 1)
    results = [t.sink.result() if isinstance(t.sink, CollectSink) else None for t in targets]
    return results, ex.metrics


@overload
def collect_all(
    items: Sequence[Stream | LazySink],
    *,
    timeout: Duration | float | None = ...,
    return_metrics: Literal[False] = ...,
    checkpoint_dir: str | os.PathLike[str] | None = ...,
    checkpoint_interval: Duration | int = ...,
    keep_checkpoints: int = ...,
    progress: bool | None = ...,
) -> list[pl.DataFrame | None]: ...
@overload
def collect_all(
    items: Sequence[Stream | LazySink],
    *,
    timeout: Duration | float | None = ...,
    return_metrics: Literal[True],
    checkpoint_dir: str | os.PathLike[str] | None = ...,
    checkpoint_interval: Duration | int = ...,
    keep_checkpoints: int = ...,
    progress: bool | None = ...,
) -> tuple[list[pl.DataFrame | None], Metrics]: ...
def collect_all(
    items: Sequence[Stream | LazySink],
    *,
    timeout: Duration | float | None = None,
    return_metrics: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_interval: Duration | int = "10s",
    keep_checkpoints: int = 3,
    progress: bool | None = None,
) -> Any:
    """Run several branches of one plan together, as ``pl.collect_all`` does.

    Shared steps run once. Returns one DataFrame per Stream (None for a lazy sink).
    A run has one checkpoint (see :meth:`Stream.sink_parquet`): pass ``checkpoint_dir``
    here, or to the lazy sinks (the same one to each). ``progress``: as in
    :meth:`Stream.collect`.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2, 3, 4]}))
    >>> even = s.filter(pl.col("x") % 2 == 0)
    >>> odd = s.filter(pl.col("x") % 2 == 1)
    >>> even, odd = vs.collect_all([even, odd])
    >>> even["x"].to_list(), odd["x"].to_list()
    ([2, 4], [1, 3])
    """
    config = CheckpointConfig.parse(
        checkpoint_dir, checkpoint_interval, keep_checkpoints, "collect_all"
    )
    results, metrics = _run(
        items, timeout=timeout, stacklevel=2, checkpoint=config, progress=progress
    )
    return (results, metrics) if return_metrics else results


def start_all(
    items: Sequence[Stream | LazySink],
    *,
    keep: int = 100_000,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_interval: Duration | int = "10s",
    keep_checkpoints: int = 3,
) -> Job:
    """Run several branches of one plan in one background job (checkpointed as in
    :func:`collect_all`)."""
    from vstream.runtime.job import Job

    config = CheckpointConfig.parse(
        checkpoint_dir, checkpoint_interval, keep_checkpoints, "start_all"
    )
    return Job.launch(items, keep=keep, checkpoint=config)


def concat(streams: Sequence[Stream]) -> Stream:
    """The union of streams with the same schema.

    Its watermark is the minimum of its inputs', and the input furthest behind in
    event time is read first.

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> a = vs.from_polars(pl.DataFrame({"x": [1, 2]}))
    >>> b = vs.from_polars(pl.DataFrame({"x": [3]}))
    >>> sorted(vs.concat([a, b]).collect()["x"].to_list())
    [1, 2, 3]
    """
    streams = list(streams)
    if not streams or not all(isinstance(s, Stream) for s in streams):
        msg = "concat takes a non-empty list of Streams"
        raise PipelineError(msg)
    first = streams[0]
    for k, s in enumerate(streams[1:], start=1):
        if s.schema != first.schema:
            diff = next(
                (
                    f"column {n!r} is {first.schema.get(n)} in input 0 "
                    f"and {s.schema.get(n)} in input {k}"
                    for n in dict.fromkeys([*first.schema.names(), *s.schema.names()])
                    if first.schema.get(n) != s.schema.get(n)
                ),
                "the columns are in a different order",
            )
            msg = f"concat: inputs need the same schema; {diff}"
            raise SchemaError(msg)
    times = [s._node.event_time for s in streams]
    if any(t is not None for t in times):
        if any(t is None for t in times):
            msg = (
                "concat: some inputs have event time (with_watermark) and some do not; call "
                "with_watermark on every input, or once after concat"
            )
            raise EventTimeError(msg)
        cols = {t.column for t in times if t is not None}
        if len(cols) > 1:
            msg = f"concat: the inputs' event-time columns differ: {sorted(cols)}"
            raise EventTimeError(msg)
        et = times[0]
        assert et is not None
        et = EventTime(
            et.column, et.dtype, et.unit, max(t.delay for t in times if t), et.idle_timeout
        )
    else:
        et = None
    return Stream(ConcatNode(tuple(s._node for s in streams), et))
