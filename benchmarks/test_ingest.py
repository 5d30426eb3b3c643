"""Ingest: Python dicts through from_records (events/s) and NDJSON through from_ndjson (MB/s)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from _bench import paired, size

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
