"""Key index: dense ids for 10 M keys arriving in 65,536-row batches (10 k hosts).

The peer is Polars hashing the same keys over the whole table, ``group_by(key).len()``
(one pass of hashing and probing, as the index does; it keeps no state between batches
and returns counts, not per-row ids).
"""

from __future__ import annotations

import polars as pl
import pytest
from _bench import paired, size

import vstream as vs
from vstream.state.key_index import KeyIndex

N = size(10_000_000, 200_000)
BATCH = 65_536


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return vs.datasets.telemetry(N, hosts=10_000).select("host_id", "host")


@pytest.mark.parametrize("column", ["host_id", "host"])
def test_key_index(benchmark, frame: pl.DataFrame, column: str) -> None:  # type: ignore[no-untyped-def]
    batches = [frame.slice(i, BATCH).select(column) for i in range(0, frame.height, BATCH)]

    def ours() -> None:
        index = KeyIndex(frame.select(column).schema)
        for b in batches:
            index.ids(b)

    kind = "integer" if column == "host_id" else "string"
    paired(
        benchmark,
        ours,
        lambda: frame.group_by(column).len(),
        name=f"vstream KeyIndex, {kind} keys, batches of {BATCH:,}",
        peer_name=f"polars group_by().len(), {kind} keys, whole table",
        events=N,
        rounds=7,
    )
