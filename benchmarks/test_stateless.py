"""Filter + with_columns over telemetry: vstream per micro-batch against Polars eager.

Issue target: >= 0.8x Polars eager over the whole table, both on one thread, with the
input in 65,536-row Arrow batches. Each ratio comes from alternating rounds of the two
(see ``_bench.paired``).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from _bench import paired, size

import vstream as vs

N = size(10_000_000, 200_000)
BATCH = 65_536

PRED = pl.col("cpu") >= 10
COLS = {"lat_s": pl.col("latency_ms") / 1000, "load": pl.col("cpu") * pl.col("mem") / 100}
POLARS = "polars eager, whole table"


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return vs.datasets.telemetry(N, hosts=10_000)


def _pipeline(batches: list[pa.RecordBatch]) -> vs.Stream:
    return vs.from_arrow(batches).filter(PRED).with_columns(**COLS)


def _drain(stream: vs.Stream) -> None:
    stream.sink_callback(lambda b: None)


def test_same_answer_as_polars(frame: pl.DataFrame) -> None:
    batches = frame.to_arrow().to_batches(max_chunksize=BATCH)
    assert _pipeline(batches).collect().equals(frame.filter(PRED).with_columns(**COLS))


@pytest.mark.parametrize("batch", [16_384, BATCH, 262_144, 1_048_576])
def test_filter_with_columns(benchmark, frame: pl.DataFrame, batch: int) -> None:  # type: ignore[no-untyped-def]
    """Arrow batches in Polars' own layout (string_view): conversion copies nothing.

    The sweep shows the fixed cost per batch; the issue's figure is batch 65,536.
    """
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    batches = table.to_batches(max_chunksize=batch)
    paired(
        benchmark,
        lambda: _drain(_pipeline(batches)),
        lambda: pl.from_arrow(table).filter(PRED).with_columns(**COLS),
        name=f"vstream filter+with_columns, batch {batch:,}",
        peer_name=f"{POLARS} (string_view Arrow) [{batch:,}]",
        events=N,
    )


def test_filter_with_columns_large_string(benchmark, frame: pl.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """large_string batches (what most Arrow producers write): strings become views."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    batches = table.to_batches(max_chunksize=BATCH)
    paired(
        benchmark,
        lambda: _drain(_pipeline(batches)),
        lambda: pl.from_arrow(table).filter(PRED).with_columns(**COLS),
        name="vstream filter+with_columns, large_string batches",
        peer_name=f"{POLARS} (large_string Arrow)",
        events=N,
    )
