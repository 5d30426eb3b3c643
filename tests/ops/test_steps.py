"""Stateless steps (filter, with_columns, select, drop, rename, map_batches, head) against
Polars eager on the same data, under every executor of tests/conftest.py (batch sizes 1,
random and 65,536).

Every case is one row of ``CASES``: how to build it on a Stream and the Polars query it
must equal. Equality is exact and in order (DESIGN.md "Order": stateless steps keep the
order of their input), and the schema a Stream reports before running is the schema of
what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import polars.selectors as cs
import pyarrow as pa
import pytest
from hypothesis import given, settings
from polars.testing import assert_frame_equal

import strategies
import vstream as vs

HOST = "host-00001"


def _with_load(df: pl.DataFrame) -> pl.DataFrame:
    """A row-wise batch function (its result does not depend on the batch split)."""
    return df.with_columns(load=pl.col("cpu") * 0.5 + pl.col("mem") * 0.5).drop("region")


def _errors_only(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("status") >= 500).select("ts", "host", "status")


@dataclass(frozen=True)
class StepCase:
    """A pipeline of stateless steps and the Polars eager query it must equal."""

    id: str
    build: Callable[[vs.Stream], vs.Stream]
    reference: Callable[[pl.DataFrame], pl.DataFrame]


CASES = [
    # ---------------------------------------------------------------- filter
    StepCase(
        "filter-gt",
        lambda s: s.filter(pl.col("cpu") > 50),
        lambda df: df.filter(pl.col("cpu") > 50),
    ),
    StepCase(
        "filter-several-predicates",
        lambda s: s.filter(pl.col("status") >= 500, pl.col("bytes") == 0),
        lambda df: df.filter(pl.col("status") >= 500, pl.col("bytes") == 0),
    ),
    StepCase(
        "filter-keyword",
        lambda s: s.filter(host=HOST),
        lambda df: df.filter(host=HOST),
    ),
    StepCase(
        "filter-predicate-and-keywords",
        lambda s: s.filter(pl.col("region").str.starts_with("us"), status=200, host_id=0),
        lambda df: df.filter(pl.col("region").str.starts_with("us"), status=200, host_id=0),
    ),
    StepCase(
        "filter-null-comparison",  # null predicates drop the row, as in Polars
        lambda s: s.filter(pl.col("cpu") > pl.col("mem")),
        lambda df: df.filter(pl.col("cpu") > pl.col("mem")),
    ),
    StepCase(
        "filter-is-null-or",
        lambda s: s.filter(pl.col("cpu").is_null() | (pl.col("latency_ms") > 30)),
        lambda df: df.filter(pl.col("cpu").is_null() | (pl.col("latency_ms") > 30)),
    ),
    StepCase(
        "filter-is-in",
        lambda s: s.filter(pl.col("status").is_in([404, 503])),
        lambda df: df.filter(pl.col("status").is_in([404, 503])),
    ),
    StepCase(
        "filter-nothing-passes",
        lambda s: s.filter(pl.col("cpu") > 1_000),
        lambda df: df.filter(pl.col("cpu") > 1_000),
    ),
    StepCase(
        "filter-twice",
        lambda s: s.filter(pl.col("cpu") > 20).filter(pl.col("mem") < 70),
        lambda df: df.filter(pl.col("cpu") > 20).filter(pl.col("mem") < 70),
    ),
    # ---------------------------------------------------------------- with_columns
    StepCase(
        "with_columns-positional",
        lambda s: s.with_columns(pl.col("cpu") / 100, (pl.col("mem") * 2).alias("mem2")),
        lambda df: df.with_columns(pl.col("cpu") / 100, (pl.col("mem") * 2).alias("mem2")),
    ),
    StepCase(
        "with_columns-named",
        lambda s: s.with_columns(
            load=pl.col("cpu") + pl.col("mem"), slow=pl.col("latency_ms") > 40
        ),
        lambda df: df.with_columns(
            load=pl.col("cpu") + pl.col("mem"), slow=pl.col("latency_ms") > 40
        ),
    ),
    StepCase(
        "with_columns-string-names",
        lambda s: s.with_columns("cpu", host_copy="host"),
        lambda df: df.with_columns("cpu", host_copy="host"),
    ),
    StepCase(
        "with_columns-replace-and-fill",
        lambda s: s.with_columns(cpu=pl.col("cpu").fill_null(0.0), status=pl.col("status") // 100),
        lambda df: df.with_columns(
            cpu=pl.col("cpu").fill_null(0.0), status=pl.col("status") // 100
        ),
    ),
    StepCase(
        "with_columns-when-then",
        lambda s: s.with_columns(
            level=pl.when(pl.col("cpu") > 60)
            .then(pl.lit("high"))
            .when(pl.col("cpu") > 30)
            .then(pl.lit("mid"))
            .otherwise(pl.lit("low"))
        ),
        lambda df: df.with_columns(
            level=pl.when(pl.col("cpu") > 60)
            .then(pl.lit("high"))
            .when(pl.col("cpu") > 30)
            .then(pl.lit("mid"))
            .otherwise(pl.lit("low"))
        ),
    ),
    StepCase(
        "with_columns-multi-output",
        lambda s: s.with_columns(pl.col("cpu", "mem").fill_null(-1.0).name.suffix("_f")),
        lambda df: df.with_columns(pl.col("cpu", "mem").fill_null(-1.0).name.suffix("_f")),
    ),
    StepCase(
        "with_columns-string-and-time",
        lambda s: s.with_columns(
            short=pl.col("host").str.slice(5),
            second=(pl.col("ts") // 1_000) % 60,
            tag=pl.concat_str([pl.col("region"), pl.col("status").cast(pl.String)], separator="/"),
        ),
        lambda df: df.with_columns(
            short=pl.col("host").str.slice(5),
            second=(pl.col("ts") // 1_000) % 60,
            tag=pl.concat_str([pl.col("region"), pl.col("status").cast(pl.String)], separator="/"),
        ),
    ),
    # ---------------------------------------------------------------- select
    StepCase(
        "select-names-and-exprs",
        lambda s: s.select("ts", "host", pl.col("cpu") * 2, lat_s=pl.col("latency_ms") / 1000),
        lambda df: df.select("ts", "host", pl.col("cpu") * 2, lat_s=pl.col("latency_ms") / 1000),
    ),
    StepCase(
        "select-reorder",
        lambda s: s.select("bytes", "ts", "region"),
        lambda df: df.select("bytes", "ts", "region"),
    ),
    StepCase(
        "select-by-dtype",
        lambda s: s.select(pl.col(pl.Float64)),
        lambda df: df.select(pl.col(pl.Float64)),
    ),
    StepCase(
        "select-selector",
        lambda s: s.select(cs.numeric()),
        lambda df: df.select(cs.numeric()),
    ),
    StepCase(
        "select-exclude",
        lambda s: s.select(pl.exclude("region", "host_id")),
        lambda df: df.select(pl.exclude("region", "host_id")),
    ),
    # ---------------------------------------------------------------- drop, rename
    StepCase("drop", lambda s: s.drop("region", "bytes"), lambda df: df.drop("region", "bytes")),
    StepCase("drop-list", lambda s: s.drop(["host", "mem"]), lambda df: df.drop(["host", "mem"])),
    StepCase(
        "rename",
        lambda s: s.rename({"cpu": "cpu_pct", "host": "hostname"}),
        lambda df: df.rename({"cpu": "cpu_pct", "host": "hostname"}),
    ),
    StepCase(
        "rename-swap",
        lambda s: s.rename({"cpu": "mem", "mem": "cpu"}),
        lambda df: df.rename({"cpu": "mem", "mem": "cpu"}),
    ),
    # ---------------------------------------------------------------- map_batches
    StepCase("map_batches", lambda s: s.map_batches(_with_load), _with_load),
    StepCase(
        "map_batches-schema",
        lambda s: s.map_batches(
            _errors_only, schema={"ts": pl.Int64, "host": pl.String, "status": pl.Int32}
        ),
        _errors_only,
    ),
    # ---------------------------------------------------------------- head
    StepCase("head-0", lambda s: s.head(0), lambda df: df.head(0)),
    StepCase("head-7", lambda s: s.head(7), lambda df: df.head(7)),
    StepCase("head-more-than-all", lambda s: s.head(10**6), lambda df: df.head(10**6)),
    StepCase(
        "filter-then-head",
        lambda s: s.filter(pl.col("status") == 200).head(25),
        lambda df: df.filter(pl.col("status") == 200).head(25),
    ),
    # ---------------------------------------------------------------- chains
    StepCase(
        "chain",
        lambda s: (
            s.filter(pl.col("cpu") >= 10)
            .with_columns(lat_s=pl.col("latency_ms") / 1000)
            .drop("region")
            .rename({"lat_s": "latency_s"})
            .select("ts", "host", "latency_s", ratio=pl.col("mem") / pl.col("cpu"))
        ),
        lambda df: (
            df.filter(pl.col("cpu") >= 10)
            .with_columns(lat_s=pl.col("latency_ms") / 1000)
            .drop("region")
            .rename({"lat_s": "latency_s"})
            .select("ts", "host", "latency_s", ratio=pl.col("mem") / pl.col("cpu"))
        ),
    ),
    StepCase(
        "chain-with-watermark",
        lambda s: (
            s.with_watermark("ts", "3s", time_unit="ms")
            .filter(pl.col("status") != 404)
            .with_columns(kb=pl.col("bytes") / 1024)
            .select("ts", "host", "kb")
        ),
        lambda df: (
            df.filter(pl.col("status") != 404)
            .with_columns(kb=pl.col("bytes") / 1024)
            .select("ts", "host", "kb")
        ),
    ),
]
CASE_IDS = [c.id for c in CASES]


def check_case(case: StepCase, df: pl.DataFrame, batch_size: int) -> None:
    stream = case.build(vs.from_polars(df, batch_size=batch_size))
    expected = case.reference(df)
    # the schema known when the pipeline is built is the one Polars gives ...
    assert stream.schema == expected.schema, (stream.schema, expected.schema)
    out = stream.collect()
    # ... and the one of the collected frame; rows are equal and in source order
    assert out.schema == stream.schema
    assert_frame_equal(out, expected)


SMALL = vs.datasets.telemetry(300, hosts=7, seed=11, null_fraction=0.1, max_disorder="1s")
LARGE = vs.datasets.telemetry(5_000, hosts=40, seed=12, null_fraction=0.05, max_disorder="3s")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_under_every_executor(case: StepCase, run_everywhere: Any) -> None:
    """One row per micro-batch, random cuts and one batch: the same rows in the same
    order, the Polars query's."""
    expected = case.reference(SMALL)
    assert case.build(vs.from_polars(SMALL)).schema == expected.schema
    out = run_everywhere(case.build, SMALL, ordered=True)
    assert_frame_equal(out, expected)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_one_batch(case: StepCase) -> None:
    check_case(case, LARGE, strategies.WHOLE)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@settings(max_examples=6, deadline=None)
