"""Python dicts as a source: a reader thread buffers rows into Arrow batches."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._duration import Duration, wall_seconds
from vstream.errors import PipelineError, SchemaError, SourceError
from vstream.io._schema import (
    SchemaLike,
    enum_categories,
    enum_misfits,
    to_arrow_schema,
    unnamable,
)
from vstream.io._utf8 import NOT_UTF8
from vstream.io.base import (
    Reader,
    Source,
    SplitPosition,
    SyncReader,
    buffered_reader,
    dead_letter_batch,
    row_position,
    sample_live,
)
from vstream.io.memory import check_batch_size

__all__ = ["RecordsSource", "convert_rows", "max_delay_seconds"]

_INFER_ROWS = 1_000


def max_delay_seconds(max_delay: Duration | float, where: str) -> float:
    return wall_seconds(max_delay, f"{where} max_delay")


def _record_text(rec: object) -> str:
    try:
        return json.dumps(rec, default=str)
    except (TypeError, ValueError):
        return repr(rec)


_CONVERT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def _to_struct(rows: list[Any], struct: pa.StructType) -> pa.StructArray:
    # a struct array refuses anything but a dict (str, list, tuple) in C, unlike
    # RecordBatch.from_pylist, and is faster (4.0 M vs 2.8 M dicts/s here)
    return pa.array(rows, type=struct)


def _fractions(rows: list[Any], arr: pa.StructArray, ints: list[str]) -> list[tuple[int, str]]:
    """Rows where a float with a fraction was given for an integer field.

    Arrow's conversion turns 1.5 into 1 without a word. Reading the integer fields once
    more as Float64 (Polars' dict reader, ~0.06 µs a value) and comparing finds them:
    an integer gives the same float both ways, even beyond 2**53; 1.5 gives 1.5 and 1.0.
    """
    try:
        as_float = pl.from_dicts(rows, schema={n: pl.Float64 for n in ints})
    except Exception:
        return _fractions_exact(rows, ints)
    if as_float.height != len(rows):  # Polars read some non-dict rows as no row at all
        return _fractions_exact(rows, ints)
    found: list[tuple[int, str]] = []
    for name in ints:
        got = pl.Series(arr.field(name)).cast(pl.Float64)
        differs = (got != as_float.get_column(name)).fill_null(False)
        found.extend((int(k), name) for k in differs.arg_true())
    return sorted(found)


def _fractions_exact(rows: list[Any], ints: list[str]) -> list[tuple[int, str]]:
    """:func:`_fractions` for rows Polars cannot read: a decimal conversion refuses
    every Python float, so bisecting finds the rows holding floats, and only those with
    a fraction are refused (2.0 is fine)."""
    dec = pa.struct([(n, pa.decimal128(38, 0)) for n in ints])
    found: list[tuple[int, str]] = []
    stack = [(0, len(rows))]
    while stack:
        lo, hi = stack.pop()
        try:
            pa.array(rows[lo:hi], type=dec)
            continue
        except _CONVERT_ERRORS:
            pass
        if hi - lo == 1:
            rec = rows[lo]
            for name in ints:
                v = rec.get(name) if isinstance(rec, dict) else None
                if isinstance(v, float) and not v.is_integer():
                    found.append((lo, name))
                    break
        else:
            mid = (lo + hi) // 2
            stack.append((mid, hi))
            stack.append((lo, mid))
    return found


def _misfit(rec: dict[Any, Any], schema: pa.Schema, exc: BaseException) -> str:
    """Why a dict does not fit ``schema``, naming the first column whose value does not."""
    for field in schema:
        try:
            pa.array([rec.get(field.name)], type=field.type)
        except _CONVERT_ERRORS as err:
            if isinstance(err, UnicodeError) or "utf8" in str(err).lower():
                return f"column {field.name!r} {NOT_UTF8}"
            return f"column {field.name!r} does not fit {field.type}: {err}"
    return f"does not fit the schema: {exc}"


def convert_rows(
    rows: list[Any], schema: pa.Schema, step: str, enums: Mapping[str, pa.Array] | None = None
) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Rows to a batch of ``schema``; rows that do not fit go to a dead-letter batch.

    The whole list converts in one call; only when that fails is it bisected, so the
    cost of finding k bad rows is about k·log(n) small conversions, not n. ``None``
    records come back as null structs and are dead-lettered from the validity mask.
    Arrow's conversion checks every string (a ``str`` with lone surrogates, ``bytes``
    that are not UTF-8) as it goes, so no invalid UTF-8 reaches the batch; such a row
    is dead-lettered with a reason naming its column. So is a value of an ``Enum``
    column (``enums``: its categories) that is not one of its categories.
    """
    struct = pa.struct(list(schema))
    try:
        pieces = [(0, _to_struct(rows, struct))]
        refused: list[tuple[int, str]] = []
    except _CONVERT_ERRORS:
        pieces, refused = [], []
        stack = [(0, len(rows))]
        while stack:
            lo, hi = stack.pop()
            try:
                pieces.append((lo, _to_struct(rows[lo:hi], struct)))
            except _CONVERT_ERRORS as exc:
                if hi - lo == 1:
                    rec = rows[lo]
                    reason = (
                        _misfit(rec, schema, exc)
                        if isinstance(rec, dict)
                        else f"not a dict but {type(rec).__name__}"
                    )
                    refused.append((lo, reason))
                else:
                    mid = (lo + hi) // 2
                    stack.append((mid, hi))  # pushed first so the left half is done first
                    stack.append((lo, mid))
    ints = [f.name for f in schema if pa.types.is_integer(f.type)]
    good: list[pa.RecordBatch] = []
    for start, arr in pieces:
        keep = np.asarray(arr.is_valid())
        refused.extend((start + int(k), "not a dict but NoneType") for k in np.flatnonzero(~keep))
        if ints:
            for row, name in _fractions(rows[start : start + len(arr)], arr, ints):
                if keep[row]:  # one dead letter a row, however many columns are wrong
                    reason = f"{name!r} is an integer column, got a fraction"
                    refused.append((start + row, reason))
                    keep[row] = False
        if not keep.all():
            arr = arr.filter(pa.array(keep))
        good.append(pa.RecordBatch.from_struct_array(arr))
    if not good:  # every row refused
        batch = pa.RecordBatch.from_pylist([], schema=schema)
    else:
        batch = pa.concat_batches(good) if len(good) != 1 else good[0]
    if batch.schema != schema:
        batch = batch.cast(schema)
    if enums:
        bad, reasons = enum_misfits(batch, enums)
        if bad.size:
            gone = np.zeros(len(rows), dtype=np.bool_)
            gone[[k for k, _ in refused]] = True
            kept = np.flatnonzero(~gone)  # the batch's rows, as indices of ``rows``
            refused.extend(zip(kept[bad].tolist(), reasons, strict=True))
            keep = np.ones(batch.num_rows, dtype=np.bool_)
            keep[bad] = False
            batch = batch.filter(pa.array(keep))
    if not refused:
        return batch, None
    refused.sort()
    dead = dead_letter_batch(
        [_record_text(rows[k]) for k, _ in refused], [r for _, r in refused], step
    )
    return batch, dead


def infer_records_schema(sample: list[Any]) -> pa.Schema:
    """The schema of a sample of dicts: every key seen, types unified as Polars does."""
    dicts = [r for r in sample if isinstance(r, dict)]
    if not dicts:
        msg = (
            "from_records cannot infer a schema: the first records are not dicts or there "
            "are none; pass schema={'ts': pl.Int64, ...}"
        )
        raise SourceError(msg)
    try:
        inferred = pl.from_dicts(_inferable(dicts), infer_schema_length=None).schema
    except Exception as exc:
        msg = (
            f"from_records cannot infer a schema from the first {len(dicts)} records "
            f"({exc}); pass schema={{...}}"
        )
        raise SourceError(msg) from exc
    named = {n: dt for n, dt in inferred.items() if not unnamable(n)}
    if not named:
        msg = "from_records cannot infer a schema: no key of the first records can name a column"
        raise SourceError(msg)
    try:
        return to_arrow_schema(named)
    except SchemaError as exc:
        msg = f"from_records cannot infer a schema from the first {len(dicts)} records: {exc}"
        raise SourceError(msg) from exc


def _inferable(dicts: list[dict[Any, Any]]) -> list[dict[Any, Any]]:
    """The dicts Polars can read, found by bisection when some cannot (a key or a string
    that is not valid UTF-8): those are dead-lettered at run time, they do not decide the
    schema."""
    try:
        pl.from_dicts(dicts, infer_schema_length=None)
        return dicts
    except Exception:
        pass
    kept: list[dict[Any, Any]] = []
    stack = [(0, len(dicts))]
    while stack:
        lo, hi = stack.pop()
        try:
            pl.from_dicts(dicts[lo:hi], infer_schema_length=None)
            kept.extend(dicts[lo:hi])
        except Exception:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                stack.append((mid, hi))
                stack.append((lo, mid))
    return kept or dicts


class RecordsSource(Source):
    """Iterable of dicts, buffered by a reader thread; one split.

    A position is the number of records handed out (rows and dead letters). A list (any
    sequence) or a function returning a fresh iterable can be replayed: a resumed read
    iterates again and passes over the records before the position. A list is all there,
    so its batches are cut by count only (``max_delay`` does not apply): a resumed read
    gives the batches of a full read.
    """

    def __init__(
        self,
        records: Iterable[dict[str, Any]] | Callable[[], Iterable[dict[str, Any]]],
        schema: SchemaLike | None,
        batch_size: int,
        max_delay: Duration | float,
        bounded: bool | None,
    ) -> None:
        self._batch_size = check_batch_size(batch_size, "from_records")
        self._max_delay = max_delay_seconds(max_delay, "from_records")
        self._factory = (
            records if callable(records) and not isinstance(records, Iterable) else None
        )
        if self._factory is None and not isinstance(records, Iterable):
            kind = type(records).__name__
            msg = (
                f"from_records takes an iterable of dicts or a function returning one, got {kind}"
            )
            raise PipelineError(msg)
        first = self._factory() if self._factory is not None else records
        self.bounded = bounded if bounded is not None else isinstance(first, Sized)
        # a list (any sequence) can be read again; a plain iterator only once
        self._sequence = first if isinstance(first, Sequence) else None
        self._peeked: list[Any] = []
        self._iter: Iterator[Any] | None = None
        if schema is None and self._sequence is not None:
            # the sample does not depend on batch_size, so neither does the schema
            it = iter(first)  # type: ignore[arg-type]
            self._peeked = list(itertools.islice(it, _INFER_ROWS))
            self._iter = it
            self._schema = infer_records_schema(self._peeked)
        elif schema is None:
            # a live iterable: the sample closes max_delay after its first record, as
            # the first batch does
            live = iter(first)  # type: ignore[arg-type]
            sample, self._iter = sample_live(live, self._max_delay, _INFER_ROWS)
            self._schema = infer_records_schema(sample)
        else:
            self._schema = to_arrow_schema(schema)
            self._iter = iter(first)  # type: ignore[arg-type]
        self._used = False
        self.replayable = self._sequence is not None or self._factory is not None
        self.label = f"from_records(batch_size={batch_size})"

    def splits(self) -> list[str]:
        return ["records"]

    def schema(self) -> pa.Schema:
        return self._schema

    def _rows(self) -> Iterator[Any]:
        if self._used and self._sequence is not None:
            return iter(self._sequence)
        if self._used:
            if self._factory is None:
                msg = (
                    "from_records reads a one-shot iterator that an earlier run consumed; "
                    "pass a function returning a fresh iterable to run the stream again"
                )
                raise SourceError(msg)
            return iter(self._factory())
        self._used = True
        assert self._iter is not None
        return itertools.chain(self._peeked, self._iter)

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
        skip = 0 if points[0] is None else row_position(points[0], self.label)
        rows_iter = self._rows()
        schema = self._schema
        enums = enum_categories(schema)
        return buffered_reader(
            rows_iter,
            lambda rows: convert_rows(rows, schema, "from_records", enums),
            batch_size=self._batch_size,
            max_delay=None if self._sequence is not None else self._max_delay,
            name="vstream-from_records",
            skip=skip,
        )
