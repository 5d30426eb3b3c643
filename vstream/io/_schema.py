"""Converting user-given schemas (Polars or Arrow) to Arrow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa
from polars.exceptions import PanicException

from vstream.errors import SchemaError

SchemaLike: TypeAlias = pa.Schema | pl.Schema | Mapping[str, Any]


def unnamable(name: str) -> bool:
    """Whether a column cannot be called ``name``: Arrow's C interface, which carries
    data between Arrow and Polars, ends a name at a NUL character (Polars panics on it,
    or the column comes out under a shorter name)."""
    return "\x00" in name


def without_unnamable(schema: pa.Schema) -> pa.Schema:
    """An inferred schema without the columns that cannot be named (their keys are then
    ignored as unknown keys are)."""
    keep = [f for f in schema if not unnamable(f.name)]
    return schema if len(keep) == len(schema) else pa.schema(keep)


def check_names(names: list[str], where: str) -> None:
    """Refuse column names that cannot be carried to Polars, naming them."""
    bad = [n for n in names if unnamable(n)]
    if bad:
        msg = (
            f"{where}: the column name(s) {', '.join(map(repr, bad))} hold a NUL character, "
            "which Arrow and Polars cannot carry; rename them"
        )
        raise SchemaError(msg)


def to_arrow_schema(schema: SchemaLike) -> pa.Schema:
    """Arrow schema for a ``pa.Schema``, a ``pl.Schema`` or a mapping of names to dtypes."""
    names = list(schema.names if isinstance(schema, pa.Schema) else schema)
    check_names([str(n) for n in names], "schema")
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
    oldest = pl.CompatLevel.oldest()
    try:
        return empty.to_arrow(compat_level=oldest).schema
    except (Exception, PanicException) as exc:  # a type Arrow has no equivalent of (Int128)
        bad = []
        for name, dtype in empty.schema.items():
            try:
                empty.select(name).to_arrow(compat_level=oldest)
            except (Exception, PanicException):
                bad.append(f"{name!r} ({dtype})")
        msg = (
            f"the column(s) {', '.join(bad) or '?'} have a type Arrow cannot hold "
            f"({exc}); give another type, e.g. pl.Int64, pl.UInt64 or pl.Float64"
        )
        raise SchemaError(msg) from exc


def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The Polars schema of data with this Arrow schema."""
    return pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]


def enum_categories(schema: pa.Schema) -> dict[str, pa.Array]:
    """The categories of each top-level ``Enum`` column of data with this Arrow schema."""
    if not any(pa.types.is_dictionary(f.type) for f in schema):
        return {}
    return {
        name: pa.array(dtype.categories.to_list(), pa.large_string())
        for name, dtype in polars_schema(schema).items()
        if isinstance(dtype, pl.Enum)
    }


def enum_misfits(
    data: pa.RecordBatch | pa.Table, enums: Mapping[str, pa.Array]
) -> tuple[np.ndarray, list[str]]:
    """The rows whose value in an ``Enum`` column is not one of its categories (Polars
    would make it null without a word), in order, and for each the reason."""
    # pyarrow.compute costs ~25 ms of import vstream (its docstrings): imported when used
    import pyarrow.compute as pc

    blame: dict[int, str] = {}
    for name, categories in enums.items():
        col = data.column(name)
        values = col.cast(pa.large_string())
        ok = pc.or_kleene(pc.is_in(values, value_set=categories), pc.is_null(values))
        for k in np.flatnonzero(~np.asarray(ok)).tolist():
            if k not in blame:
                shown = values[k].as_py()
                blame[k] = (
                    f"column {name!r}: {shown!r} is not one of the Enum's categories "
                    f"{categories.to_pylist()}"
                )
    rows = np.array(sorted(blame), dtype=np.int64)
    return rows, [blame[int(k)] for k in rows]
