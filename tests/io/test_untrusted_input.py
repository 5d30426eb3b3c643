"""Untrusted records and files (issue 16): strings that are not valid UTF-8 never reach
Polars (they crash it), they go to the dead letters with a reason naming the column and
the other rows go on; and whatever bytes or dicts a source is fed, the process survives
and every input row is either in the output or in the dead letters.

The fuzz tests run in a child process (this file run as a script:
``python tests/io/test_untrusted_input.py fuzz_ndjson``), so an input that crashes the
interpreter fails the test instead of killing pytest.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.io._schema import to_arrow_schema
from vstream.io._utf8 import NOT_UTF8, invalid_segments, invalid_utf8
from vstream.kernels.utf8 import inline_views_ascii, invalid_utf8_rows

#: the checkout whose vstream the child processes import (the one under test)
PACKAGE_ROOT = Path(vs.__file__).resolve().parent.parent

BAD = b"h\xff\xfe"  # the example: not UTF-8 at all
SCHEMA = {"ts": pl.Int64, "host": pl.String, "v": pl.Float64}
#: examples per fuzz test (``VSTREAM_FUZZ_EXAMPLES=1000`` for a long run)
FUZZ_EXAMPLES = int(os.environ.get("VSTREAM_FUZZ_EXAMPLES", "60"))


def _is_valid(b: bytes) -> bool:
    """The reference: Python's strict decoder."""
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _strings(values: list[bytes | None], dtype: pa.DataType | None = None) -> pa.Array:
    """An Arrow string array holding exactly these bytes (None: null), which Arrow's
    constructors would refuse for the invalid ones."""
    dtype = dtype or pa.string()
    sizes = [len(v or b"") for v in values]
    width = np.int64 if dtype == pa.large_string() else np.int32
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(width)
    validity = pa.array([v is not None for v in values]).buffers()[1]
    data = pa.py_buffer(b"".join(v or b"" for v in values))
    return pa.Array.from_buffers(dtype, len(values), [validity, pa.py_buffer(offsets), data])


# ============================================================= the UTF-8 kernel

#: byte strings rich in the edges of UTF-8: ASCII, 2-4 byte forms, overlong forms,
#: surrogates, code points above U+10FFFF, stray continuation bytes, truncations
_PIECES = st.sampled_from(
    [
        b"a",
        b"{",
        b"\xc3\xa9",  # é
        b"\xe2\x82\xac",  # €
        b"\xf0\x9f\x98\x80",  # 😀
        b"\xf4\x8f\xbf\xbf",  # U+10FFFF
        b"\xc0\xaf",  # overlong '/'
        b"\xc1\xbf",
        b"\xe0\x80\xaf",  # overlong
        b"\xe0\xa0\x80",  # U+0800, the first 3-byte form
        b"\xed\x9f\xbf",  # U+D7FF
        b"\xed\xa0\x80",  # U+D800, a surrogate
        b"\xed\xbf\xbf",  # U+DFFF
        b"\xee\x80\x80",  # U+E000
        b"\xf0\x80\x80\x80",  # overlong
        b"\xf0\x90\x80\x80",  # U+10000
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xf5\x80\x80\x80",
        b"\x80",
        b"\xbf",
        b"\xc3",  # truncated
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\xff",
        b"\xfe",
    ]
)
_BYTE_STRINGS = st.one_of(st.lists(_PIECES, max_size=6).map(b"".join), st.binary(max_size=12))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_BYTE_STRINGS, max_size=20))
def test_utf8_kernel_matches_pythons_decoder(values: list[bytes]) -> None:
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(np.int64)
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    expected = np.array([not _is_valid(v) for v in values], dtype=np.bool_)
    np.testing.assert_array_equal(invalid_utf8_rows(offsets, data), expected)
    # with the fast paths (all ASCII, Arrow's whole-array check) in front of it
    found = invalid_segments(offsets, data)
    np.testing.assert_array_equal(
        found if found is not None else np.zeros(len(values), np.bool_), expected
    )


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), _BYTE_STRINGS), min_size=1, max_size=20),
    padding=st.binary(min_size=16, max_size=16),
)
def test_inline_views_ascii_reads_only_the_text_of_each_view(
    values: list[bytes | None], padding: bytes
) -> None:
    """The string-view fast path against a reference over the views' own bytes, with
    garbage (non-ASCII) padding after each inline text, which must not count."""
    arr = _strings(values, pa.large_string()).cast(pa.large_binary()).cast(pa.binary_view())
    views = bytearray(np.frombuffer(arr.buffers()[1], np.uint8)[: 16 * len(values)].tobytes())
    expected = 0
    for i, v in enumerate(values):
        text = v or b""
        if len(text) > 12:
            expected = max(expected, 2) if text[:4].isascii() else 1
        else:
            end = 16 * i + 4 + len(text)
            views[end : 16 * (i + 1)] = padding[: 16 * (i + 1) - end]
            if not text.isascii():
                expected = 1
        if expected == 1:
            break
    got = inline_views_ascii(np.frombuffer(bytes(views), np.int32).reshape(-1, 4))
    assert got == expected


