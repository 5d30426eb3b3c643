"""Pipelines that must be refused when they are built (DESIGN.md "Bad input", "Stateless
steps are row-wise"), and row-wise expressions that must not be.

A refusal is a ``vs.VStreamError`` subclass raised by the builder call itself, before any
event is read, whose message names the step and the culprit (the column, the expression
or the duration) and, for expressions that are not row-wise, points to ``.window(``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import vstream as vs

DF = vs.datasets.telemetry(120, hosts=4, seed=5, null_fraction=0.1, max_disorder="1s")
DT = vs.datasets.telemetry(120, hosts=4, seed=5, time_type="datetime", max_disorder="1s")


def _qcut() -> pl.Expr:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pl.col("cpu").qcut(3)


@pytest.fixture
def stream() -> vs.Stream:
    return vs.from_polars(DF, batch_size=16)


# ------------------------------------------------------------------ not row-wise

# (id, expression, a word of the message that names what is wrong with it)
NOT_ROW_WISE: list[tuple[str, pl.Expr, str]] = [
    ("mean", pl.col("cpu").mean(), "mean"),
    ("sum", pl.col("bytes").sum(), "sum"),
    ("min", pl.col("cpu").min(), "min"),
    ("max", pl.col("cpu").max(), "max"),
    ("std", pl.col("cpu").std(), "std"),
    ("count", pl.col("cpu").count(), "count"),
    ("median", pl.col("cpu").median(), "median"),
    ("quantile", pl.col("cpu").quantile(0.9), "quantile"),
    ("len", pl.len(), "len"),
    ("len-plus-one", pl.len() + 1, "len"),
    ("over", pl.col("cpu").over("host"), "over"),
    ("sum-over", pl.col("cpu").sum().over("host"), "over"),
    ("rank-over", pl.col("cpu").rank().over("region"), "over"),
    ("diff", pl.col("cpu").diff(), "diff"),
    ("shift", pl.col("cpu").shift(), "shift"),
    ("shift-back-fill", pl.col("cpu").shift(-1, fill_value=0.0), "shift"),
    ("cum_sum", pl.col("bytes").cum_sum(), "cum_sum"),
    ("cum_max", pl.col("cpu").cum_max(), "cum_max"),
    ("cum_count", pl.col("cpu").cum_count(), "cum_count"),
    ("rank", pl.col("cpu").rank(), "rank"),
    ("rolling_mean", pl.col("cpu").rolling_mean(3), "rolling_mean"),
    ("rolling_max", pl.col("cpu").rolling_max(2), "rolling_max"),
    ("ewm_mean", pl.col("cpu").ewm_mean(alpha=0.5), "ewm"),
    ("pct_change", pl.col("cpu").pct_change(), "pct_change"),
    ("fill_null-forward", pl.col("cpu").fill_null(strategy="forward"), "fill_null"),
    ("fill_null-mean", pl.col("cpu").fill_null(strategy="mean"), "fill_null"),
    ("fill_null-with-mean", pl.col("cpu").fill_null(pl.col("cpu").mean()), "mean"),
    ("forward_fill", pl.col("cpu").forward_fill(), "fill"),
    ("interpolate", pl.col("cpu").interpolate(), "interpolate"),
    ("sort", pl.col("cpu").sort(), "sort"),
    ("sort_by", pl.col("cpu").sort_by("ts"), "sort_by"),
    ("reverse", pl.col("cpu").reverse(), "reverse"),
    ("head", pl.col("cpu").head(3), "slice"),
    ("tail", pl.col("cpu").tail(3), "slice"),
    ("gather", pl.col("cpu").gather([0]), "gather"),
    ("unique", pl.col("host").unique(), "unique"),
    ("n_unique", pl.col("host").n_unique(), "n_unique"),
    ("first", pl.col("cpu").first(), "first"),
    ("last", pl.col("cpu").last(), "last"),
    ("is_duplicated", pl.col("host").is_duplicated(), "is_duplicated"),
    ("is_unique", pl.col("host").is_unique(), "is_unique"),
    ("is_first_distinct", pl.col("host").is_first_distinct(), "is_first_distinct"),
    ("mode", pl.col("status").mode(), "mode"),
    ("arg_max", pl.col("cpu").arg_max(), "arg_max"),
    ("top_k", pl.col("cpu").top_k(2), "top_k"),
    ("any", (pl.col("cpu") > 50).any(), "any"),
    ("int_range", pl.int_range(pl.len()), "int_range"),
    ("qcut", _qcut(), "qcut"),
    ("bin_quantiles", pl.col("cpu").bin_quantiles(3, labels=["lo", "mid", "hi"]), "quantile"),
    ("compare-with-mean", pl.col("cpu") > pl.col("cpu").mean(), "mean"),
    (
        "mean-deep-in-when-then",
        pl.when(pl.col("status") >= 500)
        .then(pl.lit(0.0))
        .when(pl.col("host").str.contains("0"))
        .then((pl.col("cpu") - pl.col("cpu").mean()).abs().round(2))
        .otherwise(pl.col("mem").fill_null(0.0)),
        "mean",
    ),
    (
        "shift-deep-in-arithmetic",
        (pl.col("cpu") * 2 + (pl.col("mem") - pl.col("mem").shift(1)).fill_null(0.0)).clip(0, 1),
        "shift",
    ),
]


def _step_calls() -> list[tuple[str, Callable[[vs.Stream, pl.Expr], vs.Stream]]]:
    return [
        ("with_columns", lambda s, e: s.with_columns(x=e)),
        ("select", lambda s, e: s.select("ts", e.alias("x"))),
        ("filter", lambda s, e: s.filter(e.is_not_null())),
    ]


STEP_CALLS = _step_calls()


@pytest.mark.parametrize(("step", "call"), STEP_CALLS, ids=[s for s, _ in STEP_CALLS])
@pytest.mark.parametrize(
    ("expr", "culprit"), [(e, c) for _, e, c in NOT_ROW_WISE], ids=[i for i, _, _ in NOT_ROW_WISE]
)
def test_not_row_wise_is_refused(
    stream: vs.Stream,
    step: str,
    call: Callable[[vs.Stream, pl.Expr], vs.Stream],
    expr: pl.Expr,
    culprit: str,
) -> None:
    with pytest.raises(vs.ExpressionError) as info:
        call(stream, expr)
    msg = str(info.value)
    assert msg.startswith(f"{step}("), msg
    assert ".window(" in msg, msg
    assert culprit in msg, msg


def test_not_row_wise_is_refused_after_a_watermark_and_in_a_keyword(stream: vs.Stream) -> None:
    s = stream.with_watermark("ts", 1_000)
    with pytest.raises(vs.ExpressionError, match=r"(?s)^with_columns\(.*over.*\.window\("):
        s.with_columns(share=pl.col("cpu") / pl.col("cpu").sum().over("host"))
    with pytest.raises(vs.ExpressionError, match=r"(?s)^filter\(.*len.*\.window\("):
        s.filter(pl.col("cpu") > 1, status=pl.len())


def test_refused_before_any_event_is_read() -> None:
    """The refusal comes from the builder, not from a run: the source is never read."""
    pulled = []

    def rows():  # type: ignore[no-untyped-def]
        for i in range(10):
            pulled.append(i)
            yield {"ts": i, "cpu": float(i)}

    s = vs.from_records(rows, schema={"ts": pl.Int64, "cpu": pl.Float64})
    with pytest.raises(vs.ExpressionError, match=r"\.window\("):
        s.with_columns(d=pl.col("cpu").diff())
    assert pulled == []


# ------------------------------------------------------------------ Python functions


def _double(s: pl.Series) -> pl.Series:
    return s * 2


@pytest.mark.parametrize(("step", "call"), STEP_CALLS, ids=[s for s, _ in STEP_CALLS])
def test_python_function_in_a_stateless_step(
    stream: vs.Stream, step: str, call: Callable[[vs.Stream, pl.Expr], vs.Stream]
) -> None:
    with pytest.raises(vs.ExpressionError) as info:
        call(stream, pl.col("cpu").map_batches(_double))
    msg = str(info.value)
    assert msg.startswith(f"{step}("), msg
    assert 'col("cpu").python_udf()' in msg, msg
    assert "calls a Python function (map_batches, map_elements)" in msg, msg
    assert "Stream.map_batches(fn)" in msg, msg
    assert "pickle" not in msg, msg


# ------------------------------------------------------------------ window aggregations


def _windowed() -> vs.WindowedStream:
    return vs.from_polars(DF, batch_size=16).with_watermark("ts", "1s", time_unit="ms")


def _tumbling() -> Any:
    return _windowed().window(vs.tumbling("10s"), by="region")


def _udf_aggs() -> list[pl.Expr]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Polars' PolarsInefficientMapWarning
        return [
            pl.col("cpu").map_batches(_double).sum(),
            pl.col("cpu").map_elements(lambda v: v * 2, return_dtype=pl.Float64).mean(),
            pl.col("cpu").sum().map_batches(_double),
            pl.map_batches(["cpu", "mem"], lambda s: s[0] + s[1]).max(),
        ]


@pytest.mark.parametrize(
    "agg",
    _udf_aggs(),
    ids=["map_batches-input", "map_elements-input", "map_batches-result", "pl.map_batches"],
)
def test_python_function_in_a_window_aggregation(agg: pl.Expr) -> None:
    """Refused naming the expression, pointing to Stream.map_batches; not a
    ModuleNotFoundError for cloudpickle from Polars' serializer, and not run."""
    called: list[int] = []

    def spy(s: pl.Series) -> pl.Series:
        called.append(len(s))
        return s

    for e in [agg, pl.col("mem").map_batches(spy).sum()]:
        with pytest.raises(vs.ExpressionError) as info:
            _tumbling().agg(pl.len(), e)
        msg = str(info.value)
        assert msg.startswith("window(tumbling('10s'), by='region').agg(...): "), msg
        assert f"{e} calls a Python function (map_batches, map_elements)" in msg, msg
        assert "Stream.map_batches(fn) before .window(...)" in msg, msg
        assert "after .agg(...)" in msg, msg
        assert "pickle" not in msg, msg
    assert called == []


