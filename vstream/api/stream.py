"""The fluent Stream API: a Stream and its steps. Every method builds and checks a plan
node; nothing runs until a terminal call (``collect``, ``iter_batches``, ``sink_*``,
``start``: :mod:`vstream.api.sinks`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, NoReturn, ParamSpec, TypeVar

import polars as pl
import pyarrow as pa

from vstream._duration import Duration, TimeUnit, parse_duration, wall_seconds
from vstream.api._parse import call_label, flatten, selector, short, to_expr
from vstream.api.base import named, set_name
from vstream.api.options import TIME_UNITS, AsofStrategy, IntoExpr, JoinHow, LateMode, TimeMode
from vstream.api.polars_methods import PolarsMethods
from vstream.errors import (
    ColumnNotFoundError,
    EventTimeError,
    ExpressionError,
    PipelineError,
)
from vstream.plan.expressions import check_row_wise, infer_schema
from vstream.plan.nodes import (
    DeadLettersNode,
    EventTime,
    HeadNode,
    StepNode,
    WatermarkNode,
)
from vstream.plan.windows import WindowSpec

if TYPE_CHECKING:
    # these subclass or take a Stream: imported where they are used, below
    from vstream.api.join import JoinedStream, TableStream
    from vstream.api.window import WindowBuilder

__all__ = ["Stream"]

P = ParamSpec("P")
T = TypeVar("T")


class Stream(PolarsMethods):
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

    def _repr_html_(self) -> str:
        """The plan with its schemas, as Jupyter shows a Stream (see :meth:`explain`)."""
        from vstream.notebook.render import plan_html  # the notebook layer: when displayed

        return plan_html(self)

    # ------------------------------------------------------------------ event time
    def with_watermark(
        self,
        column: str | pl.Expr,
        max_out_of_orderness: Duration = 0,
        *,
        idle_timeout: Duration | float | None = None,
        time_unit: TimeUnit | None = None,
        as_datetime: bool = False,
        name: str | None = None,
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
            With it the job's gauges show the watermark as a UTC datetime and a live
            view plots the time axis as dates; the data keep their integers.
        as_datetime
            Cast the integer event-time column to ``pl.Datetime(time_unit)`` right after
            this step, so window bounds (``window_start``, ``window_end``) and every row
            downstream carry datetimes. Needs ``time_unit`` ``"ms"``, ``"us"`` or
            ``"ns"``. The datetimes are naive and read as UTC, as ``pl.from_epoch``
            gives them: windows are cut exactly where they are on the integers (a time
            zone's local windows need a zone-aware column cast before this step). The
            results equal the integer run's, cast. A ``Datetime`` column is kept as it is.
        name
            A stable name for the step's state in checkpoints; set it to keep the state
            when the pipeline around it changes. Letters, digits, ``_`` and ``-``
            (at most 64), unique in a run.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"ts": [1_000, 3_000, 2_000]})
        >>> vs.from_polars(df).with_watermark("ts", "1s", time_unit="ms").event_time
        'ts'
        >>> vs.from_polars(df).with_watermark(pl.col("ts"), 1_000).event_time
        'ts'

        Integers in milliseconds since the epoch, windows with datetime bounds:

        >>> df = pl.DataFrame({"ts": [1_704_067_200_000, 1_704_067_230_000, 1_704_067_290_000]})
        >>> (
        ...     vs.from_polars(df)
        ...     .with_watermark("ts", "1s", time_unit="ms", as_datetime=True)
        ...     .window(vs.tumbling("1m"))
        ...     .agg(pl.len())
        ...     .collect()
        ... )
        shape: (2, 3)
        ┌─────────────────────┬─────────────────────┬─────┐
        │ window_start        ┆ window_end          ┆ len │
        │ ---                 ┆ ---                 ┆ --- │
        │ datetime[ms]        ┆ datetime[ms]        ┆ u32 │
        ╞═════════════════════╪═════════════════════╪═════╡
        │ 2024-01-01 00:00:00 ┆ 2024-01-01 00:01:00 ┆ 2   │
        │ 2024-01-01 00:01:00 ┆ 2024-01-01 00:02:00 ┆ 1   │
        └─────────────────────┴─────────────────────┴─────┘
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
            if time_unit is not None and time_unit not in TIME_UNITS:
                msg = f"{step}: time_unit must be one of {TIME_UNITS}, got {time_unit!r}"
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
        label = named(f"with_watermark({column!r}, max_out_of_orderness={shown})", name)
        out = Stream(set_name(WatermarkNode(self._node, et, label), name, label))
        if as_datetime and not isinstance(dtype, pl.Datetime):
            return out._as_datetime(step, et)
        return out

    def _as_datetime(self, step: str, et: EventTime) -> Stream:
        """``with_watermark(..., as_datetime=True)``: the integer event-time column cast to
        ``pl.Datetime(unit)`` (naive, UTC) after the watermark step. The watermark step
        still reads the integers; downstream, the event time is the Datetime column (the
        same int64 values, so windows and joins compute what they compute on integers)."""
        if et.unit not in ("ms", "us", "ns"):
            fix = (
                f"scale the column to milliseconds first, .with_columns(pl.col({et.column!r}) "
                "* 1_000), and declare time_unit='ms'"
                if et.unit == "s"
                else "declare time_unit='ms' (or 'us', 'ns'): the unit of its integers"
            )
            msg = (
                f"{step}: as_datetime=True needs a time_unit a Polars Datetime has ('ms', "
                f"'us' or 'ns'), got {et.unit!r}; {fix}"
            )
            raise EventTimeError(msg)
        dtype = pl.Datetime(et.unit)
        col = et.column
        out = self._step(
            f"as_datetime({col!r}, {et.unit!r})",
            "with_columns",
            exprs=[pl.col(col).cast(dtype)],
            assigns=frozenset({col}),
            uses=frozenset({col}),
        )
        out.node.event_time = dataclasses.replace(et, dtype=dtype)
        return out

    # ------------------------------------------------------------------ stateless steps
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
        predicates = flatten(predicates)
        label = f"filter({', '.join(short(p) for p in predicates) or ''}"
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
            dtype = infer_schema(label, self.schema, selector(e)).dtypes()[0]
            if dtype not in (pl.Boolean, pl.Null):
                msg = f"{label}: the predicate {short(e)} is {dtype}, not Boolean"
                raise ExpressionError(msg)
        return self._step(label, "filter", exprs=exprs)

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
        exprs = flatten(exprs)
        es = [to_expr(e) for e in exprs] + [to_expr(v).alias(k) for k, v in named.items()]
        label = call_label("with_columns", exprs, named)
        for e in es:
            check_row_wise(e, label)
        names = infer_schema(label, self.schema, lambda df: df.select(es)).names()
        self._guard_time_column(label, names)
        # a replaced column keeps its place, so the source must still deliver it
        replaced = frozenset(n for n in names if n in self.schema)
        return self._step(label, "with_columns", exprs=es, assigns=frozenset(names), uses=replaced)

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
        exprs = flatten(exprs)
        es = [to_expr(e) for e in exprs] + [to_expr(v).alias(k) for k, v in named.items()]
        label = call_label("select", exprs, named)
        if not es:
            msg = "select() needs at least one column or expression"
            raise ExpressionError(msg)
        for e in es:
            check_row_wise(e, label)
        computed: set[str] = set()
        for e in es:
            out = infer_schema(label, self.schema, selector(e)).names()
            passthrough = (
                e.meta.is_column()
                and e.meta.output_name() in self.schema
                and (e.meta.root_names() == [e.meta.output_name()])
            )
            if not passthrough:
                computed.update(out)
        self._guard_time_column(label, sorted(computed))
        return self._step(label, "select", exprs=es, assigns=frozenset(computed))

    def drop(self, *columns: str | Any) -> Stream:
        """Remove columns: names (all must exist) or Polars selectors.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"a": [1], "b": [2]})).drop("a").columns
        ['b']
        """
        label = f"drop({', '.join(short(c) for c in columns)})"
        kept = infer_schema(label, self.schema, lambda df: df.drop(*columns)).names()
        gone = [c for c in self.schema.names() if c not in kept]
        return self._step(label, "drop", columns=gone, uses=frozenset(gone))

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
        out = self._step(label, "rename", mapping=mapping)
        et = self._node.event_time
        if et is not None and (et.column in mapping or et.other in mapping):
            node = out.node
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
            node = StepNode(
                self._node, label, "map_batches", expected, None, function=fn, assigns=None
            )
            out = Stream(node)
        else:
            out = self._step(label, "map_batches", function=fn, assigns=None)
        et = self._node.event_time
        keeps_time = et is not None and out.schema.get(et.column) == et.dtype
        out.node.event_time = et if keeps_time else None
        return out

    def head(self, n: int = 5) -> Stream:
        """The first ``n`` rows (5, as in Polars, by default); bounds an unbounded stream
        so it can be collected. Over a source of several splits read at once (Kafka
        partitions) the first rows are those that arrive first.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"a": range(10)}), batch_size=3).head(4).collect().height
        4
        >>> vs.from_polars(pl.DataFrame({"a": range(10)})).head().collect()["a"].to_list()
        [0, 1, 2, 3, 4]
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
        name: str | None = None,
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
        name
            A stable name for the window's state in checkpoints; set it to keep the state
            when the pipeline around it changes. Letters, digits, ``_`` and ``-``
            (at most 64), unique in a run.

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
        from vstream.api.window import WindowBuilder

        return WindowBuilder(
            self,
            spec,
            by,
            allowed_lateness=allowed_lateness,
            late=late,
            early=early,
            time=time,
            name=name,
        )

    def group_by(self, *by: Any, **kwargs: Any) -> NoReturn:
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

    def sort(self, *by: Any, **kwargs: Any) -> NoReturn:
        """Not a streaming operation: a sort's first row may be the input's last. Use
        windows.

        Raises
        ------
        PipelineError
            Always, pointing to windows (sort a window's rows in ``.agg(...)``, or the
            collected result).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"x": [2, 1]})).sort("x")
        Traceback (most recent call last):
        ...
        vstream.errors.PipelineError: sort(...) on a stream would never finish ...
        """
        msg = (
            "sort(...) on a stream would never finish (the next event may sort first): "
            "order within windows instead, e.g. .window(vs.tumbling('1m'), by=...)"
            ".agg(pl.col('x').sort()), or sort the collected result, "
            "s.collect().sort(...)"
        )
        raise PipelineError(msg)

    def pipe(
        self,
        function: Callable[Concatenate[Stream, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(self, *args, **kwargs)``: chain a function of a stream, as
        :meth:`polars.LazyFrame.pipe` does.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> def positive(s: vs.Stream, column: str) -> vs.Stream:
        ...     return s.filter(pl.col(column) > 0)
        >>> vs.from_polars(pl.DataFrame({"x": [1, -2]})).pipe(positive, "x").collect().height
        1
        """
        return function(self, *args, **kwargs)

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
        name: str | None = None,
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

        Parameters
        ----------
        name
            A stable name for the join's state in checkpoints; set it to keep the state
            when the pipeline around it changes. Letters, digits, ``_`` and ``-``
            (at most 64), unique in a run. (The other parameters: as described above.)

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
        from vstream.api.join import JoinedStream, stream_arg
        from vstream.plan.joins import JoinArgs, build_join

        step = f"join_asof({short(by or by_left or '', 30)}, strategy={strategy!r})"
        step = named(step, name)
        other = stream_arg(step, other)
        args = JoinArgs(
            "asof", on, left_on, right_on, by, by_left, by_right,
            strategy=strategy, tolerance=tolerance, suffix=suffix,
        )  # fmt: skip
        return JoinedStream(set_name(build_join(step, self._node, other.node, args), name, step))

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
        name: str | None = None,
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

        Parameters
        ----------
        name
            A stable name for the join's state in checkpoints; set it to keep the state
            when the pipeline around it changes. Letters, digits, ``_`` and ``-``
            (at most 64), unique in a run. (The other parameters: as described above.)

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
        from vstream.api.join import JoinedStream, stream_arg
        from vstream.plan.joins import JoinArgs, build_join

        step = f"join_interval({short(on or left_on, 30)}, lower={lower!r}, upper={upper!r})"
        step = named(step, name)
        other = stream_arg(step, other)
        args = JoinArgs(
            "interval", on, left_on, right_on, how=how, suffix=suffix, lower=lower, upper=upper
        )
        return JoinedStream(set_name(build_join(step, self._node, other.node, args), name, step))

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
        name: str | None = None,
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

        Parameters
        ----------
        name
            A stable name for the join's state in checkpoints; set it to keep the state
            when the pipeline around it changes. Letters, digits, ``_`` and ``-``
            (at most 64), unique in a run. (The other parameters: as described above.)

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> hosts = pl.DataFrame({"host": ["a", "b"], "dc": ["eu", "us"]})
        >>> ev = vs.from_polars(pl.DataFrame({"host": ["b", "a", "c"], "cpu": [1, 2, 3]}))
        >>> ev.join(hosts, on="host", how="left").collect()["dc"].to_list()
        ['us', 'eu', None]
        """
        from vstream.api.join import JoinedStream, TableStream, stream_arg
        from vstream.plan.joins import JoinArgs, build_join

        if isinstance(other, pl.LazyFrame):
            other = other.collect()
        if isinstance(other, pl.DataFrame | pa.Table | TableStream):
            step = named(f"join(table, on={short(on or left_on, 30)}, how={how!r})", name)
            if window is not None or ttl is not None:
                msg = f"{step}: window= and ttl= are for joins of two streams, not lookups"
                raise PipelineError(msg)
            args = JoinArgs("lookup", on, left_on, right_on, how=how, suffix=suffix)
            if isinstance(other, TableStream):
                node = build_join(step, self._node, other.stream.node, args)
                return JoinedStream(set_name(node, name, step))
            table = other if isinstance(other, pl.DataFrame) else pl.DataFrame(other)
            node = build_join(step, self._node, None, args, table=table)
            return JoinedStream(set_name(node, name, step))
        kind = "window" if window is not None else "regular"
        extra = f", window={window}" if window is not None else f", ttl={ttl!r}"
        step = named(f"join({short(on or left_on, 30)}{extra}, how={how!r})", name)
        other = stream_arg(step, other)
        if window is not None and ttl is not None:
            msg = f"{step}: pass window= (a windowed join) or ttl= (a regular join), not both"
            raise PipelineError(msg)
        args = JoinArgs(
            kind, on, left_on, right_on, how=how, suffix=suffix, window=window, ttl=ttl
        )
        return JoinedStream(set_name(build_join(step, self._node, other.node, args), name, step))

    # ------------------------------------------------------------------ branches
    def dead_letters(self) -> Stream:
        """The records refused anywhere upstream: columns ``record`` (the raw line or
        record as text; rows refused after parsing, e.g. for a null event time, are
        re-serialized as JSON), ``reason`` and ``step``. Collect it with the main output
        in one run with :func:`vstream.collect_all`.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_ndjson([b'{"x": 1}', b'{"x": oops}', b'{"x": 2}'], schema={"x": pl.Int64})
        >>> main, dead = vs.collect_all([s, s.dead_letters()])
        >>> main["x"].to_list(), dead["record"].to_list()
        ([1, 2], ['{"x": oops}'])
        """
        return Stream(DeadLettersNode(self._node))
