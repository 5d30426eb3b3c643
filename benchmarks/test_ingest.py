"""Ingest: Python dicts through from_records (events/s), NDJSON through from_ndjson (MB/s),
and Parquet through from_parquet with 3 of its 9 columns read (projection pushdown)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from _bench import compared, paired, size

import vstream as vs

N = size(1_000_000, 20_000)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return vs.datasets.telemetry(N, hosts=1_000).to_dicts()


@pytest.fixture(scope="module")
def ndjson_file(tmp_path_factory, records) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("ndjson") / "telemetry.ndjson"
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    path.write_text(text)
    return str(path), len(text.encode())


SCHEMA = {
    "ts": pl.Int64,
    "host": pl.String,
    "host_id": pl.Int32,
    "region": pl.String,
    "cpu": pl.Float64,
    "mem": pl.Float64,
    "latency_ms": pl.Float64,
    "status": pl.Int32,
    "bytes": pl.Int64,
}


def test_from_records(benchmark, records) -> None:  # type: ignore[no-untyped-def]
    assert vs.from_records(records, schema=SCHEMA).collect().height == N
    paired(
        benchmark,
        lambda: vs.from_records(records, schema=SCHEMA).collect(),
        lambda: pl.from_dicts(records, schema=SCHEMA),
        name="vstream from_records",
        peer_name="polars from_dicts",
        events=N,
        rounds=5,
    )


def test_from_ndjson(benchmark, ndjson_file) -> None:  # type: ignore[no-untyped-def]
    path, nbytes = ndjson_file
    assert vs.from_ndjson(path, schema=SCHEMA).collect().height == N
    paired(
        benchmark,
        lambda: vs.from_ndjson(path, schema=SCHEMA).collect(),
        lambda: pl.read_ndjson(path, schema=SCHEMA),
        name="vstream from_ndjson",
        peer_name="polars read_ndjson",
        events=N,
        nbytes=nbytes,
        rounds=5,
    )


@pytest.fixture(scope="module")
def parquet_file(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("parquet") / "telemetry.parquet"
    vs.datasets.telemetry(N, hosts=1_000).write_parquet(path)
    return str(path)


def test_from_parquet_projection(benchmark, parquet_file) -> None:  # type: ignore[no-untyped-def]
    """3 of 9 columns: the source reads only them from the file (pushdown), against every
    column read, and against Polars' scan_parquet().select() in the same rounds."""
    three = ["ts", "host", "cpu"]
    some = vs.from_parquet(parquet_file).select(three)
    assert "columns=[ts, host, cpu] (3 of 9)" in some.explain()
    assert some.collect().equals(pl.read_parquet(parquet_file, columns=three))
    compared(
        benchmark,
        {
            "vstream from_parquet 3 of 9 columns": lambda: some.collect(),
            "polars scan_parquet().select() 3 of 9": lambda: (
                pl.scan_parquet(parquet_file).select(three).collect()
            ),
            "vstream from_parquet 9 of 9 columns": lambda: vs.from_parquet(parquet_file).collect(),
            "polars read_parquet 9 of 9": lambda: pl.read_parquet(parquet_file),
        },
        events=N,
        pairs=(
            ("vstream from_parquet 3 of 9 columns", "polars scan_parquet().select() 3 of 9"),
            ("vstream from_parquet 9 of 9 columns", "polars read_parquet 9 of 9"),
            ("vstream from_parquet 3 of 9 columns", "vstream from_parquet 9 of 9 columns"),
        ),
        rounds=7,
    )