@given(
    df=strategies.telemetry_frames(max_n=1_500, max_hosts=5),
    batch_size=strategies.random_batch_sizes(),
)
def test_step_random_batches(case: StepCase, df: pl.DataFrame, batch_size: int) -> None:
    check_case(case, df, batch_size)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_on_empty_input(case: StepCase) -> None:
    check_case(case, SMALL.head(0), 10)


@settings(max_examples=10, deadline=None)
@given(
    df=strategies.telemetry_frames(max_n=600, max_hosts=5),
    data=strategies.st.data(),
)
def test_steps_under_any_arrival_chunking(
    df: pl.DataFrame, data: strategies.st.DataObject
) -> None:
    """Whatever chunks the rows arrive in (from_arrow keeps the chunks it is given)."""
    points = data.draw(strategies.split_points(df.height))
    case = data.draw(strategies.st.sampled_from(CASES))
    stream = case.build(vs.from_arrow(strategies.split_frame(df, points)))
    assert_frame_equal(stream.collect(), case.reference(df))


# ------------------------------------------------------------------ event time and steps


def test_rename_moves_the_event_time() -> None:
    s = vs.from_polars(SMALL).with_watermark("ts", 1_000).rename({"ts": "t"})
    assert s.event_time == "t"
    assert s.columns == SMALL.rename({"ts": "t"}).columns


