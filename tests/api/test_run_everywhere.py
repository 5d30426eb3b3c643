"""The ``run_everywhere`` and ``executor`` fixtures (tests/conftest.py) themselves: each
executor cuts its input as it says, and a pipeline whose rows depend on the executor is
caught, naming it."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import vstream as vs

DF = pl.DataFrame({"x": range(250)})


def _batch_heights(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(n=pl.lit(df.height, pl.Int64))


def test_each_executor_cuts_its_input_as_it_says(executor: Any) -> None:
    cuts = executor.cuts(DF.height, 0)
    assert sum(cuts) == DF.height
    assert min(cuts) >= 1
    out = executor.outputs(lambda s: s.map_batches(_batch_heights), DF)
    assert out.frames[0]["x"].to_list() == DF["x"].to_list()
    heights = out.frames[0]["n"].to_list()
    assert heights == [c for c in cuts for _ in range(c)]
    assert out.metrics.events_in == DF.height


def test_a_result_that_depends_on_the_executor_is_caught(run_everywhere: Any) -> None:
    with pytest.raises(AssertionError, match="under 'batch-random', output 0 differs"):
        run_everywhere(lambda s: s.map_batches(_batch_heights), DF)


def test_several_outputs_and_inputs(run_everywhere: Any) -> None:
    other = pl.DataFrame({"y": range(10)})
    low, high, y = run_everywhere(
        lambda a, b: [a.filter(pl.col("x") < 5), a.filter(pl.col("x") >= 245), b], DF, other
    )
    assert low["x"].to_list() == [0, 1, 2, 3, 4]
    assert high.height == 5
    assert y.equals(other)


def test_rows_in_another_order_are_caught_when_asked(run_everywhere: Any) -> None:
    def reversed_batches(df: pl.DataFrame) -> pl.DataFrame:
        return df.reverse()

    build = lambda s: s.map_batches(reversed_batches)  # noqa: E731
    out = run_everywhere(build, DF)  # the same rows, in another order
    assert sorted(out["x"].to_list()) == DF["x"].to_list()
    with pytest.raises(AssertionError, match="under 'batch-random'"):
        run_everywhere(build, DF, ordered=True)


def test_metrics_are_checked_under_each_executor(run_everywhere: Any) -> None:
    seen: list[int] = []
    run_everywhere(lambda s: s, DF, metrics=lambda m: seen.append(m.events_in))
    assert seen == [DF.height] * len(seen)
    assert len(seen) >= 3

    def none_in(m: vs.Metrics) -> None:
        assert m.events_in == 0

    with pytest.raises(AssertionError, match="under 'batch-1'"):
        run_everywhere(lambda s: s, DF, metrics=none_in)


def test_every_executor_reads_an_empty_input(run_everywhere: Any) -> None:
    out = run_everywhere(lambda s: s.filter(pl.col("x") > 0), DF.head(0))
    assert out.height == 0
    assert out.schema == DF.schema
    assert vs.from_polars(DF.head(0)).collect().schema == out.schema