#: aggregations of a filtered column, with Polars' meaning: over the rows where the
#: predicate holds (nulls in the value or the predicate included)
FILTERED = [
    pl.col("cpu").filter(pl.col("status") >= 400).mean().alias("mean_4xx"),
    pl.col("latency_ms").filter(pl.col("cpu") > 20).sum().alias("sum"),
    pl.col("bytes").filter(pl.col("cpu") > 20).max().alias("max_int"),
    pl.col("cpu").filter(pl.col("mem") < 40).min().alias("min"),
    pl.col("mem").filter(pl.col("cpu").is_null()).count().alias("count"),
    pl.col("cpu").filter((pl.col("status") == 200) & (pl.col("mem") > 20)).std().alias("std"),
    pl.col("mem").filter(pl.col("cpu") > 30).var(ddof=0).alias("var0"),
    (pl.col("cpu").filter(pl.col("status") >= 400).sum() / pl.len()).alias("share"),
    pl.col("cpu").mean().alias("plain_mean"),
]


@pytest.mark.parametrize("window", ["tumbling", "hopping", "session"])
def test_aggregate_of_a_filtered_column_is_polars_filter(window: str) -> None:
    """Supported as pl.when(pred).then(x) inputs, computed as Polars computes them."""
    assert DF["cpu"].null_count()  # null values and null predicates
    assert DF["mem"].null_count()
    size = 200  # ms; the data spans about a second
    if window == "tumbling":
        spec, starts = vs.tumbling(f"{size}ms"), [pl.col("ts") // size * size]
    elif window == "hopping":
        spec = vs.hopping(f"{size}ms", f"{size // 2}ms")
        starts = [pl.col("ts") // 100 * 100, pl.col("ts") // 100 * 100 - 100]
    else:
        spec, starts = vs.session("20ms"), []
    got = _windowed().window(spec, by="region").agg(*FILTERED).collect()
    if window == "session":
        # per region, a new session where the previous event is more than 20 ms earlier
        new = (pl.col("ts").diff().over("region", order_by="ts") > 20).fill_null(True)
        framed = DF.with_columns(sid=new.cum_sum().over("region", order_by="ts"))
        want = framed.group_by("region", "sid").agg(
            pl.col("ts").min().alias("window_start"),
            (pl.col("ts").max() + 20).alias("window_end"),
            *FILTERED,
        )
    else:
        framed = pl.concat([DF.with_columns(window_start=s) for s in starts])
        framed = framed.filter(pl.col("ts") < pl.col("window_start") + size)
        want = framed.group_by("region", "window_start").agg(*FILTERED)
        want = want.with_columns(window_end=pl.col("window_start") + size)
    assert got.height > 8  # several windows per region
    keys = ["region", "window_start"]
    assert_frame_equal(
        got.sort(keys), want.select(got.columns).sort(keys), rel_tol=1e-9, abs_tol=1e-9
    )


@pytest.mark.parametrize(
    ("agg", "says"),
    [
        (
            pl.col("cpu").filter(pl.col("mem") > 1).len(),
            r"len of a filtered column is not supported in windows \(Expr\.filter works under "
            r"count, sum, mean, min, max, var, std\); count the rows where it holds with "
            r"\(.*mem.*\)\.sum\(\)",
        ),
        (
            pl.col("cpu").filter(pl.col("mem") > 1).first(),
            r"first of a filtered column .*; filter the stream before \.window\(\.\.\.\) if "
            r"every aggregate is over the same rows",
        ),
        (pl.col("cpu").filter(pl.col("mem") > 1).n_unique(), r"n_unique of a filtered column"),
        (
            (pl.col("cpu").filter(pl.col("mem") > 1) * 2).mean(),
            r"filters rows inside an expression; Expr\.filter works directly under sum, mean, "
            r"min, max, count, var or std, as in pl\.col\('x'\)\.filter\(pred\)\.mean\(\), or "
            r"mask the value instead: pl\.when\(pred\)\.then\(<value>\)\.mean\(\)",
        ),
        (
            pl.col("cpu").filter(pl.col("mem") > pl.col("mem").mean()).mean(),
            r"the filter predicate .* is not row-wise \(it uses an aggregation \(mean\)\)",
        ),
        (
            pl.col("cpu").filter(pl.col("mem") > 1).filter(pl.col("cpu") < 9).sum(),
            r"two filters in a row: combine their predicates, \.filter\(\(.*\) & \(.*\)\)",
        ),
        (pl.col("cpu").diff().sum(), r"its input .*diff.* is not row-wise \(it uses Diff\)"),
    ],
    ids=["len", "first", "n_unique", "nested", "predicate-agg", "chained", "diff"],
)
def test_what_a_window_cannot_aggregate_says_what_works(agg: pl.Expr, says: str) -> None:
    with pytest.raises(vs.ExpressionError) as info:
        _tumbling().agg(agg)
    msg = str(info.value)
    assert msg.startswith("window(tumbling('10s'), by='region').agg(...): cannot compute "), msg
    assert re.search(says, msg), msg
    assert "stateless" not in msg, msg


# ------------------------------------------------------------------ row-wise: accepted

ROW_WISE: list[tuple[str, pl.Expr]] = [
    ("arithmetic", pl.col("cpu") * 2 + pl.col("mem") / 3 - 1),
    ("int-arithmetic", pl.col("bytes") // 7 % 3),
    ("power-abs", ((pl.col("cpu") - 50) ** 2).abs()),
    ("comparison", pl.col("cpu") >= pl.col("mem")),
    ("equality-str", pl.col("host") != "host-00001"),
    ("boolean-logic", (pl.col("cpu") > 3) & (pl.col("mem") < 50) | ~(pl.col("status") == 200)),
    ("str-contains", pl.col("host").str.contains("1")),
    ("str-upper", pl.col("region").str.to_uppercase()),
    ("str-slice", pl.col("host").str.slice(0, 4)),
    ("str-len", pl.col("host").str.len_chars()),
    ("str-replace", pl.col("region").str.replace("-", "_")),
    ("str-split-get", pl.col("region").str.split("-").list.get(0)),
    ("concat_str", pl.concat_str([pl.col("host"), pl.col("region")], separator="/")),
    ("dt-from-int", pl.col("ts").cast(pl.Datetime("ms")).dt.hour()),
    ("dt-truncate", pl.col("ts").cast(pl.Datetime("ms")).dt.truncate("1s")),
    ("dt-epoch", pl.col("ts").cast(pl.Datetime("ms")).dt.offset_by("1h").dt.epoch("ms")),
    (
        "when-then",
        pl.when(pl.col("cpu") > 50).then(pl.lit("hi")).otherwise(pl.lit("lo")),
    ),
    ("when-then-no-otherwise", pl.when(pl.col("status") >= 500).then(pl.col("bytes"))),
    ("cast", pl.col("status").cast(pl.Int64)),
    ("cast-str", pl.col("status").cast(pl.String)),
    ("is_in", pl.col("status").is_in([500, 503])),
    ("is_in-str", pl.col("host").is_in(["host-00000", "host-00003"])),
    ("clip", pl.col("cpu").clip(10, 90)),
    ("fill_null", pl.col("cpu").fill_null(0)),
    ("fill_null-column", pl.col("cpu").fill_null(pl.col("mem"))),
    ("fill_null-zero", pl.col("cpu").fill_null(strategy="zero")),  # a constant, per dtype
    ("fill_null-one", pl.col("status").fill_null(strategy="one")),
    ("is_null", pl.col("cpu").is_null()),
    ("is_not_null", pl.col("latency_ms").is_not_null()),
    ("is_between", pl.col("cpu").is_between(10, 20)),
    ("round-sqrt-log", pl.col("latency_ms").log().sqrt().round(3)),
    ("max_horizontal", pl.max_horizontal("cpu", "mem")),
    ("sum_horizontal", pl.sum_horizontal("cpu", "mem")),
    ("all_horizontal", pl.all_horizontal(pl.col("cpu") > 1, pl.col("mem") > 1)),
    ("coalesce", pl.coalesce("cpu", "mem")),
    ("replace", pl.col("status").replace({200: 0})),
    ("struct-field", pl.struct("cpu", "mem").struct.field("mem")),
    ("list-sum", pl.concat_list("cpu", "mem").list.sum()),
    ("python-scalar", 1),  # type: ignore[list-item]
    ("literal", pl.lit(1)),
    ("literal-str", pl.lit("kafka")),
    ("list-unique", pl.col("region").str.split("-").list.unique()),
    ("list-eval-rank", pl.concat_list("cpu", "mem").list.eval(pl.element().rank())),
]


@pytest.mark.parametrize("expr", [e for _, e in ROW_WISE], ids=[i for i, _ in ROW_WISE])
def test_row_wise_is_accepted(expr: pl.Expr) -> None:
    s = vs.from_polars(DF, batch_size=7)
    assert_frame_equal(s.with_columns(x=expr).collect(), DF.with_columns(x=expr))
    assert_frame_equal(s.select("ts", x=expr).collect(), DF.select("ts", x=expr))
    if DF.select(expr).dtypes[0] == pl.Boolean:
        assert_frame_equal(s.filter(expr).collect(), DF.filter(expr))


@pytest.mark.parametrize(
    "expr",
    [
        pl.col("ts").dt.hour(),
        pl.col("ts").dt.truncate("1s"),
        pl.col("ts").dt.offset_by("1h"),
        pl.col("ts").dt.strftime("%H:%M:%S"),
        pl.col("ts") - pl.col("ts").dt.truncate("1m"),
        pl.col("ts").dt.epoch("ms") // 1000,
    ],
    ids=["hour", "truncate", "offset_by", "strftime", "duration", "epoch"],
)
def test_row_wise_datetime_ops_are_accepted(expr: pl.Expr) -> None:
    s = vs.from_polars(DT, batch_size=7).with_watermark("ts", "1s")
    assert_frame_equal(s.with_columns(x=expr).collect(), DT.with_columns(x=expr))


# ------------------------------------------------------------------ unknown columns

UNKNOWN: list[tuple[str, Callable[[vs.Stream], vs.Stream]]] = [
    ("filter", lambda s: s.filter(pl.col("cpuu") > 1)),
    ("filter", lambda s: s.filter(cpuu=1)),
    ("with_columns", lambda s: s.with_columns(x=pl.col("cpuu") + 1)),
    ("with_columns", lambda s: s.with_columns("cpuu")),
    ("select", lambda s: s.select("ts", "cpuu")),
    ("select", lambda s: s.select(pl.col("cpuu").alias("x"))),
    ("drop", lambda s: s.drop("region", "cpuu")),
    ("rename", lambda s: s.rename({"cpuu": "x"})),
    ("with_watermark", lambda s: s.with_watermark("cpuu", 10)),
]


@pytest.mark.parametrize(
    ("step", "build"), UNKNOWN, ids=[f"{s}-{k}" for k, (s, _) in enumerate(UNKNOWN)]
)
def test_unknown_column(
    stream: vs.Stream, step: str, build: Callable[[vs.Stream], vs.Stream]
) -> None:
    with pytest.raises(vs.ColumnNotFoundError) as info:
        build(stream)
    msg = str(info.value)
    assert msg.startswith(f"{step}("), msg
    assert "cpuu" in msg, msg
    assert isinstance(info.value, vs.VStreamError)


def test_unknown_column_after_a_select(stream: vs.Stream) -> None:
    s = stream.select("ts", "cpu")
    with pytest.raises(vs.ColumnNotFoundError, match=r"^filter\(.*host"):
        s.filter(pl.col("host") == "a")


# ------------------------------------------------------------------ type errors


@pytest.mark.parametrize(
    ("build", "step", "culprit"),
    [
        (lambda s: s.with_columns(x=pl.col("host") + 1), "with_columns", "host"),
        (lambda s: s.with_columns(x=pl.col("host") * pl.col("cpu")), "with_columns", "host"),
        (lambda s: s.select(pl.col("region").str.to_uppercase() - 1), "select", "region"),
        (lambda s: s.with_columns(x=pl.col("cpu").str.contains("a")), "with_columns", "cpu"),
        (lambda s: s.with_columns(h=pl.col("ts").dt.hour()), "with_columns", "ts"),
        (lambda s: s.filter(pl.col("cpu")), "filter", "cpu"),
        (lambda s: s.filter(pl.col("cpu") + 1), "filter", "cpu"),
        (lambda s: s.filter(pl.col("host")), "filter", "host"),
        (lambda s: s.filter(pl.col("status") > 1, pl.col("bytes")), "filter", "bytes"),
    ],
    ids=[
        "str-plus-int",
        "str-times-float",
        "str-minus-int",
        "str-op-on-float",
        "dt-op-on-int",
        "float-predicate",
        "arith-predicate",
        "str-predicate",
        "second-predicate-int",
    ],
)
def test_type_error(
    stream: vs.Stream, build: Callable[[vs.Stream], vs.Stream], step: str, culprit: str
) -> None:
    with pytest.raises(vs.ExpressionError) as info:
        build(stream)
    msg = str(info.value)
    assert msg.startswith(f"{step}("), msg
    assert culprit in msg, msg


def test_non_boolean_predicate_names_its_type(stream: vs.Stream) -> None:
    with pytest.raises(vs.ExpressionError, match=r"^filter\(.*Float64.*Boolean"):
        stream.filter(pl.col("cpu") * 2)


# ------------------------------------------------------------------ durations, event time


def test_string_duration_on_a_plain_integer_column(stream: vs.Stream) -> None:
    with pytest.raises(vs.DurationError, match=r"with_watermark\('ts'\).*'2s'.*time_unit"):
        stream.with_watermark("ts", "2s")


@pytest.mark.parametrize("duration", ["500us", "1500us", timedelta(microseconds=500)])
def test_duration_finer_than_the_column_unit(stream: vs.Stream, duration: object) -> None:
    with pytest.raises(vs.DurationError, match=r"with_watermark\('ts'\).*ms"):
        stream.with_watermark("ts", duration, time_unit="ms")  # type: ignore[arg-type]


def test_duration_finer_than_a_datetime_unit() -> None:
    with pytest.raises(vs.DurationError, match=r"with_watermark\('ts'\).*500us"):
        vs.from_polars(DT).with_watermark("ts", "500us")


@pytest.mark.parametrize("duration", ["2 seconds", "2mo", "-1s", -5, "", "1x"])
def test_bad_duration(stream: vs.Stream, duration: object) -> None:
    with pytest.raises(vs.DurationError, match=r"with_watermark\('ts'\)"):
        stream.with_watermark("ts", duration, time_unit="ms")  # type: ignore[arg-type]


@pytest.mark.parametrize("duration", ["-2s", " -1m30s", -2_000, timedelta(seconds=-2)])
def test_negative_duration_is_called_negative(stream: vs.Stream, duration: object) -> None:
    """A negative duration parses: it is refused for its sign, not as unparsable."""
    with pytest.raises(
        vs.DurationError,
        match=r"^with_watermark\('ts'\) max_out_of_orderness must be >= 0, got the negative "
        r"duration .*: pass a duration >= 0 such as '2s'$",
    ):
        stream.with_watermark("ts", duration, time_unit="ms")  # type: ignore[arg-type]
    with pytest.raises(vs.DurationError, match=r"idle_timeout must be >= 0, got the negative"):
        stream.with_watermark("ts", 0, time_unit="ms", idle_timeout="-2s")


def test_with_watermark_takes_pl_col(stream: vs.Stream) -> None:
    s = stream.with_watermark(pl.col("ts"), 1_000)
    assert s.event_time == "ts"
    assert_frame_equal(s.collect(), stream.with_watermark("ts", 1_000).collect())


@pytest.mark.parametrize(
    ("column", "says"),
    [
        (pl.col("ts") * 2, r"not an expression; add it as a column first, \.with_columns\(ts="),
        (pl.col("ts").alias("t"), r"not an expression; add it as a column first"),
        (pl.col("ts", "cpu"), r"select several columns: name one, as in pl\.col\('ts'\)"),
        (pl.all(), r"select several columns"),
        (3, r"given by its name \(a str\) or as pl\.col\(name\); got int"),
    ],
)
def test_with_watermark_refuses_what_is_not_one_column(
    stream: vs.Stream, column: object, says: str
) -> None:
    with pytest.raises(vs.EventTimeError, match=rf"^with_watermark\(.*{says}"):
        stream.with_watermark(column, 1_000)  # type: ignore[arg-type]


@pytest.mark.parametrize("column", ["host", "cpu", "region"])
def test_event_time_column_of_the_wrong_type(stream: vs.Stream, column: str) -> None:
    with pytest.raises(vs.EventTimeError, match=rf"with_watermark\('{column}'\).*{column}"):
        stream.with_watermark(column, 10)


def test_date_column_is_not_an_event_time() -> None:
    s = vs.from_polars(DT.with_columns(day=pl.col("ts").dt.date()))
    with pytest.raises(vs.EventTimeError, match=r"'day'.*Date"):
        s.with_watermark("day", "1d")


def test_with_watermark_twice(stream: vs.Stream) -> None:
    s = stream.with_watermark("ts", 1_000)
    with pytest.raises(vs.EventTimeError, match=r"with_watermark\('ts'\).*once"):
        s.with_watermark("ts", 2_000)
    with pytest.raises(vs.EventTimeError, match=r"with_watermark"):
        s.filter(pl.col("cpu") > 1).with_watermark("ts", 2_000)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.with_columns(ts=pl.col("ts") + 1),
        lambda s: s.with_columns(pl.col("ts") - 1_000),
        lambda s: s.with_columns(pl.col("host_id").cast(pl.Int64).alias("ts")),
        lambda s: s.with_columns(pl.col(pl.Int64) * 2),
        lambda s: s.select("host", ts=pl.col("ts") * 1_000),
    ],
    ids=["named", "positional", "alias", "by-dtype", "select"],
)
def test_overwriting_the_event_time_column(
    stream: vs.Stream, build: Callable[[vs.Stream], vs.Stream]
) -> None:
    s = stream.with_watermark("ts", 1_000)
    with pytest.raises(vs.EventTimeError, match=r"'ts'.*with_watermark"):
        build(s)


def test_reading_the_event_time_column_is_fine(stream: vs.Stream) -> None:
    s = stream.with_watermark("ts", 1_000)
    out = s.with_columns(second=pl.col("ts") // 1_000).select("ts", "second").collect()
    assert_frame_equal(out, DF.select("ts", second=pl.col("ts") // 1_000))


# ------------------------------------------------------------------ concat


@pytest.mark.parametrize(
    ("other", "column"),
    [
        (DF.with_columns(pl.col("cpu").cast(pl.Float32)), "cpu"),
        (DF.with_columns(pl.col("status").cast(pl.String)), "status"),
        (DF.drop("mem"), "mem"),
        (DF.with_columns(extra=pl.lit(1)), "extra"),
        (DF.rename({"latency_ms": "latency"}), "latency_ms"),
    ],
    ids=["dtype", "dtype-str", "missing", "extra", "renamed"],
)
def test_concat_of_different_schemas(stream: vs.Stream, other: pl.DataFrame, column: str) -> None:
    with pytest.raises(vs.SchemaError, match=rf"^concat.*'{column}'"):
        vs.concat([stream, vs.from_polars(other)])
    with pytest.raises(vs.SchemaError, match=rf"^concat.*'{column}'"):
        vs.concat([stream, stream, vs.from_polars(other)])


def test_concat_of_streams_with_and_without_event_time(stream: vs.Stream) -> None:
    with pytest.raises(vs.EventTimeError, match=r"^concat.*with_watermark"):
        vs.concat([stream.with_watermark("ts", 10), vs.from_polars(DF)])


def test_collect_of_an_unbounded_stream() -> None:
    def endless():  # type: ignore[no-untyped-def]
        while True:
            yield {"ts": 1, "cpu": 1.0}

    s = vs.from_records(endless, schema={"ts": pl.Int64, "cpu": pl.Float64})
    assert not s.is_bounded
    with pytest.raises(vs.UnboundedError, match=r"unbounded.*head\(n\).*timeout"):
        s.filter(pl.col("cpu") > 0).collect()
