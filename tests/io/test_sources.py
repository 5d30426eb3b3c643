"""Sources: every constructor gives the rows, order and schema Polars gives for the same
data, knows its schema before running, and does not depend on the batch size."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from polars.testing.parametric import dataframes

import vstream as vs

BATCH_SIZES = [1, 7, 65_536]
ROWS = 1_000  # enough for several batches at every size, small enough for batch_size=1
#: how long a blocked test generator waits for the test before giving up by itself
BLOCK_S = 10.0


@pytest.fixture
def df(telemetry_small: pl.DataFrame) -> pl.DataFrame:
    return telemetry_small.head(ROWS)


def _split(df: pl.DataFrame, sizes: list[int]) -> list[pl.DataFrame]:
    parts, start = [], 0
    for n in sizes:
        parts.append(df.slice(start, n))
        start += n
    assert start == df.height
    return parts


# ====================================================================== from_polars


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_from_polars_gives_the_frame(df: pl.DataFrame, batch_size: int) -> None:
    s = vs.from_polars(df, batch_size=batch_size)
    assert s.schema == df.schema  # known before running
    assert s.is_bounded
    assert_frame_equal(s.collect(), df)


@pytest.mark.parametrize("batch_size", [1, 7, 300])
def test_from_polars_batches_are_at_most_batch_size(df: pl.DataFrame, batch_size: int) -> None:
    batches = list(vs.from_polars(df.head(600), batch_size=batch_size).iter_batches())
    assert all(1 <= b.height <= batch_size for b in batches)
    assert_frame_equal(pl.concat(batches), df.head(600))


def test_from_polars_empty_frame_keeps_schema(df: pl.DataFrame) -> None:
    empty = df.clear()
    out = vs.from_polars(empty).collect()
    assert_frame_equal(out, empty)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=dataframes(
        max_cols=6,
        max_size=40,
        # Arrow has no 128-bit integers; Object columns cannot leave Python
        excluded_dtypes=[pl.Object, pl.Int128, pl.UInt128],
    ),
    batch_size=st.integers(1, 50),
)
def test_from_polars_any_frame_any_batch_size(frame: pl.DataFrame, batch_size: int) -> None:
    s = vs.from_polars(frame, batch_size=batch_size)
    assert s.schema == frame.schema
    assert_frame_equal(s.collect(), frame)


# ====================================================================== from_arrow

ARROW_KINDS = ["table", "chunked_table", "record_batch", "reader", "list", "generator"]


def _arrow_input(table: pa.Table, kind: str, chunk: int = 97) -> tuple[Any, dict[str, Any]]:
    batches = table.to_batches(max_chunksize=chunk)
    if kind == "table":
        return table, {}
    if kind == "chunked_table":
        return pa.Table.from_batches(batches), {}
    if kind == "record_batch":
        return table.combine_chunks().to_batches()[0], {}
    if kind == "reader":
        return pa.RecordBatchReader.from_batches(table.schema, batches), {}
    if kind == "list":
        return batches, {}
    assert kind == "generator"
    return (b for b in batches), {"bounded": True}


@pytest.mark.parametrize("kind", ARROW_KINDS)
@pytest.mark.parametrize("batch_size", [*BATCH_SIZES, None])
def test_from_arrow_gives_the_table(df: pl.DataFrame, kind: str, batch_size: int | None) -> None:
    table = df.to_arrow()
    data, kwargs = _arrow_input(table, kind)
    s = vs.from_arrow(data, batch_size=batch_size, **kwargs)
    expected = pl.from_arrow(table)
    assert isinstance(expected, pl.DataFrame)
    assert s.schema == expected.schema
    assert s.is_bounded
    assert_frame_equal(s.collect(), expected)


@pytest.mark.parametrize("kind", ["table", "chunked_table", "list"])
def test_from_arrow_table_is_resliced_to_batch_size(df: pl.DataFrame, kind: str) -> None:
    data, _ = _arrow_input(df.to_arrow(), kind, chunk=250)
    batches = list(vs.from_arrow(data, batch_size=60).iter_batches())
    assert max(b.height for b in batches) <= 60
    assert_frame_equal(pl.concat(batches), df)


@pytest.mark.parametrize("kind", ["table", "record_batch", "list"])
def test_from_arrow_replayable_inputs_run_twice(df: pl.DataFrame, kind: str) -> None:
    data, kwargs = _arrow_input(df.to_arrow(), kind)
    s = vs.from_arrow(data, **kwargs)
    assert_frame_equal(s.collect(), df)
    assert_frame_equal(s.collect(), df)


@pytest.mark.parametrize("kind", ["reader", "generator"])
def test_from_arrow_one_shot_inputs_refuse_a_second_run(df: pl.DataFrame, kind: str) -> None:
    data, kwargs = _arrow_input(df.to_arrow(), kind)
    s = vs.from_arrow(data, **kwargs)
    assert_frame_equal(s.collect(), df)
    with pytest.raises(vs.SourceError):
        s.collect()


def test_from_arrow_boundedness(df: pl.DataFrame) -> None:
    table = df.to_arrow()
    assert not vs.from_arrow(iter(table.to_batches())).is_bounded
    assert vs.from_arrow(iter(table.to_batches()), bounded=True).is_bounded
    assert vs.from_arrow(table.to_reader()).is_bounded
    assert not vs.from_arrow(table.to_reader(), bounded=False).is_bounded


_ARROW_300 = vs.datasets.telemetry(300, hosts=5, seed=2)


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 300), max_size=6),
    batch_size=st.none() | st.integers(1, 120),
    kind=st.sampled_from(["list", "chunked_table", "reader", "generator"]),
)
def test_from_arrow_any_chunking(cuts: list[int], batch_size: int | None, kind: str) -> None:
    """However the input is chunked (empty batches included), the rows come out whole."""
    whole = _ARROW_300.to_arrow().combine_chunks().to_batches()[0]
    bounds = [0, *sorted(cuts), 300]
    pieces = [whole.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    data: Any
    kwargs: dict[str, Any] = {}
    if kind == "list":
        data = pieces
    elif kind == "chunked_table":
        data = pa.Table.from_batches(pieces)
    elif kind == "reader":
        data = pa.RecordBatchReader.from_batches(whole.schema, pieces)
    else:
        data, kwargs = iter(pieces), {"bounded": True}
    out = vs.from_arrow(data, batch_size=batch_size, **kwargs).collect()
    assert_frame_equal(out, _ARROW_300)


def test_from_arrow_empty_inputs_have_no_schema() -> None:
    with pytest.raises(vs.SourceError):
        vs.from_arrow([])
    with pytest.raises(vs.SourceError):
        vs.from_arrow(iter([]))


def test_from_arrow_list_of_mismatched_batches() -> None:
    a = pa.record_batch({"x": pa.array([1], pa.int64())})
    b = pa.record_batch({"x": pa.array(["one"], pa.string())})
    with pytest.raises(vs.SchemaError):
        vs.from_arrow([a, b])


def test_from_arrow_generator_batch_with_another_schema_fails_the_run() -> None:
    def gen() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"x": pa.array([1, 2], pa.int64())})
        yield pa.record_batch({"y": pa.array([3], pa.int64())})

    s = vs.from_arrow(gen(), bounded=True)
    assert s.schema == pl.Schema({"x": pl.Int64})
    with pytest.raises(vs.SchemaError):
        s.collect()


def test_from_arrow_rejects_other_things() -> None:
    with pytest.raises(vs.PipelineError):
        vs.from_arrow("not arrow")  # type: ignore[arg-type]
    with pytest.raises(vs.PipelineError):
        vs.from_arrow(iter([{"x": 1}]))  # type: ignore[list-item]


# ====================================================================== from_parquet


@pytest.fixture
def parquet_files(tmp_path: Path, df: pl.DataFrame) -> tuple[Path, list[Path], list[pl.DataFrame]]:
    """Three Parquet files of unequal sizes, several row groups each, in name order."""
    folder = tmp_path / "pq"
    folder.mkdir()
    parts = _split(df, [300, 450, 250])
    files = []
    for name, part in zip(["a", "b", "c"], parts, strict=True):
        path = folder / f"{name}.parquet"
        part.write_parquet(path, row_group_size=128)
        files.append(path)
    return folder, files, parts


PARQUET_FORMS = ["file", "glob", "directory", "directory_str", "list", "reversed_list"]


def _parquet_arg(form: str, folder: Path, files: list[Path]) -> tuple[Any, list[Path]]:
    """The argument for from_parquet and the files it names, in reading order."""
    if form == "file":
        return str(files[1]), [files[1]]
    if form == "glob":
        return str(folder / "*.parquet"), files
    if form == "directory":
        return folder, files
    if form == "directory_str":
        return str(folder), files
    if form == "list":
        return [str(f) for f in files], files
    assert form == "reversed_list"
    return list(reversed(files)), list(reversed(files))


@pytest.mark.parametrize("form", PARQUET_FORMS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_from_parquet_reads_files_in_order(
    parquet_files: tuple[Path, list[Path], list[pl.DataFrame]], form: str, batch_size: int
) -> None:
    folder, files, _ = parquet_files
    arg, order = _parquet_arg(form, folder, files)
    expected = pl.concat([pl.read_parquet(f) for f in order])
    s = vs.from_parquet(arg, batch_size=batch_size)
    assert s.schema == expected.schema  # from the file footers, before running
    assert s.is_bounded
    assert_frame_equal(s.collect(), expected)


def test_from_parquet_empty_files(tmp_path: Path, df: pl.DataFrame) -> None:
    df.clear().write_parquet(tmp_path / "a.parquet")
    df.head(500).write_parquet(tmp_path / "b.parquet")
    df.clear().write_parquet(tmp_path / "c.parquet")
    df.tail(500).write_parquet(tmp_path / "d.parquet")
    for batch_size in (7, 65_536):
        assert_frame_equal(vs.from_parquet(tmp_path, batch_size=batch_size).collect(), df)
    only_empty = tmp_path / "empty"
    only_empty.mkdir()
    df.clear().write_parquet(only_empty / "a.parquet")
    assert_frame_equal(vs.from_parquet(only_empty).collect(), df.clear())


def test_from_parquet_round_trips_many_dtypes(tmp_path: Path) -> None:
    import datetime as dt

    frame = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 9), "1s", eager=True
            ).dt.cast_time_unit("ms"),
            "day": [dt.date(2024, 1, i + 1) for i in range(10)],
            "flag": [True, False, None] * 3 + [True],
            "cat": pl.Series(["x", "y"] * 5, dtype=pl.Categorical),
            "items": [[1, 2], [3], None, [], [5]] * 2,
            "nested": [{"a": i, "b": str(i)} for i in range(10)],
            "small": pl.Series(range(10), dtype=pl.UInt8),
            "f32": pl.Series([0.5, None] * 5, dtype=pl.Float32),
            "blob": [b"ab", None] * 5,
        }
    )
    frame.head(4).write_parquet(tmp_path / "a.parquet")
    frame.tail(6).write_parquet(tmp_path / "b.parquet")
    expected = pl.read_parquet(tmp_path / "*.parquet")
    for batch_size in (1, 3, 100):
        s = vs.from_parquet(tmp_path, batch_size=batch_size)
        assert s.schema == expected.schema
        assert_frame_equal(s.collect(), expected)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda d: d.with_columns(pl.col("cpu").cast(pl.String)), id="type"),
        pytest.param(lambda d: d.rename({"cpu": "cpu_pct"}), id="name"),
        pytest.param(lambda d: d.with_columns(extra=pl.lit(1)), id="extra_column"),
        pytest.param(lambda d: d.drop("mem"), id="missing_column"),
    ],
)
def test_from_parquet_schema_mismatch_between_files(
    tmp_path: Path, df: pl.DataFrame, other: Callable[[pl.DataFrame], pl.DataFrame]
) -> None:
    df.head(10).write_parquet(tmp_path / "a.parquet")
    other(df.tail(10)).write_parquet(tmp_path / "b.parquet")
    with pytest.raises(vs.SchemaError):
        vs.from_parquet(tmp_path)


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(
            pa.table({"a": pa.array([3], pa.int64()), "s": pa.array(["z"], pa.string())}),
            id="string_vs_large_string",
        ),
        pytest.param(
            pa.Table.from_arrays(
                [pa.array([3], pa.int64()), pa.array(["z"], pa.large_string())],
                schema=pa.schema(
                    [pa.field("a", pa.int64(), nullable=False), ("s", pa.large_string())]
                ),
            ),
            id="non_nullable",
        ),
    ],
)
def test_from_parquet_accepts_files_polars_reads_as_one_schema(
    tmp_path: Path, second: pa.Table
) -> None:
    """Files written by different tools (Polars' large_string, pyarrow's string; a
    non-nullable field) are the same Polars schema: Polars reads them together, and so
    should vstream."""
    pl.DataFrame({"a": [1, 2], "s": ["x", "y"]}).write_parquet(tmp_path / "a.parquet")
    pq.write_table(second, tmp_path / "b.parquet")
    expected = pl.read_parquet(tmp_path / "*.parquet")
    assert_frame_equal(vs.from_parquet(tmp_path).collect(), expected)


def test_from_parquet_missing_paths(tmp_path: Path, df: pl.DataFrame) -> None:
    df.head(5).write_parquet(tmp_path / "a.parquet")
    with pytest.raises(vs.SourceError):
        vs.from_parquet(tmp_path / "nope.parquet")
    with pytest.raises(vs.SourceError):
        vs.from_parquet(str(tmp_path / "*.nope"))
    with pytest.raises(vs.SourceError):
        vs.from_parquet([tmp_path / "a.parquet", tmp_path / "nope.parquet"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(vs.SourceError):
        vs.from_parquet(tmp_path / "empty")


def test_from_parquet_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(vs.SourceError):
        vs.from_parquet(tmp_path / "bad.parquet")


def test_from_parquet_runs_twice(
    parquet_files: tuple[Path, list[Path], list[pl.DataFrame]], df: pl.DataFrame
) -> None:
    s = vs.from_parquet(parquet_files[0])
    assert_frame_equal(s.collect(), df)
    assert_frame_equal(s.collect(), df)


# ====================================================================== from_records


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_from_records_infers_schema_like_polars(df: pl.DataFrame, batch_size: int) -> None:
    records = df.to_dicts()
    expected = pl.from_dicts(records)
    s = vs.from_records(records, batch_size=batch_size)
    assert s.schema == expected.schema
    assert s.is_bounded
    assert_frame_equal(s.collect(), expected)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("schema_kind", ["polars_schema", "dict", "arrow_schema"])
def test_from_records_with_schema(df: pl.DataFrame, batch_size: int, schema_kind: str) -> None:
    schema: Any = {
        "polars_schema": df.schema,
        "dict": dict(df.schema),
        "arrow_schema": df.to_arrow().schema,
    }[schema_kind]
    s = vs.from_records(df.to_dicts(), schema=schema, batch_size=batch_size)
    assert s.schema == df.schema
    assert_frame_equal(s.collect(), df)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_from_records_bounded_generator(df: pl.DataFrame, batch_size: int) -> None:
    records = df.to_dicts()
    s = vs.from_records((r for r in records), bounded=True, batch_size=batch_size)
    assert s.is_bounded
    assert_frame_equal(s.collect(), pl.from_dicts(records))


def test_from_records_generator_is_unbounded_by_default(df: pl.DataFrame) -> None:
    s = vs.from_records((r for r in df.to_dicts()), schema=df.schema)
    assert not s.is_bounded


@pytest.mark.parametrize("schema_given", [False, True])
def test_from_records_factory_runs_twice(df: pl.DataFrame, schema_given: bool) -> None:
    records = df.to_dicts()
    calls = []

    def factory() -> Iterator[dict[str, Any]]:
        calls.append(1)
        return (r for r in records)

    schema = df.schema if schema_given else None
    s = vs.from_records(factory, schema=schema, bounded=True, batch_size=64)
    expected = df if schema_given else pl.from_dicts(records)
    assert_frame_equal(s.collect(), expected)
    assert_frame_equal(s.collect(), expected)
    assert len(calls) >= 2  # a fresh iterable per run


def test_from_records_list_runs_twice(df: pl.DataFrame) -> None:
    """A list is replayable, like a DataFrame or a list of Arrow batches."""
    s = vs.from_records(df.to_dicts(), schema=df.schema)
    assert_frame_equal(s.collect(), df)
    assert_frame_equal(s.collect(), df)


def test_from_records_one_shot_generator_refuses_a_second_run(df: pl.DataFrame) -> None:
    s = vs.from_records((r for r in df.to_dicts()), schema=df.schema, bounded=True)
    s.collect()
    with pytest.raises(vs.SourceError):
        s.collect()


def test_from_records_with_schema_does_not_read_before_running() -> None:
    pulled = []

    def gen() -> Iterator[dict[str, int]]:
        for i in range(5):
            pulled.append(i)
            yield {"i": i}

    s = vs.from_records(gen(), schema={"i": pl.Int64}, bounded=True)
    assert s.schema == pl.Schema({"i": pl.Int64})
    assert pulled == []
    assert s.collect()["i"].to_list() == list(range(5))


@pytest.mark.parametrize("batch_size", [1, 65_536])
@pytest.mark.parametrize(
    "records",
    [
        pytest.param([{"a": 1}, {"a": 2, "b": "x"}, {"a": 3, "b": "y"}], id="key_appears_later"),
        pytest.param([{"x": 1}, {"x": 2.5}, {"x": 3}], id="int_then_float"),
        pytest.param([{"x": None, "y": 1}, {"x": "s", "y": 2}], id="null_then_string"),
    ],
)
def test_from_records_inference_sees_more_than_the_first_record(
    records: list[dict[str, Any]], batch_size: int
) -> None:
    """Polars infers a schema from the first rows (not only the first one); vstream gives
    the same rows and schema whatever the batch size, and loses nothing silently."""
    expected = pl.from_dicts(records)
    s = vs.from_records(records, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert s.schema == expected.schema
    assert_frame_equal(main, expected)
    assert dead.height == 0


_RECORD_SCHEMA = pl.Schema({"a": pl.Int64, "b": pl.Float64, "c": pl.String, "d": pl.Boolean})
_records = st.lists(
    st.fixed_dictionaries(
        {
            "a": st.none() | st.integers(-(2**63), 2**63 - 1),
            "b": st.none() | st.floats(allow_nan=False, allow_infinity=False),
            "c": st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
            "d": st.none() | st.booleans(),
        }
    ),
    max_size=60,
)


@settings(max_examples=25, deadline=None)
@given(records=_records, batch_size=st.integers(1, 70))
def test_from_records_any_records_any_batch_size(
    records: list[dict[str, Any]], batch_size: int
) -> None:
    expected = pl.from_dicts(records, schema=_RECORD_SCHEMA)
    s = vs.from_records(records, schema=_RECORD_SCHEMA, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert_frame_equal(main, expected)
    assert dead.height == 0


@settings(max_examples=25, deadline=None)
@given(records=_records, batch_size=st.integers(1, 70))
def test_from_ndjson_any_lines_any_batch_size(
    records: list[dict[str, Any]], batch_size: int
) -> None:
    lines = [json.dumps(r) for r in records]
    expected = pl.read_ndjson(io.StringIO("\n".join(lines)), schema=_RECORD_SCHEMA)
    s = vs.from_ndjson(lines, schema=_RECORD_SCHEMA, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert_frame_equal(main, expected)
    assert dead.height == 0


def test_from_records_rejects_non_iterables() -> None:
    with pytest.raises(vs.PipelineError):
        vs.from_records(42)  # type: ignore[arg-type]
    with pytest.raises(vs.SourceError):
        vs.from_records([])  # nothing to infer a schema from


# ====================================================================== from_ndjson


@pytest.fixture
def ndjson_file(tmp_path: Path, df: pl.DataFrame) -> Path:
    path = tmp_path / "events.ndjson"
    df.write_ndjson(path)
    return path


NDJSON_FORMS = [
    "path_str",
    "pathlib",
    "binary_file",
    "text_file",
    "bytes_lines",
    "str_lines",
    "line_generator",
    "list_of_paths",
    "directory",
]


def _ndjson_arg(form: str, path: Path) -> tuple[Any, dict[str, Any]]:
    data = path.read_bytes()
    lines = data.splitlines()
    if form == "path_str":
        return str(path), {}
    if form == "pathlib":
        return path, {}
    if form == "binary_file":
        return io.BytesIO(data), {}
    if form == "text_file":
        return io.StringIO(data.decode()), {}
    if form == "bytes_lines":
        return lines, {}
    if form == "str_lines":
        return [ln.decode() for ln in lines], {}
    if form == "line_generator":
        return (ln for ln in lines), {"bounded": True}
    # split the file in two: each file is a split, read in order
    folder = path.parent / "split"
    folder.mkdir(exist_ok=True)
    half = len(lines) // 3
    (folder / "1.ndjson").write_bytes(b"\n".join(lines[:half]) + b"\n")
    (folder / "2.ndjson").write_bytes(b"\n".join(lines[half:]) + b"\n")
    if form == "list_of_paths":
        return [str(folder / "1.ndjson"), str(folder / "2.ndjson")], {}
    assert form == "directory"
    return folder, {}


@pytest.mark.parametrize("form", NDJSON_FORMS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_from_ndjson_with_schema(
    ndjson_file: Path, df: pl.DataFrame, form: str, batch_size: int
) -> None:
    arg, kwargs = _ndjson_arg(form, ndjson_file)
    expected = pl.read_ndjson(ndjson_file, schema=df.schema)
    s = vs.from_ndjson(arg, schema=df.schema, batch_size=batch_size, **kwargs)
    assert s.schema == expected.schema
    assert s.is_bounded
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert_frame_equal(main, expected)
    assert dead.height == 0


@pytest.mark.parametrize("batch_size", [1, 65_536])
def test_from_ndjson_with_list_duration_and_nested_types(batch_size: int) -> None:
    """Types pyarrow.json has no conversion to (a large list, which is Polars' List, a
    duration) are parsed as their JSON form and cast; they failed with a raw
    ArrowNotImplementedError on every block. A line whose value does not fit is a dead
    letter, as for any type."""
    schema = {
        "tags": pl.List(pl.String),
        "wait": pl.Duration("ms"),
        "obj": pl.Struct({"xs": pl.List(pl.Int64)}),
    }
    lines = [
        b'{"tags": ["a", "b"], "wait": 1500, "obj": {"xs": [1, 2]}}',
        b'{"tags": "a", "wait": 1, "obj": null}',
        b'{"tags": [], "wait": null, "obj": {"xs": []}}',
    ]
    s = vs.from_ndjson(lines, schema=schema, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    expected = pl.DataFrame(
        {
            "tags": [["a", "b"], []],
            "wait": [timedelta(milliseconds=1500), None],
            "obj": [{"xs": [1, 2]}, {"xs": []}],
        },
        schema=schema,
    )
    assert_frame_equal(main, expected)
    assert dead["record"].to_list() == [lines[1].decode()]


def test_from_ndjson_refuses_a_type_json_cannot_give_when_built() -> None:
    with pytest.raises(vs.SchemaError, match=r"'pair'.*pl\.List instead of pl\.Array"):
        vs.from_ndjson([b'{"pair": [1, 2]}'], schema={"pair": pl.Array(pl.Int64, 2)})


@pytest.mark.parametrize("form", NDJSON_FORMS)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_from_ndjson_infers_schema_like_polars(
    ndjson_file: Path, form: str, batch_size: int
) -> None:
    arg, kwargs = _ndjson_arg(form, ndjson_file)
    expected = pl.read_ndjson(ndjson_file)
    s = vs.from_ndjson(arg, batch_size=batch_size, **kwargs)
    assert s.schema == expected.schema
    assert_frame_equal(s.collect(), expected)


@pytest.mark.parametrize("mode", ["binary", "text"])
@pytest.mark.parametrize("schema_given", [False, True])
def test_from_ndjson_big_file_object(
    telemetry_small: pl.DataFrame, mode: str, schema_given: bool
) -> None:
    """A file object larger than what schema inference samples (several MB): the line
    that straddles the end of the sample must survive."""
    buf = io.BytesIO()
    telemetry_small.write_ndjson(buf)
    data = buf.getvalue()
    assert len(data) > 2 << 20
    expected = pl.read_ndjson(
        io.BytesIO(data), schema=telemetry_small.schema if schema_given else None
    )
    fobj: Any = io.BytesIO(data) if mode == "binary" else io.StringIO(data.decode())
    s = vs.from_ndjson(fobj, schema=telemetry_small.schema if schema_given else None)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert dead.height == 0, dead["record"].str.slice(0, 40).to_list()
    assert_frame_equal(main, expected)


@pytest.mark.parametrize("batch_size", [1, 65_536])
@pytest.mark.parametrize("form", ["bytes_lines", "path"])
def test_from_ndjson_inference_sees_more_than_the_first_line(
    tmp_path: Path, batch_size: int, form: str
) -> None:
    lines = [b'{"x": 1}', b'{"x": 2.5}', b'{"x": 3}']
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = pl.read_ndjson(path)
    s = vs.from_ndjson(lines if form == "bytes_lines" else path, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert s.schema == expected.schema
    assert_frame_equal(main, expected)
    assert dead.height == 0


@pytest.mark.parametrize("form", ["path_str", "bytes_lines", "str_lines", "directory"])
def test_from_ndjson_replayable_inputs_run_twice(
    ndjson_file: Path, df: pl.DataFrame, form: str
) -> None:
    """Paths and lists of lines can be read again (a list is not a one-shot iterator)."""
    arg, kwargs = _ndjson_arg(form, ndjson_file)
    s = vs.from_ndjson(arg, schema=df.schema, **kwargs)
    assert_frame_equal(s.collect(), df)
    assert_frame_equal(s.collect(), df)


def test_from_ndjson_with_schema_does_not_read_before_running() -> None:
    pulled = []

    def gen() -> Iterator[bytes]:
        for i in range(5):
            pulled.append(i)
            yield json.dumps({"i": i}).encode()

    s = vs.from_ndjson(gen(), schema={"i": pl.Int64}, bounded=True)
    assert s.schema == pl.Schema({"i": pl.Int64})
    assert pulled == []
    assert s.collect()["i"].to_list() == list(range(5))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("no_trailing_newline", b'{"a": 1, "s": "x"}\n{"a": 2, "s": "y"}'),
        ("blank_lines", b'{"a": 1, "s": "x"}\n\n   \n{"a": 2, "s": "y"}\n\n'),
        ("crlf", b'{"a": 1, "s": "x"}\r\n{"a": 2, "s": "y"}\r\n'),
        ("unicode", '{"a": 1, "s": "é日本"}\n{"a": 2, "s": "\\u00e9\\n"}\n'.encode()),
        ("long_line", b'{"a": 1, "s": "' + b"x" * 200_000 + b'"}\n{"a": 2, "s": "y"}\n'),
        ("missing_and_extra_keys", b'{"a": 1, "z": 0}\n{"s": "y"}\n'),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 65_536])
def test_from_ndjson_file_layouts(tmp_path: Path, name: str, data: bytes, batch_size: int) -> None:
    schema = {"a": pl.Int64, "s": pl.String}
    path = tmp_path / f"{name}.ndjson"
    path.write_bytes(data)
    expected = pl.read_ndjson(io.BytesIO(data), schema=schema)
    for arg in (path, io.BytesIO(data), data.split(b"\n")):
        s = vs.from_ndjson(arg, schema=schema, batch_size=batch_size)
        main, dead = vs.collect_all([s, s.dead_letters()])
        assert_frame_equal(main, expected)
        assert dead.height == 0


def test_from_ndjson_rejects_other_things(tmp_path: Path) -> None:
    with pytest.raises(vs.PipelineError):
        vs.from_ndjson(42)  # type: ignore[arg-type]
    with pytest.raises(vs.SourceError):
        vs.from_ndjson(tmp_path / "missing.ndjson")
    with pytest.raises(vs.SourceError):
        vs.from_ndjson([b"not json", b"[1, 2]"])  # no schema to infer


class SourceBroke(Exception):
    pass


def _breaking(make: Callable[[int], Any], n: int) -> Iterator[Any]:
    for i in range(n):
        yield make(i)
    msg = "the user's iterator failed"
    raise SourceBroke(msg)


BREAKING: dict[str, Callable[[], vs.Stream]] = {
    "records": lambda: vs.from_records(
        _breaking(lambda i: {"i": i}, 250), schema={"i": pl.Int64}, batch_size=100, bounded=True
    ),
    "ndjson": lambda: vs.from_ndjson(
        _breaking(lambda i: b'{"i": %d}' % i, 250),
        schema={"i": pl.Int64},
        batch_size=100,
        bounded=True,
    ),
    "arrow": lambda: vs.from_arrow(
        _breaking(lambda i: pa.record_batch({"i": pa.array([i], pa.int64())}), 250),
        bounded=True,
    ),
}


@pytest.mark.parametrize("kind", sorted(BREAKING))
def test_error_in_the_users_iterator_fails_the_run(kind: str) -> None:
    """An exception from the input is not the end of the input: the run fails with it."""
    with pytest.raises(SourceBroke):
        BREAKING[kind]().collect()
    job = BREAKING[kind]().start()
    with pytest.raises(SourceBroke):
        job.join(timeout=10)
    assert not job.running
    assert job.results.height <= 250


# ====================================================================== batch size checks

SOURCES: dict[str, Callable[[int], vs.Stream]] = {
    "from_polars": lambda bs: vs.from_polars(pl.DataFrame({"x": [1]}), batch_size=bs),
    "from_arrow": lambda bs: vs.from_arrow(pa.table({"x": [1]}), batch_size=bs),
    "from_records": lambda bs: vs.from_records([{"x": 1}], batch_size=bs),
    "from_ndjson": lambda bs: vs.from_ndjson([b'{"x": 1}'], batch_size=bs),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "10"])
def test_bad_batch_size_is_refused(source: str, batch_size: Any) -> None:
    with pytest.raises(vs.PipelineError, match="batch_size"):
        SOURCES[source](batch_size)


# ====================================================================== max_delay


def _three_then_block(
    make: Callable[[int], Any], release: threading.Event, state: dict[str, bool]
) -> Iterator[Any]:
    """Yields 3 items, blocks until ``release`` (or BLOCK_S), then yields 3 more."""
    for i in range(3):
        yield make(i)
    state["released_by_test"] = release.wait(BLOCK_S)
    for i in range(3, 6):
        yield make(i)


def _blocking_stream(
    kind: str, release: threading.Event, state: dict[str, bool], *, infer: bool = False
) -> vs.Stream:
    schema = None if infer else {"i": pl.Int64}
    if kind == "records":
        gen = _three_then_block(lambda i: {"i": i}, release, state)
        return vs.from_records(gen, schema=schema, max_delay="50ms", bounded=True)
    gen = _three_then_block(lambda i: b'{"i": %d}' % i, release, state)
    return vs.from_ndjson(gen, schema=schema, max_delay="50ms", bounded=True)


@pytest.mark.parametrize("infer", [False, True], ids=["schema", "inferred"])
@pytest.mark.parametrize("kind", ["records", "ndjson"])
def test_max_delay_flushes_a_partial_batch_while_the_input_blocks(kind: str, infer: bool) -> None:
    """Without a schema too (issue 16): the schema is inferred from what arrives within
    max_delay of the first row, so neither the build nor the first batch waits for the
    input's pause to end (it ended only when the test saw the first rows)."""
    release = threading.Event()
    state: dict[str, bool] = {}
    s = _blocking_stream(kind, release, state, infer=infer)
    assert "released_by_test" not in state  # built while the generator is blocked
    seen: list[int] = []
    before_release: list[int] | None = None
    try:
        for batch in s.iter_batches():
            seen.extend(batch["i"].to_list())
            if before_release is None and len(seen) >= 3:
                before_release = list(seen)
                release.set()
    finally:
        release.set()
    # the first rows came while the generator was still blocked (not after it gave up)
    assert before_release == [0, 1, 2]
    assert state["released_by_test"] is True
    assert seen == list(range(6))


@pytest.mark.parametrize("kind", ["records", "ndjson"])
def test_max_delay_in_a_background_job(kind: str) -> None:
    release = threading.Event()
    state: dict[str, bool] = {}
    job = _blocking_stream(kind, release, state).start()
    try:
        deadline = time.monotonic() + BLOCK_S / 2
        while job.results.height < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        early = job.results["i"].to_list()
        assert job.running  # the generator is still blocked: the input has not ended
    finally:
        release.set()
    job.join(timeout=BLOCK_S)
    assert not job.running
    assert early == [0, 1, 2]
    assert state["released_by_test"] is True
    assert job.results["i"].to_list() == list(range(6))
