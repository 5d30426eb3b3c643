"""Polars references for windowed aggregation (DESIGN.md "Semantics": Windows), shared by
``test_windows.py`` and ``test_window_late.py``.

Every reference works on the event-time column ``ts`` (Int64, or a ``Datetime``) and takes
durations as integers in that column's unit. Output columns follow the window contract:
``*by, window_start, window_end, *aggregates``, with the window bounds in the dtype of
``ts``.

- :func:`tumbling_dynamic` is Polars' own ``group_by_dynamic`` on the rows sorted by time.
  Sorting loses arrival order, so it only serves aggregates that do not depend on order.
- :func:`tumbling`, :func:`hopping` and :func:`session` assign windows explicitly and
  group the rows in arrival order, so ``first``/``last`` follow arrival order.
- :func:`watermarks_before` and :func:`late_mask` model the watermark of one source split
  read in micro-batches, to predict which events are late.

Test modules import this file by name after putting ``tests/`` on ``sys.path``.

Examples
--------
>>> df = pl.DataFrame({"ts": [5, 1, 12], "x": [1, 2, 3]})
>>> tumbling(df, 10, aggs=[pl.col("x").first()]).sort("window_start").rows()
[(0, 10, 1), (10, 20, 3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import polars as pl

__all__ = [
    "NO_WATERMARK",
    "fixed_batches",
    "hopping",
    "late_mask",
    "session",
    "tumbling",
    "tumbling_dynamic",
    "watermarks_before",
]

By = str | Sequence[str] | None

_ROW = "__row"
_T = "__t"
#: below every event time: the watermark before the first micro-batch
NO_WATERMARK = -(2**62)
_DURATION_ARG = {"ns": "nanoseconds", "us": "microseconds", "ms": "milliseconds"}


def _keys(by: By) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _physical(df: pl.DataFrame, time: str) -> pl.DataFrame:
    """``df`` with its arrival position and the event time as an integer."""
    return df.with_row_index(_ROW).with_columns(pl.col(time).to_physical().alias(_T))


def _aggregate(
    assigned: pl.DataFrame,
    keys: list[str],
    aggs: Sequence[pl.Expr],
    dtype: pl.DataType,
    where: pl.Expr | None = None,
) -> pl.DataFrame:
    """Group rows that carry integer ``window_start``/``window_end`` by key and window.

    ``assigned`` must be in arrival order (sorted by ``_ROW``): Polars keeps the frame's
    order inside each group, so ``first``/``last`` follow arrival order. ``where`` keeps
    only some (event, window) pairs (those not late for their window).
    """
    if where is not None:
        assigned = assigned.filter(where)
    out = assigned.group_by([*keys, "window_start", "window_end"], maintain_order=True).agg(*aggs)
    return out.with_columns(pl.col("window_start", "window_end").cast(dtype))


def tumbling(
    df: pl.DataFrame,
    size: int,
    offset: int = 0,
    *,
    by: By = None,
    aggs: Sequence[pl.Expr],
    time: str = "ts",
    where: pl.Expr | None = None,
) -> pl.DataFrame:
    """Tumbling windows by explicit assignment: ``start = floor((t - offset) / size) * size
    + offset``. ``where`` (on ``window_start``/``window_end`` as integers and the input
    columns) keeps only some of the (event, window) pairs.

    Examples
    --------
    >>> df = pl.DataFrame({"ts": [250, -5, 1300, 999], "k": ["a", "a", "a", "b"]})
    >>> tumbling(df, 1000, 300, by="k", aggs=[pl.len()]).sort("k", "window_start").rows()
    [('a', -700, 300, 2), ('a', 1300, 2300, 1), ('b', 300, 1300, 1)]
    """
    keys = _keys(by)
    start = (pl.col(_T) - offset) // size * size + offset
    assigned = _physical(df, time).with_columns(window_start=start, window_end=start + size)
    return _aggregate(assigned, keys, aggs, df.schema[time], where)


def hopping(
    df: pl.DataFrame,
    size: int,
    slide: int,
    offset: int = 0,
    *,
    by: By = None,
    aggs: Sequence[pl.Expr],
    time: str = "ts",
    where: pl.Expr | None = None,
) -> pl.DataFrame:
    """Hopping windows by explicit assignment: each event is in every window
    ``[k * slide + offset, k * slide + offset + size)`` that contains it.

    Examples
    --------
    >>> df = pl.DataFrame({"ts": [0, 7]})
    >>> hopping(df, 5, 2, aggs=[pl.len()]).sort("window_start").rows()
    [(-4, 1, 1), (-2, 3, 1), (0, 5, 1), (4, 9, 1), (6, 11, 1)]
    """
    keys = _keys(by)
    t = pl.col(_T) - offset
    first = ((t - size) // slide + 1) * slide + offset  # the earliest start with t < end
    last = t // slide * slide + offset  # the latest start <= t
    assigned = (
        _physical(df, time)
        .with_columns(window_start=pl.int_ranges(first, last + 1, slide, dtype=pl.Int64))
        .explode("window_start")
        .with_columns(window_end=pl.col("window_start") + size)
    )
    return _aggregate(assigned, keys, aggs, df.schema[time], where)


def session(
    df: pl.DataFrame,
    gap: int,
    *,
    by: By = None,
    aggs: Sequence[pl.Expr],
    time: str = "ts",
) -> pl.DataFrame:
    """Session windows: per key, sorted by time, a new session starts where
    ``t - previous t >= gap``; the window is ``[first, last + gap)``.

    Examples
    --------
    >>> df = pl.DataFrame({"ts": [19, 0, 30, 10]})
    >>> session(df, 10, aggs=[pl.len()]).sort("window_start").rows()
    [(0, 10, 1), (10, 29, 2), (30, 40, 1)]
    """
    keys = _keys(by)
    ordered = _physical(df, time).sort([*keys, _T, _ROW], nulls_last=True)
    new = (pl.col(_T) - pl.col(_T).shift(1) >= gap).fill_null(True)
    for k in keys:
        new = new | pl.col(k).ne_missing(pl.col(k).shift(1))
    assigned = (
        ordered.with_columns(__sid=new.cum_sum())
        .with_columns(
            window_start=pl.col(_T).min().over("__sid"),
            window_end=pl.col(_T).max().over("__sid") + gap,
        )
        .sort(_ROW)
    )
    return _aggregate(assigned, keys, aggs, df.schema[time])


def tumbling_dynamic(
    df: pl.DataFrame,
    size: int,
    offset: int = 0,
    *,
    by: By = None,
    aggs: Sequence[pl.Expr],
    time: str = "ts",
) -> pl.DataFrame:
    """Tumbling windows with Polars' ``group_by_dynamic`` (order-insensitive aggregates
    only: the rows are sorted by time first).

    Examples
    --------
    >>> df = pl.DataFrame({"ts": [250, -5, 1300, 999], "k": ["a", "a", "a", "b"]})
    >>> tumbling_dynamic(df, 1000, 300, by="k", aggs=[pl.len()]).sort("k", "window_start").rows()
    [('a', -700, 300, 2), ('a', 1300, 2300, 1), ('b', 300, 1300, 1)]
    """
    keys = _keys(by)
    dtype = df.schema[time]
    if isinstance(dtype, pl.Datetime):
        unit = dtype.time_unit
        every: str | timedelta = f"{size}{unit}"
        shift: str | timedelta = f"{offset}{unit}" if offset >= 0 else f"-{-offset}{unit}"
        span = pl.duration(**{_DURATION_ARG[unit]: size})
    else:
        every, shift, span = f"{size}i", f"{offset}i", pl.lit(size)
    out = (
        df.sort(time, maintain_order=True)
        .group_by_dynamic(
            time,
            every=every,
            period=every,
            offset=shift,
            group_by=keys or None,
            closed="left",
            label="left",
            start_by="window",
        )
        .agg(*aggs)
        .rename({time: "window_start"})
    )
    names = out.columns[len(keys) + 1 :]
    return out.select(
        *keys,
        "window_start",
        (pl.col("window_start") + span).cast(dtype).alias("window_end"),
        *names,
    )


def watermarks_before(
    times: Sequence[int] | np.ndarray, batches: Sequence[int], bound: int
) -> np.ndarray:
    """The watermark from before each row's micro-batch, for one source split read in
    batches of the given row counts: ``max(event time seen) - bound`` after each batch,
    never decreasing; :data:`NO_WATERMARK` before the first one.

    Examples
    --------
    >>> watermarks_before([5, 1, 12, 3, 15], [2, 1, 2], 0).tolist()[1:]
    [-4611686018427387904, 5, 12, 12]
    """
    t = np.asarray(times, dtype=np.int64)
    assert sum(batches) == len(t), "batches must cover the rows"
    out = np.empty(len(t), dtype=np.int64)
    wm = NO_WATERMARK
    pos = 0
    for n in batches:
        out[pos : pos + n] = wm
        if n:
            wm = max(wm, int(t[pos : pos + n].max()) - bound)
        pos += n
    return out


def late_mask(last_end: np.ndarray, wm_before: np.ndarray, lateness: int = 0) -> np.ndarray:
    """Which events are late for all their windows: ``watermark >= end + lateness`` for the
    latest window end that contains each event."""
    return wm_before >= np.asarray(last_end, dtype=np.int64) + lateness


def fixed_batches(n: int, batch_size: int) -> list[int]:
    """Row counts of ``n`` rows read ``batch_size`` at a time (``vs.from_polars``)."""
    return [min(batch_size, n - k) for k in range(0, n, batch_size)]
