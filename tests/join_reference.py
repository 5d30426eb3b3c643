"""Polars references for the joins (/tmp/joinspec/API.md, DESIGN.md "Semantics"), used by
``test_joins.py``.

Each reference takes the *whole* left and right inputs as DataFrames (any row order) and
gives the rows a join over them must produce, with the columns, names and dtypes of the
Polars join that the contract names. Durations are integers in the unit of the time
columns (milliseconds for every ``Datetime("ms")`` and Int64 ``ts`` here); a ``Datetime``
time column takes them as that many units of its own time unit.

- :func:`asof` is Polars' ``join_asof`` on both inputs sorted by time.
- :func:`interval` and :func:`ttl` are a Polars ``join`` on the key filtered on the two
  event times, plus (``how="left"``/``"full"``) the rows without a partner, laid out as
  Polars' ``join`` with that ``how`` lays them out (``full``: ``coalesce=False``).
- :func:`windowed` assigns every row to every window that contains it (the Flink rule,
  windows ``[k * slide + offset, k * slide + offset + size)``), joins on key and window
  with ``how``, and appends ``window_start``/``window_end``. A row that came when some of
  its windows were closed for the join (DESIGN.md "Lateness in joins") is in the others
  only (``left_from`` / ``right_from``).
- :func:`lookup` is a plain Polars ``join``; :func:`latest_per_key` turns a stream of
  table updates into the table a lookup sees once it has read them all.

Polars does not match null keys (``nulls_equal=False``), in ``join`` as in the ``by``
columns of ``join_asof``; the references inherit that.

Test modules import this file by name (pyproject's ``pythonpath = ["tests"]`` puts the
tests root on ``sys.path``).

Examples
--------
>>> from join_reference import interval
>>> import polars as pl
>>> left = pl.DataFrame({"ts": [10, 20], "k": ["a", "b"]})
>>> right = pl.DataFrame({"ts": [12, 40], "k": ["a", "b"], "v": [1, 2]})
>>> interval(left, right, on="k", lower=0, upper=5).rows()
[(10, 'a', 12, 1)]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import polars as pl

__all__ = ["asof", "interval", "latest_per_key", "lookup", "ttl", "windowed"]

Keys = str | Sequence[str] | None
How = Literal["inner", "left", "full"]

# helper columns: row ids, integer event times and window starts of either side
_L, _R, _LT, _RT, _LW, _RW = "__l", "__r", "__lt", "__rt", "__lw", "__rw"
_UNIT = {"ns": "nanoseconds", "us": "microseconds", "ms": "milliseconds"}


def _list(keys: Keys) -> list[str]:
    if keys is None:
        return []
    if isinstance(keys, str):
        return [keys]
    return list(keys)


def _sides(on: Keys, left_on: Keys, right_on: Keys) -> tuple[list[str], list[str]]:
    if on is not None:
        assert left_on is None, "on, or left_on and right_on"
        assert right_on is None, "on, or left_on and right_on"
        return _list(on), _list(on)
    assert left_on is not None, "on, or left_on and right_on"
    assert right_on is not None, "on, or left_on and right_on"
    lk, rk = _list(left_on), _list(right_on)
    assert len(lk) == len(rk), "as many left keys as right keys"
    return lk, rk


def _duration(value: int, dtype: pl.DataType) -> int | timedelta:
    """An integer duration as ``join_asof`` takes it for a column of ``dtype``."""
    if isinstance(dtype, pl.Datetime):
        return timedelta(**{_UNIT[dtype.time_unit]: value})
    return value


def asof(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    left_time: str = "ts",
    right_time: str = "ts",
    by: Keys = None,
    by_left: Keys = None,
    by_right: Keys = None,
    strategy: Literal["backward", "forward", "nearest"] = "backward",
    tolerance: int | None = None,
    suffix: str = "_right",
) -> pl.DataFrame:
    """Polars ``join_asof`` of ``left`` and ``right`` sorted by their time columns.

    Right rows must have unique ``(by, time)``: with ties the match depends on order.

    Examples
    --------
    >>> from join_reference import asof
    >>> import polars as pl
    >>> left = pl.DataFrame({"ts": [5, 1], "k": ["a", "a"]})
    >>> right = pl.DataFrame({"ts": [4, 0], "k": ["a", "a"], "v": [1, 2]})
    >>> asof(left, right, by="k").sort("ts").rows()
    [(1, 'a', 2), (5, 'a', 1)]
    """
    right_keys = _list(by if by is not None else by_right)
    dupes = right.select(*right_keys, right_time).is_duplicated()
    assert not dupes.any(), "right rows must have unique (by, time)"
    tol = None if tolerance is None else _duration(tolerance, left.schema[left_time])
    return left.sort(left_time, maintain_order=True).join_asof(
        right.sort(right_time, maintain_order=True),
        left_on=left_time,
        right_on=right_time,
        by=by,
        by_left=by_left,
        by_right=by_right,
        strategy=strategy,
        tolerance=tol,
        suffix=suffix,
        check_sortedness=False,  # sorted by time overall, so sorted within every group
    )


def _numbered(df: pl.DataFrame, row: str, time: str, time_alias: str) -> pl.DataFrame:
    return df.with_row_index(row).with_columns(pl.col(time).to_physical().alias(time_alias))


def _with_unmatched(
    left: pl.DataFrame,
    right: pl.DataFrame,
    lk: list[str],
    rk: list[str],
    how: How,
    suffix: str,
    keep: pl.Expr,
    drop: Sequence[str] = (),
) -> pl.DataFrame:
    """The key join of ``left`` and ``right`` (numbered ``_L``/``_R``) restricted to the
    pairs where ``keep`` holds, plus, for ``left``/``full``, every row without a kept
    partner once with nulls on the other side; in Polars' layout for ``how``."""
    joined = left.join(right, left_on=lk, right_on=rk, how=how, suffix=suffix)
    matched = joined.filter(pl.col(_L).is_not_null() & pl.col(_R).is_not_null() & keep)
    parts = [matched]
    if how in ("left", "full"):
        alone = left.filter(~pl.col(_L).is_in(matched[_L].implode()))
        parts.append(alone.join(right.clear(), left_on=lk, right_on=rk, how=how, suffix=suffix))
    if how == "full":
        alone = right.filter(~pl.col(_R).is_in(matched[_R].implode()))
        parts.append(left.clear().join(alone, left_on=lk, right_on=rk, how=how, suffix=suffix))
    out = pl.concat(parts, how="vertical")
    helpers = {_L, _R, *drop}
    return out.drop([c for c in out.columns if c in helpers or c.removesuffix(suffix) in helpers])


