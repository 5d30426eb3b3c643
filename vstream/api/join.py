"""Joins: the join result with its late-events branches, and lookup tables. The join
methods are :class:`~vstream.api.stream.Stream`'s; their arguments are checked by
:func:`vstream.plan.joins.build_join`."""

from __future__ import annotations

from typing import Literal

from vstream.api.stream import Stream
from vstream.errors import PipelineError
from vstream.plan.windows import LateEventsNode

__all__ = ["JoinedStream", "TableStream", "stream_arg", "table"]


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


def stream_arg(step: str, other: object) -> Stream:
    if not isinstance(other, Stream):
        msg = f"{step}: the right input must be a vstream Stream, got {type(other).__name__}"
        raise PipelineError(msg)
    return other
