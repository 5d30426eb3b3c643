"""Dtype helpers shared by the key index and the window operator."""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["integer_like", "physical_int64"]


def integer_like(dtype: pl.DataType | None) -> bool:
    """Whether a column's values are integers underneath (ints, booleans, temporals).

    Examples
    --------
    >>> import polars as pl
    >>> integer_like(pl.Datetime("ms")), integer_like(pl.Float64), integer_like(pl.Boolean)
    (True, False, True)
    """
    return dtype is not None and (
        bool(dtype.is_integer())
        or dtype in (pl.Boolean, pl.Date, pl.Time)
        or isinstance(dtype, pl.Datetime | pl.Duration)
    )


def physical_int64(s: pl.Series) -> np.ndarray:
    """An integer-like Series without nulls as int64 values (zero-copy where possible;
    UInt64 is reinterpreted, which keeps distinct values distinct).

    Examples
    --------
    >>> import polars as pl
    >>> physical_int64(pl.Series([True, False])).tolist()
    [1, 0]
    """
    if s.dtype == pl.Boolean:
        s = s.cast(pl.Int8)
    values = s.to_numpy()
    if values.dtype.kind in "mM" or values.dtype == np.uint64:
        return values.view(np.int64)
    return values.astype(np.int64, copy=False)