def test_utf8_kernel_never_reads_outside_its_buffers() -> None:
    """Damaged offsets mark their row invalid rather than being followed."""
    data = np.frombuffer(b"abcdef", dtype=np.uint8)
    offsets = np.array([0, 2, 1, 4, 100, -5, 6], dtype=np.int64)
    got = invalid_utf8_rows(offsets, data)
    assert got.tolist() == [False, True, False, True, True, True]
    assert invalid_segments(offsets, data) is not None


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), _BYTE_STRINGS), min_size=1, max_size=12),
    start=st.integers(0, 4),
    layout=st.sampled_from(["string", "large_string", "string_view", "struct", "list", "dict"]),
)
def test_invalid_rows_are_found_in_every_layout(
    values: list[bytes | None], start: int, layout: str
) -> None:
    """Flat, view, nested and dictionary-encoded strings, sliced: each row that holds an
    invalid string is named, and only those."""
    flat = _strings(values, pa.large_string() if layout == "large_string" else pa.string())
    bad = [v is not None and not _is_valid(v) for v in values]
    if layout == "string_view":
        arr = flat.view(pa.binary()).cast(pa.binary_view()).view(pa.string_view())
    elif layout == "struct":
        arr = pa.StructArray.from_arrays([flat, pa.array(range(len(values)))], names=["s", "i"])
    elif layout == "list":
        # row k holds values k and k + 1 (the last one holds its own only)
        n = len(values)
        idx = pa.array([j for k in range(n) for j in (k, k + 1) if j < n], pa.int32())
        offsets = pa.array([min(2 * k, 2 * n - 1) for k in range(n + 1)], pa.int32())
        arr = pa.ListArray.from_arrays(offsets, flat.take(idx))
        bad = [bad[k] or (k + 1 < n and bad[k + 1]) for k in range(n)]
    elif layout == "dict":
        arr = pa.DictionaryArray.from_arrays(pa.array(range(len(values)), pa.int32()), flat)
    else:
        arr = flat
    batch = pa.record_batch({"ok": pa.array(range(len(values))), "col": arr}).slice(start)
    rows, reasons = invalid_utf8(batch)
    assert rows.tolist() == [k - start for k in range(start, len(values)) if bad[k]]
    assert all("'col'" in r for r in reasons)


# ============================================================= NDJSON