def test_rename_keeps_a_window_results_event_time() -> None:
    # a window result's event time is window_end - 1: renamed, it must still fall in the
    # window that ends at window_end (Nexmark q5 joins renamed counts to their maxima)
    df = pl.DataFrame({"ts": list(range(0, 100, 3)), "k": [i % 3 for i in range(34)]})
    counts = vs.from_polars(df).with_watermark("ts", 0).window(vs.tumbling(10), by="k")
    counts_agg = counts.agg(pl.len())
    renamed = counts_agg.rename({"window_end": "end", "window_start": "start"})
    plain = counts_agg.window(vs.tumbling(10)).agg(pl.col("len").sum())
    moved = renamed.window(vs.tumbling(10)).agg(pl.col("len").sum())
    assert_frame_equal(moved.collect().sort("window_start"), plain.collect().sort("window_start"))
    assert "event time 'end' - 1" in renamed.explain()


def test_drop_of_the_event_time_column_drops_event_time() -> None:
    s = vs.from_polars(SMALL).with_watermark("ts", 1_000)
    assert s.filter(pl.col("cpu") > 1).event_time == "ts"
    assert s.select("ts", "cpu").event_time == "ts"
    assert s.drop("ts").event_time is None


# ------------------------------------------------------------------ map_batches errors