def interval(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    on: Keys = None,
    left_on: Keys = None,
    right_on: Keys = None,
    left_time: str = "ts",
    right_time: str = "ts",
    lower: int,
    upper: int,
    how: How = "inner",
    suffix: str = "_right",
) -> pl.DataFrame:
    """Pairs with equal keys and ``l.t + lower <= r.t <= l.t + upper``; with ``left`` and
    ``full`` the rows without such a partner once, nulls on the other side.

    Examples
    --------
    >>> from join_reference import interval
    >>> import polars as pl
    >>> left = pl.DataFrame({"ts": [10, 20], "k": ["a", "b"]})
    >>> right = pl.DataFrame({"ts": [12, 40], "k": ["a", "b"], "v": [1, 2]})
    >>> interval(left, right, on="k", lower=0, upper=5, how="full").sort("ts").rows()
    [(None, None, 40, 'b', 2), (10, 'a', 12, 'a', 1), (20, 'b', None, None, None)]
    """
    lk, rk = _sides(on, left_on, right_on)
    lt, rt = pl.col(_LT), pl.col(_RT)
    keep = (lt + lower <= rt) & (rt <= lt + upper)
    return _with_unmatched(
        _numbered(left, _L, left_time, _LT),
        _numbered(right, _R, right_time, _RT),
        lk,
        rk,
        how,
        suffix,
        keep,
        drop=(_LT, _RT),
    )


def ttl(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    on: Keys = None,
    left_on: Keys = None,
    right_on: Keys = None,
    left_time: str = "ts",
    right_time: str = "ts",
    ttl: int | None,
    how: How = "inner",
    suffix: str = "_right",
) -> pl.DataFrame:
    """The regular join: pairs with equal keys and ``|l.t - r.t| <= ttl`` (every pair with
    equal keys when ``ttl`` is None, a plain Polars ``join``), plus unmatched rows.

    Examples
    --------
    >>> from join_reference import ttl
    >>> import polars as pl
    >>> left = pl.DataFrame({"ts": [10, 20], "k": ["a", "a"]})
    >>> right = pl.DataFrame({"ts": [14], "k": ["a"], "v": [1]})
    >>> ttl(left, right, on="k", ttl=5, how="left").sort("ts").rows()
    [(10, 'a', 14, 1), (20, 'a', None, None)]
    """
    if ttl is None:
        lk, rk = _sides(on, left_on, right_on)
        return left.join(right, left_on=lk, right_on=rk, how=how, suffix=suffix)
    return interval(
        left,
        right,
        on=on,
        left_on=left_on,
        right_on=right_on,
        left_time=left_time,
        right_time=right_time,
        lower=-ttl,
        upper=ttl,
        how=how,
        suffix=suffix,
    )


