"""Broker payloads to Arrow batches, a whole micro-batch at once; bad ones to dead letters.

``json``: the payloads that pass the vectorized checks (not empty, not oversized, valid
UTF-8) are joined with newlines and parsed by one ``polars.read_ndjson`` call; only a
batch that fails is bisected to find its bad messages. ``arrow``: each payload is an
Arrow IPC stream. ``raw``: the payload bytes as a column.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
from polars.exceptions import PanicException, PolarsError

from vstream.io._utf8 import invalid_segments, utf8_culprit
from vstream.io.base import dead_letter_batch

__all__ = ["EXTRA_COLUMNS", "Decoder", "MqttFormat"]

MqttFormat = Literal["json", "arrow", "raw"]

#: the message attributes a source can add as columns, and their Polars types
EXTRA_COLUMNS: dict[str, pl.DataType] = {
    "topic": pl.String(),
    "qos": pl.Int8(),
    "retain": pl.Boolean(),
    "timestamp": pl.Datetime("ms", "UTC"),
}

#: a failing batch is bisected in pieces of this many payloads
_PIECE = 256
_SHOWN = 1_000  # characters of a bad payload kept in its dead letter


@dataclass(frozen=True)
class Decoder:
    """How the payloads of one source become rows.

    ``schema`` is the payload's Polars schema (None for ``raw``); ``extra`` the message
    attributes added as columns (:data:`EXTRA_COLUMNS`); ``step`` names the source in
    dead letters.

    Examples
    --------
    >>> from vstream.io.mqtt_decode import Decoder
    >>> import polars as pl
    >>> import pyarrow as pa
    >>> from vstream.io.mqtt_wal import WAL_SCHEMA
    >>> dec = Decoder("json", pl.Schema({"ts": pl.Int64}), ("topic",), 1 << 20, "from_mqtt")
    >>> raw = pa.table({"payload": [b'{"ts": 1}', b'{"ts": "x"}', b""],
    ...                 "topic": ["t/a", "t/b", "t/c"], "qos": pa.array([1, 1, 1], pa.int8()),
    ...                 "retain": [False] * 3, "mid": pa.array([1, 2, 3], pa.int32()),
    ...                 "timestamp": [0, 0, 0]}, schema=WAL_SCHEMA)
    >>> batch, dead = dec.decode(raw, 5)
    >>> batch.to_pylist()
    [{'ts': 1, 'topic': 't/a'}]
    >>> for reason in dead.column("reason").to_pylist():
    ...     print(reason)
    topic 't/b', message 5:1 (mid 2): column 'ts': cannot read 'x' as Int64
    topic 't/c', message 5:2 (mid 3): an empty payload (a null message), not a JSON object
    """

    format: MqttFormat
    schema: pl.Schema | None
    extra: tuple[str, ...]
    max_bytes: int
    step: str

    def output_schema(self) -> pl.Schema:
        """The Polars schema of the batches."""
        base = pl.Schema({"payload": pl.Binary()}) if self.schema is None else self.schema
        return pl.Schema({**base, **{name: EXTRA_COLUMNS[name] for name in self.extra}})

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the batches (as Polars hands them out)."""
        return pl.DataFrame(schema=self.output_schema()).to_arrow().schema

    def decode(
        self, raw: pa.Table, seq: int
    ) -> tuple[pa.RecordBatch | None, pa.RecordBatch | None]:
        """(rows, dead letters) of the raw messages of log entry ``seq``."""
        import pyarrow.compute as pc  # here, not at import vstream (~25 ms)

        raw = raw.combine_chunks()
        n = raw.num_rows
        payload = raw.column("payload").chunk(0) if n else pa.array([], pa.binary())
        reasons: dict[int, str] = {}
        lengths = np.asarray(pc.binary_length(payload).fill_null(0))
        if self.format != "raw":
            for k in np.flatnonzero(lengths == 0).tolist():
                reasons[k] = f"an empty payload (a null message), not a{_what(self.format)}"
        for k in np.flatnonzero(lengths > self.max_bytes).tolist():
            reasons[k] = (
                f"a payload of {int(lengths[k])} bytes, over max_message_bytes={self.max_bytes}"
            )
        if self.format == "json" and n:
            offsets = np.frombuffer(payload.buffers()[1], np.int32, n + 1, payload.offset * 4)
            data = np.frombuffer(payload.buffers()[2] or b"", np.uint8)
            bad = invalid_segments(offsets.astype(np.int64), data)
            if bad is not None:
                for k in np.flatnonzero(bad).tolist():
                    reasons.setdefault(k, utf8_culprit(payload[k].as_py()))
        keep = np.ones(n, dtype=bool)
        if reasons:
            keep[list(reasons)] = False
        rows = np.flatnonzero(keep)
        if self.format == "json":
            df, counts = self._json(
                payload.filter(pa.array(keep)) if reasons else payload, rows, reasons
            )
        elif self.format == "arrow":
            df, counts = self._arrow(payload, rows, reasons)
        else:
            df = pl.DataFrame({"payload": pl.Series("payload", payload.filter(pa.array(keep)))})
            counts = None
        ok = np.ones(n, dtype=bool)
        ok[list(reasons)] = False
        batch = self._with_extra(df, raw, np.flatnonzero(ok), counts) if df.height else None
        return batch, self._dead(raw, reasons, seq)

    # ------------------------------------------------------------------ formats
    def _json(
        self, payload: pa.Array, rows: np.ndarray, reasons: dict[int, str]
    ) -> tuple[pl.DataFrame, None]:
        """Rows of the payloads (``rows``: their message indexes); adds the bad ones to
        ``reasons`` (by message index)."""
        assert self.schema is not None
        if not len(payload):
            return pl.DataFrame(schema=self.schema), None
        # newlines and carriage returns are JSON whitespace outside strings (and invalid
        # inside them): blank them so each payload is one NDJSON line
        data = payload.buffers()[2]
        if data is not None and (np.frombuffer(data, np.uint8) <= 13).any():
            import pyarrow.compute as pc

            payload = pc.replace_substring_regex(payload, "[\r\n]", " ")
        df = self._ndjson(payload)
        if df is not None:
            return df, None
        parts: list[pl.DataFrame] = []
        for first in range(0, len(payload), _PIECE):
            stack = [(first, min(first + _PIECE, len(payload)))]
            while stack:
                lo, hi = stack.pop()
                df = self._ndjson(payload.slice(lo, hi - lo))
                if df is not None:
                    parts.append(df)
                elif hi - lo == 1:
                    reasons[int(rows[lo])] = self._json_culprit(payload[lo].as_py())
                else:
                    mid = (lo + hi) // 2
                    stack.append((mid, hi))
                    stack.append((lo, mid))
        return (pl.concat(parts) if parts else pl.DataFrame(schema=self.schema)), None

    def _ndjson(self, payload: pa.Array) -> pl.DataFrame | None:
        """The payloads parsed in one call, or None if any of them is not one JSON object
        of the schema."""
        import pyarrow.compute as pc

        joined = pc.binary_join(pa.ListArray.from_arrays([0, len(payload)], payload), b"\n")
        try:
            df = pl.read_ndjson(io.BytesIO(joined[0].as_py()), schema=self.schema)
        except (PolarsError, PanicException, ValueError):
            return None
        return df if df.height == len(payload) else None

    def _json_culprit(self, text: bytes) -> str:
        """Why one payload is refused, naming its column where it is a type mismatch."""
        assert self.schema is not None
        try:
            loose = pl.read_ndjson(io.BytesIO(text))
        except (PolarsError, PanicException, ValueError) as exc:
            return f"not a JSON object ({_first_line(exc)})"
        if loose.height != 1:
            return "not one JSON object (blank, or several values)"
        for name, dtype in self.schema.items():
            if name not in loose.columns:
                continue
            try:
                loose.get_column(name).cast(dtype, strict=True)
            except (PolarsError, PanicException):
                value = loose.get_column(name).to_list()[0]
                return f"column {name!r}: cannot read {value!r} as {dtype}"
        return "does not fit the schema"

    def _arrow(
        self, payload: pa.Array, rows: np.ndarray, reasons: dict[int, str]
    ) -> tuple[pl.DataFrame, np.ndarray]:
        """Rows of each Arrow IPC payload, and how many rows each message gave."""
        assert self.schema is not None
        frames: list[pl.DataFrame] = []
        counts = np.zeros(len(payload), dtype=np.int64)
        for k in rows.tolist():
            try:
                table = pa.ipc.open_stream(payload[k].as_buffer()).read_all()
                df = pl.DataFrame(table)
                missing = [c for c in self.schema if c not in df.columns]
                if missing:
                    reasons[k] = f"column {missing[0]!r} is missing from the Arrow payload"
                    continue
                df = df.select(
                    pl.col(name).cast(dtype, strict=True) for name, dtype in self.schema.items()
                )
            except (pa.ArrowException, PolarsError, PanicException, OSError, ValueError) as exc:
                reasons[k] = f"not an Arrow IPC stream of the schema ({_first_line(exc)})"
                continue
            frames.append(df)
            counts[k] = df.height
        df = pl.concat(frames) if frames else pl.DataFrame(schema=self.schema)
        return df, counts

    # ------------------------------------------------------------------ output
    def _with_extra(
        self, df: pl.DataFrame, raw: pa.Table, kept: np.ndarray, counts: np.ndarray | None
    ) -> pa.RecordBatch:
        if self.extra:
            idx = kept if counts is None else np.repeat(kept, counts[kept])
            cols = {}
            taken = raw.take(pa.array(idx))
            for name in self.extra:
                col = pl.Series(name, taken.column(name).combine_chunks())
                if name == "timestamp":
                    col = col.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
                cols[name] = col
            df = df.with_columns(**cols)
        return df.to_arrow().combine_chunks().to_batches()[0]

    def _dead(self, raw: pa.Table, reasons: dict[int, str], seq: int) -> pa.RecordBatch | None:
        if not reasons:
            return None
        order = sorted(reasons)
        topics = raw.column("topic").to_pylist()
        mids = raw.column("mid").to_pylist()
        payloads = raw.column("payload").to_pylist()
        records = [_shown(payloads[k], self.format) for k in order]
        why = [
            f"topic {topics[k]!r}, message {seq}:{k} (mid {mids[k]}): {reasons[k]}" for k in order
        ]
        return dead_letter_batch(records, why, self.step)


def _what(fmt: str) -> str:
    return " JSON object" if fmt == "json" else "n Arrow IPC stream"


def _shown(payload: bytes | None, fmt: str) -> str:
    if payload is None:
        return ""
    if fmt == "arrow":
        return payload[:_SHOWN].hex()
    return payload[: _SHOWN * 4].decode("utf-8", errors="replace")[:_SHOWN]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