def _lines_with_bad_utf8() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(all lines, the good ones, the ones not valid UTF-8)."""
    good = [b'{"ts": %d, "host": "h%d", "v": 1.5}' % (i, i % 3) for i in range(10)]
    good.append('{"ts": 10, "host": "caf\u00e9", "v": 2.0}'.encode())
    bad = [
        b'{"ts": 20, "host": "' + BAD + b'", "v": 1.0}',  # the example
        b'{"ts": 21, "host": "ok", "v": 1.0, "n\xc0\xaf": 1}',  # a key, overlong form
        b'{"ts": 22, "host": "\xed\xa0\x80", "v": 1.0}',  # a surrogate
    ]
    lines = [*good[:3], bad[0], *good[3:7], bad[1], bad[2], *good[7:]]
    return lines, good, bad


@pytest.mark.parametrize("schema", [SCHEMA, None], ids=["schema", "inferred"])
@pytest.mark.parametrize(("form", "batch_size"), [("path", 65_536), ("path", 2), ("lines", 3)])
def test_ndjson_line_that_is_not_utf8_is_a_dead_letter_naming_the_column(
    tmp_path: Path, form: str, batch_size: int, schema: dict[str, Any] | None
) -> None:
    lines, good, bad = _lines_with_bad_utf8()
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    arg: Any = path if form == "path" else lines
    s = vs.from_ndjson(arg, schema=schema, batch_size=batch_size)
    main, dead = vs.collect_all([s, s.dead_letters()])
    expected = pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=SCHEMA)
    assert main.select(list(SCHEMA)).to_dicts() == expected.to_dicts()
    assert dead["record"].to_list() == [b.decode("utf-8", "replace") for b in bad]
    reasons = dead["reason"].to_list()
    assert reasons[0] == f"column 'host' {NOT_UTF8}"
    assert reasons[1] == f"the key 'n\ufffd\ufffd' {NOT_UTF8}"
    assert reasons[2] == f"column 'host' {NOT_UTF8}"
    assert dead["step"].to_list() == ["from_ndjson"] * 3


def test_ndjson_lines_not_utf8_leave_the_good_lines_to_one_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Invalid lines are found over the whole block and blanked: the good lines still
    parse in one pyarrow.json call, never line by line (the bisecting fallback)."""
    from vstream.io import ndjson

    def no_fallback(*_: object) -> None:
        raise AssertionError("the line-by-line fallback ran")

    monkeypatch.setattr(ndjson, "_segment", no_fallback)
    lines = [b'{"ts": %d, "host": "h", "v": 1.0}' % i for i in range(5_000)]
    for k in range(0, 5_000, 97):
        lines[k] = b'{"ts": %d, "host": "%s", "v": 1.0}' % (k, BAD)
    table, dead = ndjson.parse_ndjson(b"\n".join(lines), to_arrow_schema(SCHEMA))
    assert dead is not None
    assert dead.num_rows == len(range(0, 5_000, 97))
    assert table.num_rows + dead.num_rows == 5_000


_CRASH_SCRIPT = r"""
import sys, polars as pl, vstream as vs
src = sys.argv[1]
s = vs.from_{kind}(src).with_columns(up=pl.col("host").str.to_uppercase())
main, dead = vs.collect_all([s, s.dead_letters()])
main.write_parquet(sys.argv[2])
back = pl.read_parquet(sys.argv[2])  # Polars refuses a file holding invalid UTF-8
print(back.height, dead.height, "|".join(back["up"].to_list()))
"""


@pytest.mark.parametrize("kind", ["ndjson", "parquet"])
def test_invalid_utf8_does_not_reach_polars_string_functions(tmp_path: Path, kind: str) -> None:
    """The issue's crash: in a child process, as it may kill the interpreter."""
    src = tmp_path / f"in.{kind}"
    if kind == "ndjson":
        src.write_bytes(b'{"host": "a"}\n{"host": "' + BAD + b'"}\n{"host": "b"}\n')
    else:
        pq.write_table(pa.table({"host": _strings([b"a", BAD, b"b"])}), src)
    out = tmp_path / "out.parquet"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    code = _CRASH_SCRIPT.replace("{kind}", kind)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["2", "1", "A|B"]


def test_ndjson_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    """A file saved with a BOM (Windows editors, PowerShell) loses no line; a BOM before
    a line further on (files concatenated) neither, whatever the batch size."""
    body = b'{"a": 1}\n{"a": 2}\n\xef\xbb\xbf{"a": 3}\n\xef\xbb\xbf\n{"a": 4}\n'
    path = tmp_path / "bom.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + body)
    for arg, batch_size in [(path, 65_536), (path, 1), (path.read_bytes().splitlines(), 2)]:
        for schema in ({"a": pl.Int64}, None):
            s = vs.from_ndjson(arg, schema=schema, batch_size=batch_size)
            main, dead = vs.collect_all([s, s.dead_letters()])
            assert main["a"].to_list() == [1, 2, 3, 4]
            assert dead.height == 0


# ============================================================= Parquet


def _parquet_with_bad_strings(path: Path) -> None:
    host = _strings([b"a", BAD, b"b", b"c", b"\xc3\xa9", b"d"])
    tags = pa.ListArray.from_arrays(
        pa.array([0, 1, 2, 3, 4, 5, 6], pa.int32()),
        _strings([b"x", b"y", b"z", b"\xe2\x82", b"w", b"v"]),
    )
    table = pa.table({"ts": list(range(6)), "host": host, "tags": tags})
    pq.write_table(table, path, row_group_size=4)


