"""The pipeline of the Kafka crash test (tests/io/test_kafka_crash.py), run as a process to
be killed.

    python tests/kafka_crash_pipeline.py BOOTSTRAP TOPIC OUT_DIR CKPT_DIR [--throttle S]

``from_kafka`` (bounded at the end offsets when the run starts, a checkpoint committed to
a consumer group) -> watermark -> a 1 s tumbling window per host -> ``sink_parquet`` with
a checkpoint every 2 source batches. ``--throttle`` sleeps that long per batch so that a
kill lands in the middle of the run. Prints ``ready`` right before the run starts and
``done`` once it returned. The cluster (librdkafka's mock) lives in the test's process.

Importing this module has no side effects: the test imports :func:`build` and the
constants.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

import vstream as vs

SCHEMA = {"ts": pl.Int64, "host": pl.String, "cpu": pl.Float64}
#: messages per micro-batch and per consume() call: small, so a run has many batches
BATCH_SIZE = 100
CHECKPOINT_INTERVAL = 2
GROUP = "crash"


def build(bootstrap: str, topic: str, throttle: float) -> vs.Stream:
    """The pipeline up to its sink."""

    def slow(df: pl.DataFrame) -> pl.DataFrame:
        if throttle > 0:
            time.sleep(throttle)
        return df

    return (
        vs.from_kafka(
            topic,
            bootstrap_servers=bootstrap,
            group_id=GROUP,
            schema=SCHEMA,
            stop="latest",
            batch_size=BATCH_SIZE,
            consume_size=BATCH_SIZE,
            log_level=3,
        )
        # 5 s of disorder allowed: a message read twice after a restart would count twice
        # (not be dropped as late), so a resume that is off by any offset shows
        .with_watermark("ts", 5_000)
        .map_batches(slow, name="throttle")
        .window(vs.tumbling(1_000), by="host")
        .agg(pl.len(), pl.col("cpu").sum(), pl.col("cpu").max().alias("cpu_max"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("--throttle", type=float, default=0.0, help="seconds per batch")
    args = parser.parse_args()
    stream = build(args.bootstrap, args.topic, args.throttle)
    print("ready", flush=True)
    stream.sink_parquet(
        args.out_dir, checkpoint_dir=args.ckpt_dir, checkpoint_interval=CHECKPOINT_INTERVAL
    )
    print("done", flush=True)


if __name__ == "__main__":
    main()
