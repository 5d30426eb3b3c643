"""``with_row_index(..., split_column=...)``: rows numbered per source split, with the
split's name beside, over any number of splits, against Polars on each file, under
batch sizes 1, random and whole; through a checkpoint; over splits that appear while the
job runs; and the refusals."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import strategies
import vstream as vs
from vstream.errors import PipelineError, SchemaError
from vstream.io.sinks import CollectSink
from vstream.runtime.executor import Executor, Target


def _files(folder: Path, sizes: list[int]) -> dict[str, pl.DataFrame]:
    """One Parquet file per size, with ``x`` numbering all rows across the files."""
    out, first = {}, 0
    for k, n in enumerate(sizes):
        df = pl.DataFrame({"x": range(first, first + n)}, schema={"x": pl.Int64})
        name = f"part-{k:02d}.parquet"
        df.write_parquet(folder / name)
        out[name] = df
        first += n
    return out


def _reference(files: dict[str, pl.DataFrame], offset: int) -> pl.DataFrame:
    """Polars on each file alone: the kept rows' positions in it, and its name."""
    parts = [
        df.filter(pl.col("x") % 3 != 0)
        .with_row_index("i", offset=offset)
        .select("i", pl.lit(name).alias("file"), "x")
        for name, df in files.items()
    ]
    return pl.concat(parts).sort("file", "i")


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4),
    batch_size=strategies.batch_sizes(50),
    offset=st.integers(min_value=0, max_value=5),
)
def test_rows_are_numbered_per_split_as_polars_numbers_each_file(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], batch_size: int, offset: int
) -> None:
    folder = tmp_path_factory.mktemp("files")
    files = _files(folder, sizes)
    stream = (
        vs.from_parquet(folder, batch_size=batch_size)
        .filter(pl.col("x") % 3 != 0)
        .with_row_index("i", offset=offset, split_column="file")
    )
    assert stream.schema == pl.Schema({"i": pl.UInt32, "file": pl.String, "x": pl.Int64})
    got = stream.collect().sort("file", "i")
    assert_frame_equal(got, _reference(files, offset))


def test_one_split_gets_its_name_too() -> None:
    df = pl.DataFrame({"x": [4, 5, 6]})
    got = vs.from_polars(df, batch_size=1).with_row_index(split_column="split").collect()
    assert got["index"].to_list() == [0, 1, 2]
    assert got["split"].n_unique() == 1


def _run(stream: vs.Stream, steps: int | None = None) -> tuple[Executor, CollectSink]:
    sink = CollectSink()
    ex = Executor([Target(stream.node, sink)])
    loop = ex.run()
    for k, _ in enumerate(loop):
        if steps is not None and k + 1 >= steps:
            break
    loop.close()
    return ex, sink


def test_the_count_of_each_split_survives_a_snapshot_and_restore(tmp_path: Path) -> None:
    files = _files(tmp_path, [90, 0, 55, 70])

    def build() -> vs.Stream:
        return (
            vs.from_parquet(tmp_path, batch_size=7)
            .filter(pl.col("x") % 3 != 0)
            .with_row_index("i", offset=2, split_column="file")
        )

    _, whole = _run(build())
    first, first_sink = _run(build(), steps=15)
    state = first.snapshot()
    (step,) = [s for s in state.steps.values() if s.kind == "row_index"]
    assert step.tables["row_index"].column_names == ["split", "next"]
    second_sink = CollectSink()
    second = Executor([Target(build().node, second_sink)])
    assert second.restore(state) == []
    for _ in second.run():
        pass
    got = pl.concat([first_sink.result(), second_sink.result()]).sort("file", "i")
    assert 0 < first_sink.result().height < got.height
    assert_frame_equal(got, whole.result().sort("file", "i"))
    assert_frame_equal(got, _reference(files, 2))


def test_a_damaged_snapshot_is_refused(tmp_path: Path) -> None:
    _files(tmp_path, [5, 5])

    def build() -> vs.Stream:
        return vs.from_parquet(tmp_path).with_row_index(split_column="file")

    first, _ = _run(build(), steps=2)
    state = first.snapshot()
    (step,) = [s for s in state.steps.values() if s.kind == "row_index"]
    table = step.tables["row_index"]
    step.tables["row_index"] = table.set_column(1, "next", pl.Series([-1] * len(table)).to_arrow())
    with pytest.raises(vs.VStreamError, match="not ints >= 0"):
        Executor([Target(build().node, CollectSink())]).restore(state)


def _wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            msg = "the condition did not hold in time"
            raise AssertionError(msg)
        time.sleep(0.01)


@pytest.fixture
def jobs() -> Iterator[list[vs.Job]]:
    started: list[vs.Job] = []
    yield started
    for job in started:
        job.stop()


def _put(folder: Path, name: str, df: pl.DataFrame) -> None:
    tmp = folder / f".{name}.tmp"
    df.write_parquet(tmp)
    tmp.rename(folder / name)  # appears whole: the safe way


def test_splits_that_appear_while_the_job_runs_count_from_the_offset(
    tmp_path: Path, jobs: list[vs.Job]
) -> None:
    _put(tmp_path, "a.parquet", pl.DataFrame({"x": range(4)}))
    stream = vs.from_parquet(tmp_path, watch=True, poll_interval="20ms", settle=0)
    job = stream.with_row_index("i", offset=1, split_column="file").start()
    jobs.append(job)
    _wait_until(lambda: job.results.height == 4)
    _put(tmp_path, "b.parquet", pl.DataFrame({"x": range(10, 13)}))
    _wait_until(lambda: job.results.height == 7)
    job.stop()
    got = job.results.sort("file", "i")
    assert got.rows() == [
        (1, "a.parquet", 0),
        (2, "a.parquet", 1),
        (3, "a.parquet", 2),
        (4, "a.parquet", 3),
        (1, "b.parquet", 10),
        (2, "b.parquet", 11),
        (3, "b.parquet", 12),
    ]


def test_a_plan_with_split_numbering_travels_as_data(tmp_path: Path) -> None:
    files = _files(tmp_path, [8, 9])
    stream = (
        vs.from_parquet(tmp_path, batch_size=4)
        .filter(pl.col("x") % 3 != 0)
        .with_row_index("i", offset=3, split_column="file")
    )
    back = vs.Stream.deserialize(stream.serialize())
    assert_frame_equal(back.collect().sort("file", "i"), _reference(files, 3))


def test_refusals_name_the_culprit(tmp_path: Path) -> None:
    _files(tmp_path, [3, 3])
    files = vs.from_parquet(tmp_path)
    with pytest.raises(PipelineError, match="split_column is a str other than"):
        files.with_row_index("i", split_column="i")
    with pytest.raises(SchemaError, match="already has a column 'x'"):
        files.with_row_index("i", split_column="x")
    with pytest.raises(PipelineError, match=r"head\(2\) keeps the first rows to arrive"):
        files.head(2).with_row_index(split_column="file")
    with pytest.raises(PipelineError, match="add with_row_index before it"):
        vs.concat([files, files]).with_row_index(split_column="file")
    with pytest.raises(PipelineError, match="split_column='split'"):
        files.with_row_index()