@pytest.mark.parametrize("batch_size", [65_536, 1, 4])
def test_parquet_rows_with_invalid_utf8_are_dead_letters(tmp_path: Path, batch_size: int) -> None:
    path = tmp_path / "bad.parquet"
    _parquet_with_bad_strings(path)
    s = vs.from_parquet(path, batch_size=batch_size)
    (main, dead), metrics = vs.collect_all([s, s.dead_letters()], return_metrics=True)
    assert main["ts"].to_list() == [0, 2, 4, 5]
    assert main["host"].to_list() == ["a", "b", "\u00e9", "d"]
    assert main.to_arrow().validate(full=True) is None
    assert dead["reason"].to_list() == [
        f"column 'host' {NOT_UTF8}",
        f"column 'tags' {NOT_UTF8}",
    ]
    records = [json.loads(r) for r in dead["record"].to_list()]
    assert records == [
        {"ts": 1, "host": "h\ufffd\ufffd", "tags": ["y"]},
        {"ts": 3, "host": "c", "tags": ["\ufffd"]},
    ]
    assert dead["step"].to_list() == ["from_parquet"] * 2
    assert metrics.dead_letters == 2


def test_parquet_invalid_utf8_resumes_from_a_checkpoint(tmp_path: Path) -> None:
    """Dead-lettered rows still count in the file position: a resumed read neither
    repeats nor loses a row."""
    path = tmp_path / "bad.parquet"
    _parquet_with_bad_strings(path)
    from vstream.io.base import SplitPosition
    from vstream.io.parquet import ParquetSource

    src = ParquetSource(path, batch_size=2)
    reader = src.open({0: SplitPosition(2)})
    ts: list[int] = []
    dead = 0
    while (event := reader.poll(5.0)) is not None:
        if getattr(event, "batch", None) is not None:
            ts.extend(event.batch["ts"].to_pylist())
        if getattr(event, "dead", None) is not None:
            dead += event.dead.num_rows
    assert ts == [2, 4, 5]
    assert dead == 1


@pytest.mark.parametrize("form", ["table", "ipc_stream", "paced"])
def test_arrow_rows_with_invalid_utf8_are_dead_letters(form: str) -> None:
    """Arrow data read from outside bytes (an IPC stream) is not checked by Arrow."""
    table = pa.table({"ts": [0, 1, 2], "host": _strings([b"a", BAD, b"b"])})
    if form == "ipc_stream":
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        s = vs.from_arrow(pa.ipc.open_stream(sink.getvalue()))
    elif form == "paced":
        s = vs.from_arrow(table, rate=1e6)
    else:
        s = vs.from_arrow(table, batch_size=2)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["host"].to_list() == ["a", "b"]
    assert dead["reason"].to_list() == [f"column 'host' {NOT_UTF8}"]
    assert dead["step"].to_list() == ["from_arrow"]


@pytest.mark.parametrize("kind", ["arrow", "parquet"])
def test_a_column_the_run_does_not_read_is_not_checked(tmp_path: Path, kind: str) -> None:
    """Columns no step reads are never converted to Polars, so their strings need no
    check (the check of unread columns cost Q1 ~150 ms of 270); the read ones are."""
    table = pa.table(
        {"ts": [0, 1, 2], "host": _strings([b"a", BAD, b"b"]), "note": _strings([BAD] * 3)}
    )
    if kind == "parquet":
        pq.write_table(table, tmp_path / "t.parquet")
        s = vs.from_parquet(tmp_path / "t.parquet")
    else:
        s = vs.from_arrow(table)
    # (a dead-letter branch reads every column, to show the whole record)
    with pytest.warns(UserWarning, match="1 records were refused"):
        main, metrics = s.select("ts", "host").collect(return_metrics=True)
    assert main["host"].to_list() == ["a", "b"]
    assert metrics.dead_letters == 1
    # reading every column: each row holds a bad "note"
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main.height == 0
    assert dead.height == 3


# ============================================================= records


