"""What every Stream is: a node of the logical plan, with its schema and event time.

:class:`~vstream.api.stream.Stream` adds the steps, :class:`~vstream.api.sinks.Terminals`
the calls that run it; both build on this class, so the run helpers take any of them.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, TypeVar, overload

import polars as pl

from vstream.errors import PipelineError, PlanError
from vstream.plan.explain import explain
from vstream.plan.ids import check_step_name
from vstream.plan.nodes import Node, ancestors
from vstream.plan.serialize import plan_from_bytes, plan_to_bytes

if TYPE_CHECKING:
    from vstream.api.stream import Stream

__all__ = ["StreamBase", "named", "set_name"]

N = TypeVar("N", bound=Node)


def set_name(node: N, name: str | None, where: str) -> N:
    """``node`` with the user's step name (``name=``), checked now: a name that cannot be
    a step id, or one a step upstream already has, is refused naming it (two branches
    that meet at a join or at ``concat`` are checked when the run starts). The caller
    shows the name in the node's label (:func:`named`), for ``explain()``."""
    if name is None:
        return node
    check_step_name(name, where)
    for n in ancestors(list(node.inputs)):
        if n.name == name:
            msg = (
                f"{where}: name={name!r} is already the name of the step {n.label} upstream; "
                "step names must be unique in a run"
            )
            raise PipelineError(msg)
    node.name = name
    return node


def named(label: str, name: str | None) -> str:
    """A step's label with its ``name=`` argument, as the user wrote the call.

    Examples
    --------
    >>> from vstream.api.base import named
    >>> named("from_polars(3 rows)", "src"), named("step", None)
    ("from_polars(3 rows, name='src')", 'step')
    """
    if name is None:
        return label
    return f"{label[:-1]}, name={name!r})" if label.endswith(")") else f"{label} {name!r}"


class StreamBase:
    """A node of the logical plan seen as a stream: its schema, event time, boundedness."""

    def __init__(self, node: Node) -> None:
        self._node = node

    # ------------------------------------------------------------------ properties
    @property
    def node(self) -> Node:
        """The logical plan node this stream is (read-only), for tools that inspect,
        ship or lower plans (:mod:`vstream.plan`, :func:`vstream.runtime.lower.lower`).

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> vs.from_polars(pl.DataFrame({"x": [1]})).filter(pl.col("x") > 0).node.kind
        'filter'
        """
        return self._node

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

    # ------------------------------------------------------------------ serialization
    @overload
    def serialize(self, file: None = None) -> bytes: ...

    @overload
    def serialize(self, file: str | os.PathLike[str] | IO[bytes]) -> None: ...

    def serialize(self, file: str | os.PathLike[str] | IO[bytes] | None = None) -> bytes | None:
        """The logical plan of this stream as bytes, as :meth:`polars.LazyFrame.serialize`
        gives a query plan: to ship it to another process or keep it beside its output.
        Read it back with :meth:`Stream.deserialize`. With ``file`` (a path or a binary
        file object) the bytes are written there and None is returned.

        Expressions travel in Polars' binary format, which Polars documents as unstable
        across versions: a plan is read back by the same Polars version only. A
        ``map_batches`` function travels by its import path (never pickled), so a lambda
        or a closure is refused; sources travel as their configuration (``from_polars``,
        ``from_arrow`` of a Table, ``from_parquet``).

        Raises
        ------
        PlanError
            For a step that cannot travel as data, naming it.

        Examples
        --------
        >>> import polars as pl
        >>> import vstream as vs
        >>> s = vs.from_polars(pl.DataFrame({"x": [1, 2, 3]})).filter(pl.col("x") > 1)
        >>> data = s.serialize()
        >>> vs.Stream.deserialize(data).collect()["x"].to_list()
        [2, 3]
        """
        data = plan_to_bytes([self._node])
        if file is None:
            return data
        if isinstance(file, str | os.PathLike):
            with open(file, "wb") as f:
                f.write(data)
        else:
            file.write(data)
        return None

    @classmethod
    def deserialize(cls, source: bytes | str | os.PathLike[str] | IO[bytes]) -> Stream:
        """A stream from the bytes of :meth:`serialize` (or a path or binary file object
        holding them). Nothing in them is unpickled: only plan nodes are built, and a
        ``map_batches`` function is imported by its path.

        Raises
        ------
        PlanError
            If ``source`` does not hold a serialised plan, was written by another Polars
            version, or is damaged.

        Examples
        --------
        >>> import io
        >>> import polars as pl
        >>> import vstream as vs
        >>> df = pl.DataFrame({"ts": [0, 1, 12], "k": ["a", "a", "b"]})
        >>> w = vs.from_polars(df).with_watermark("ts", 0).window(vs.tumbling(10), by="k")
        >>> buf = io.BytesIO()
        >>> w.agg(pl.len()).serialize(buf)
        >>> back = vs.Stream.deserialize(io.BytesIO(buf.getvalue()))
        >>> type(back).__name__, back.collect().sort("k")["len"].to_list()
        ('WindowedStream', [2, 1])
        """
        from vstream.api.join import JoinedStream
        from vstream.api.stream import Stream
        from vstream.api.window import WindowedStream
        from vstream.plan.joins import JoinNode
        from vstream.plan.windows import WindowNode

        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as f:
                data = f.read()
        elif isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        else:
            data = source.read()
        nodes = plan_from_bytes(data)
        if len(nodes) != 1:
            msg = f"Stream.deserialize: the payload holds {len(nodes)} outputs, a Stream is one"
            raise PlanError(msg)
        node = nodes[0]
        if isinstance(node, WindowNode):
            return WindowedStream(node)
        if isinstance(node, JoinNode):
            return JoinedStream(node)
        return Stream(node)
