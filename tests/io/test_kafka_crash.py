"""Exactly-once from Kafka under SIGKILL: Kafka -> window -> ``sink_parquet`` with
checkpoints (tests/kafka_crash_pipeline.py), killed at random moments and restarted each
time with the same ``checkpoint_dir``, ends with exactly the windows of an uninterrupted
read: none missing, none twice. The mock cluster lives in this process and outlives every
killed run; each run resumes right after the checkpointed offsets.

Each killed run is killed at a random moment: after ``j`` (random, 0 to 2) checkpoints of
its own plus a random fraction of the time one more takes (``j = 0``: while it opens and
restores), so kills land while it reads, writes a checkpoint or commits its files. The
messages are throttled so that a run cannot finish before the series has its kills.
``VSTREAM_CRASH_SEED`` sets the seed (printed with a failure).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random

import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition
from polars.testing import assert_frame_equal

import kafka_crash_pipeline as pipeline
import vstream as vs
from kafka_mock import MockCluster

SCRIPT = Path(pipeline.__file__).resolve()
PACKAGE_ROOT = Path(vs.__file__).resolve().parent.parent
SEED = int(os.environ.get("VSTREAM_CRASH_SEED", "20261207"))
KILLS = 10
#: messages: 80 batches of 100 (20 per partition), ~2.4 s of throttled work in all
MESSAGES = 8_000
THROTTLE = 0.03
PATIENCE = 60.0
#: about the seconds between two checkpoints of a run (2 throttled batches)
EPOCH_S = 0.08
CHECKPOINT = re.compile(r"^chk-(\d{8,})$")


@pytest.fixture(scope="module")
def cluster() -> Iterator[MockCluster]:
    with MockCluster() as c:
        yield c


def records(n: int) -> list[dict[str, object]]:
    return [{"ts": i * 10, "host": f"h{i % 7}", "cpu": float(i % 101)} for i in range(n)]


def reference(recs: list[dict[str, object]]) -> pl.DataFrame:
    df = pl.DataFrame(recs, schema=pipeline.SCHEMA)
    return (
        df.with_columns(window_start=pl.col("ts") // 1_000 * 1_000)
        .group_by("host", "window_start")
        .agg(pl.len(), pl.col("cpu").sum(), pl.col("cpu").max().alias("cpu_max"))
        .with_columns(window_end=pl.col("window_start") + 1_000)
        .select("host", "window_start", "window_end", "len", "cpu", "cpu_max")
    )


def env() -> dict[str, str]:
    e = dict(os.environ)
    path = e.get("PYTHONPATH")
    e["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + path if path else "")
    return e  # NUMBA_CACHE_DIR: the parent's, passed on


def start(cluster: MockCluster, topic: str, out: Path, ckpt: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            cluster.bootstrap,
            topic,
            str(out),
            str(ckpt),
            "--throttle",
            str(THROTTLE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == "ready":
                return
            if not line:
                break
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"the pipeline never said ready:\n{err}")


def last_epoch(ckpt: Path) -> int:
    """The newest checkpoint's epoch (0: none yet)."""
    epochs = [int(m.group(1)) for p in ckpt.glob("chk-*") if (m := CHECKPOINT.match(p.name))]
    return max(epochs, default=0)


def kill(proc: subprocess.Popen[str], ckpt: Path, rng: Random) -> str:
    """SIGKILL a run at a random moment: ``j`` of its own checkpoints after it started
    (0: while it opens and restores) plus a random fraction of a checkpoint's time, so
    kills land in every phase of an epoch. Returns where, or "" when it had finished."""
    j = rng.choice([0, 1, 1, 2])
    u = rng.uniform(0.0, EPOCH_S)
    base = last_epoch(ckpt)
    deadline = time.monotonic() + PATIENCE
    while j and last_epoch(ckpt) < base + j and proc.poll() is None:
        assert time.monotonic() < deadline, "a run made no checkpoint in time"
        time.sleep(0.002)
    try:
        proc.wait(u if j else u * 4)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"killed {u:.3f}s after its checkpoint {j} (epoch {base + j})"
    return ""


@pytest.mark.slow
def test_sigkilled_kafka_runs_write_exactly_the_uninterrupted_windows(
    cluster: MockCluster, tmp_path: Path
) -> None:
    topic = f"crash-{os.getpid()}"
    recs = records(MESSAGES)
    cluster.produce(topic, [json.dumps(r).encode() for r in recs])
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    rng = Random(SEED)
    kills, log = 0, []
    while True:
        proc = start(cluster, topic, out, ckpt)
        wait_ready(proc)
        if kills < KILLS:
            where = kill(proc, ckpt, rng)
            if where:
                kills += 1
                log.append(f"{where}; checkpoint epoch after it: {last_epoch(ckpt)}")
                continue
        try:
            _, err = proc.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"seed {SEED}: a run did not finish in {PATIENCE}s: {log}")
        assert proc.returncode == 0, f"seed {SEED}, after {log}:\n{err}"
        break
    assert kills >= KILLS, f"seed {SEED}: the run finished after {kills} kills: {log}"
    got = pl.read_parquet(out)
    want = reference(recs)
    assert got.height == want.height, f"seed {SEED}: {got.height} rows, want {want.height}"
    assert_frame_equal(
        got.sort("host", "window_start"), want.sort("host", "window_start"), check_dtypes=False
    )
    # the last checkpoint's offsets (the end of every partition) reached the group
    c = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": pipeline.GROUP, "log_level": 3}
    )
    committed = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    c.close()
    assert [tp.offset for tp in committed] == [MESSAGES // 4] * 4