def test_records_strings_that_are_not_utf8_are_dead_letters_naming_the_column() -> None:
    rows: list[Any] = [
        {"ts": 1, "host": "a"},
        {"ts": 2, "host": BAD},  # bytes that are not UTF-8
        {"ts": 3, "host": "\ud800"},  # a lone surrogate (surrogateescape'd input)
        {"ts": 4, "host": b"ok"},  # bytes that are UTF-8: taken as text
        {"ts": 5, "host": "b"},
    ]
    s = vs.from_records(rows, schema={"ts": pl.Int64, "host": pl.String})
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main["ts"].to_list() == [1, 4, 5]
    assert main["host"].to_list() == ["a", "ok", "b"]
    assert dead["reason"].to_list() == [f"column 'host' {NOT_UTF8}"] * 2


def test_records_with_a_key_that_is_not_utf8_do_not_stop_schema_inference() -> None:
    rows: list[Any] = [{"ts": 1, "host": "a"}, {"ts": 2, "\udcff": "x"}, {"ts": 3, "host": "b"}]
    s = vs.from_records(rows)
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main.columns == ["ts", "host"]
    assert main["ts"].to_list() == [1, 2, 3]  # an unknown key is not a fault
    assert dead.height == 0


def test_a_key_with_a_nul_character_names_no_column() -> None:
    """Arrow's C interface ends a name at NUL: Polars panicked (a BaseException) on
    such a column, or renamed it. Inferred, the key is left out (ignored as unknown
    keys are); given in a schema, it is refused naming it."""
    s = vs.from_records([{"a\x00b": 1, "c": 2}])
    assert s.collect().to_dicts() == [{"c": 2}]
    s = vs.from_ndjson([b'{"a\\u0000b": 1, "c": 2}'])
    assert s.collect().to_dicts() == [{"c": 2}]
    with pytest.raises(vs.SchemaError, match="NUL"):
        vs.from_records([{"c": 1}], schema={"a\x00b": pl.Int64, "c": pl.Int64})


# ============================================================= fuzz (in a child process)

#: the schemas the fuzz tests declare (or none: inferred): plain, and with an Enum, a
#: second integer column (a fraction in each is one dead letter) and a list
FUZZ_SCHEMAS: dict[str, dict[str, Any]] = {
    "plain": SCHEMA,
    "rich": {
        "ts": pl.Int64,
        "host": pl.Enum(["", "a", "b"]),
        "v": pl.Int64,
        "tags": pl.List(pl.String),
    },
}

_GOOD = st.fixed_dictionaries(
    {
        "ts": st.integers(-(2**62), 2**62),
        "host": st.one_of(st.sampled_from(["", "a", "b"]), st.text(max_size=8)),
        "v": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-9, 9)),
    },
    optional={"tags": st.lists(st.text(max_size=3), max_size=3)},
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _ndjson_line(draw: st.DrawFn) -> bytes:
    """One line (no newline inside): good, of a wrong shape, garbage, not UTF-8, huge,
    with a BOM or a NaN literal, or blank."""
    kind = draw(
        st.sampled_from(
            [
                "good",
                "good",
                "good",
                "json",
                "wrong",
                "bytes",
                "utf8",
                "huge",
                "bom",
                "nan",
                "blank",
            ]
        )
    )
    good = json.dumps(draw(_GOOD)).encode()
    if kind == "good":
        return good
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    if kind == "wrong":
        return json.dumps(
            {**json.loads(good), draw(st.sampled_from(["ts", "host", "v"])): draw(_JSON)}
        ).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b"")
    if kind == "utf8":
        cut = draw(st.integers(0, len(good)))
        return (good[:cut] + draw(_BYTE_STRINGS) + good[cut:]).replace(b"\n", b"")
    if kind == "huge":
        return json.dumps(
            {**json.loads(good), "host": "x" * draw(st.integers(66_000, 140_000))}
        ).encode()
    if kind == "bom":
        return b"\xef\xbb\xbf" + good
    if kind == "nan":
        return (
            good[:-1]
            + b', "w": '
            + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan"]))
            + b"}"
        )
    return draw(st.sampled_from([b"", b"   ", b"\t", b"\r", b"\xef\xbb\xbf"]))


def _is_row(line: bytes) -> bool:
    """A line that is a row: not blank (whitespace and a byte order mark only)."""
    return bool(line.strip().removeprefix(b"\xef\xbb\xbf").strip())


