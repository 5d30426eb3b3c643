"""A user's script, typed: ``mypy --strict`` must pass on it (tests/api/test_typing.py runs
it), so the types a user sees are the ones the calls return: ``collect()`` a DataFrame,
``sink_parquet()`` the run's metrics or, with ``lazy=True``, a lazy sink, ``collect_all``
a list of DataFrames. Running it is a smoke test too (``python typed_script.py DIR``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

import vstream as vs


def positive(stream: vs.Stream, column: str) -> vs.Stream:
    return stream.filter(pl.col(column) > 0)


def main(out: Path) -> None:
    df = pl.DataFrame(
        {"ts": [0, 500, 1_500], "cpu": [1.0, None, 5.0], "tags": [["a"], ["b", "c"], ["d"]]}
    )
    events: vs.Stream = (
        vs.from_polars(df)
        .cast({"cpu": pl.Float32})
        .fill_null(0)
        .explode("tags")
        .with_row_index()
        .pipe(positive, "cpu")
        .with_watermark("ts", "1s", time_unit="ms")
    )

    rows: pl.DataFrame = events.collect()
    both: tuple[pl.DataFrame, vs.Metrics] = events.collect(return_metrics=True)
    first: pl.DataFrame = events.head().collect()

    metrics: vs.Metrics = events.sink_parquet(out / "events")
    lazy: vs.LazySink = events.sink_parquet(out / "again", lazy=True)
    results: list[pl.DataFrame] = vs.collect_all([events, events.head(1)])
    with_sinks: list[pl.DataFrame | None] = vs.collect_all([events, lazy])

    windows = events.window(vs.tumbling("1s")).agg(pl.len(), pl.col("cpu").mean())
    per_window: pl.DataFrame = windows.collect()

    batches: list[pl.DataFrame] = list(events.collect_batches())
    seen: list[int] = []
    done: vs.Metrics = events.sink_batches(lambda b: seen.append(b.height))

    assert rows.height == both[0].height == first.height == sum(seen)
    assert metrics.events_in == done.events_in == 3
    assert len(results) == 2
    assert with_sinks[1] is None
    assert per_window.height == 2
    assert sum(b.height for b in batches) == rows.height


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
