"""Bad input: malformed records go to the dead-letter branch with a reason, are counted in
the metrics, and everything good still arrives, in order; nothing is lost silently."""

from __future__ import annotations

import io
import json
import random
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import vstream as vs

BAD_FRACTION = 0.01


def _bad_line_kinds(row: dict[str, Any]) -> list[tuple[str, str]]:
    """Malformed variants of one good row: (kind, line)."""
    good = json.dumps(row)
    return [
        ("invalid_json", good.replace('"host"', "host", 1)),  # unquoted key
        ("garbage", "this is not json at all"),
        ("truncated", good[: len(good) // 2]),
        ("wrong_type_cpu", json.dumps({**row, "cpu": "abc"})),
        ("wrong_type_ts", json.dumps({**row, "ts": "yesterday"})),
        ("wrong_type_host", json.dumps({**row, "host": 12345})),
        ("json_array", json.dumps(list(row.values()))),
        ("bare_number", "42"),
    ]


def _mixed_lines(
    df: pl.DataFrame, seed: int = 7
) -> tuple[list[str], list[str], list[str], list[dict[str, Any]]]:
    """All lines in order, the good ones, the unparseable ones, and the rows whose event
    time is null (parseable, refused by with_watermark)."""
    rng = random.Random(seed)
    rows = df.to_dicts()
    n_bad = int(len(rows) * BAD_FRACTION)
    bad_at = set(rng.sample(range(len(rows)), n_bad))
    lines: list[str] = []
    good: list[str] = []
    unparseable: list[str] = []
    null_time: list[dict[str, Any]] = []
    for k, row in enumerate(rows):
        if k not in bad_at:
            line = json.dumps(row)
            good.append(line)
        else:
            kinds = _bad_line_kinds(row)
            choice = k % (len(kinds) + 1)
            if choice == len(kinds):
                bad_row = {**row, "ts": None}
                null_time.append(bad_row)
                line = json.dumps(bad_row)
            else:
                line = kinds[choice][1]
                unparseable.append(line)
        lines.append(line)
    assert unparseable
    assert null_time
    return lines, good, unparseable, null_time


def _check_dead_letters(
    dead: pl.DataFrame, unparseable: list[str], refused_rows: list[Any]
) -> None:
    """Every unparseable line is in ``record`` as it was; every other refused row is there
    as JSON of the row; every dead letter has a reason."""
    assert dead.columns == ["record", "reason", "step"]
    assert dead.height == len(unparseable) + len(refused_rows)
    assert dead["reason"].null_count() == 0
    assert (dead["reason"].str.len_chars() > 0).all()
    remaining = Counter(dead["record"].to_list())
    missing = Counter(unparseable) - remaining
    assert not missing, f"unparseable lines missing from the dead letters: {list(missing)[:3]}"
    remaining -= Counter(unparseable)
    as_rows = sorted(json.dumps(json.loads(r), sort_keys=True) for r in remaining.elements())
    expected = sorted(json.dumps(r, sort_keys=True) for r in refused_rows)
    assert as_rows == expected


@pytest.mark.parametrize(
    ("form", "batch_size", "rows"),
    [
        ("path", 65_536, 20_000),
        ("lines", 1_000, 20_000),
        ("path", 997, 5_000),
        ("file_object", 65_536, 5_000),
    ],
)
def test_ndjson_garbage_goes_to_dead_letters(
    tmp_path: Path, telemetry_small: pl.DataFrame, form: str, batch_size: int, rows: int
) -> None:
    lines, good, unparseable, null_time = _mixed_lines(telemetry_small.head(rows))
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(data)
    arg: Any = {"path": path, "file_object": io.BytesIO(data), "lines": data.splitlines()}[form]
    schema = telemetry_small.schema
    s = vs.from_ndjson(arg, schema=schema, batch_size=batch_size).with_watermark("ts", 5_000)
    (main, dead), metrics = vs.collect_all([s, s.dead_letters()], return_metrics=True)

    expected = pl.read_ndjson(io.StringIO("\n".join(good)), schema=schema)
    assert_frame_equal(main, expected)  # every good row, in input order
    _check_dead_letters(dead, unparseable, null_time)
    assert main.height + dead.height == len(lines)
    assert metrics.dead_letters == len(unparseable) + len(null_time)
    assert metrics.events_out == main.height


def test_ndjson_garbage_does_not_shatter_the_good_rows_into_tiny_batches(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    """1% of bad lines must not turn one batch of good rows into hundreds of slivers:
    every sliver costs a trip through every step of the pipeline."""
    lines, good, _, null_time = _mixed_lines(telemetry_small.head(10_000))
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(lines) + "\n")
    s = vs.from_ndjson(path, schema=telemetry_small.schema)  # one 65,536-row batch at most
    with pytest.warns(UserWarning, match=r"dead_letters\(\)"):
        batches = list(s.iter_batches())
    # without with_watermark a null event time is no fault
    assert sum(b.height for b in batches) == len(good) + len(null_time)
    assert len(batches) <= 4, f"{len(good)} good rows came in {len(batches)} batches"


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("null", id="null"),
        pytest.param("true", id="true"),
        pytest.param('"text"', id="string"),
        pytest.param("[]", id="empty_array"),
        pytest.param('{"a": 3}{"a": 4}', id="two_objects_on_one_line"),
    ],
)
def test_ndjson_line_that_is_not_one_object_is_a_dead_letter(line: str) -> None:
    """Polars refuses these lines ("NDJSON line expected to contain JSON object")."""
    lines = ['{"a": 1}', line, '{"a": 2}']
    s = vs.from_ndjson(lines, schema={"a": pl.Int64})
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["a"].to_list() == [1, 2]
    assert dead["record"].to_list() == [line]
    assert dead["reason"].str.len_chars().min() > 0  # type: ignore[operator]


