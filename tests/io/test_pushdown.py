"""Projection pushdown: a source converts only the columns the plan reads, and the answers
do not change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
from vstream.errors import SourceError
from vstream.io import parquet as parquet_io
from vstream.io.base import Data, Source
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


# ---------------------------------------------------------------------- Parquet files
# The projection goes into the Parquet reader: unread columns are not read from the file.


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory, df: pl.DataFrame) -> Path:
    """Two telemetry files (9 columns) of several row groups each."""
    d = tmp_path_factory.mktemp("telemetry")
    df.slice(0, 3_000).write_parquet(d / "a.parquet", row_group_size=1_100)
    df.slice(3_000).write_parquet(d / "b.parquet", row_group_size=900)
    return d


class ReadSpy:
    """Records the columns each pyarrow read of a Parquet file asks for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.columns: list[list[str] | None] = []
        original = pq.ParquetFile.iter_batches

        def spy(pf: pq.ParquetFile, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
            self.columns.append(kwargs.get("columns"))
            return original(pf, *args, **kwargs)

        monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)


def _events(src: Source, columns: frozenset[str] | None = None) -> list[Data]:
    reader = src.open(columns=columns)
    out: list[Data] = []
    try:
        while not reader.exhausted:
            ev = reader.poll(5.0)
            if isinstance(ev, Data):
                out.append(ev)
    finally:
        reader.close()
    return out


