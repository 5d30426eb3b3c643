"""What every Stream is: a node of the logical plan, with its schema and event time.

:class:`~vstream.api.stream.Stream` adds the steps, :class:`~vstream.api.sinks.Terminals`
the calls that run it; both build on this class, so the run helpers take any of them.
"""

from __future__ import annotations

import polars as pl

from vstream.plan.explain import explain
from vstream.plan.nodes import Node

__all__ = ["StreamBase"]


class StreamBase:
    """A node of the logical plan seen as a stream: its schema, event time, boundedness."""

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