def _bad_records(row: dict[str, Any]) -> list[Any]:
    return [
        {**row, "cpu": "abc"},
        {**row, "ts": "yesterday"},
        {**row, "ts": [1, 2]},
        {**row, "host": {"name": "x"}},
        {**row, "mem": {"v": 1}},
        5,
        None,
    ]


@pytest.mark.parametrize("batch_size", [65_536, 500])
def test_records_that_do_not_fit_go_to_dead_letters(
    telemetry_small: pl.DataFrame, batch_size: int
) -> None:
    rng = random.Random(3)
    rows = telemetry_small.to_dicts()
    bad_at = set(rng.sample(range(len(rows)), int(len(rows) * BAD_FRACTION)))
    records: list[Any] = []
    good: list[dict[str, Any]] = []
    bad: list[Any] = []
    null_time: list[dict[str, Any]] = []
    for k, row in enumerate(rows):
        if k not in bad_at:
            records.append(row)
            good.append(row)
            continue
        kinds = _bad_records(row)
        choice = k % (len(kinds) + 1)
        if choice == len(kinds):
            rec: Any = {**row, "ts": None}
            null_time.append(rec)
        else:
            rec = kinds[choice]
            bad.append(rec)
        records.append(rec)

    schema = telemetry_small.schema
    s = vs.from_records(records, schema=schema, batch_size=batch_size).with_watermark("ts", 0)
    (main, dead), metrics = vs.collect_all([s, s.dead_letters()], return_metrics=True)

    assert_frame_equal(main, pl.from_dicts(good, schema=schema))
    # every refused record is there, as JSON text, with a reason
    _check_dead_letters(dead, [], [*bad, *null_time])
    assert main.height + dead.height == len(records)
    assert metrics.dead_letters == len(bad) + len(null_time)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(5, id="int"),
        pytest.param(2.5, id="float"),
        pytest.param(None, id="None"),
        pytest.param("text", id="str"),
        pytest.param([1, 2], id="list"),
        pytest.param(("a", 1), id="tuple"),
        pytest.param({"a", "b"}, id="set"),
    ],
)
@pytest.mark.parametrize("schema_given", [True, False])
def test_record_that_is_not_a_dict_is_a_dead_letter(record: Any, schema_given: bool) -> None:
    records = [{"a": 1}, record, {"a": 2}]
    s = vs.from_records(records, schema={"a": pl.Int64} if schema_given else None)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["a"].to_list() == [1, 2]
    assert dead.height == 1
    assert dead["reason"].str.len_chars().min() > 0  # type: ignore[operator]


