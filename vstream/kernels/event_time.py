"""Event-time statistics of a batch: its maximum and how many rows are behind a watermark."""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit

__all__ = ["event_time_stats", "event_time_stats_reference"]

_MIN = np.iinfo(np.int64).min


@njit(cache=True, nogil=True)
def _stats(ts: np.ndarray, watermark: np.int64) -> tuple[np.int64, np.int64]:
    top = np.int64(_MIN)
    behind = np.int64(0)
    for i in range(ts.shape[0]):
        v = ts[i]
        if v > top:
            top = v
        if v < watermark:
            behind += 1
    return top, behind


def event_time_stats(ts: np.ndarray, watermark: int) -> tuple[int, int]:
    """``(max(ts), count(ts < watermark))`` in one pass; max is the int64 minimum if empty.

    Parameters
    ----------
    ts
        One-dimensional integer event times (no nulls), e.g. the physical values of a
        Datetime column.
    watermark
        The watermark to compare against, in the same unit.

    Examples
    --------
    >>> from vstream.kernels.event_time import event_time_stats
    >>> import numpy as np
    >>> event_time_stats(np.array([5, 1, 9, 3]), 4)
    (9, 2)
    """
    if ts.ndim != 1:
        msg = f"event_time_stats takes a 1-D array, got shape {ts.shape}"
        raise ValueError(msg)
    if ts.dtype.kind not in "iu":
        msg = f"event_time_stats takes integer event times, got dtype {ts.dtype}"
        raise TypeError(msg)
    arr = np.ascontiguousarray(ts, dtype=np.int64)
    top, behind = _stats(arr, np.int64(watermark))
    return int(top), int(behind)


def event_time_stats_reference(ts: np.ndarray, watermark: int) -> tuple[int, int]:
    """The numpy reference of :func:`event_time_stats`."""
    arr = ts.astype(np.int64)
    top = int(arr.max()) if arr.size else int(_MIN)
    return top, int((arr < watermark).sum())
