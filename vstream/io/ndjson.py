"""Newline-delimited JSON as a source; whole blocks are parsed at once by pyarrow.json."""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, Sized
from typing import IO, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from vstream._duration import Duration
from vstream.errors import PipelineError, SchemaError, SourceError
from vstream.io._schema import (
    SchemaLike,
    enum_categories,
    enum_misfits,
    to_arrow_schema,
    without_unnamable,
)
from vstream.io._utf8 import drop_rows, invalid_segments, utf8_culprit
from vstream.io.base import (
    Data,
    Reader,
    Source,
    SourceEvent,
    SplitEnd,
    SplitPosition,
    SyncReader,
    ThreadedReader,
    buffered_reader,
    dead_letter_batch,
    row_position,
    sample_live,
    split_root,
)
from vstream.io.memory import check_batch_size
from vstream.io.parquet import expand_paths
from vstream.io.records import max_delay_seconds

__all__ = ["NdjsonSource", "json_schema", "parse_ndjson"]

_BLOCK = 4 << 20
#: lines of an iterable that a schema is inferred from
_INFER_LINES = 1_000
_ROW_SUFFIX = re.compile(r" in row \d+$")
_STEP = "from_ndjson"


def _json_type(t: pa.DataType, column: str) -> pa.DataType:
    """The type pyarrow.json parses a column of type ``t`` as, which a cast then turns
    into ``t``: it has no conversion to large lists (Polars' ``List``), durations or
    dictionaries (``Enum``)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_json_type(t.value_type, column))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_json_type(f.type, column)) for f in t])
    if pa.types.is_duration(t):
        return pa.int64()
    if pa.types.is_dictionary(t):
        return _json_type(t.value_type, column)
    if (
        pa.types.is_null(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
        or pa.types.is_decimal(t)
    ):
        return t
    msg = (
        f"{_STEP} cannot read column {column!r} as {t} from JSON; declare it with a type "
        "JSON can give (a list for an array: pl.List instead of pl.Array; a struct for an "
        "object; numbers, strings, booleans, dates and datetimes)"
    )
    raise SchemaError(msg)


def json_schema(schema: pa.Schema) -> pa.Schema:
    """The schema pyarrow.json parses into before a cast to ``schema`` (see
    :func:`_json_type`); raises SchemaError naming a column JSON cannot give."""
    return pa.schema([f.with_type(_json_type(f.type, f.name)) for f in schema])


def _read(data: bytes, schema: pa.Schema | None) -> pa.Table:
    parse = (
        pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        if (schema is not None)
        else pj.ParseOptions()
    )
    return pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 16)),
        parse_options=parse,
    )


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def _line_spans(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of every line of ``buf`` (split at '\\n', a trailing '\\r' left out)."""
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [buf.size]))
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    return starts, ends - cr


def _line_stats(data: bytes, blanked: np.ndarray | None = None) -> tuple[int, bool]:
    """(number of non-empty lines, whether each starts with '{' and ends with '}'),
    vectorized over the bytes: a block passes without looking at its lines one by one.
    Lines numbered in ``blanked`` hold spaces only and do not count."""
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _line_spans(buf)
    keep = ends > starts
    if blanked is not None:
        keep[blanked] = False
    starts, ends = starts[keep], ends[keep]
    objects = bool((buf[starts] == 123).all() and (buf[ends - 1] == 125).all())
    return int(starts.size), objects


class _NotOneObject(ValueError):
    pass


def _segment(lines: list[bytes], schema: pa.Schema | None) -> pa.Table:
    data = b"\n".join(lines)
    n, objects = _line_stats(data)
    if not objects:
        raise _NotOneObject("not a JSON object")
    table = _read(data, schema)
    if table.num_rows != n:
        raise _NotOneObject("more than one JSON value on the line")
    return table


# a failing block is bisected in pieces of this many lines, so one bad line does not
# make every level of the bisection re-parse the whole block
_PIECE = 256

#: a byte order mark, allowed (and dropped) at the start of a line
_BOM = b"\xef\xbb\xbf"

#: a dead letter: (byte offset of its line in the block, the line as text, the reason)
_Dead = tuple[int, str, str]