# ---------------------------------------------------------------- not asked for, still counted

_LINES = ['{"ts": 1, "x": 1}', "oops", '{"ts": null, "x": 2}', "[3]", '{"ts": 4, "x": 4}']
_SCHEMA = {"ts": pl.Int64, "x": pl.Int64}
_N_BAD = 3


def _garbage_stream() -> vs.Stream:
    return vs.from_ndjson(_LINES, schema=_SCHEMA).with_watermark("ts", 0)


def _collect(s: vs.Stream) -> tuple[pl.DataFrame, vs.Metrics]:
    out, metrics = s.collect(return_metrics=True)
    return out, metrics


def _collect_all(s: vs.Stream) -> tuple[pl.DataFrame, vs.Metrics]:
    (out,), metrics = vs.collect_all([s], return_metrics=True)
    return out, metrics


def _callback(s: vs.Stream) -> tuple[pl.DataFrame, vs.Metrics]:
    seen: list[pl.DataFrame] = []
    metrics = s.sink_callback(seen.append)
    return pl.concat(seen), metrics


TERMINALS: dict[str, Callable[[vs.Stream], tuple[pl.DataFrame, vs.Metrics]]] = {
    "collect": _collect,
    "collect_all": _collect_all,
    "sink_callback": _callback,
}


@pytest.mark.parametrize("terminal", sorted(TERMINALS))
def test_dead_letters_not_asked_for_are_counted_and_warned_about(terminal: str) -> None:
    with pytest.warns(UserWarning, match=r"dead_letters\(\)"):
        out, metrics = TERMINALS[terminal](_garbage_stream())
    assert out["x"].to_list() == [1, 4]
    assert metrics.dead_letters == _N_BAD


@pytest.mark.parametrize("terminal", sorted(TERMINALS))
def test_dead_letter_warning_points_at_the_callers_line(terminal: str) -> None:
    """The warning is about the user's call, so it should be attributed to the user's
    file (as warnings.warn's stacklevel is meant to), not to a vstream module."""
    with pytest.warns(UserWarning, match=r"dead_letters\(\)") as record:
        TERMINALS[terminal](_garbage_stream())
    assert [w.filename for w in record] == [__file__]


def test_no_warning_when_dead_letters_are_collected() -> None:
    s = _garbage_stream()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (main, dead), metrics = vs.collect_all([s, s.dead_letters()], return_metrics=True)
    assert main["x"].to_list() == [1, 4]
    assert {"[3]", "oops"} <= set(dead["record"].to_list())
    assert dead.height == metrics.dead_letters == _N_BAD


def test_dead_letters_alone() -> None:
    """The dead-letter branch can be collected on its own."""
    dead, metrics = _garbage_stream().dead_letters().collect(return_metrics=True)
    assert dead.height == metrics.dead_letters == _N_BAD


# ---------------------------------------------------------------- wrong pipelines, at build


def test_unsupported_dtype_is_refused_with_a_clear_error() -> None:
    """Arrow has no 128-bit integers: say so with a vstream error naming the column,
    when the pipeline is built."""
    frame = pl.DataFrame({"ok": [1], "big": pl.Series([1], dtype=pl.Int128)})
    with pytest.raises(vs.VStreamError, match="big"):
        vs.from_polars(frame)