def test_parquet_reads_only_the_projected_columns(
    parquet_dir: Path, df: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = vs.from_parquet(parquet_dir, batch_size=700).select("cpu", "ts")
    assert _source_columns(s) == ["ts", "cpu"]
    src: Source = s._node.inputs[0].source  # type: ignore[attr-defined]
    spy = ReadSpy(monkeypatch)
    narrow = _events(src, frozenset({"cpu", "ts"}))
    assert spy.columns == [["ts", "cpu"], ["ts", "cpu"]]  # one read per file
    assert all(ev.batch is not None and ev.batch.schema.names == ["ts", "cpu"] for ev in narrow)
    # the same batches, cut at the same rows, at the same positions as a read of every column
    full = _events(src)
    assert spy.columns[2:] == [None, None]
    assert [(ev.split, ev.position) for ev in narrow] == [(ev.split, ev.position) for ev in full]
    for a, b in zip(narrow, full, strict=True):
        assert a.batch is not None
        assert b.batch is not None
        assert a.batch.equals(b.batch.select(["ts", "cpu"]))
    # the source still declares the whole file schema
    assert src.schema().names == df.columns
    assert_frame_equal(s.collect(), df.select("cpu", "ts"))


def test_parquet_results_with_and_without_projection(
    parquet_dir: Path, df: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = (
        vs.from_parquet(parquet_dir, batch_size=700)
        .filter(pl.col("status") != 404)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.col("cpu").mean(), pl.len())
    )
    spy = ReadSpy(monkeypatch)
    projected = s.collect()
    assert spy.columns == [["ts", "host", "cpu", "status"]] * 2
    # a dead-letters branch keeps whole rows: every column is read, the answer is the same
    whole, _ = vs.collect_all([s, s.dead_letters()])
    assert spy.columns[2:] == [None, None]
    assert_frame_equal(projected, whole)
    want = (
        df.filter(pl.col("status") != 404)
        .with_columns(window_start=pl.col("ts") // 1000 * 1000)
        .group_by("host", "window_start")
        .agg(pl.col("cpu").mean(), pl.len())
        .with_columns(window_end=pl.col("window_start") + 1000)
        .select(projected.columns)
        .sort("host", "window_start")
    )
    got = projected.sort("host", "window_start")
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9, check_dtypes=False)


def test_parquet_read_of_no_column_still_counts_rows(parquet_dir: Path, df: pl.DataFrame) -> None:
    s = vs.from_parquet(parquet_dir, batch_size=700).with_columns(one=pl.lit(1)).select("one")
    assert _source_columns(s) == []
    assert "columns=[] (0 of 9)" in s.explain()
    assert s.collect().height == df.height


def test_parquet_resumes_from_a_checkpoint_with_projection(
    parquet_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails part-way through the second file, resumed from its checkpoint,
    reads the projected columns from where the checkpoint stood and writes exactly the
    output of one uninterrupted run."""

    def build() -> vs.Stream:
        return (
            vs.from_parquet(parquet_dir, batch_size=500)
            .filter(pl.col("status") == 200)
            .select("ts", "host", load=pl.col("cpu") * 2)
        )

    expected = build().collect()
    reads: list[tuple[int, int, list[str] | None]] = []  # (file rows, first row, columns)
    original = parquet_io._read_from
    fail = True

    def failing(
        pf: pq.ParquetFile, start: int, bs: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        reads.append((pf.metadata.num_rows, start, columns))
        for k, rb in enumerate(original(pf, start, bs, columns)):
            if fail and pf.metadata.num_rows == 2_000 and k == 3:
                raise OSError("disk went away")
            yield rb

    monkeypatch.setattr(parquet_io, "_read_from", failing)
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    cols = ["ts", "host", "cpu", "status"]
    with pytest.raises(SourceError, match="disk went away"):
        build().sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=2)
    assert reads == [(3_000, 0, cols), (2_000, 0, cols)]
    fail = False
    build().sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=2)
    # the first file had ended at the checkpoint: only the second is read, from its
    # checkpointed row (a multiple of the batch size; 3 batches were read before the error)
    ((rows, start, columns),) = reads[2:]
    assert (rows, columns) == (2_000, cols)
    assert start in (0, 500, 1_000, 1_500)
    got = pl.read_parquet(out)
    assert_frame_equal(got.sort("ts", "host"), expected.sort("ts", "host"))


def test_explain_lists_the_columns_a_source_reads(parquet_dir: Path) -> None:
    s = vs.from_parquet(parquet_dir).select("ts", "cpu")
    source_line = s.explain().splitlines()[2]
    assert source_line.endswith("2 files)  columns=[ts, cpu] (2 of 9)")
    # every column read: nothing listed
    assert "columns=" not in vs.from_parquet(parquet_dir).explain()
    # a branch that keeps whole rows (late events of a window): nothing listed
    w = (
        vs.from_parquet(parquet_dir)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host", late="side")
        .agg(pl.len())
    )
    assert "columns=[ts, host] (2 of 9)" in w.explain()
    assert "columns=" not in w.late_events().explain()
    # a source shared by two branches is listed with what both read, once
    both = vs.from_parquet(parquet_dir)
    union = vs.concat([both.select("ts", "cpu"), both.select("ts", cpu=pl.col("mem"))])
    text = union.explain()
    assert text.count("columns=[ts, cpu, mem] (3 of 9)") == 1
    assert "(shared, see above)" in text


def test_parquet_dotted_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow takes "a.b" for field b of a struct a as well as for the column "a.b" (and
    reads both): the run still sees the column called "a.b", and only it."""
    table = pa.table({"a": pa.array([{"b": 1}, {"b": 2}]), "a.b": [10, 20], "c": ["x", "y"]})
    pq.write_table(table, tmp_path / "dots.parquet")
    s = vs.from_parquet(tmp_path / "dots.parquet").select("a.b")
    assert _source_columns(s) == ["a.b"]
    spy = ReadSpy(monkeypatch)
    assert_frame_equal(s.collect(), pl.DataFrame({"a.b": [10, 20]}))
    assert spy.columns == [["a.b"]]
    s = vs.from_parquet(tmp_path / "dots.parquet").select("a", "c")
    assert_frame_equal(s.collect(), pl.from_arrow(table).select("a", "c"))  # type: ignore[union-attr]
    assert spy.columns[1:] == [["a", "c"]]
