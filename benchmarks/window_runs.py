"""Whole-pipeline timings of the window workloads outside pytest, for A/B comparisons
between commits in alternating processes and for the per-batch cost.

Usage (one core, as the benchmarks)::

    POLARS_MAX_THREADS=1 python benchmarks/window_runs.py q1                  # Q1 by host_id
    POLARS_MAX_THREADS=1 python benchmarks/window_runs.py q1 --by host
    POLARS_MAX_THREADS=1 python benchmarks/window_runs.py q1 --batch 4096    # cost a batch
    POLARS_MAX_THREADS=1 python benchmarks/window_runs.py q1 --loop    # + the reference loop
    POLARS_MAX_THREADS=1 python benchmarks/window_runs.py q1 --loop --streaming
    POLARS_MAX_THREADS=1 python benchmarks/window_runs.py q2

Prints the best of ``--rounds`` rounds for each (the rounds alternate between them). To
compare two commits, run it from a checkout of each in turn, a few times each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import polars as pl
from _bench import q1_aggs
from _window_ref import Q1Output, q1_reference

import vstream as vs

N = 10_000_000
HOSTS = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", choices=["q1", "q2"])
    parser.add_argument("--by", default="host_id", help="key column (q2: always host)")
    parser.add_argument("--batch", type=int, default=65_536, help="rows a batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", action="store_true", help="q1: time the reference loop too")
    parser.add_argument("--streaming", action="store_true", help="q1: and Polars streaming")
    args = parser.parse_args()

    frame = vs.datasets.telemetry(N, hosts=HOSTS, events_per_second=1_000, max_disorder="2s")
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    batches = table.to_batches(max_chunksize=args.batch)
    if args.query == "q1":
        spec, by, aggs = vs.tumbling("1s"), args.by, q1_aggs()
    else:
        spec, by, aggs = vs.hopping("10s", slide="1s"), "host", (pl.col("cpu").mean(),)

    def ours() -> None:
        stream = vs.from_arrow(batches).with_watermark("ts", "2s", time_unit="ms")
        stream.window(spec, by=by).agg(*aggs).sink_callback(lambda df: None)

    runs: dict[str, Callable[[], object]] = {f"vstream {args.query} by {by}": ours}
    if args.query == "q1" and args.loop:
        arrays = tuple(frame[c].to_numpy() for c in ("ts", "host_id", "cpu", "latency_ms"))
        out = Q1Output(N)
        runs["reference loop"] = lambda: q1_reference(*arrays, n_hosts=HOSTS, out=out)
    if args.query == "q1" and args.streaming:
        key = (pl.col("ts") // 1000).alias("w")
        lazy = frame.lazy().group_by(by, key).agg(*aggs)
        runs["polars streaming"] = lambda: lazy.collect(engine="streaming")
    for fn in runs.values():
        fn()  # warm-up: JIT, caches
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"{len(batches)} batches of <= {args.batch:,} rows, best of {args.rounds}:")
    for name, sec in best.items():
        print(f"  {name:28s} {sec * 1e3:8.1f} ms  {N / sec / 1e6:6.1f} M events/s")


if __name__ == "__main__":
    main()