@pytest.mark.parametrize("schema", ["nonsense", {"a": "no such type"}])
def test_unreadable_schema(schema: Any) -> None:
    with pytest.raises(vs.SchemaError):
        vs.from_records([{"a": 1}], schema=schema)
    with pytest.raises(vs.SchemaError):
        vs.from_ndjson([b'{"a": 1}'], schema=schema)


@pytest.mark.parametrize("max_delay", ["soon", -1])
def test_bad_max_delay(max_delay: Any) -> None:
    with pytest.raises(vs.DurationError):
        vs.from_records([{"a": 1}], max_delay=max_delay)


def test_float_with_a_fraction_for_an_integer_field_is_a_dead_letter() -> None:
    # Arrow would turn 1.5 into 1 silently; 2.0 is an integer and stays, so do huge ints
    records = [{"a": 1}, {"a": 1.5}, {"a": 2.0}, {"a": 2**62 + 1}, {"a": -0.25}, {"a": None}]
    s = vs.from_records(records, schema={"a": pl.Int64})
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["a"].to_list() == [1, 2, 2**62 + 1, None]
    assert dead["record"].to_list() == ['{"a": 1.5}', '{"a": -0.25}']
    assert all("integer column" in r for r in dead["reason"])


@pytest.mark.parametrize("schema_given", [True, False], ids=["schema", "inferred"])
def test_int128_schema_is_refused_naming_the_column(schema_given: bool) -> None:
    """A schema with Int128 (given, or inferred from an int beyond Int64) is refused with
    a vstream error naming the column, not Arrow's "unsupported format string"."""
    records = [{"a": 1, "big": 2**64}]
    schema = {"a": pl.Int64, "big": pl.Int128} if schema_given else None
    with pytest.raises(vs.VStreamError, match="'big' \\(Int128\\)"):
        vs.from_records(records, schema=schema)


def test_records_that_do_not_fit_name_the_column() -> None:
    records = [{"ts": 1, "host": "a"}, {"ts": "later", "host": "b"}, {"ts": 3, "host": [1]}]
    s = vs.from_records(records, schema={"ts": pl.Int64, "host": pl.String})
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["ts"].to_list() == [1]
    reasons = dead["reason"].to_list()
    assert reasons[0].startswith("column 'ts' does not fit int64")
    assert reasons[1].startswith("column 'host' does not fit large_string")


# ---------------------------------------------------------------- NDJSON schema inference


@pytest.mark.parametrize(
    ("lines", "column", "first", "second"),
    [
        ([b'{"a": 1}', b"", b'{"a": "x"}'], "a", "int64 on line 1", "string on line 3"),
        (
            [b'{"b": true, "a": [1]}'] * 300 + [b"not json", b'{"a": {"c": 1}}'],
            "a",
            "list<item: int64> on line 1",
            "struct<c: int64> on line 302",
        ),
    ],
)
def test_ndjson_inference_that_meets_conflicting_types_names_the_column_and_lines(
    tmp_path: Path, lines: list[bytes], column: str, first: str, second: str
) -> None:
    """Not a raw ArrowTypeError: the column, a line of each type, and what to pass."""
    path = tmp_path / "conflict.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(vs.SchemaError) as info:
        vs.from_ndjson(lines)
    msg = str(info.value)
    assert f"column {column!r} is {first} but {second}" in msg
    assert "schema=" in msg
    with pytest.raises(vs.SchemaError, match=r"conflict\.ndjson"):
        vs.from_ndjson(path)


def test_ndjson_conflicting_types_with_a_schema_are_dead_letters() -> None:
    lines = [b'{"a": 1}', b'{"a": "x"}', b'{"a": {"c": 1}}', b'{"a": 3}']
    s = vs.from_ndjson(lines, schema={"a": pl.Int64})
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["a"].to_list() == [1, 3]
    assert dead["record"].to_list() == ['{"a": "x"}', '{"a": {"c": 1}}']


