"""Functions over several streams: run branches together (:func:`collect_all`,
:func:`start_all`) and take their union (:func:`concat`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal, overload

import polars as pl

from vstream._duration import Duration
from vstream.api.job import Job
from vstream.api.sinks import LazySink, run_items
from vstream.api.stream import Stream
from vstream.errors import EventTimeError, PipelineError, SchemaError
from vstream.plan.nodes import ConcatNode, EventTime
from vstream.runtime.checkpointing import CheckpointConfig
from vstream.runtime.metrics import Metrics

__all__ = ["collect_all", "concat", "start_all"]


# Streams only: a DataFrame each; with lazy sinks: None in their places
@overload
def collect_all(
    items: Sequence[Stream],
    *,
    timeout: Duration | float | None = ...,
    return_metrics: Literal[False] = ...,
    checkpoint_dir: str | os.PathLike[str] | None = ...,
    checkpoint_interval: Duration | int = ...,
    keep_checkpoints: int = ...,
    progress: bool | None = ...,
) -> list[pl.DataFrame]: ...
@overload
def collect_all(
    items: Sequence[Stream],
    *,
    timeout: Duration | float | None = ...,
    return_metrics: Literal[True],
    checkpoint_dir: str | os.PathLike[str] | None = ...,
    checkpoint_interval: Duration | int = ...,
    keep_checkpoints: int = ...,
    progress: bool | None = ...,
) -> tuple[list[pl.DataFrame], Metrics]: ...
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

    Shared steps run once. Returns one DataFrame per Stream (None for a lazy sink; typed
    ``list[pl.DataFrame]`` when ``items`` are Streams only).
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
    results, metrics = run_items(
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
    times = [s.node.event_time for s in streams]
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
    return Stream(ConcatNode(tuple(s.node for s in streams), et))