def _change_type(df: pl.DataFrame) -> pl.DataFrame:
    # an empty frame (what map_batches is probed with) keeps its types; real batches do not
    return df.with_columns(pl.col("status").cast(pl.Int64)) if df.height else df


def test_map_batches_wrong_declared_schema_fails_naming_the_step() -> None:
    s = vs.from_polars(SMALL, batch_size=50).map_batches(
        lambda df: df.select("ts", "cpu"), schema={"ts": pl.Int64, "cpu": pl.Int64}, name="pick"
    )
    assert s.schema == pl.Schema({"ts": pl.Int64, "cpu": pl.Int64})
    with pytest.raises(vs.VStreamError, match=r"map_batches\(pick\)"):
        s.collect()


def test_map_batches_schema_changing_at_run_time_fails_naming_the_function() -> None:
    s = vs.from_polars(SMALL, batch_size=50).map_batches(_change_type)
    assert s.schema == SMALL.schema  # probed on an empty frame
    with pytest.raises(vs.VStreamError, match=r"map_batches\(_change_type\).*status"):
        s.collect()


def test_map_batches_error_in_the_function_names_the_step() -> None:
    def explode(df: pl.DataFrame) -> pl.DataFrame:
        if df.height:
            msg = "boom"
            raise ValueError(msg)
        return df

    s = vs.from_polars(SMALL, batch_size=50).map_batches(explode)
    with pytest.raises(vs.VStreamError, match=r"map_batches\(explode\).*boom") as info:
        s.collect()
    assert isinstance(info.value.__cause__, ValueError)


def test_map_batches_sees_each_batch_separately() -> None:
    """The escape hatch really is per batch: a per-batch count gives one row per batch."""
    out = (
        vs.from_polars(SMALL, batch_size=40)
        .map_batches(lambda df: df.select(pl.len().cast(pl.Int64)), schema={"len": pl.Int64})
        .collect()
    )
    sizes = [min(40, SMALL.height - k) for k in range(0, SMALL.height, 40)]
    assert out["len"].to_list() == sizes


def test_head_bounds_an_unbounded_source() -> None:
    def endless() -> Iterator[pa.RecordBatch]:
        start = 0
        while True:
            yield pa.record_batch({"v": pa.array(range(start, start + 10), pa.int64())})
            start += 10

    stream = vs.from_arrow(endless()).filter(pl.col("v") % 3 != 0)
    assert not stream.is_bounded
    with pytest.raises(vs.UnboundedError, match=r"head\("):
        stream.collect()
    head = stream.head(25)
    assert head.is_bounded
    expected = pl.DataFrame({"v": range(1_000)}).filter(pl.col("v") % 3 != 0).head(25)
    assert_frame_equal(head.collect(), expected)


def test_steps_accept_lists_of_expressions_as_polars_does() -> None:
    df = pl.DataFrame({"a": [1, 2, 3, 4]})
    s = vs.from_polars(df, batch_size=3)
    preds = [pl.col("a") > 1, pl.col("a") < 4]
    assert s.filter(preds).collect().equals(df.filter(preds))
    exprs = [(pl.col("a") * 2).alias("b"), "a"]
    assert s.select(exprs).collect().equals(df.select(exprs))
    assert (
        s.with_columns([pl.col("a").alias("c")])
        .collect()
        .equals(df.with_columns([pl.col("a").alias("c")]))
    )