def test_ndjson_inference_over_lines_with_different_keys_around_a_bad_line() -> None:
    """Pieces of a block parsed apart (around a bad line) see different keys, in
    different orders: the schema is their union, missing keys are null."""
    lines = [b'{"a": 1, "b": 2}', b"oops", b'{"b": 3, "c": "x"}', b'{"c": "y", "a": 5}']
    s = vs.from_ndjson(lines)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main.columns == ["a", "b", "c"]
    assert main.rows() == [(1, 2, None), (None, 3, "x"), (5, None, "y")]
    assert dead["record"].to_list() == ["oops"]


# ---------------------------------------------------------------- damaged Parquet files


def _parquet_rows(path: Path, rows: int = 10_000) -> None:
    table = pa.table({"ts": list(range(rows)), "host": [f"h{i % 7}" for i in range(rows)]})
    pq.write_table(table, path, row_group_size=2_000)


def test_parquet_file_garbled_mid_run_names_the_file(tmp_path: Path) -> None:
    """A page of the 4th row group overwritten after the stream was built: the rows
    before it came out, then a SourceError names the file, the row and what to do."""
    path = tmp_path / "part-1.parquet"
    _parquet_rows(path)
    s = vs.from_parquet(path, batch_size=1_000)
    data = bytearray(path.read_bytes())
    at = pq.ParquetFile(path).metadata.row_group(3).column(0).data_page_offset
    data[at : at + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    seen: list[int] = []

    def drain() -> None:
        for batch in s.iter_batches():
            seen.extend(batch["ts"].to_list())

    with pytest.raises(vs.SourceError) as info:
        drain()
    assert seen == list(range(6_000))
    msg = str(info.value)
    assert repr(str(path)) in msg
    assert "after row 6,000" in msg
    assert "truncated or damaged" in msg
    assert "Restore the file or take it out of the input" in msg


def test_parquet_file_truncated_names_the_file(tmp_path: Path) -> None:
    good, cut = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _parquet_rows(good)
    _parquet_rows(cut)
    s = vs.from_parquet(tmp_path)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # after the build
    with pytest.raises(vs.SourceError, match=r"b\.parquet.*truncated or damaged"):
        s.collect()
    with pytest.raises(vs.SourceError, match=r"the footer of .*b\.parquet.*truncated"):
        vs.from_parquet(tmp_path)  # at build


@pytest.mark.parametrize("source", ["records", "ndjson"])
@pytest.mark.parametrize("batch_size", [1, 65_536])
def test_value_outside_an_enum_is_a_dead_letter(source: str, batch_size: int) -> None:
    """Polars turns a value that is not one of an Enum's categories into null without a
    word: that would lose it silently."""
    schema = {"level": pl.Enum(["info", "warn"]), "n": pl.Int64}
    rows = [
        {"level": "info", "n": 1},
        {"level": "debug", "n": 2},
        {"level": None, "n": 3},
        {"level": "warn", "n": 4},
    ]
    if source == "records":
        s = vs.from_records(rows, schema=schema, batch_size=batch_size)
    else:
        lines = [json.dumps(r).encode() for r in rows]
        s = vs.from_ndjson(lines, schema=schema, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["n"].to_list() == [1, 3, 4]
    assert main["level"].to_list() == ["info", None, "warn"]
    assert json.loads(dead["record"].item()) == rows[1]
    assert dead["reason"].item() == (
        "column 'level': 'debug' is not one of the Enum's categories ['info', 'warn']"
    )


def test_record_with_fractions_in_two_integer_columns_is_one_dead_letter() -> None:
    records = [{"a": 1.5, "b": 2.5}, {"a": 1, "b": 2}]
    s = vs.from_records(records, schema={"a": pl.Int64, "b": pl.Int64})
    (main, dead), metrics = vs.collect_all([s, s.dead_letters()], return_metrics=True)
    assert main.rows() == [(1, 2)]
    assert dead.height == metrics.dead_letters == 1
