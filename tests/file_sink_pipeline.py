"""The pipeline of the file sinks' crash test (tests/io/test_file_sinks.py), run as a
process to be killed.

    python tests/file_sink_pipeline.py FORMAT DATA_DIR OUT_DIR CKPT_DIR [--throttle SECONDS]

Parquet events -> watermark -> a partition key -> ``sink_<FORMAT>`` partitioned by it,
rolling files of ``ROWS_PER_FILE`` rows, with a checkpoint every ``CHECKPOINT_INTERVAL``
source batches. ``--throttle`` sleeps that long in every batch so that a kill lands in
the middle of the run. Prints ``ready`` right before the run starts and ``done`` once it
returned (as tests/crash_pipeline.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import polars as pl

import vstream as vs

BATCH_SIZE = 200
CHECKPOINT_INTERVAL = 2
#: smaller than an epoch's rows of a partition, so an epoch commits several files
ROWS_PER_FILE = 90
FORMATS = ("parquet", "ndjson", "csv", "ipc")


def build(data_dir: Path, throttle: float) -> vs.Stream:
    def slow(df: pl.DataFrame) -> pl.DataFrame:
        if throttle > 0:
            time.sleep(throttle)
        return df

    return (
        vs.from_parquet(data_dir, batch_size=BATCH_SIZE)
        .with_watermark("ts", "2s", time_unit="ms")
        .map_batches(slow, name="throttle")
        .with_columns(bucket=(pl.col("host_id") % 3).cast(pl.String) + "/x")
    )


def sink(stream: vs.Stream, fmt: str, out: Path, ckpt: Path | None) -> Any:
    options: dict[str, Any] = {"partition_by": "bucket", "max_rows_per_file": ROWS_PER_FILE}
    if ckpt is not None:
        options |= {"checkpoint_dir": ckpt, "checkpoint_interval": CHECKPOINT_INTERVAL}
    return getattr(stream, f"sink_{fmt}")(out, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=FORMATS)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("--throttle", type=float, default=0.0, help="seconds per batch")
    args = parser.parse_args()
    stream = build(args.data_dir, args.throttle)
    print("ready", flush=True)
    sink(stream, args.format, args.out_dir, args.ckpt_dir)
    print("done", flush=True)


if __name__ == "__main__":
    main()
