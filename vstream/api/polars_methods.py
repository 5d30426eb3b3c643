"""The row-wise methods a Stream shares with a Polars ``LazyFrame``: ``cast``,
``fill_null``, ``fill_nan``, ``drop_nulls``, ``unnest``, ``explode`` and
``with_row_index``, and the step builder every stateless step goes through.

Each method becomes a step of the plan as data (issue 17): Polars expressions in a
``with_columns``, ``select`` or ``filter`` step where the method is one, so plans stay
serialisable and projection pushdown sees what each step reads; ``explode`` is a step
kind of its own (it may give a row several output rows, or none), and ``with_row_index``
a stateful node (its count is checkpointed).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import polars.selectors as cs

from vstream.api._parse import short
from vstream.api.sinks import Terminals
from vstream.errors import (
    ColumnNotFoundError,
    EventTimeError,
    ExpressionError,
    PipelineError,
    SchemaError,
)
from vstream.ops.stateless import step_function
from vstream.plan.expressions import check_row_wise, check_row_wise_on_sample, infer_schema
from vstream.plan.expressions import root_columns as expr_roots
from vstream.plan.joins import JoinNode
from vstream.plan.nodes import (
    HeadNode,
    Node,
    RowIndexNode,
    SourceNode,
    StepKind,
    StepNode,
    WatermarkNode,
)

if TYPE_CHECKING:
    from vstream.api.stream import Stream

__all__ = ["PolarsMethods"]

#: what names columns in ``drop_nulls``, ``explode`` and ``unnest``: a name, a column
#: expression ``pl.col(name)``, a selector (``polars.selectors``), or several of them
ColumnSpec = str | pl.Expr | Collection[str | pl.Expr]

#: ``fill_null`` strategies that read other rows: per micro-batch they would give
#: another answer than over the whole input
_ACROSS_ROWS = ("forward", "backward", "min", "max", "mean")


class PolarsMethods(Terminals):
    """The step builder of :class:`~vstream.Stream` and its Polars-named row-wise
    methods (each documented on :class:`~vstream.Stream`)."""

    # ------------------------------------------------------------------ building steps
    def _step(
        self,
        label: str,
        kind: StepKind,
        *,
        exprs: Sequence[pl.Expr] = (),
        columns: Sequence[str] = (),
        mapping: Mapping[str, str] | None = None,
        function: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
        options: Mapping[str, bool] | None = None,
        assigns: frozenset[str] | None = frozenset(),
        uses: frozenset[str] | None = None,
    ) -> Stream:
        """A stateless step after this stream: checked (row-wise expressions, the output
        schema found by running it on an empty frame) and added to the plan."""
        from vstream.api.stream import Stream

        for e in exprs:
            check_row_wise(e, label)
        fn = step_function(
            kind,
            label,
            exprs=exprs,
            columns=columns,
            mapping=mapping,
            function=function,
            options=options,
        )
        schema = infer_schema(label, self.schema, fn)
        if exprs:
            check_row_wise_on_sample(list(exprs), self.schema, label)
        et = self._node.event_time
        if et is not None and et.column not in schema:
            et = None  # the event-time column was dropped: downstream has no event time
        roots = expr_roots(exprs)
        node = StepNode(
            self._node,
            label,
            kind,
            schema,
            et,
            exprs=exprs,
            columns=columns,
            mapping=mapping,
            function=function,
            options=options,
            assigns=assigns,
            uses=None if roots is None else roots | (uses or frozenset()),
        )
        return Stream(node)

    def _guard_time_column(
        self, label: str, names: Collection[str], *, other: bool = False
    ) -> None:
        """Refuse a step that assigns the event-time column (``other``: or the second
        column a join's event time is read from)."""
        et = self._node.event_time
        if et is None:
            return
        for column in (et.column, et.other if other else None):
            if column is not None and column in names:
                msg = (
                    f"{label}: assigns the event-time column {column!r} after with_watermark; "
                    "compute it before with_watermark, or write the result to another column"
                )
                raise EventTimeError(msg)

    def _replace(self, label: str, exprs: dict[str, pl.Expr]) -> Stream:
        """``with_columns`` of one expression per column (each replacing it in place),
        under the step's own label; the stream itself when there is none."""
        if not exprs:
            return typing.cast("Stream", self)  # every PolarsMethods is a Stream
        self._guard_time_column(label, list(exprs), other=True)
        names = frozenset(exprs)
        es = list(exprs.values())
        # each replaces its column only: a column not read below need not be read at all
        flags = {"per_column": True} if expr_roots(es) is not None else None
        return self._step(
            label, "with_columns", exprs=es, options=flags, assigns=names, uses=names
        )

    def _columns(self, spec: ColumnSpec, where: str) -> list[str]:
        """The column names ``spec`` stands for, in schema order, each once."""
        items: list[Any] = (
            [spec] if isinstance(spec, str | pl.Expr) or cs.is_selector(spec) else list(spec)
        )
        found: set[str] = set()
        for item in items:
            if cs.is_selector(item):
                found.update(cs.expand_selector(self.schema, item))
            elif isinstance(item, pl.Expr) and item.meta.is_column():
                found.add(item.meta.output_name())
            elif isinstance(item, str):
                found.add(item)
            else:
                msg = (
                    f"{where}: {short(item)!r} does not name columns; pass column names, "
                    "pl.col(name) or a selector (polars.selectors)"
                )
                raise ExpressionError(msg)
        missing = sorted(found - set(self.schema.names()))
        if missing:
            msg = f"{where}: no column {missing[0]!r}; the stream has {self.columns}"
            raise ColumnNotFoundError(msg)
        return [c for c in self.schema.names() if c in found]

    # ------------------------------------------------------------------ the methods
    def cast(
        self,
        dtypes: Mapping[Any, Any] | Any,
        *,
        strict: bool = True,
    ) -> Stream:
        """Cast columns to other data types, as :meth:`polars.LazyFrame.cast` does.

        Parameters
        ----------
        dtypes
            A mapping of column names, selectors or data types (every column of that
            type) to the data type to cast to; or one data type, for every column.
        strict
            Whether a value that cannot be cast (an overflow, a string that is no
            number) fails the run (True) or becomes null (False).

        Raises
        ------
        EventTimeError
            For a cast that would change the event-time column after
            :meth:`with_watermark` (cast it before).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"id": [1, 2], "cpu": ["0.5", "x"]})
        >>> vs.from_polars(df).cast({"id": pl.UInt8, "cpu": pl.Float64}, strict=False).collect()
        shape: (2, 2)
        ┌─────┬──────┐
        │ id  ┆ cpu  │
        │ --- ┆ ---  │
        │ u8  ┆ f64  │
        ╞═════╪══════╡
        │ 1   ┆ 0.5  │
        │ 2   ┆ null │
        └─────┴──────┘
        """
        label = f"cast({short(dtypes)}{'' if strict else ', strict=False'})"
        targets: dict[str, Any] = {}
        if isinstance(dtypes, Mapping):
            for key, dtype in dtypes.items():
                if isinstance(key, str):
                    names = [key]
                elif _is_dtype(key) or (
                    isinstance(key, Collection) and key and all(_is_dtype(k) for k in key)
                ):
                    names = list(cs.expand_selector(self.schema, cs.by_dtype(key)))
                else:
                    names = self._columns(key, label)
                missing = [n for n in names if n not in self.schema]
                if missing:
                    msg = f"{label}: no column {missing[0]!r}; the stream has {self.columns}"
                    raise ColumnNotFoundError(msg)
                targets.update(dict.fromkeys(names, dtype))
        else:
            targets = dict.fromkeys(self.schema.names(), dtypes)
        exprs = {c: pl.col(c).cast(t, strict=strict) for c, t in targets.items()}
        new = infer_schema(label, self.schema, lambda df: df.select(list(exprs.values())))
        # a cast to the type a column has is no step at all (the event time may stay)
        changed = {c: e for c, e in exprs.items() if new[c] != self.schema[c]}
        return self._replace(label, changed)

    def fill_null(
        self,
        value: Any | pl.Expr | None = None,
        strategy: Literal["zero", "one"] | None = None,
        limit: int | None = None,
        *,
        matches_supertype: bool = True,
    ) -> Stream:
        """Fill null values with a value, as :meth:`polars.LazyFrame.fill_null` does.

        A literal ``value`` fills the columns of its type (with ``matches_supertype``,
        every numeric column for a number, whose type may widen: ``1.5`` turns an
        integer column into floats); an expression fills every column. The strategies
        that read other rows (``"forward"``, ``"backward"``, ``"min"``, ``"max"``,
        ``"mean"``) would give per-batch answers on a stream and are refused.

        Parameters
        ----------
        value
            The value, or an expression (row-wise) giving it.
        strategy
            ``"zero"`` or ``"one"`` instead of a value, for every column.
        limit
            Polars' ``limit`` (for the refused strategies only): must be None.
        matches_supertype
            Fill the columns whose type the value's type can widen to, too.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"host": ["a", None], "cpu": [None, 0.5]})
        >>> vs.from_polars(df).fill_null(0).fill_null("?").collect().rows()
        [('a', 0.0), ('?', 0.5)]
        """
        label = _call("fill_null", value=value, strategy=strategy, limit=limit)
        if strategy in _ACROSS_ROWS:
            msg = (
                f"{label}: the strategy {strategy!r} reads other rows, so on a stream it "
                "would fill from the rows of each micro-batch only; fill with a value or "
                "an expression, or compute the filler over windows: "
                ".window(vs.tumbling(...), by=...).agg(...)"
            )
            raise PipelineError(msg)
        if limit is not None:
            msg = f"{label}: limit= goes with the 'forward' and 'backward' strategies only"
            raise PipelineError(msg)
        if (value is None) == (strategy is None):
            msg = f"{label}: pass a value or strategy='zero' / 'one' (one of them)"
            raise PipelineError(msg)
        if strategy is not None or isinstance(value, pl.Expr):
            names = list(self.schema.names())
        else:
            names = self._filled_columns(label, value, matches_supertype)
        exprs = {c: pl.col(c).fill_null(value, strategy) for c in names}
        new = infer_schema(label, self.schema, lambda df: df.select(list(exprs.values())))
        et = self._node.event_time
        if et is not None and et.column in exprs and new[et.column] == self.schema[et.column]:
            # the event time has no nulls (with_watermark sends them to the dead letters)
            del exprs[et.column]
        return self._replace(label, exprs)

    def _filled_columns(self, label: str, value: Any, matches_supertype: bool) -> list[str]:
        """The columns ``fill_null(value)`` fills, as Polars picks them by the type of a
        literal value: asked of Polars itself on one row of nulls, so the choice follows
        the installed version."""
        probe = pl.DataFrame(schema=self.schema).clear(1)
        try:
            filled = probe.fill_null(value, matches_supertype=matches_supertype)
        except Exception as exc:
            msg = f"{label}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            raise ExpressionError(msg) from exc
        return [c for c in filled.columns if filled[c].null_count() == 0]

    def fill_nan(self, value: float | pl.Expr | None) -> Stream:
        """Fill the floating-point NaN values of the float columns, as
        :meth:`polars.LazyFrame.fill_nan` does (a null is not a NaN: see
        :meth:`fill_null`).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"x": [1.0, float("nan")], "n": [1, 2]})
        >>> vs.from_polars(df).fill_nan(None).collect()["x"].to_list()
        [1.0, None]
        """
        label = f"fill_nan({short(value)})"
        floats = [c for c, t in self.schema.items() if t.is_float()]
        return self._replace(label, {c: pl.col(c).fill_nan(value) for c in floats})

    def drop_nulls(self, subset: ColumnSpec | None = None) -> Stream:
        """Drop the rows with a null in any column (or in any column of ``subset``), as
        :meth:`polars.LazyFrame.drop_nulls` does.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"a": [1, None, 3], "b": ["x", "y", None]})
        >>> vs.from_polars(df).drop_nulls().collect().rows()
        [(1, 'x')]
        >>> vs.from_polars(df).drop_nulls("a").collect()["a"].to_list()
        [1, 3]
        """
        label = "drop_nulls()" if subset is None else f"drop_nulls({short(subset)})"
        names = list(self.schema.names()) if subset is None else self._columns(subset, label)
        if not names:
            return self._replace(label, {})
        keep = pl.all_horizontal([pl.col(c).is_not_null() for c in names])
        return self._step(label, "filter", exprs=[keep])

    def unnest(
        self,
        columns: ColumnSpec | None = None,
        *more_columns: str | pl.Expr,
        separator: str | None = None,
    ) -> Stream:
        """Replace struct columns by their fields, in place, as
        :meth:`polars.LazyFrame.unnest` does (None: every struct column).

        Parameters
        ----------
        columns, more_columns
            The struct columns: names, ``pl.col(name)`` or selectors.
        separator
            Name the fields ``<column><separator><field>`` (None: by the field's name).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"id": [1], "pos": [{"x": 0.5, "y": 2.0}]})
        >>> vs.from_polars(df).unnest("pos").columns
        ['id', 'x', 'y']
        >>> vs.from_polars(df).unnest("pos", separator=".").columns
        ['id', 'pos.x', 'pos.y']
        """
        spec = list(more_columns) or None if columns is None else _more(columns, more_columns)
        label = "unnest()" if spec is None else f"unnest({short(spec)})"
        if spec is None:
            names = [c for c, t in self.schema.items() if isinstance(t, pl.Struct)]
        else:
            names = self._columns(spec, label)
        exprs: list[pl.Expr] = []
        fields: list[str] = []
        for c, t in self.schema.items():
            if c not in names:
                exprs.append(pl.col(c))
                continue
            if not isinstance(t, pl.Struct):
                msg = f"{label}: column {c!r} is {t}, not a Struct"
                raise SchemaError(msg)
            for f in t.fields:
                out = f.name if separator is None else f"{c}{separator}{f.name}"
                exprs.append(pl.col(c).struct.field(f.name).alias(out))
                fields.append(out)
        if not names:
            return self._replace(label, {})
        infer_schema(label, self.schema, lambda df: df.select(exprs))  # duplicate names
        self._guard_time_column(label, fields)
        return self._step(label, "select", exprs=exprs, assigns=frozenset(fields))

    def explode(
        self,
        columns: ColumnSpec,
        *more_columns: str | pl.Expr,
        empty_as_null: bool | None = None,
        keep_nulls: bool | None = None,
    ) -> Stream:
        """One row per element of list (or array) columns, the other columns repeated,
        as :meth:`polars.LazyFrame.explode` does. Row-wise: each input row gives its
        own output rows, whatever the micro-batches.

        Parameters
        ----------
        columns, more_columns
            The list columns: names, ``pl.col(name)`` or selectors. Several are exploded
            together (their lists must have the same length in each row).
        empty_as_null
            Whether an empty list gives one row with a null (True) or no row (False).
            None: Polars' default.
        keep_nulls
            Whether a null list gives one row with a null (True) or no row (False).
            None: Polars' default.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"host": ["a", "b"], "temps": [[20, 21], [30]]})
        >>> vs.from_polars(df).explode("temps").collect().rows()
        [('a', 20), ('a', 21), ('b', 30)]
        """
        spec = _more(columns, more_columns)
        flags = {
            k: v
            for k, v in (("empty_as_null", empty_as_null), ("keep_nulls", keep_nulls))
            if v is not None
        }
        label = _call("explode", spec, **flags)
        names = self._columns(spec, label)
        if not names:
            msg = f"{label}: no column to explode"
            raise ExpressionError(msg)
        for c in names:
            if not isinstance(self.schema[c], pl.List | pl.Array):
                msg = f"{label}: column {c!r} is {self.schema[c]}, not a List or an Array"
                raise SchemaError(msg)
        used = frozenset(names)
        return self._step(label, "explode", columns=names, options=flags, assigns=used, uses=used)

    def with_row_index(
        self, name: str = "index", offset: int = 0, *, split_column: str | None = None
    ) -> Stream:
        """Add a column ``name`` first: the row's position in the stream, from
        ``offset``, as :meth:`polars.LazyFrame.with_row_index` numbers the rows of a
        frame. Its type is Polars' index type (``UInt32``; a run fails past its range).

        The position is deterministic: it counts the rows of a source with one split
        (a DataFrame, an Arrow table or stream, a generator, one file), in source order,
        after the steps between (a filter counts the rows it keeps), whatever the
        micro-batches. The count is checkpointed, so a restored run numbers on.

        Over several splits (files, Kafka partitions, a watched directory) the rows of
        different splits interleave as they arrive, so one count over all of them would
        differ from run to run: pass ``split_column`` to number the rows of each split
        on their own (each from ``offset``) and to add, second, a column of that name
        holding the split's name (a file's path relative to the source's directory, a
        Kafka ``topic/partition``). ``(split, index)`` is then deterministic and unique,
        for splits that appear while the job runs too. After a step whose output order
        depends on arrival (windows, joins, ``concat``) no position is defined.

        Parameters
        ----------
        name
            The index column's name.
        offset
            The first position.
        split_column
            Number per source split and name the split in this column (a String).

        Raises
        ------
        PipelineError
            Over several splits without ``split_column``; after a window, a join,
            ``concat`` or ``dead_letters()`` (and after ``head`` with ``split_column``);
            the message says what to do instead.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"x": [5, -1, 7, 9]})
        >>> s = vs.from_polars(df, batch_size=2).filter(pl.col("x") > 0).with_row_index()
        >>> s.collect().rows()
        [(0, 5), (1, 7), (2, 9)]

        Per split, over two files:

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> pl.DataFrame({"x": [1, 2]}).write_parquet(d / "a.parquet")
        >>> pl.DataFrame({"x": [3]}).write_parquet(d / "b.parquet")
        >>> s = vs.from_parquet(d).with_row_index("i", split_column="file")
        >>> s.collect().sort("file", "i").rows()
        [(0, 'a.parquet', 1), (1, 'a.parquet', 2), (0, 'b.parquet', 3)]
        """
        from vstream.api.stream import Stream

        per = "" if split_column is None else f", split_column={split_column!r}"
        label = f"with_row_index({name!r}{f', offset={offset}' if offset else ''}{per})"
        if not isinstance(name, str):
            msg = f"{label}: the name is a str, got {type(name).__name__}"
            raise PipelineError(msg)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            msg = f"{label}: offset must be an int >= 0, got {offset!r}"
            raise PipelineError(msg)
        if name in self.schema:
            msg = f"{label}: the stream already has a column {name!r}; pick another name"
            raise SchemaError(msg)
        if split_column is not None:
            if not isinstance(split_column, str) or split_column == name:
                msg = f"{label}: split_column is a str other than the index's name"
                raise PipelineError(msg)
            if split_column in self.schema:
                msg = f"{label}: the stream already has a column {split_column!r}; pick another"
                raise SchemaError(msg)
        _check_row_order(self._node, label, per_split=split_column is not None)
        schema = infer_schema(
            label, self.schema, lambda df: df.with_row_index(name, offset=offset)
        )
        if split_column is not None:
            items = list(schema.items())
            schema = pl.Schema([items[0], (split_column, pl.String()), *items[1:]])
        return Stream(RowIndexNode(self._node, name, offset, schema, split_column))


def _is_dtype(value: object) -> bool:
    return isinstance(value, pl.DataType) or (
        isinstance(value, type) and issubclass(value, pl.DataType)
    )


def _more(columns: Any, more: Sequence[Any]) -> Any:
    """``columns`` and ``*more_columns`` as one spec, as Polars takes them."""
    if not more:
        return columns
    first = [columns] if isinstance(columns, str | pl.Expr) or cs.is_selector(columns) else columns
    return [*first, *more]


def _call(step: str, *args: Any, **kwargs: Any) -> str:
    """The label of a call: its positional arguments and the keyword ones not None."""
    parts = [short(a) for a in args] + [
        f"{k}={short(v) if isinstance(v, pl.Expr) else repr(v)}"
        for k, v in kwargs.items()
        if v is not None
    ]
    return f"{step}({', '.join(parts)})"


def _check_row_order(node: Node, label: str, *, per_split: bool = False) -> None:
    """Refuse a row index where the rows' order is not deterministic: over a source of
    several splits, or one whose splits may grow (unless numbered ``per_split``), or
    after an operator whose output order depends on arrival."""
    cur = node
    while not isinstance(cur, SourceNode):
        if per_split and isinstance(cur, HeadNode):
            msg = (
                f"{label}: {cur.label} keeps the first rows to arrive from any split, which "
                "differ from run to run; number the rows before it (with_row_index, then "
                "head)"
            )
            raise PipelineError(msg)
        if not isinstance(cur, StepNode | WatermarkNode | HeadNode | RowIndexNode):
            what = "join" if isinstance(cur, JoinNode) else "step"
            msg = (
                f"{label}: the rows out of the {what} {cur.label} come in an order that "
                "depends on how its inputs arrive, so a row index after it would differ "
                "from run to run; add with_row_index before it (to its input)"
            )
            raise PipelineError(msg)
        cur = cur.inputs[0]
    if per_split:
        return
    source = cur.source
    fix = (
        "number the rows per split with split_column='split' (the position in its split "
        "and the split's name), or add the index to a source of one file each "
        "(vs.from_parquet(path) per file, then vs.concat), "
        "or number the rows from a column of the data (e.g. with_columns(...) of a key "
        "and an event time)"
    )
    if source.splits_may_grow:
        msg = (
            f"{label}: {source.label} may gain splits while it runs (new files, new "
            f"partitions), whose rows interleave with the others'; {fix}"
        )
        raise PipelineError(msg)
    splits = source.split_names()
    if len(splits) != 1:
        msg = (
            f"{label}: {source.label} has {len(splits)} splits ({short(splits)}); over "
            f"several splits one count over all of them depends on arrival; {fix}"
        )
        raise PipelineError(msg)
