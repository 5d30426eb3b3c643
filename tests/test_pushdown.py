"""Projection pushdown: a source converts only the columns the plan reads, and the answers
do not change."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
from vstream.io.sinks import CollectSink
from vstream.runtime.executor import Executor, Target


def _source_columns(*streams: vs.Stream) -> list[str] | None:
    ex = Executor([Target(s._node, CollectSink()) for s in streams])
    (cols,) = ex.source_columns.values()
    return cols


@pytest.fixture(scope="module")
def df() -> pl.DataFrame:
    return vs.datasets.telemetry(5_000, hosts=20, seed=4)


def test_a_window_reads_only_its_columns(df: pl.DataFrame) -> None:
    w = (
        vs.from_polars(df)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host_id")
        .agg(pl.len(), pl.col("cpu").mean(), (pl.col("latency_ms") * 2).max().alias("m"))
    )
    assert _source_columns(w) == ["ts", "host_id", "cpu", "latency_ms"]


def test_late_events_and_dead_letters_keep_whole_rows(df: pl.DataFrame) -> None:
    s = vs.from_polars(df).with_watermark("ts", "2s", time_unit="ms")
    w = s.window(vs.tumbling("1s"), by="host", late="side").agg(pl.len())
    assert _source_columns(w, w.late_events()) is None
    assert _source_columns(w, s.dead_letters()) is None
    assert _source_columns(w) == ["ts", "host"]


def test_steps_read_what_they_refer_to(df: pl.DataFrame) -> None:
    s = (
        vs.from_polars(df, batch_size=700)
        .rename({"cpu": "c", "mem": "m"})
        .drop("region", "bytes")
        .filter(pl.col("status") != 404)
        .with_columns(load=pl.col("c") * 2)
        .select("ts", "host", "load")
    )
    assert _source_columns(s) == ["ts", "host", "region", "cpu", "mem", "status", "bytes"]
    expected = (
        df.rename({"cpu": "c", "mem": "m"})
        .drop("region", "bytes")
        .filter(pl.col("status") != 404)
        .with_columns(load=pl.col("c") * 2)
        .select("ts", "host", "load")
    )
    assert_frame_equal(s.collect(), expected)
    # a window after the steps: the source drops what neither needs
    w = (
        s.with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.col("load").sum())
    )
    assert _source_columns(w) == ["ts", "host", "region", "cpu", "mem", "status", "bytes"]
    narrow = (
        vs.from_polars(df, batch_size=700)
        .filter(pl.col("status") != 404)
        .with_columns(load=pl.col("cpu") * 2)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.col("load").sum())
    )
    assert _source_columns(narrow) == ["ts", "host", "cpu", "status"]
    got = narrow.collect().sort("host", "window_start")
    want = (
        df.filter(pl.col("status") != 404)
        .with_columns(load=pl.col("cpu") * 2, window_start=pl.col("ts") // 1000 * 1000)
        .group_by("host", "window_start")
        .agg(pl.col("load").sum())
        .with_columns(window_end=pl.col("window_start") + 1000)
        .select(got.columns)
        .sort("host", "window_start")
    )
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9)


def test_unknown_reads_keep_every_column(df: pl.DataFrame) -> None:
    s = vs.from_polars(df).map_batches(lambda b: b.select("ts", "cpu"))
    w = s.with_watermark("ts", 0).window(vs.tumbling(1000)).agg(pl.len())
    assert _source_columns(w) is None
    wild = vs.from_polars(df).with_columns(pl.all().name.suffix("_x")).select("ts", "cpu_x")
    assert _source_columns(wild) is None


def test_a_replaced_column_keeps_its_place(df: pl.DataFrame) -> None:
    """with_columns replacing a column nothing reads: the source still converts it, as
    the replacement takes its place (without it, the new column came last)."""
    s = vs.from_polars(df, batch_size=700).with_columns(region=pl.col("host").str.slice(0, 3))
    expected = df.with_columns(region=pl.col("host").str.slice(0, 3))
    assert _source_columns(s) is None
    assert_frame_equal(s.collect(), expected)
    # read even when nothing downstream wants it (a replace then a drop: rare)
    narrow = s.select("ts", "host")
    assert _source_columns(narrow) == ["ts", "host", "region"]
    assert_frame_equal(narrow.collect(), expected.select("ts", "host"))
