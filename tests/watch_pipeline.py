"""The pipeline of the watched-directory kill test (tests/test_watch.py), run as a
process to be killed.

    python tests/watch_pipeline.py LANDING_DIR OUT_DIR CKPT_DIR EVENTS

NDJSON files watched in LANDING_DIR -> watermark -> a slow step -> a 1 s tumbling window
per host -> ``sink_parquet`` with a checkpoint after every source batch, run as a job.
Prints ``ready`` once the job runs (restored from the checkpoint, if any); once its
watermark has reached the last event of the data (so every file has been read), it stops
the job (a last checkpoint; the output is committed) and prints ``done``.

Importing this module has no side effects: the test imports the data it writes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

import vstream as vs

#: files the test writes, rows per file, rows per source batch
FILES, ROWS, BATCH = 20, 200, 50
#: event times are disordered by at most this much, below the watermark's bound
DISORDER_MS, DELAY_MS = 300, 500
SCHEMA = {"ts": pl.Int64, "host": pl.String, "v": pl.Int64}


def file_rows(k: int) -> pl.DataFrame:
    """The rows of file ``k``: 1 s of events from 3 hosts, disordered (across files too)."""
    rng = np.random.default_rng(k)
    base = k * 1_000 + np.arange(ROWS) * (1_000 // ROWS)
    ts = base + rng.integers(-DISORDER_MS // 2, DISORDER_MS // 2, ROWS)
    return pl.DataFrame(
        {
            "ts": np.maximum(ts, 0),
            "host": [f"h{i % 3}" for i in range(ROWS)],
            "v": k * ROWS + np.arange(ROWS),
        },
        schema=SCHEMA,
    )


def last_event() -> int:
    return int(pl.concat([file_rows(k) for k in range(FILES)])["ts"].max())  # type: ignore[arg-type]


def last_window_start(df: pl.DataFrame) -> int:
    """The windows before this start have fired once every event of ``df`` is read."""
    return (int(df["ts"].max()) - DELAY_MS) // 1_000 * 1_000  # type: ignore[arg-type]


def build(land: Path) -> vs.Stream:
    def slow(df: pl.DataFrame) -> pl.DataFrame:
        time.sleep(0.01)
        return df

    return (
        vs.from_ndjson(
            land, watch=True, schema=SCHEMA, batch_size=BATCH, poll_interval="20ms", settle=0
        )
        .with_watermark("ts", DELAY_MS, time_unit="ms")
        .map_batches(slow, name="throttle")
        .window(vs.tumbling(1_000), by="host")
        .agg(pl.len().alias("n"), pl.col("v").sum().alias("v_sum"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("land", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("events", type=int)
    args = parser.parse_args()
    sink = build(args.land).sink_parquet(
        args.out, checkpoint_dir=args.ckpt, checkpoint_interval=1, lazy=True
    )
    job = sink.start()
    print("ready", flush=True)
    end = last_event() - DELAY_MS
    while job.running and (job.metrics.watermark or -1) < end:
        time.sleep(0.02)
    job.stop(timeout=60)
    print("done", flush=True)


if __name__ == "__main__":
    main()
