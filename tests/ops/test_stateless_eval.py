"""How with_columns, select and filter evaluate a batch, against plain Polars.

``with_columns_step`` / ``select_step`` run ``with_columns_seq`` / ``select_seq`` on a
one-thread Polars pool and the parallel calls otherwise; ``filter_frame`` filters column
by column. Each must give exactly what ``df.with_columns(...)``, ``df.select(...)`` and
``df.filter(...)`` give (names, order, dtypes, values, errors), on both paths: the pool
size the tests run with is patched to choose one.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import polars.selectors as cs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import strategies
import vstream as vs
from vstream.ops.stateless import filter_frame, select_step, with_columns_step

#: row-wise expressions over the columns of ``frames()``; together they replace columns
#: while others read their old values, broadcast literals, and expand to several outputs
EXPRS: list[pl.Expr] = [
    (pl.col("a") + 1).alias("b"),  # replaces b from a ...
    (pl.col("b") * 2).alias("a"),  # ... while this reads the old b and replaces a
    pl.col("a") * pl.col("b"),  # output name a
    pl.col("a").alias("a2"),
    pl.lit(1).alias("one"),
    pl.lit(None).alias("nothing"),
    pl.lit("x").alias("s"),  # a literal replacing a column
    pl.lit(2.5, dtype=pl.Float32).alias("f"),
    pl.col("a", "b").fill_null(0).name.suffix("_f"),  # several outputs
    cs.numeric().cast(pl.Float32).name.prefix("f32_"),  # a selector
    pl.all().is_null().name.suffix("_null"),
    pl.when(pl.col("flag")).then(pl.col("a")).otherwise(None).alias("w"),
    pl.col("s").str.len_chars().alias("n"),
    pl.col("s").str.to_uppercase(),  # replaces s
    pl.col("flag").not_(),
    pl.concat_str([pl.col("s"), pl.col("a").cast(pl.String)], separator="-").alias("sa"),
]

PREDICATES: list[pl.Expr] = [
    pl.col("a") > 0,  # null where a is null
    pl.col("flag"),  # a nullable Boolean column
    pl.col("s").str.starts_with("a"),
    (pl.col("a") > 0) & pl.col("flag"),
    pl.col("a").is_null() | (pl.col("b") < 0),
    pl.all_horizontal(pl.col("a") >= -1, pl.col("b") <= 1),
    pl.col("a").is_between(-2, 2),
    pl.lit(True),
    pl.lit(False),
    pl.lit(None, dtype=pl.Boolean),
]


@st.composite
def frames(draw: st.DrawFn, max_n: int = 25) -> pl.DataFrame:
    """Int, float, string and Boolean columns with nulls; 0 to ``max_n`` rows."""
    n = draw(st.integers(min_value=0, max_value=max_n))

    def column(values: st.SearchStrategy[object]) -> list[object]:
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    return pl.DataFrame(
        {
            "a": column(st.integers(-5, 5)),
            "b": column(st.floats(-3, 3, allow_nan=False)),
            "s": column(st.sampled_from(["a", "ab", "b", ""])),
            "flag": column(st.booleans()),
        },
        schema={"a": pl.Int64, "b": pl.Float64, "s": pl.String, "flag": pl.Boolean},
    )


def expr_lists(max_size: int = 4) -> st.SearchStrategy[list[pl.Expr]]:
    return st.lists(st.sampled_from(EXPRS), min_size=1, max_size=max_size, unique_by=id)


def same_outcome(got: object, expected: object) -> None:
    """Two evaluations agree: equal frames, or the same kind of error."""
    if isinstance(expected, Exception):
        assert type(got) is type(expected), (got, expected)
    else:
        assert isinstance(got, pl.DataFrame), got
        assert isinstance(expected, pl.DataFrame)
        assert_frame_equal(got, expected)


def outcome(fn: object, df: pl.DataFrame) -> object:
    try:
        return fn(df)  # type: ignore[operator]
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("step", "method"),
    [(with_columns_step, "with_columns"), (select_step, "select")],
    ids=["with_columns", "select"],
)
@pytest.mark.parametrize("sequential", [True, False], ids=["seq", "parallel"])
@settings(max_examples=150, deadline=None)
@given(df=frames(), exprs=expr_lists())
def test_step_is_the_polars_call(
    step: Any, method: str, sequential: bool, df: pl.DataFrame, exprs: list[pl.Expr]
) -> None:
    """with_columns_step / select_step give what DataFrame.with_columns / select give
    (the same frame, or the same error), sequential or not."""
    expected = outcome(lambda d: getattr(d, method)(exprs), df)
    same_outcome(outcome(step(exprs, sequential=sequential), df), expected)


@settings(max_examples=200, deadline=None)
@given(df=frames(), predicate=st.sampled_from(PREDICATES))
def test_filter_frame_is_polars_filter(df: pl.DataFrame, predicate: pl.Expr) -> None:
    assert_frame_equal(filter_frame(df, predicate), df.filter(predicate))


def test_with_columns_reads_the_old_values_of_replaced_columns() -> None:
    df = pl.DataFrame({"a": [1, 2, None], "b": [10.0, None, 30.0]})
    swap = [pl.col("b").alias("a"), pl.col("a").alias("b"), pl.lit(7).alias("c")]
    for sequential in (True, False):
        out = with_columns_step(swap, sequential=sequential)(df)
        assert_frame_equal(out, df.with_columns(swap))
        assert out.columns == ["a", "b", "c"]
        assert out.schema == pl.Schema({"a": pl.Float64, "b": pl.Int64, "c": pl.Int32})


def test_literals_broadcast_on_empty_and_one_row_batches() -> None:
    exprs = [pl.lit(1).alias("one"), pl.lit("x").alias("s"), (pl.col("a") * 2).alias("a2")]
    for df in (pl.DataFrame({"a": []}, schema={"a": pl.Int64}), pl.DataFrame({"a": [3]})):
        for sequential in (True, False):
            got = with_columns_step(exprs, sequential=sequential)(df)
            assert_frame_equal(got, df.with_columns(exprs))
            got = select_step(exprs, sequential=sequential)(df)
            assert_frame_equal(got, df.select(exprs))


def test_duplicate_outputs_fail_as_in_polars() -> None:
    df = pl.DataFrame({"a": [1, 2]})
    exprs = [pl.col("a") + 1, pl.col("a") * 2]  # both named a
    for step, polars_call in ((with_columns_step, df.with_columns), (select_step, df.select)):
        expected = outcome(lambda d, f=polars_call: f(exprs), df)
        assert isinstance(expected, pl.exceptions.PolarsError)
        for sequential in (True, False):
            got = outcome(step(exprs, sequential=sequential), df)
            same_outcome(got, expected)
            assert "duplicate" in str(got)


def test_filter_frame_keeps_columns_order_and_dtypes() -> None:
    df = pl.DataFrame(
        {"x": [1, 2, 3], "s": ["a", None, "c"], "t": [[1], [], None]},
        schema={"x": pl.Int8, "s": pl.Categorical, "t": pl.List(pl.Int16)},
    )
    for frame in (df, df.select("s")):  # several columns, one column
        for predicate in (pl.col("s") == "c", pl.col("s").is_null(), pl.col("s") != "z"):
            assert_frame_equal(filter_frame(frame, predicate), frame.filter(predicate))
    for predicate in (pl.col("x") != 2, pl.col("x") > 5, pl.col("x") > 0):
        assert_frame_equal(filter_frame(df, predicate), df.filter(predicate))


# ------------------------------------------------------------------ through a Stream


@pytest.fixture(params=[1, 4], ids=["one-thread-pool", "larger-pool"])
def pool_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The Polars pool size steps see when they are built (which path they take)."""
    size: int = request.param
    monkeypatch.setattr(pl, "thread_pool_size", lambda: size)
    return size