def _check_survivors(main: pl.DataFrame) -> None:
    """What came out is safe for Polars' string functions and for a Parquet file."""
    main.to_arrow().validate(full=True)
    strings = [c for c, dt in main.schema.items() if dt == pl.String]
    main.with_columns(pl.col(strings).str.to_uppercase()).select(pl.all().count())
    if strings:  # Polars refuses to read back a Parquet file holding invalid UTF-8
        buf = io.BytesIO()
        main.select(strings).write_parquet(buf)
        buf.seek(0)
        assert pl.read_parquet(buf).height == main.height


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    lines=st.lists(_ndjson_line(), max_size=30),
    blob=st.binary(max_size=200),
    form=st.sampled_from(["path", "lines"]),
    batch_size=st.sampled_from([1, 3, 512, 65_536]),
    typed=st.sampled_from([None, "plain", "rich"]),
)
def fuzz_ndjson(
    lines: list[bytes], blob: bytes, form: str, batch_size: int, typed: str | None
) -> None:
    """Random lines and a random blob of bytes: the run survives, and every line that is
    a row is either in the output or in the dead letters."""
    data = b"\n".join(lines) + b"\n" + blob
    rows = sum(_is_row(line) for line in data.split(b"\n"))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "in.ndjson"
        path.write_bytes(data)
        arg: Any = path if form == "path" else data.split(b"\n")
        try:
            schema = FUZZ_SCHEMAS.get(typed)  # type: ignore[arg-type]
            s = vs.from_ndjson(arg, schema=schema, batch_size=batch_size)
        except vs.VStreamError:  # no schema can be inferred from the first lines
            assert typed is None
            return
        main, dead = vs.collect_all([s, s.dead_letters()])
    assert main.height + dead.height == rows
    assert dead["reason"].null_count() == 0
    _check_survivors(main)


_RECORD = st.one_of(
    _GOOD,
    st.dictionaries(
        st.sampled_from(["ts", "host", "v", "\udcff", "a\x00b", "x"]),
        st.one_of(
            _JSON,
            st.binary(max_size=6),
            st.text(
                alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2
            ),
            st.integers(),
            st.floats(),
        ),
        max_size=4,
    ),
    _JSON,
)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    records=st.lists(_RECORD, min_size=1, max_size=30),
    batch_size=st.sampled_from([1, 4, 65_536]),
    typed=st.sampled_from([None, "plain", "rich"]),
)
def fuzz_records(records: list[Any], batch_size: int, typed: str | None) -> None:
    """Random dicts of wrong shapes, bytes, surrogates, huge ints and NaN: the run
    survives and every record is either in the output or in the dead letters."""
    try:
        schema = FUZZ_SCHEMAS.get(typed)  # type: ignore[arg-type]
        s = vs.from_records(records, schema=schema, batch_size=batch_size)
    except vs.VStreamError:  # no schema can be inferred from these records
        assert typed is None
        return
    main, dead = vs.collect_all([s, s.dead_letters()])
    assert main.height + dead.height == len(records)
    _check_survivors(main)


@pytest.mark.parametrize("target", ["fuzz_ndjson", "fuzz_records"])
def test_fuzz_sources_survive_and_account_for_every_row(target: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__, target],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


if __name__ == "__main__":
    {"fuzz_ndjson": fuzz_ndjson, "fuzz_records": fuzz_records}[sys.argv[1]]()


def test_records_with_an_empty_list_among_them_are_accounted_for_not_a_shape_error() -> None:
    """Found by the fuzz test: Polars' dict reader reads ``[]`` as no row at all, so the
    check for fractions in integer fields compared columns of different lengths and a
    ShapeError escaped. (Arrow reads ``[]`` as a record of no pairs: a row of nulls.)"""
    schema = {
        "ts": pl.Int64,
        "host": pl.Enum(["", "a"]),
        "v": pl.Int64,
        "tags": pl.List(pl.String),
    }
    rows = [{"ts": 0, "host": "", "v": 0.0}] * 2 + [None, []]
    s = vs.from_records(rows, schema=schema, batch_size=4)
    good, dead = vs.collect_all([s, s.dead_letters()])
    assert good["ts"].to_list() == [0, 0, None]
    assert dead["reason"].to_list() == ["not a dict but NoneType"]
