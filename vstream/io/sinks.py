"""Sinks: where a branch's batches go (memory, a callback; file sinks live in
:mod:`vstream.io.file_sink`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import polars as pl

from vstream.errors import PipelineError, SinkError
from vstream.io.file_sink import FileSink, ParquetSink
from vstream.io.sink_base import Sink, SinkMode

__all__ = [
    "CallbackSink",
    "CollectSink",
    "FileSink",
    "ParquetSink",
    "ResultsSink",
    "Sink",
    "SinkError",
    "SinkMode",
    "takes_epoch",
]


class CollectSink(Sink):
    label = "collect"

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []

    def write(self, df: pl.DataFrame) -> None:
        self.frames.append(df)

    def result(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=self.schema)
        # no rechunk: Polars works on chunked frames, and copying 10 M rows costs ~0.2 s
        return pl.concat(self.frames, how="vertical", rechunk=False)


class ResultsSink(Sink):
    """Keeps the newest ``keep`` rows for a background job, readable while it runs."""

    label = "results"

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._frames: deque[pl.DataFrame] = deque()
        self._rows = 0
        self._lock = threading.Lock()

    def write(self, df: pl.DataFrame) -> None:
        with self._lock:
            self._frames.append(df)
            self._rows += df.height
            while self._frames and self._rows - self._frames[0].height >= self.keep:
                self._rows -= self._frames.popleft().height

    def result(self) -> pl.DataFrame:
        with self._lock:
            frames = list(self._frames)
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames, how="vertical").tail(self.keep)


class CallbackSink(Sink):
    """Calls ``fn(df)``, or ``fn(df, epoch)`` when the run checkpoints (at least once:
    after a restart, the epochs after the last checkpoint are delivered again)."""

    def __init__(self, fn: Callable[..., object], *, with_epoch: bool = False) -> None:
        if not callable(fn):
            msg = f"sink_callback takes a function of a polars.DataFrame, got {type(fn).__name__}"
            raise PipelineError(msg)
        self.fn = fn
        self.with_epoch = with_epoch
        self.label = f"sink_callback({getattr(fn, '__name__', type(fn).__name__)})"

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        # a lazy sink_callback run by collect_all / start_all with a checkpoint_dir: the
        # function needs the epoch to drop the rows a restart delivers again
        if not self.with_epoch:
            if not takes_epoch(self.fn):
                msg = (
                    f"{self.label}: the run checkpoints, so the function is called as "
                    "fn(df, epoch) (the epoch id lets it drop rows a restart delivers "
                    "again); it does not take two arguments"
                )
                raise PipelineError(msg)
            self.with_epoch = True

    def write(self, df: pl.DataFrame) -> None:
        if self.with_epoch:
            self.fn(df, self.epoch)
        else:
            self.fn(df)


def takes_epoch(fn: Callable[..., object]) -> bool:
    """Whether ``fn`` can be called as ``fn(df, epoch)``."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True