def _assigned(
    df: pl.DataFrame, time: str, alias: str, size: int, slide: int, offset: int
) -> pl.DataFrame:
    """``df`` with one row per (row, window containing it), the window start as ``alias``."""
    t = pl.col(time).to_physical() - offset
    first = ((t - size) // slide + 1) * slide + offset  # the earliest start with t < end
    last = t // slide * slide + offset  # the latest start <= t
    starts = pl.int_ranges(first, last + 1, slide, dtype=pl.Int64)
    return df.with_columns(starts.alias(alias)).explode(alias)


def windowed(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    on: Keys = None,
    left_on: Keys = None,
    right_on: Keys = None,
    left_time: str = "ts",
    right_time: str = "ts",
    size: int,
    slide: int | None = None,
    offset: int = 0,
    how: How = "inner",
    suffix: str = "_right",
    left_from: str | None = None,
    right_from: str | None = None,
) -> pl.DataFrame:
    """Per window (tumbling when ``slide`` is None), the Polars join of the window's left
    rows with its right rows, then ``window_start``, ``window_end`` (in the dtype of the
    left time column) appended.

    ``left_from`` / ``right_from``: a column of that input (integer, dropped) giving for
    each row the first window start it is in: its earlier windows were closed when it
    came, so it is neither a partner nor unmatched there.

    Examples
    --------
    >>> from join_reference import windowed
    >>> import polars as pl
    >>> left = pl.DataFrame({"ts": [3], "k": ["a"]})
    >>> right = pl.DataFrame({"ts": [7], "k": ["a"], "v": [1]})
    >>> windowed(left, right, on="k", size=10, slide=5, how="left").sort("window_start").rows()
    [(3, 'a', None, None, -5, 5), (3, 'a', 7, 1, 0, 10)]
    """
    lk, rk = _sides(on, left_on, right_on)
    step = size if slide is None else slide
    lw = _assigned(left, left_time, _LW, size, step, offset)
    rw = _assigned(right, right_time, _RW, size, step, offset)
    if left_from is not None:
        lw = lw.filter(pl.col(_LW) >= pl.col(left_from)).drop(left_from)
    if right_from is not None:
        rw = rw.filter(pl.col(_RW) >= pl.col(right_from)).drop(right_from)
    out = lw.join(rw, left_on=[*lk, _LW], right_on=[*rk, _RW], how=how, suffix=suffix)
    start = pl.coalesce(_LW, _RW) if _RW in out.columns else pl.col(_LW)
    dtype = left.schema[left_time]
    return out.with_columns(
        start.cast(dtype).alias("window_start"),
        (start + size).cast(dtype).alias("window_end"),
    ).drop(_LW, _RW, strict=False)


def lookup(
    events: pl.DataFrame, table: pl.DataFrame, *, on: Keys, how: How = "inner"
) -> pl.DataFrame:
    """A lookup join is a Polars ``join`` of the events with the table.

    Examples
    --------
    >>> from join_reference import lookup
    >>> import polars as pl
    >>> events = pl.DataFrame({"k": [1, 2, None]})
    >>> lookup(events, pl.DataFrame({"k": [1, None], "v": ["x", "y"]}), on="k", how="left").rows()
    [(1, 'x'), (2, None), (None, None)]
    """
    return events.join(table, on=on, how=how)


def latest_per_key(updates: pl.DataFrame, key: Keys) -> pl.DataFrame:
    """The table after applying ``updates`` in order: the last row per key wins.

    Examples
    --------
    >>> from join_reference import latest_per_key
    >>> import polars as pl
    >>> updates = pl.DataFrame({"k": [1, 2, 1], "v": ["a", "b", "c"]})
    >>> latest_per_key(updates, "k").sort("k").rows()
    [(1, 'c'), (2, 'b')]
    """
    return updates.unique(subset=_list(key), keep="last", maintain_order=True)
