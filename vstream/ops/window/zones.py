"""Time zones of local windows: instants to local wall-clock times and back."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import numpy as np
import polars as pl

from vstream._dtypes import units_per_day
from vstream.kernels.window import time_bounds

__all__ = ["to_instants", "to_local", "zone_table"]


def _polars_local(ts: np.ndarray, dtype: pl.Datetime) -> np.ndarray:
    s = pl.Series(ts, dtype=pl.Int64).cast(dtype).dt.replace_time_zone(None)
    return s.to_physical().to_numpy()


@lru_cache(maxsize=64)
def zone_table(zone: str, unit: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The changes of a zone's UTC offset from 1970 to 2100: ``(at, offset, lo, hi)``,
    the instants of the changes (ascending, in ``unit``), the offset from each on
    (``offset[0]``: before the first one) and the range of instants the table covers.
    Each change is found to the second (zones change on whole seconds) by bisecting
    between the hours where the offset differs."""
    per_s = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    dtype = pl.Datetime("ms", zone)
    utc = pl.datetime_range(
        datetime(1970, 1, 1), datetime(2100, 1, 1), "1h", time_unit="ms", time_zone="UTC",
        eager=True,
    ).to_physical().to_numpy()  # fmt: skip
    offsets = _polars_local(utc, dtype) - utc
    change = np.flatnonzero(np.diff(offsets)) + 1
    lo, hi = utc[change - 1] // 1_000, utc[change] // 1_000  # seconds: same offset at lo
    before = offsets[change - 1]
    while (hi - lo > 1).any():
        mid = (lo + hi) // 2
        same = (_polars_local(mid * 1_000, dtype) - mid * 1_000) == before
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    at = hi * per_s
    offset = np.concatenate([offsets[:1], offsets[change]]) // 1_000 * per_s
    return at, offset, int(utc[0] // 1_000 * per_s), int(utc[-1] // 1_000 * per_s)


def to_local(ts: np.ndarray, dtype: pl.DataType) -> np.ndarray:
    """The local wall-clock times (as int64 in the column's unit) of the instants ``ts``
    of a time-zone-aware ``dtype``: a search in the zone's offset changes from 1970 to
    2100 (65,536 rows ~5.3 -> ~1 ms against Polars' replace_time_zone, which serves
    instants outside those years)."""
    assert isinstance(dtype, pl.Datetime)
    assert dtype.time_zone is not None
    if not len(ts):
        return ts.astype(np.int64)
    at, offset, lo, hi = zone_table(dtype.time_zone, dtype.time_unit or "us")
    first, last = time_bounds(ts)
    if first < lo or last > hi:
        return _polars_local(ts, dtype)
    out: np.ndarray = ts + offset[np.searchsorted(at, ts, side="right")]
    return out


def to_instants(local: np.ndarray, dtype: pl.DataType, ambiguous: str) -> np.ndarray:
    """The instants (int64, UTC) of local wall-clock times in the zone of ``dtype``: a
    time the clock shows twice (a DST overlap) is its ``ambiguous`` ("earliest" or
    "latest") instant; a time it skips (a DST gap) is the instant it jumps over it."""
    assert isinstance(dtype, pl.Datetime)
    naive = pl.Series(local, dtype=pl.Int64).cast(pl.Datetime(dtype.time_unit))
    out = naive.dt.replace_time_zone(
        dtype.time_zone,
        ambiguous=ambiguous,  # type: ignore[arg-type]
        non_existent="null",
    ).to_physical()
    if out.null_count():
        # in a gap: the offset from a day before is the one the clock jumps from, and
        # the local time minus it is the jump (for a bound on the grid, the usual case)
        before = local - units_per_day(dtype)
        off = to_local(before, dtype) - before
        out = out.fill_null(pl.Series(local - off))
    return out.to_numpy()
