"""Bounded window state: memory and checkpoints follow the live keys, not the keys seen.

A 1 s tumbling window by key (len, mean and max of ``x``), 1 s watermark bound, over
``N`` events at 100,000 events per second of event time (100 M: 1,000 s), with a
checkpoint every 64 source batches. Two key populations, each with Int64 and with String
keys (``"key-<n>"``):

- ``churn``: ``N / 5`` distinct keys (20 M of 100 M); a key is born at a steady rate and
  gets events for ~10 s of event time, so ~200 k keys are live at any moment;
- ``steady``: the same number of live keys (``N / 500``, 200 k) for the whole run.

Each case runs in a process of its own (``python benchmarks/test_state_bound.py CASE
N``), which reports its peak RSS (``VmHWM``), the largest checkpoint written
(bytes, and key rows of the window's key index) and its time. The test asserts that the
churn run's peak RSS and largest checkpoint are within 1.3x the steady run's, for each
key type (DESIGN.md: memory and checkpoint size are O(live state)).

Run: ``POLARS_MAX_THREADS=1 python -m pytest benchmarks/test_state_bound.py -q -s``
(``VSTREAM_BENCH_QUICK=1``: 2 M events). ``VSTREAM_STATE_EVENTS`` sets ``N``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _bench import note, size

RATE = 100_000  # events per second of event time
LIFE = 10  # seconds of event time a churning key gets events
BATCH = 65_536
N_EVENTS = int(os.environ.get("VSTREAM_STATE_EVENTS", 0)) or size(100_000_000, 2_000_000)
BOUND = 1.3
CHECKPOINT_EVERY = size(64, 8)  # source batches


def _batches(n: int, churn: bool, string: bool, seed: int = 0) -> Iterator[object]:
    """``n`` events in 65,536-row Arrow batches, generated as they are read."""
    import polars as pl

    rng = np.random.default_rng(seed)
    live = max(1, n // 500)  # keys live at a time
    born_per_s = live / LIFE  # churn: keys born per second of event time
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        i = np.arange(start, start + m, dtype=np.int64)
        t = i * 1_000 // RATE  # ms
        if churn:
            # a key born in the last LIFE seconds: ids (born_per_s * t / 1000 - live, ...]
            newest = (born_per_s * t / 1_000).astype(np.int64) + live
            k = newest - rng.integers(0, live, m)
        else:
            k = rng.integers(0, live, m)
        ts = t + rng.integers(0, 500, m)  # disorder within the 1 s bound
        frame = pl.DataFrame({"k": k, "ts": ts, "x": rng.random(m)})
        if string:
            frame = frame.with_columns(k=pl.format("key-{}", pl.col("k")))
        yield from frame.to_arrow(compat_level=pl.CompatLevel.newest()).to_batches()


def _checkpoint_size(root: Path) -> tuple[int, int]:
    """Bytes and key rows of the newest complete checkpoint under ``root``."""
    import pyarrow as pa

    done = sorted(p for p in root.glob("chk-*") if (p / "manifest.json").exists())
    if not done:
        return 0, 0
    newest = done[-1]
    try:
        nbytes = sum(f.stat().st_size for f in newest.iterdir())
        rows = 0
        for f in newest.glob("*.keys.keys.arrow"):
            with pa.memory_map(str(f)) as src:
                rows += pa.ipc.open_file(src).read_all().num_rows
    except (FileNotFoundError, pa.ArrowInvalid):  # removed while reading (keep=3)
        return 0, 0
    return nbytes, rows


def run_case(case: str, n: int) -> dict[str, float]:
    """One case (``churn-int``, ``steady-string``, ...) in this process."""
    import polars as pl

    import vstream as vs

    churn, string = case.split("-")[0] == "churn", case.endswith("string")
    largest = [0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def seen(df: pl.DataFrame, epoch: int) -> None:
            nbytes, rows = _checkpoint_size(root)
            if nbytes > largest[0]:
                largest[:] = [nbytes, rows]

        source = vs.from_arrow(lambda: _batches(n, churn, string), bounded=True)
        t0 = time.perf_counter()
        (
            source.with_watermark("ts", 1_000)
            .window(vs.tumbling(1_000), by="k")
            .agg(pl.len(), pl.col("x").mean(), pl.col("x").max().alias("x_max"))
            .sink_callback(seen, checkpoint_dir=root, checkpoint_interval=CHECKPOINT_EVERY)
        )
        seconds = time.perf_counter() - t0
    try:
        # this process's own peak: ru_maxrss keeps the high-water mark across exec, so it
        # would be at least the parent's (pytest's) size when the case was started
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except OSError:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "events": n,
        "seconds": seconds,
        "peak_rss": rss,
        "checkpoint_bytes": largest[0],
        "checkpoint_key_rows": largest[1],
    }


def _in_process(case: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, case, str(n)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "1")},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("key", ["int", "string"])
def test_state_follows_live_keys(key: str) -> None:
    churn = _in_process(f"churn-{key}", N_EVENTS)
    steady = _in_process(f"steady-{key}", N_EVENTS)
    for label, r in (("churn", churn), ("steady", steady)):
        note(
            f"state bound {key} {label}: {r['events']:,.0f} events in {r['seconds']:.1f} s, "
            f"peak RSS {r['peak_rss'] / 2**20:.0f} MB, largest checkpoint "
            f"{r['checkpoint_bytes'] / 2**20:.1f} MB ({r['checkpoint_key_rows']:,.0f} key rows)"
        )
    rss = churn["peak_rss"] / steady["peak_rss"]
    ckpt = churn["checkpoint_bytes"] / steady["checkpoint_bytes"]
    note(f"state bound {key}: churn / steady peak RSS {rss:.2f}x, checkpoint {ckpt:.2f}x")
    assert rss <= BOUND
    assert ckpt <= BOUND


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).parent))
    print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]))))
