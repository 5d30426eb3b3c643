"""Ingest: Python dicts through from_records (events/s) and NDJSON through from_ndjson (MB/s)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from _bench import PAIRS, size

import vstream as vs

N = size(1_000_000, 20_000)

PAIRS.append(("vstream from_ndjson", "polars read_ndjson"))
PAIRS.append(("vstream from_records", "polars from_dicts"))


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


def test_from_records(benchmark, record, records) -> None:  # type: ignore[no-untyped-def]
    def run() -> int:
        return vs.from_records(records, schema=SCHEMA).collect().height

    assert benchmark(run) == N
    record("vstream from_records", N)


def test_polars_from_dicts(benchmark, record, records) -> None:  # type: ignore[no-untyped-def]
    benchmark(lambda: pl.from_dicts(records, schema=SCHEMA))
    record("polars from_dicts", N)


def test_from_ndjson(benchmark, record, ndjson_file) -> None:  # type: ignore[no-untyped-def]
    path, nbytes = ndjson_file

    def run() -> int:
        return vs.from_ndjson(path, schema=SCHEMA).collect().height

    assert benchmark(run) == N
    record("vstream from_ndjson", N, nbytes)


def test_polars_read_ndjson(benchmark, record, ndjson_file) -> None:  # type: ignore[no-untyped-def]
    path, nbytes = ndjson_file
    benchmark(lambda: pl.read_ndjson(path, schema=SCHEMA))
    record("polars read_ndjson", N, nbytes)
