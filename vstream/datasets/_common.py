"""What the generators of :mod:`vstream.datasets` share: argument checks and re-batching."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from vstream.errors import PipelineError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_real(value: object) -> bool:
    return is_int(value) or isinstance(value, float | np.floating)


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    if not is_int(value):
        msg = f"{name} must be an int, got {type(value).__name__} {value!r}"
        raise PipelineError(msg)
    out = int(value)  # type: ignore[call-overload]
    if out < low or (high is not None and out > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        msg = f"{name} must be {allowed}, got {out}"
        raise PipelineError(msg)
    return int(out)


def rebatch(chunks: Iterator[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Re-slice ``chunks`` into batches of exactly ``batch_size`` rows (the last may be short)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for chunk in chunks:
        offset = 0
        while offset < chunk.num_rows:
            take = min(batch_size - pending_rows, chunk.num_rows - offset)
            pending.append(chunk.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == batch_size:
                yield concat(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield concat(pending)


def concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]
