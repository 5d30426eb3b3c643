"""Filter + with_columns over telemetry: vstream per micro-batch against Polars eager.

Issue target: >= 0.8x Polars eager over the whole table, both on one thread.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from _bench import PAIRS, size

import vstream as vs

N = size(10_000_000, 200_000)
BATCH = 65_536

PRED = pl.col("cpu") >= 10
COLS = {"lat_s": pl.col("latency_ms") / 1000, "load": pl.col("cpu") * pl.col("mem") / 100}

PAIRS.extend(
    [
        ("vstream filter+with_columns", "polars eager (DataFrame in memory)"),
        ("vstream filter+with_columns", "polars eager (from the same Arrow table)"),
        (
            "vstream filter+with_columns (large_string batches)",
            "polars eager (from large_string Arrow)",
        ),
    ]
)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pa.Table, list[pa.RecordBatch]]:
    df = vs.datasets.telemetry(N, hosts=10_000)
    # Polars' own layout (string_view): converting to a DataFrame copies nothing
    table = df.to_arrow(compat_level=pl.CompatLevel.newest())
    batches = table.to_batches(max_chunksize=BATCH)
    return df, table, batches


def _pipeline(batches: list[pa.RecordBatch]) -> vs.Stream:
    return vs.from_arrow(batches).filter(PRED).with_columns(**COLS)


def test_vstream(benchmark, record, data) -> None:  # type: ignore[no-untyped-def]
    df, _, batches = data
    rows = []
    benchmark(lambda: _pipeline(batches).sink_callback(lambda b: rows.append(b.height)))
    assert sum(rows) % df.filter(PRED).height == 0  # every round delivered every row
    record("vstream filter+with_columns", N)


SWEEP = [16_384, 65_536, 262_144, 1_048_576]
PAIRS.extend(
    (f"vstream filter+with_columns, batch {b:,}", "polars eager (DataFrame in memory)")
    for b in SWEEP
)


@pytest.mark.parametrize("batch", SWEEP)
def test_vstream_batch_sweep(benchmark, record, data, batch: int) -> None:  # type: ignore[no-untyped-def]
    """The fixed cost per batch: how the ratio to Polars moves with the batch size."""
    _, table, _ = data
    batches = table.to_batches(max_chunksize=batch)
    benchmark(lambda: _pipeline(batches).sink_callback(lambda b: None))
    record(f"vstream filter+with_columns, batch {batch:,}", N)


def test_vstream_large_string(benchmark, record, data) -> None:  # type: ignore[no-untyped-def]
    df, _, _ = data
    # large_string (what most Arrow producers write): Polars converts strings to views
    batches = df.to_arrow(compat_level=pl.CompatLevel.oldest()).to_batches(max_chunksize=BATCH)
    benchmark(lambda: _pipeline(batches).sink_callback(lambda b: None))
    record("vstream filter+with_columns (large_string batches)", N)


def test_vstream_collect_equals_polars(data) -> None:  # type: ignore[no-untyped-def]
    df, _, batches = data
    out = _pipeline(batches).collect()
    assert out.equals(df.filter(PRED).with_columns(**COLS))


def test_polars_eager(benchmark, record, data) -> None:  # type: ignore[no-untyped-def]
    df, _, _ = data
    benchmark(lambda: df.filter(PRED).with_columns(**COLS))
    record("polars eager (DataFrame in memory)", N)


def test_polars_eager_from_arrow(benchmark, record, data) -> None:  # type: ignore[no-untyped-def]
    _, table, _ = data
    benchmark(lambda: pl.from_arrow(table).filter(PRED).with_columns(**COLS))
    record("polars eager (from the same Arrow table)", N)


def test_polars_eager_from_large_string(benchmark, record, data) -> None:  # type: ignore[no-untyped-def]
    df, _, _ = data
    table = df.to_arrow(compat_level=pl.CompatLevel.oldest())
    benchmark(lambda: pl.from_arrow(table).filter(PRED).with_columns(**COLS))
    record("polars eager (from large_string Arrow)", N)