def test_a_one_thread_pool_runs_the_sequential_calls(
    pool_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = pl.DataFrame({"a": [1, 2, 3]})
    expected = df.with_columns(b=pl.col("a") * 2, c=pl.lit(1)).select("a", "c")
    s = vs.from_polars(df).with_columns(b=pl.col("a") * 2, c=pl.lit(1)).select("a", "c")
    calls: list[str] = []
    for name in ("with_columns", "with_columns_seq", "select", "select_seq"):
        method = getattr(pl.DataFrame, name)

        def spy(self: pl.DataFrame, *a: object, _m: object = method, _n: str = name) -> object:
            calls.append(_n)
            return _m(self, *a)  # type: ignore[operator]

        monkeypatch.setattr(pl.DataFrame, name, spy)
    out = s.collect()
    monkeypatch.undo()
    assert_frame_equal(out, expected)
    if pool_size == 1:
        assert calls == ["with_columns_seq", "select_seq"]
    else:
        assert calls == ["with_columns", "select"]


# the patched pool size holds for every example: the fixture runs once on purpose
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    df=frames(max_n=60),
    exprs=expr_lists(),
    predicate=st.sampled_from(PREDICATES),
    batch_size=strategies.batch_sizes(max_size=20),
)
def test_stream_steps_are_polars_on_any_batching(
    pool_size: int,
    df: pl.DataFrame,
    exprs: list[pl.Expr],
    predicate: pl.Expr,
    batch_size: int,
) -> None:
    try:
        expected = df.filter(predicate).with_columns(exprs)
    except Exception:
        return  # duplicate outputs: refused when the step is built (tested above)
    stream = vs.from_polars(df, batch_size=batch_size).filter(predicate).with_columns(exprs)
    assert_frame_equal(stream.collect(), expected)
    try:
        expected = df.select(exprs)
    except Exception:
        return
    # known exception: a select of literals only is one row in Polars whatever the input,
    # and one row a batch in a stream
    assume(expected.height == df.height)
    assert_frame_equal(vs.from_polars(df, batch_size=batch_size).select(exprs).collect(), expected)
