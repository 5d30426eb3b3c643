"""The pipeline of the crash test (tests/state/test_crash.py), run as a process to be killed.

    python tests/crash_pipeline.py DATA_DIR OUT_DIR CKPT_DIR [--throttle SECONDS]

Parquet telemetry -> watermark -> filter -> a 10 s tumbling window per host, and the
filtered events as-of joined with the window results of their host -> ``sink_parquet``
with a checkpoint every 3 source batches. ``--throttle`` sleeps that long in every event
batch so that a kill lands in the middle of the run. Prints ``ready`` right before the
run starts and ``done`` once it returned; a run that resumed a finished checkpoint warns
(``vstream.CheckpointWarning``) on stderr.

Importing this module has no side effects: the test imports the constants and
:func:`build` (to write the data and to check what it may see).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

import vstream as vs

#: rows per source batch: every batch is one throttle sleep and one step towards the next
#: checkpoint
BATCH_SIZE = 250
#: source batches per checkpoint
CHECKPOINT_INTERVAL = 3
#: part files smaller than one epoch's output, so an epoch commits several files
ROWS_PER_FILE = 400


def build(data_dir: Path, throttle: float) -> vs.Stream:
    """The pipeline up to its sink: the filtered events, each with the newest finished
    window of its host (window results' event time is ``window_end - 1``, so an event
    at ``ts`` sees the windows that ended at or before ``ts``)."""

    def slow(df: pl.DataFrame) -> pl.DataFrame:
        if throttle > 0:
            time.sleep(throttle)
        return df

    events = (
        vs.from_parquet(data_dir, batch_size=BATCH_SIZE)
        .with_watermark("ts", "2s", time_unit="ms")
        .map_batches(slow, name="throttle")
        .filter(pl.col("status") == 200, pl.col("cpu") >= 10)
    )
    windowed = events.window(vs.tumbling("10s"), by="host_id").agg(
        pl.len().alias("n"),
        pl.col("cpu").mean().alias("cpu_mean"),
        pl.col("cpu").max().alias("cpu_max"),
    )
    return events.join_asof(windowed, left_on="ts", right_on="window_end", by="host_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("--throttle", type=float, default=0.0, help="seconds per batch")
    args = parser.parse_args()
    stream = build(args.data_dir, args.throttle)
    print("ready", flush=True)
    stream.sink_parquet(
        args.out_dir,
        checkpoint_dir=args.ckpt_dir,
        checkpoint_interval=CHECKPOINT_INTERVAL,
        rows_per_file=ROWS_PER_FILE,
    )
    print("done", flush=True)


if __name__ == "__main__":
    main()
