"""Helpers for testing pipelines: DESIGN.md's notion of "the same result", and batching.

Examples
--------
>>> import polars as pl
>>> import vstream as vs
>>> from vstream.testing import assert_batch_size_independent
>>> df = pl.DataFrame({"x": range(100)})
>>> out = assert_batch_size_independent(lambda s: s.filter(pl.col("x") % 3 == 0), df)
>>> out.height
34
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl
from polars.testing import assert_frame_equal

from vstream.api.sources import from_polars
from vstream.api.stream import Stream

__all__ = ["assert_batch_size_independent", "assert_frame_equal_unordered", "assert_same_result"]

#: relative tolerance for floating-point aggregates (DESIGN.md, "Equality")
RTOL = 1e-9


def assert_same_result(left: pl.DataFrame, right: pl.DataFrame, *, ordered: bool = True) -> None:
    """Assert two results are "the same" as DESIGN.md defines it.

    Same columns and dtypes; integers, strings, keys exactly equal; floats within a
    relative 1e-9. With ``ordered=False`` rows may come in any order.

    Examples
    --------
    >>> from vstream.testing import assert_same_result
    >>> import polars as pl
    >>> a = pl.DataFrame({"k": [1, 2], "v": [0.1 + 0.2, 1.0]})
    >>> b = pl.DataFrame({"k": [2, 1], "v": [1.0, 0.3]})
    >>> assert_same_result(a, b, ordered=False)
    """
    if not ordered:
        left, right = _sorted(left), _sorted(right)
    assert_frame_equal(left, right, check_exact=False, rel_tol=RTOL, abs_tol=0.0)


def assert_frame_equal_unordered(left: pl.DataFrame, right: pl.DataFrame) -> None:
    """:func:`assert_same_result` with rows in any order."""
    assert_same_result(left, right, ordered=False)


def assert_batch_size_independent(
    pipeline: Callable[[Stream], Stream],
    data: pl.DataFrame,
    *,
    batch_sizes: Sequence[int] = (1, 7, 65_536),
    ordered: bool = True,
) -> pl.DataFrame:
    """Run ``pipeline`` over ``data`` cut into micro-batches of each size; assert the
    results are the same and return one of them.

    Parameters
    ----------
    pipeline
        Builds the pipeline from a source stream, e.g. ``lambda s: s.filter(...)``.
    data
        The input, fed with :func:`vstream.from_polars`.
    batch_sizes
        Micro-batch sizes to compare; 1 shakes out most batching bugs.
    ordered
        Whether row order must match too (true for stateless steps over one source).
    """
    results = [pipeline(from_polars(data, batch_size=b)).collect() for b in batch_sizes]
    for b, res in zip(batch_sizes[1:], results[1:], strict=True):
        try:
            assert_same_result(results[0], res, ordered=ordered)
        except AssertionError as exc:
            msg = f"batch size {b} gives another result than batch size {batch_sizes[0]}: {exc}"
            raise AssertionError(msg) from exc
    first: pl.DataFrame = results[0]
    return first


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    sortable = [
        c for c, t in df.schema.items() if not isinstance(t, pl.List | pl.Struct | pl.Object)
    ]
    return df.sort(sortable, nulls_last=True, maintain_order=True) if sortable else df
