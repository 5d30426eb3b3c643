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

Test modules import this file by name (pyproject's ``pythonpath = ["tests"]`` puts the
tests root on ``sys.path``).

Examples
--------
>>> from window_reference import tumbling
>>> import polars as pl
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
    "session_emissions",
    "session_stream",
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
    >>> from window_reference import tumbling
    >>> import polars as pl
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
    >>> from window_reference import hopping
    >>> import polars as pl
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
    ``t - previous t > gap`` (events exactly ``gap`` apart share one: windows ``[t, t +
    gap)`` that touch merge); the window is ``[first, last + gap)``.

    Examples
    --------
    >>> from window_reference import session
    >>> import polars as pl
    >>> df = pl.DataFrame({"ts": [19, 0, 30, 10]})
    >>> session(df, 10, aggs=[pl.len()]).sort("window_start").rows()
    [(0, 29, 3), (30, 40, 1)]
    """
    keys = _keys(by)
    ordered = _physical(df, time).sort([*keys, _T, _ROW], nulls_last=True)
    # (t > previous + gap, not t - previous > gap: far-apart int64 times would wrap)
    new = (pl.col(_T) > pl.col(_T).shift(1) + gap).fill_null(True)
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
    >>> from window_reference import tumbling_dynamic
    >>> import polars as pl
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
    >>> from window_reference import watermarks_before
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


def session_stream(
    times: Sequence[int] | np.ndarray,
    keys: Sequence[object],
    batches: Sequence[int],
    bound: int,
    gap: int,
    lateness: int = 0,
) -> tuple[pl.DataFrame, np.ndarray]:
    """What a session window emits over one source split read in micro-batches, modelled
    row by row from DESIGN.md (a plain-Python model for small inputs, not the kernel).

    Per batch, with ``wm`` the watermark from before it: each key's events, in time
    order, form runs of events at most ``gap`` apart; a run joins every kept session it
    overlaps or touches (``start <= run end`` and ``run start <= end``), again as the
    union grows. A run that joins none and whose ``[first, last + gap)`` has ``end +
    lateness <= wm`` is late. Then the watermark moves to ``max(event time) - bound``;
    every session that changed and has ``end <= wm`` is emitted (revision 0, 1, ...),
    and sessions with ``end + lateness <= wm`` are dropped. At the end of the input the
    watermark is +inf: every changed session is emitted.

    Returns the emissions in firing order (``emission``, ``key``, ``window_start``,
    ``window_end``, ``revision`` and ``rows``, the positions of the session's events)
    and the late mask.

    Examples
    --------
    >>> from window_reference import session_stream
    >>> out, late = session_stream([0, 20, 10, -20], ["a"] * 4, [2, 1, 1], 5, 10)
    >>> out.select("window_start", "window_end", "revision", "rows").rows()
    [(0, 10, 0, [0]), (10, 30, 0, [1, 2])]
    >>> late.tolist()
    [False, False, False, True]
    """
    t = np.asarray(times, dtype=np.int64)
    assert sum(batches) == len(t) == len(keys), "batches must cover the rows"
    kept: dict[object, list[dict[str, object]]] = {}
    late = np.zeros(len(t), dtype=bool)
    out: list[tuple[object, int, int, int, list[int]]] = []
    wm = NO_WATERMARK

    def fire(wm: int) -> None:
        for key, sessions in kept.items():
            for s in sessions:
                if s["dirty"] and s["end"] <= wm:  # type: ignore[operator]
                    s["rev"] = s["rev"] + 1  # type: ignore[operator]
                    s["dirty"] = False
                    out.append((key, s["start"], s["end"], s["rev"], sorted(s["rows"])))  # type: ignore[arg-type]
            kept[key] = [s for s in sessions if s["end"] + lateness > wm]  # type: ignore[operator]

    pos = 0
    for n in batches:
        rows = range(pos, pos + n)
        for key in dict.fromkeys(keys[r] for r in rows):
            mine = sorted((r for r in rows if keys[r] == key), key=lambda r: (t[r], r))
            runs: list[list[int]] = []
            for r in mine:
                if runs and t[r] - t[runs[-1][-1]] <= gap:
                    runs[-1].append(r)
                else:
                    runs.append([r])
            sessions = kept.setdefault(key, [])
            for run in runs:
                start, end = int(t[run[0]]), int(t[run[-1]]) + gap
                joined = {"start": start, "end": end, "rows": set(run), "rev": -1}
                merged = True
                any_merge = False
                while merged:
                    merged = False
                    for s in sessions:
                        if s["start"] <= joined["end"] and joined["start"] <= s["end"]:  # type: ignore[operator]
                            joined["start"] = min(joined["start"], s["start"])  # type: ignore[type-var]
                            joined["end"] = max(joined["end"], s["end"])  # type: ignore[type-var]
                            joined["rows"] |= s["rows"]  # type: ignore[operator]
                            joined["rev"] = max(joined["rev"], s["rev"])  # type: ignore[type-var]
                            sessions.remove(s)
                            merged = any_merge = True
                            break
                if not any_merge and end + lateness <= wm:
                    late[run] = True
                    continue
                joined["dirty"] = True
                sessions.append(joined)
        if n:
            wm = max(wm, int(t[pos : pos + n].max()) - bound)
        fire(wm)
        pos += n
    fire(2**63 - 1)
    schema = {
        "emission": pl.Int64,
        "key": pl.Object if not keys else pl.Series([keys[0]]).dtype,
        "window_start": pl.Int64,
        "window_end": pl.Int64,
        "revision": pl.Int64,
        "rows": pl.List(pl.Int64),
    }
    frame = pl.DataFrame([(i, *e) for i, e in enumerate(out)], schema=schema, orient="row")
    return frame, late


def session_emissions(
    df: pl.DataFrame, emitted: pl.DataFrame, *, by: str, aggs: Sequence[pl.Expr]
) -> pl.DataFrame:
    """The rows of :func:`session_stream`'s emissions: ``by``, the window bounds, the
    revision and ``aggs`` over each emission's rows of ``df`` in arrival order."""
    rows = emitted.explode("rows").rename({"rows": _ROW})
    joined = rows.join(df.with_row_index(_ROW).with_columns(pl.col(_ROW).cast(pl.Int64)), on=_ROW)
    out = (
        joined.sort("emission", _ROW)
        .group_by("emission", maintain_order=True)
        .agg(
            pl.col("key").first().alias(by),
            pl.col("window_start", "window_end", "revision").first(),
            *aggs,
        )
        .drop("emission")
    )
    return out


def late_mask(last_end: np.ndarray, wm_before: np.ndarray, lateness: int = 0) -> np.ndarray:
    """Which events are late for all their windows: ``watermark >= end + lateness`` for the
    latest window end that contains each event."""
    return wm_before >= np.asarray(last_end, dtype=np.int64) + lateness


def fixed_batches(n: int, batch_size: int) -> list[int]:
    """Row counts of ``n`` rows read ``batch_size`` at a time (``vs.from_polars``)."""
    return [min(batch_size, n - k) for k in range(0, n, batch_size)]