def _invalid_utf8_lines(data: bytes) -> tuple[bytes, list[_Dead], np.ndarray | None]:
    """The block with its lines that are not valid UTF-8 blanked out (so they are
    skipped as blank lines and the rest parses in one call), and those lines as dead
    letters whose reason names the field at fault, and the numbers of those lines.

    JSON text is UTF-8 (RFC 8259): the whole line is checked, keys included, so no
    string pyarrow.json takes from a checked line can be invalid.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    # the whole block first (a '\n' is never inside a multi-byte character, so a valid
    # block has valid lines): 0.1-0.8 ms for 8 MB here, against 9-12 ms line by line
    if invalid_segments(np.array([0, buf.size], dtype=np.int64), buf) is None:
        return data, [], None
    starts, ends = _line_spans(buf)
    bad = invalid_segments(np.append(starts, buf.size), buf)
    if bad is None:
        return data, [], None
    cleaned = bytearray(data)
    dead: list[_Dead] = []
    blanked = np.flatnonzero(bad)
    for i in blanked.tolist():
        lo, hi = int(starts[i]), int(ends[i])
        raw = data[lo:hi]
        dead.append((lo, raw.decode("utf-8", errors="replace"), utf8_culprit(raw.strip())))
        cleaned[lo:hi] = b" " * (hi - lo)
    return bytes(cleaned), dead, blanked


def _content(line: bytes) -> bytes:
    """A line without the whitespace and the byte order mark around it (empty: blank)."""
    return line.strip().removeprefix(_BOM).strip()


def parse_ndjson(
    data: bytes, schema: pa.Schema | None, enums: Mapping[str, pa.Array] | None = None
) -> tuple[pa.Table, pa.RecordBatch | None]:
    """Parse a block of NDJSON; malformed lines come back as dead letters, in order.

    A line must hold exactly one JSON object, in valid UTF-8 (a byte order mark before
    it is dropped). The block parses in one call; only a failing block is split into
    lines and bisected, piece by piece, so k bad lines cost about k·log(256) small
    parses. Lines that are not valid UTF-8 are found first, over the whole block at
    once, and blanked out before parsing.

    A value of an ``Enum`` column (``enums``: its categories) that is not one of its
    categories is a dead letter too (after the others: the row as parsed, as JSON).

    Without a schema, types that cannot be unified (a column that is a number on one
    line and a string on another) raise :class:`~vstream.errors.SchemaError` naming the
    column and both lines.
    """
    declared = schema
    if schema is not None:
        schema = json_schema(schema)
    table, dead = _parse(data, schema)
    if declared is not None and table.schema != declared:
        table = table.cast(declared)
    if enums:
        rows, reasons = enum_misfits(table, enums)
        table, more = drop_rows(table, rows, reasons, _STEP)
        if more is not None:
            dead = more if dead is None else pa.concat_batches([dead, more])
    return table, dead


def _parse(data: bytes, schema: pa.Schema | None) -> tuple[pa.Table, pa.RecordBatch | None]:
    if data.startswith(_BOM):
        data = b"   " + data[3:]  # same length: offsets and line numbers stay
    if not data.strip():
        return (_empty(schema) if schema is not None else pa.table({})), None
    data, dead, blanked = _invalid_utf8_lines(data)
    if not data.strip():  # every line was refused
        return (_empty(schema) if schema is not None else pa.table({})), _dead_batch(dead)
    n, objects = _line_stats(data, blanked)
    if objects:
        try:
            table = _read(data, schema)
            if table.num_rows == n:
                return table, _dead_batch(dead)
        except pa.ArrowInvalid:
            pass
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _line_spans(buf)
    spans: list[tuple[int, int]] = []
    lines: list[bytes] = []
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        content = _content(data[lo:hi])
        if content:
            spans.append((lo, hi))
            lines.append(content)
    good: list[tuple[int, pa.Table]] = []  # (index of its first line, rows)
    for first in range(0, len(lines), _PIECE):
        stack = [(first, min(first + _PIECE, len(lines)))]
        while stack:
            lo, hi = stack.pop()
            try:
                good.append((lo, _segment(lines[lo:hi], schema)))
            except (pa.ArrowInvalid, _NotOneObject) as exc:
                if hi - lo == 1:
                    s, e = spans[lo]
                    text = data[s:e].decode("utf-8", errors="replace")
                    dead.append((s, text, _ROW_SUFFIX.sub("", str(exc))))
                else:
                    mid = (lo + hi) // 2
                    stack.append((mid, hi))
                    stack.append((lo, mid))
    if schema is None:
        if not good:
            return pa.table({}), _dead_batch(dead)
        schema = _unified(good, lambda piece, row: _line_of(data, spans, good[piece][0] + row))
        good = [(lo, _conform(t, schema)) for lo, t in good]
    tables = [t for _, t in good]
    table = pa.concat_tables(tables).combine_chunks() if tables else _empty(schema)
    return table, _dead_batch(dead)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the columns of ``schema``, in its order and types; a column the
    table's lines did not have is null (pieces of a block may see different keys)."""
    if table.schema == schema:
        return table
    have = set(table.column_names)
    return pa.table(
        [
            table.column(f.name).cast(f.type) if f.name in have else pa.nulls(len(table), f.type)
            for f in schema
        ],
        schema=schema,
    )


