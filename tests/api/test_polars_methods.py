"""The row-wise Polars methods of a Stream (issue 22, item 5): ``cast``, ``fill_null``,
``fill_nan``, ``drop_nulls``, ``unnest``, ``explode``, ``with_row_index``, ``pipe``,
``head()``, and the Polars names ``sink_batches`` / ``collect_batches``.

Each method's result equals Polars' same method on the collected data, in order, under
every executor (batch sizes 1, random and the whole input: the ``run_everywhere``
fixture), and on random frames (hypothesis). The refusals (``sort``, strategies that read
other rows, steps that would change the event time, a row index without a deterministic
order) are tested with their messages. ``with_row_index`` survives a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import polars.selectors as cs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import strategies
import vstream as vs
from vstream.errors import (
    ColumnNotFoundError,
    EventTimeError,
    ExpressionError,
    PipelineError,
    SchemaError,
)
from vstream.io.sinks import CollectSink
from vstream.plan.nodes import source_columns
from vstream.runtime.executor import Executor, Target

NAN = float("nan")

DF = pl.DataFrame(
    {
        "ts": [0, 100, 200, 300, 400, 500, 600],
        "i": [1, None, 3, -4, None, 6, 7],
        "u": pl.Series([1, 2, None, 4, 5, None, 7], dtype=pl.UInt8),
        "f": [1.5, NAN, None, -2.0, NAN, 0.0, 3.25],
        "f32": pl.Series([NAN, 1.0, None, 2.0, 3.0, NAN, None], dtype=pl.Float32),
        "s": ["a", None, "12", "x", None, "7", ""],
        "b": [True, None, False, True, None, False, True],
        "st": [
            *({"p": 1, "q": "z"}, None, {"p": None, "q": "y"}, {"p": 4, "q": None}),
            *({"p": 5, "q": "w"}, None, {"p": 7, "q": "v"}),
        ],
        "l": [[1, 2], [], None, [4], [5, None, 6], [None], [7, 8]],
        "l2": [["a", "b"], [], None, ["d"], ["e", "f", "g"], ["h"], ["i", "j"]],
        "dt": [datetime(2024, 1, 1, h) for h in range(7)],
    }
)
#: the columns of DF without nested types (fill strategies and casts to String refuse them)
FLAT = ["ts", "i", "u", "f", "f32", "s", "b", "dt"]


@dataclass(frozen=True)
class Case:
    """A method on a Stream and the same method on a Polars LazyFrame."""

    id: str
    build: Callable[[Any], Any]  # takes a vs.Stream or a pl.LazyFrame: the same calls

    def reference(self, df: pl.DataFrame) -> pl.DataFrame:
        out: pl.DataFrame = self.build(df.lazy()).collect()
        return out


CASES = [
    Case("cast-names", lambda s: s.cast({"i": pl.Float32, "u": pl.Int64, "s": pl.Categorical})),
    Case("cast-selector", lambda s: s.cast({cs.float(): pl.Float64, cs.string(): pl.Binary})),
    Case("cast-dtype-key", lambda s: s.cast({pl.Int64: pl.Int16})),
    Case("cast-dtype-keys", lambda s: s.cast({(pl.Int64, pl.UInt8): pl.Float32})),
    Case("cast-all", lambda s: s.select(FLAT).cast(pl.String)),
    Case("cast-non-strict", lambda s: s.cast({"s": pl.Int32}, strict=False)),
    Case("cast-no-change", lambda s: s.cast({"i": pl.Int64})),
    Case("fill_null-int", lambda s: s.fill_null(0)),
    Case("fill_null-float", lambda s: s.fill_null(1.5)),
    Case("fill_null-int-exact", lambda s: s.fill_null(9, matches_supertype=False)),
    Case("fill_null-str", lambda s: s.fill_null("?")),
    Case("fill_null-bool", lambda s: s.fill_null(False)),
    Case("fill_null-datetime", lambda s: s.fill_null(datetime(2000, 1, 1))),
    Case("fill_null-expr", lambda s: s.select("i", "u", "f").fill_null(pl.col("i") * 10)),
    Case("fill_null-zero", lambda s: s.select(FLAT).drop("s").fill_null(strategy="zero")),
    Case("fill_null-one", lambda s: s.select("i", "u", "f", "b").fill_null(strategy="one")),
    Case("fill_nan-number", lambda s: s.fill_nan(0)),
    Case("fill_nan-null", lambda s: s.fill_nan(None)),
    Case("fill_nan-expr", lambda s: s.fill_nan(pl.col("ts").cast(pl.Float64))),
    Case("drop_nulls-all", lambda s: s.drop_nulls()),
    Case("drop_nulls-name", lambda s: s.drop_nulls("i")),
    Case("drop_nulls-names", lambda s: s.drop_nulls(["u", "s"])),
    Case("drop_nulls-selector", lambda s: s.drop_nulls(cs.numeric())),
    Case("drop_nulls-col", lambda s: s.drop_nulls(pl.col("st"))),
    Case("unnest-name", lambda s: s.unnest("st")),
    Case("unnest-all", lambda s: s.unnest()),
    Case("unnest-separator", lambda s: s.unnest("st", separator="::")),
    Case("unnest-selector", lambda s: s.unnest(cs.struct())),
    Case("explode", lambda s: s.explode("l")),
    Case("explode-two", lambda s: s.explode("l", "l2")),
    Case("explode-list", lambda s: s.explode(["l", "l2"])),
    Case("explode-selector", lambda s: s.explode(cs.by_name("l"))),
    Case("explode-empty-as-null", lambda s: s.explode("l", empty_as_null=True)),
    Case("explode-drop-nulls", lambda s: s.explode("l", keep_nulls=False)),
    Case("with_row_index", lambda s: s.with_row_index()),
    Case("with_row_index-offset", lambda s: s.with_row_index("n", offset=100)),
    Case(
        "with_row_index-after-steps",
        lambda s: s.filter(pl.col("b")).explode("l").with_row_index("n").select("n", "l"),
    ),
    Case("head-default", lambda s: s.head()),
    Case("pipe", lambda s: s.pipe(lambda t, k: t.filter(pl.col("ts") > k), 250)),
    Case(
        "chain",
        lambda s: (
            s.drop_nulls("i")
            .cast({"i": pl.Float64})
            .fill_nan(-1.0)
            .unnest("st")
            .explode("l")
            .fill_null(0)
            .with_row_index()
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_as_polars_under_every_executor(case: Case, run_everywhere: Any) -> None:
    expected = case.reference(DF)
    stream = case.build(vs.from_polars(DF))
    assert stream.schema == expected.schema  # known before running, as Polars gives it
    out = run_everywhere(case.build, DF, ordered=True)
    assert_frame_equal(out, expected)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_as_polars_on_empty_input(case: Case) -> None:
    empty = DF.head(0)
    assert_frame_equal(case.build(vs.from_polars(empty)).collect(), case.reference(empty))


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.id != "pipe"], ids=[c.id for c in CASES if c.id != "pipe"]
)
def test_a_plan_travels_as_data(case: Case) -> None:
    """Each method is a step of the plan as data: serialised and read back, it runs
    the same (``pipe`` is a call, not a step)."""
    stream = case.build(vs.from_polars(DF, batch_size=3))
    back = vs.Stream.deserialize(stream.serialize())
    assert_frame_equal(back.collect(), case.reference(DF))


# ---------------------------------------------------------------------- random frames
@st.composite
def frames(draw: st.DrawFn, max_n: int = 30) -> pl.DataFrame:
    """Integer, float (NaN included), string and list columns with nulls."""
    n = draw(st.integers(min_value=0, max_value=max_n))

    def column(values: st.SearchStrategy[object]) -> list[object]:
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    return pl.DataFrame(
        {
            "a": column(st.integers(-300, 300)),
            "x": column(st.one_of(st.floats(-5, 5), st.just(NAN))),
            "s": column(st.sampled_from(["1", "-2", "x", "", "3.5"])),
            "l": column(st.lists(st.one_of(st.none(), st.integers(0, 9)), max_size=3)),
        },
        schema={"a": pl.Int64, "x": pl.Float64, "s": pl.String, "l": pl.List(pl.Int16)},
    )


RANDOM_STEPS: list[Callable[[Any], Any]] = [
    lambda s: s.cast({"a": pl.Int8}, strict=False),
    lambda s: s.cast({"s": pl.Float64, "x": pl.Int32}, strict=False),
    lambda s: s.cast({"a": pl.String, "l": pl.List(pl.Float32)}),
    lambda s: s.fill_null(0),
    lambda s: s.fill_null(0.5),
    lambda s: s.fill_null("z"),
    lambda s: s.drop("l").fill_null(pl.col("a").cast(pl.String)),
    lambda s: s.drop_nulls(),
    lambda s: s.drop_nulls(["a", "x"]),
    lambda s: s.fill_nan(0),
]
#: at most one of these a pipeline: ``l`` is a list once only
EXPLODES: list[Callable[[Any], Any]] = [
    lambda s: s.explode("l"),
    lambda s: s.explode("l", empty_as_null=True, keep_nulls=False),
    lambda s: s.explode("l").drop_nulls("l").with_row_index(),
]


@settings(max_examples=60, deadline=None)
@given(
    df=frames(),
    steps=st.lists(st.sampled_from(RANDOM_STEPS + EXPLODES), min_size=1, max_size=3).filter(
        lambda steps: sum(step in EXPLODES for step in steps) <= 1
    ),
    batch_size=strategies.batch_sizes(max_size=12),
)
def test_as_polars_on_random_frames(
    df: pl.DataFrame, steps: list[Callable[[Any], Any]], batch_size: int
) -> None:
    def build(s: Any) -> Any:
        for step in steps:
            s = step(s)
        return s

    try:
        expected = build(df.lazy()).collect()
    except pl.exceptions.PolarsError:  # a cast Polars refuses: so must the stream
        with pytest.raises(vs.VStreamError):
            build(vs.from_polars(df, batch_size=batch_size)).collect()
        return
    assert_frame_equal(build(vs.from_polars(df, batch_size=batch_size)).collect(), expected)


# ---------------------------------------------------------------------- refusals
def test_sort_is_refused_pointing_to_windows() -> None:
    s = vs.from_polars(DF)
    with pytest.raises(PipelineError, match=r"sort\(\.\.\.\) on a stream would never finish"):
        s.sort("ts")
    with pytest.raises(PipelineError, match=r"\.window\(vs\.tumbling"):
        s.sort("ts", descending=True)
    with pytest.raises(PipelineError, match=r"group_by\(\.\.\.\) on a stream would never"):
        s.group_by("s")


@pytest.mark.parametrize("strategy", ["forward", "backward", "min", "max", "mean"])
def test_fill_null_strategies_that_read_other_rows_are_refused(strategy: str) -> None:
    with pytest.raises(PipelineError, match=f"the strategy '{strategy}' reads other rows"):
        vs.from_polars(DF).fill_null(strategy=strategy)  # type: ignore[arg-type]


def test_fill_null_arguments_are_checked() -> None:
    s = vs.from_polars(DF)
    with pytest.raises(PipelineError, match="pass a value or strategy"):
        s.fill_null()
    with pytest.raises(PipelineError, match="pass a value or strategy"):
        s.fill_null(0, strategy="zero")
    with pytest.raises(PipelineError, match="limit= goes with"):
        s.fill_null(0, limit=2)


def test_steps_that_would_change_the_event_time_are_refused() -> None:
    s = vs.from_polars(DF).with_watermark("ts", 100)
    with pytest.raises(EventTimeError, match="assigns the event-time column 'ts'"):
        s.cast({"ts": pl.Float64})
    with pytest.raises(EventTimeError, match="assigns the event-time column 'ts'"):
        s.cast(pl.Int32)
    with pytest.raises(EventTimeError, match="assigns the event-time column 'ts'"):
        s.fill_null(0.5)  # would turn the integer event time into floats
    # what leaves it as it is keeps it: a cast to its own type, a fill of its type (it has
    # no nulls: with_watermark sends them to the dead letters)
    for kept in (s.cast({"ts": pl.Int64}), s.fill_null(0), s.fill_nan(0.0), s.drop_nulls()):
        assert kept.event_time == "ts"
    assert s.explode("l").unnest("st").with_row_index().event_time == "ts"


def test_event_time_flows_through_the_new_steps_into_a_window() -> None:
    df = DF.with_columns(k=pl.col("i") % 2)
    w = (
        vs.from_polars(df, batch_size=2)
        .with_watermark("ts", 0)
        .explode("l")
        .fill_null(0)
        .window(vs.tumbling(300), by="k")
        .agg(pl.len(), pl.col("l").sum())
    )
    expected = (
        df.explode("l")
        .fill_null(0)
        .with_columns(window_start=pl.col("ts") // 300 * 300)
        .group_by("k", "window_start")
        .agg(pl.len(), pl.col("l").sum())
    )
    got = w.collect().drop("window_end")
    assert_frame_equal(got, expected, check_row_order=False, check_column_order=False)


def test_bad_columns_are_refused_naming_them() -> None:
    s = vs.from_polars(DF)
    with pytest.raises(SchemaError, match="column 'i' is Int64, not a List or an Array"):
        s.explode("i")
    with pytest.raises(SchemaError, match="column 's' is String, not a Struct"):
        s.unnest("s")
    with pytest.raises(ColumnNotFoundError, match="no column 'nope'"):
        s.drop_nulls("nope")
    with pytest.raises(ColumnNotFoundError, match="no column 'nope'"):
        s.cast({"nope": pl.Int8})
    with pytest.raises(ExpressionError, match="does not name columns"):
        s.explode(pl.col("l").list.first())
    with pytest.raises(ExpressionError, match="duplicate"):
        s.with_columns(p=pl.lit(1)).unnest("st")  # its field 'p' is a column already


def test_with_row_index_arguments() -> None:
    s = vs.from_polars(DF)
    with pytest.raises(SchemaError, match="already has a column 'ts'"):
        s.with_row_index("ts")
    with pytest.raises(PipelineError, match="offset must be an int >= 0"):
        s.with_row_index(offset=-1)


def test_with_row_index_over_several_splits_is_refused(tmp_path: Path) -> None:
    for k in range(2):
        DF.slice(3 * k, 3).select("ts", "i").write_parquet(tmp_path / f"part-{k}.parquet")
    files = vs.from_parquet(tmp_path)
    with pytest.raises(PipelineError, match=r"has 2 splits .*vs\.from_parquet\(path\) per file"):
        files.filter(pl.col("ts") > 0).with_row_index()
    # one file: its rows' positions
    one = vs.from_parquet(tmp_path / "part-1.parquet", batch_size=2).with_row_index()
    assert one.collect()["index"].to_list() == [0, 1, 2]
    watched = vs.from_parquet(tmp_path, watch=True)
    with pytest.raises(PipelineError, match="may gain splits while it runs"):
        watched.with_row_index()


def test_with_row_index_after_an_arrival_ordered_step_is_refused() -> None:
    s = vs.from_polars(DF.select("ts", "i")).with_watermark("ts", 0)
    w = s.window(vs.tumbling(300)).agg(pl.len())
    cases = [
        (w, "window"),
        (vs.concat([s, s]), "concat"),
        (s.join_interval(s, on="i", lower=0, upper=10), "join"),
        (s.dead_letters(), "dead_letters"),
    ]
    for stream, what in cases:
        with pytest.raises(PipelineError, match="add with_row_index before it") as info:
            stream.with_row_index()
        assert what in str(info.value)


# ---------------------------------------------------------------------- row index state
def _run(stream: vs.Stream, steps: int | None = None) -> tuple[Executor, CollectSink]:
    sink = CollectSink()
    ex = Executor([Target(stream.node, sink)])
    loop = ex.run()
    for k, _ in enumerate(loop):
        if steps is not None and k + 1 >= steps:
            break
    loop.close()
    return ex, sink


def test_with_row_index_survives_a_snapshot_and_restore() -> None:
    df = pl.DataFrame({"x": range(1_000)})

    def build() -> vs.Stream:
        return vs.from_polars(df, batch_size=7).filter(pl.col("x") % 3 != 0).with_row_index()

    _, whole = _run(build())
    first, first_sink = _run(build(), steps=20)
    state = first.snapshot()
    assert any(s.kind == "row_index" and s.stateful for s in state.steps.values())
    second_sink = CollectSink()
    second = Executor([Target(build().node, second_sink)])
    assert second.restore(state) == []
    for _ in second.run():
        pass
    got = pl.concat([first_sink.result(), second_sink.result()])
    assert 0 < first_sink.result().height < got.height
    assert_frame_equal(got, whole.result())
    assert got["index"].to_list() == list(range(got.height))


class _Fuse:
    """A map_batches step that fails the run once, at its ``after``-th batch."""

    def __init__(self, after: int) -> None:
        self.after = after

    def __call__(self, df: pl.DataFrame) -> pl.DataFrame:
        self.after -= 1
        if self.after == 0:
            msg = "the simulated crash"
            raise RuntimeError(msg)
        return df


def test_with_row_index_numbers_on_after_a_restart_from_a_checkpoint(tmp_path: Path) -> None:
    df = pl.DataFrame({"x": range(500)})

    def build(fuse: _Fuse) -> vs.Stream:
        return vs.from_polars(df, batch_size=10).map_batches(fuse).with_row_index("n", offset=5)

    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    with pytest.raises(vs.VStreamError, match="the simulated crash"):
        build(_Fuse(after=23)).sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=4)
    build(_Fuse(after=0)).sink_parquet(out, checkpoint_dir=ckpt)
    got = pl.read_parquet(out).sort("n")
    assert_frame_equal(got, df.with_row_index("n", offset=5))


# ---------------------------------------------------------------------- plans and aliases
def test_the_new_steps_keep_projection_pushdown(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    DF.write_parquet(path)
    src = vs.from_parquet(path)

    def read(build: Callable[[Any], Any]) -> list[str]:
        """The columns the source reads for ``build``, which runs as Polars does."""
        stream = build(src)
        assert_frame_equal(stream.collect(), build(DF.lazy()).collect())
        (cols,) = source_columns([stream.node]).values()
        return cols

    # a cast or fill replaces each column in place: one not read below is not read at all
    assert read(lambda s: s.cast({"i": pl.Float64}).fill_null(0).fill_nan(0).select("i")) == ["i"]
    numbers = tmp_path / "numbers.parquet"
    DF.select("ts", "i", "u", "f").write_parquet(numbers)
    filled = vs.from_parquet(numbers).fill_null(pl.col("ts")).select("u", "f")
    (cols,) = source_columns([filled.node]).values()
    assert cols == ["ts", "u", "f"]  # u and f, and the filler's column
    expected = DF.lazy().select("ts", "i", "u", "f").fill_null(pl.col("ts")).select("u", "f")
    assert_frame_equal(filled.collect(), expected.collect())
    assert read(lambda s: s.drop_nulls("u").select("ts")) == ["ts", "u"]
    assert read(lambda s: s.explode("l").select("ts")) == ["ts", "l"]
    assert read(lambda s: s.with_row_index().select("index", "s")) == ["s"]
    # an unnest reads every column, as a select of them all does
    assert source_columns([src.unnest("st").select("p").node]) == {}


def test_a_fill_runs_on_what_another_branch_of_its_source_reads(tmp_path: Path) -> None:
    """Two branches of one source: it reads what either needs. A fill whose outputs its
    branch does not read gets batches with only the other branch's column ``u``, whose
    filler ``f`` is not read: it must skip it, not fail."""
    path = tmp_path / "numbers.parquet"
    numbers = DF.select("ts", "i", "u", "f")
    numbers.write_parquet(path)
    src = vs.from_parquet(path, batch_size=3)
    a = src.fill_null(pl.col("f")).with_row_index().select("index")
    b = src.select("u")
    (cols,) = source_columns([a.node, b.node]).values()
    assert cols == ["u"]
    got_a, got_b = vs.collect_all([a, b])
    assert_frame_equal(got_a, numbers.with_row_index().select("index"))
    assert_frame_equal(got_b, numbers.select("u"))


def test_sink_batches_and_collect_batches_are_polars_names() -> None:
    s = vs.from_polars(DF, batch_size=3)
    assert vs.Stream.sink_batches is vs.Stream.sink_callback
    assert vs.Stream.collect_batches is vs.Stream.iter_batches
    seen: list[int] = []
    metrics = s.sink_batches(lambda df: seen.append(df.height))
    assert seen == [3, 3, 1]
    assert metrics.events_in == DF.height
    assert [b.height for b in s.collect_batches()] == [3, 3, 1]


def test_head_takes_polars_default() -> None:
    assert vs.from_polars(DF).head().collect().height == 5
    assert "head(5)" in vs.from_polars(DF).head().explain()
