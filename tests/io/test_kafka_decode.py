"""The Kafka decoder's Arrow checks without a broker: the numpy check of string and
binary columns (offsets that rise within the data, ASCII bytes) agrees with Arrow's full
validation, falls back to it for anything else, and a one-chunk column is handed on
without a copy. The broker-side behaviour (dead letters with their offsets) is in
test_kafka_source.py."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from vstream.io._kafka_decode import Decoder, _contiguous, _invalid_column, _valid_ascii_strings


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _with_buffers(arr: pa.Array, offsets: np.ndarray, data: bytes) -> pa.Array:
    """``arr``'s type and length over hand-made offsets and data (no validity bitmap)."""
    return pa.Array.from_buffers(
        arr.type, len(offsets) - 1, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)]
    )


def _fully_valid(arr: pa.Array) -> bool:
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


@pytest.mark.parametrize("typ", [pa.string(), pa.large_string(), pa.binary(), pa.large_binary()])
def test_ascii_strings_pass_without_full_validation(typ: pa.DataType) -> None:
    arr = pa.array(["host-1", "", "eu-west", "x"], typ)
    assert _valid_ascii_strings(arr)
    assert _valid_ascii_strings(arr.slice(1, 2))  # a slice reads its own offsets only
    assert _valid_ascii_strings(pa.array([], typ))
    # with nulls: the full validation (it also checks the declared null count)
    with_null = pa.array(["a", None], typ)
    assert not _valid_ascii_strings(with_null)
    assert _invalid_column(pa.table({"s": with_null})) == ""


def test_non_ascii_and_other_types_go_to_full_validation() -> None:
    # valid UTF-8 that is not ASCII: not proven here, the full validation accepts it
    accents = pa.array(["café", "naïve"], pa.large_string())
    assert not _valid_ascii_strings(accents)
    assert _invalid_column(pa.table({"s": accents})) == ""
    for other in (pa.array([1, 2]), pa.array([["a"]]), pa.array(["a"], pa.string_view())):
        assert not _valid_ascii_strings(other)


@pytest.mark.parametrize("kind", [np.int32, np.int64])
def test_falling_offsets_are_culprits(kind: type) -> None:
    # offsets past the data or negative: Arrow's cheap validate() (which the check
    # calls first, and from_buffers too) refuses them already
    typ = pa.string() if kind is np.int32 else pa.large_string()
    template = pa.array([""], typ)
    for offsets in ([0, 4, 2, 6], [2, 1, 6]):
        bad = _with_buffers(template, np.array(offsets, kind), b"abcdef")
        assert not _fully_valid(bad)  # Arrow agrees it is broken
        assert not _valid_ascii_strings(bad)
        reason = _invalid_column(pa.table({"host": bad}))
        assert reason.startswith("column 'host' holds invalid Arrow data"), reason


def test_invalid_utf8_is_a_culprit_and_bytes_are_not() -> None:
    data = b"ok\xff\xfe"
    offsets = np.array([0, 2, 4], np.int32)
    as_string = _with_buffers(pa.array([""]), offsets, data)
    as_binary = _with_buffers(pa.array([b""]), offsets, data)
    assert "invalid Arrow data" in _invalid_column(pa.table({"host": as_string}))
    assert _invalid_column(pa.table({"raw": as_binary})) == ""


def test_one_chunk_is_handed_on_without_a_copy() -> None:
    arr = pa.array(np.arange(1_000))
    one = _contiguous(pa.chunked_array([arr]))
    assert one.buffers()[1].address == arr.buffers()[1].address
    two = _contiguous(pa.chunked_array([arr, arr]))
    assert two.to_pylist() == arr.to_pylist() * 2


def test_decoded_arrow_message_keeps_the_payload_memory() -> None:
    """One message's batch is read in place from its payload (IPC is zero-copy): the
    column's data lies inside the bytes object the client gave."""
    table = pa.table({"ts": np.arange(100, dtype=np.int64), "host": ["h"] * 100})
    payload = _ipc(table)
    dec = Decoder("arrow", table.schema, [], 1 << 20)
    got = dec.decode("t", 0, [None], [payload], None)
    assert got.dead is None
    assert got.batch is not None
    assert got.batch.to_pydict() == table.to_pydict()
    start = pa.py_buffer(payload).address
    address = got.batch.column(0).buffers()[1].address
    assert start <= address < start + len(payload)
