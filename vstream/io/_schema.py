"""Converting user-given schemas (Polars or Arrow) to Arrow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import polars as pl
import pyarrow as pa

from vstream.errors import SchemaError

SchemaLike: TypeAlias = pa.Schema | pl.Schema | Mapping[str, Any]


def to_arrow_schema(schema: SchemaLike) -> pa.Schema:
    """Arrow schema for a ``pa.Schema``, a ``pl.Schema`` or a mapping of names to dtypes."""
    if isinstance(schema, pa.Schema):
        return schema
    if isinstance(schema, Mapping) and all(isinstance(v, pa.DataType) for v in schema.values()):
        return pa.schema(list(schema.items()))
    try:
        empty = pl.DataFrame(schema=pl.Schema(schema))
    except Exception as exc:
        msg = f"cannot read the schema {schema!r}: {exc}; give a pl.Schema, a pa.Schema or a dict"
        raise SchemaError(msg) from exc
    # oldest compat level: plain (large_)string rather than string_view, which every
    # Arrow reader (JSON, Parquet) accepts as a target type
    return empty.to_arrow(compat_level=pl.CompatLevel.oldest()).schema


def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The Polars schema of data with this Arrow schema."""
    return pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]