def _dead_batch(dead: list[_Dead]) -> pa.RecordBatch | None:
    if not dead:
        return None
    dead.sort(key=lambda d: d[0])
    return dead_letter_batch([d[1] for d in dead], [d[2] for d in dead], _STEP)


def _unified(parts: list[tuple[int, pa.Table]], line_of: Callable[[int, int], int]) -> pa.Schema:
    """One schema for tables parsed apart, or a SchemaError naming a column whose types
    cannot be unified and a line of each type (``line_of(piece, row)``)."""
    try:
        return pa.unify_schemas([t.schema for _, t in parts], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    seen: dict[str, tuple[pa.DataType, int]] = {}
    for piece, (_, t) in enumerate(parts):
        for field, col in zip(t.schema, t.columns, strict=True):
            valid = np.flatnonzero(np.asarray(col.is_valid()))
            if not valid.size:
                continue
            line = line_of(piece, int(valid[0]))
            if field.name not in seen:
                seen[field.name] = (field.type, line)
                continue
            kind, at = seen[field.name]
            try:
                pa.unify_schemas(
                    [pa.schema([(field.name, kind)]), pa.schema([field])],
                    promote_options="permissive",
                )
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                msg = (
                    f"{_STEP} cannot infer a schema: column {field.name!r} is {kind} on "
                    f"line {at} but {field.type} on line {line}; pass "
                    f"schema={{{field.name!r}: <its type>, ...}} (lines whose value does not "
                    "fit it then go to dead_letters())"
                )
                raise SchemaError(msg) from None
    msg = f"{_STEP} cannot infer one schema for the first lines; pass schema={{...}}"
    raise SchemaError(msg)


def _line_of(data: bytes, spans: list[tuple[int, int]], k: int) -> int:
    """1-based line number of the ``k``-th non-blank line of ``data``."""
    return data.count(b"\n", 0, spans[k][0]) + 1


def _blocks(
    f: IO[bytes] | IO[str], block: int, prefix: bytes = b"", start: int = 0
) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, bytes) blocks of whole lines from ``f``, whose next bytes are
    ``prefix`` and then what ``f.read`` gives; offsets count from ``start``.

    The block at an offset is the bytes up to the last newline within the first
    ``k * block`` bytes from there, for the least ``k`` that holds one (all that is left
    when none does): it depends on the offset and the data only, never on how much was
    read before, so a read started at a block's offset gives the blocks a read from the
    start gives after it.
    """
    buf = bytearray(prefix)  # grows in place: a reader of short reads stays linear
    pos = start
    eof = False
    while True:
        size = block
        searched = 0  # buf[:searched] holds no newline
        while True:
            while not eof and len(buf) < size:
                chunk = f.read(size - len(buf))
                if not chunk:
                    eof = True
                    break
                buf += chunk.encode() if isinstance(chunk, str) else chunk
            nl = buf.rfind(b"\n", searched, size)
            if nl >= 0:
                cut = nl + 1
                break
            if eof and len(buf) <= size:
                cut = len(buf)
                break
            searched, size = size, size + block
        if not cut:
            return
        yield pos, bytes(buf[:cut])
        pos += cut
        del buf[:cut]


class NdjsonSource(Source):
    """NDJSON from files (a split each), a file object, or an iterable of lines.

    Files and lists (any sequence) of lines can be replayed. In a file, a position is
    ``[offset, rows]``: the byte offset of the block to go on with and the rows of that
    block handed out already (a block is parsed at once and may give several batches;
    after its last one the position is ``[end of the block, 0]``). A resumed read starts
    at that offset and parses that one block again. For lines, a position is the number
    of lines handed out (blank ones too); a list is all there, so its batches are cut by
    count only (``max_delay`` does not apply).
    """

    def __init__(
        self,
        source: str
        | os.PathLike[str]
        | list[str | os.PathLike[str]]
        | IO[bytes]
        | IO[str]
        | Iterable[bytes | str],
        schema: SchemaLike | None,
        batch_size: int,
        max_delay: Duration | float,
        bounded: bool | None,
    ) -> None:
        self._batch_size = check_batch_size(batch_size, _STEP)
        self._max_delay = max_delay_seconds(max_delay, _STEP)
        self._files: list[str] | None = None
        self._fileobj: Any = None
        self._lines: Iterator[bytes | str] | None = None
        self._peeked: list[bytes | str] = []
        self._sequence: Sequence[bytes | str] | None = None
        self._used = False
        given = to_arrow_schema(schema) if schema is not None else None
        if given is not None:
            json_schema(given)  # a column JSON cannot give is refused now, not per block
        sample = b""
        if isinstance(source, str | os.PathLike) or (
            isinstance(source, list)
            and source
            and isinstance(source[0], str | os.PathLike)
            and not isinstance(source[0], bytes)
            and os.path.exists(os.fspath(source[0]))
        ):
            self._files = expand_paths(source, ".ndjson")
            self.split_root = split_root(source, self._files)
            self.bounded = True
            self.replayable = True
            shown = os.fspath(source) if not isinstance(source, list) else "[...]"
            self.label = f"from_ndjson({shown}, {len(self._files)} file(s))"
            if given is None:
                with open(self._files[0], "rb") as f:
                    sample = next(_blocks(f, 1 << 20), (0, b""))[1]
        elif hasattr(source, "read"):
            self._fileobj = source
            self.bounded = True
            self.replay_hint = "pass a path"
            self.label = "from_ndjson(file object)"
            if given is None:
                # keep every byte inference reads: a file object cannot be rewound in general
                head = b""
                while b"\n" not in head:
                    chunk = source.read(1 << 20)
                    if not chunk:
                        break
                    head += chunk.encode() if isinstance(chunk, str) else chunk
                cut = head.rfind(b"\n")
                sample = head[: cut + 1] if cut >= 0 else head
                self._prefix = head
        elif isinstance(source, Iterable) and not isinstance(source, bytes):
            self.bounded = bounded if bounded is not None else isinstance(source, Sized)
            lines_in = cast("Iterable[bytes | str]", source)
            # a list (any sequence) can be read again; a plain iterator only once
            self._sequence = lines_in if isinstance(lines_in, Sequence) else None
            it = iter(lines_in)
            if given is None and self._sequence is not None:
                # the sample does not depend on batch_size, so neither does the schema
                self._peeked = list(itertools.islice(it, _INFER_LINES))
                sample = b"\n".join(_as_bytes(x) for x in self._peeked)
            elif given is None:
                # a live iterable: the sample closes max_delay after its first line, as
                # the first batch does
                peeked, it = sample_live(it, self._max_delay, _INFER_LINES)
                sample = b"\n".join(_as_bytes(x) for x in peeked)
            self._lines = it
            self.replayable = self._sequence is not None
            self.replay_hint = "pass a list of lines (or a path)"
            self.label = f"from_ndjson(lines, batch_size={batch_size})"
        else:
            kind = type(source).__name__
            msg = f"from_ndjson takes a path, a file object or an iterable of lines, got {kind}"
            raise PipelineError(msg)
        if given is None:
            try:
                table, _ = parse_ndjson(sample, None)
            except SchemaError as exc:
                if self._files is None:
                    raise
                msg = f"{exc} (lines of {self._files[0]!r})"
                raise SchemaError(msg) from None
            given = without_unnamable(table.schema)
            if not len(given):
                msg = "from_ndjson cannot infer a schema from the first lines; pass schema={...}"
                raise SourceError(msg)
        self._schema = given
        self._enums = enum_categories(given)

    def splits(self) -> list[str]:
        return list(self._files) if self._files is not None else ["ndjson"]

    def schema(self) -> pa.Schema:
        return self._schema

    def _emit_block(
        self,
        put: Callable[[SourceEvent], bool],
        split: int,
        block: tuple[int, bytes],
        skip: int = 0,
    ) -> bool:
        """Parse a block and hand out its batches, each with the position after it; the
        block's dead letters go with its first event. ``skip`` rows were handed out."""
        off, data = block
        end = off + len(data)
        table, dead = parse_ndjson(data, self._schema, self._enums)
        if dead is not None and not dead.num_rows:
            dead = None
        if skip:
            table, dead = table.slice(skip), None
        batches = [rb for rb in table.to_batches(max_chunksize=self._batch_size) if rb.num_rows]
        if not batches:
            return put(Data(split, None, [end, 0], dead)) if dead is not None else True
        taken = skip
        for i, rb in enumerate(batches):
            taken += rb.num_rows
            last = i == len(batches) - 1
            if not put(Data(split, rb, [end, 0] if last else [off, taken], dead)):
                return False
            dead = None
        return True

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        points = self.resume_points(resume, splits)
        if not points:
            return SyncReader(iter(()))
        block = max(1 << 16, min(_BLOCK, self._batch_size * 128))
        if self._files is not None:
            files = self._files
            starts = {i: _file_position(p, self.label) for i, p in points.items()}

            def produce_files(put: Callable[[SourceEvent], bool]) -> None:
                for i, (off, skip) in starts.items():
                    with open(files[i], "rb") as f:
                        f.seek(off)
                        for k, blk in enumerate(_blocks(f, block, start=off)):
                            if not self._emit_block(put, i, blk, skip if k == 0 else 0):
                                return
                    if not put(SplitEnd(i)):
                        return

            return ThreadedReader(produce_files, name="vstream-from_ndjson")
        if self._fileobj is not None:
            if self._used:
                msg = (
                    "from_ndjson reads a file object that an earlier run consumed; "
                    "pass a path to run the stream twice"
                )
                raise SourceError(msg)
            self._used = True
            fobj = self._fileobj
            prefix = getattr(self, "_prefix", b"")

            def produce_file(put: Callable[[SourceEvent], bool]) -> None:
                for blk in _blocks(fobj, block, prefix):
                    if not self._emit_block(put, 0, blk):
                        return
                put(SplitEnd(0))

            return ThreadedReader(produce_file, name="vstream-from_ndjson")
        skip = 0 if points[0] is None else row_position(points[0], self.label)
        return self._open_lines(skip)

    def _open_lines(self, skip: int) -> Reader:
        if self._used and self._sequence is not None:
            lines: Iterator[bytes | str] = iter(self._sequence)
        elif self._used:
            msg = (
                "from_ndjson reads a one-shot iterable of lines that an earlier run consumed; "
                "pass a list to run the stream twice"
            )
            raise SourceError(msg)
        else:
            assert self._lines is not None
            lines = itertools.chain(self._peeked, self._lines)
        self._used = True
        schema, enums = self._schema, self._enums

        def convert(
            taken: list[bytes | str],
        ) -> tuple[pa.RecordBatch | None, pa.RecordBatch | None]:
            table, dead = parse_ndjson(b"\n".join(_as_bytes(x) for x in taken), schema, enums)
            return (pa.concat_batches(table.to_batches()) if table.num_rows else None), dead

        return buffered_reader(
            lines,
            convert,
            batch_size=self._batch_size,
            max_delay=None if self._sequence is not None else self._max_delay,
            name="vstream-from_ndjson",
            skip=skip,
        )


def _file_position(position: object, label: str) -> tuple[int, int]:
    """(byte offset, rows of its block handed out) from a checkpointed file position."""
    if position is None:
        return 0, 0
    if (
        isinstance(position, list | tuple)
        and len(position) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in position)
    ):
        return int(position[0]), int(position[1])
    msg = f"{label}: cannot resume from position {position!r}; expected [byte offset, rows]"
    raise SourceError(msg)


def _as_bytes(line: bytes | str) -> bytes:
    return line.encode() if isinstance(line, str) else bytes(line)
