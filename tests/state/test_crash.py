"""Exactly-once under SIGKILL: a checkpointed ``sink_parquet`` run killed over and over,
restarted each time with the same ``checkpoint_dir``, ends with exactly the rows of an
uninterrupted run: none missing, none twice.

The pipeline is ``tests/crash_pipeline.py`` (watermark, filter, a tumbling window per
host, the events as-of joined with their host's window results), run as a process. Each
killed run is killed at a random moment: after ``j`` (random) checkpoints of its own plus
a random fraction ``u`` of the time one more takes. ``j = 0`` kills it while it starts or
restores, before it commits anything; the kills land anywhere in an epoch (its batches,
its checkpoint being written, the commit of the part files after it), 40% of them aimed
near its end, where the checkpoint is written. Counting in checkpoints rather than
seconds keeps the series to the same number of kills on a fast or a slow machine (a
run's first checkpoint alone takes ~0.5 s after "ready" here); ``j`` is drawn so that
the run cannot finish before the series has its kills, and the last kills aim at the
final epoch (end of input, final checkpoint).

``VSTREAM_SLOW=1`` also runs the long series (>= 100 kills); ``VSTREAM_CRASH_SEED`` sets
the seed of ``j`` and ``u`` (printed with every failure; the moments still vary with
the machine's timing).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from statistics import median

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import crash_pipeline
import vstream as vs

SCRIPT = Path(crash_pipeline.__file__).resolve()
#: the checkout whose vstream the killed processes import (the one under test)
PACKAGE_ROOT = Path(vs.__file__).resolve().parent.parent

SEED = int(os.environ.get("VSTREAM_CRASH_SEED", "20241124"))
#: seconds each event batch sleeps in a killed run (an epoch of 3 batches then takes
#: ~55 ms here, of which ~12 ms stage the part files and write the checkpoint)
THROTTLE = 0.01
#: the share of kills aimed near the end of an epoch, where its checkpoint is written
AIM_AT_CHECKPOINT = 0.4
#: kills of the CI series and of the slow one
CI_KILLS, SLOW_KILLS = 20, 100
#: rows of data: ~190 source batches (64 epochs) for CI, four times that for the slow test
CI_ROWS, SLOW_ROWS = 48_000, 192_000
#: after the series has its kills, this many more runs are killed in their last epoch
FINAL_EPOCH_KILLS = 2
#: data files end at these fractions of the rows (small files first: the series crosses
#: file boundaries early); row groups of a size that is no multiple of the batch size
FILE_ENDS = (0.06, 0.15, 0.3, 0.55, 1.0)
ROW_GROUP = 1_700
#: patience for anything that should take seconds (a hung run fails, it does not hang)
PATIENCE_S = 120.0

PART = re.compile(r"^part-\d{8}-\d{4}\.parquet$")
CHECKPOINT = re.compile(r"^chk-(\d{8,})$")


# ====================================================================== helpers


@dataclass(frozen=True)
class Case:
    """One dataset and what an uninterrupted run makes of it."""

    data: Path
    reference: pl.DataFrame
    #: epoch of the reference run's final checkpoint: the number of epochs of a run
    epochs: int


@dataclass
class Timing:
    """Observed seconds from "ready" to a run's first checkpoint, and between two."""

    first: list[float] = field(default_factory=list)
    between: list[float] = field(default_factory=list)

    def gap(self, j: int) -> float:
        """Expected seconds from a run's ``j``-th checkpoint (0: "ready") to the next."""
        samples, default = (self.first, 0.6) if j == 0 else (self.between, 0.12)
        return median(samples[-15:]) if samples else default


@dataclass(frozen=True)
class Run:
    """What one run did: epochs before and after, whether it was killed, and where."""

    index: int
    j: int
    u: float
    start_epoch: int
    end_epoch: int
    killed: bool
    #: where a kill interrupted a checkpoint: "writing" (its temporary directory is
    #: left), "commit" (files it lists still staged), or ""
    interrupted: str
    seconds: float

    def __str__(self) -> str:
        how = "killed" if self.killed else "finished"
        where = f" during a checkpoint's {self.interrupted}" if self.interrupted else ""
        return (
            f"run {self.index}: epochs {self.start_epoch}->{self.end_epoch}, {how}{where} "
            f"(j={self.j}, u={self.u:.2f}, {self.seconds:.2f}s)"
        )


def latest_epoch(ckpt: Path) -> int:
    """The newest complete checkpoint's epoch (0: none)."""
    try:
        names = os.listdir(ckpt)
    except FileNotFoundError:
        return 0
    return max((int(m.group(1)) for n in names if (m := CHECKPOINT.match(n))), default=0)


def checkpoints_in_writing(ckpt: Path) -> set[tuple[str, int, int]]:
    """The temporary directories of checkpoints being written (name, inode, mtime)."""
    found = set()
    for p in ckpt.glob(".tmp-chk-*"):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        found.add((p.name, st.st_ino, st.st_mtime_ns))
    return found


def uncommitted(ckpt: Path) -> bool:
    """Whether part files the newest checkpoint lists are still staged (a kill between
    the checkpoint and its commit)."""
    epoch = latest_epoch(ckpt)
    if epoch == 0:
        return False
    manifest = json.loads((ckpt / f"chk-{epoch:08d}" / "manifest.json").read_text())
    return any(
        (Path(sink["pending"]) / name).exists()
        for sink in manifest["sinks"]
        for name in sink.get("files", [])
    )


def write_data(folder: Path, rows: int) -> None:
    """Telemetry with disorder (1 s, within the pipeline's 2 s watermark: nothing late)
    as several Parquet files of several row groups each, consecutive in time."""
    df = vs.datasets.telemetry(rows, hosts=20, events_per_second=200, max_disorder="1s", seed=3)
    folder.mkdir(parents=True)
    start = 0
    for k, frac in enumerate(FILE_ENDS):
        end = round(rows * frac)
        df.slice(start, end - start).write_parquet(
            folder / f"telemetry-{k}.parquet", row_group_size=ROW_GROUP
        )
        start = end


def start(
    case_data: Path, out: Path, ckpt: Path, throttle: float, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    args = [str(case_data), str(out), str(ckpt), "--throttle", str(throttle)]
    with open(log, "wb") as err:
        # unbuffered: reading "ready" must not take "done" into a buffer communicate() skips
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            bufsize=0,
        )


def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for the "ready" line; fail with the process's stderr if it does not come."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], PATIENCE_S)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        proc.kill()
        proc.wait()
        proc.stdout.close()
        pytest.fail(f"no 'ready' from {SCRIPT.name} ({line!r}); stderr:\n{log.read_text()}")


def finish(proc: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for a run that should end by itself; its stdout after "ready"."""
    try:
        out, _ = proc.communicate(timeout=PATIENCE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{SCRIPT.name} still running after {PATIENCE_S}s; stderr:\n{log.read_text()}")
    text = out.decode()
    if proc.returncode != 0 or text.strip() != "done":
        pytest.fail(
            f"{SCRIPT.name} exited with {proc.returncode} (stdout {text!r}); "
            f"stderr:\n{log.read_text()}"
        )
    return text


def visible(out: Path) -> list[str]:
    return sorted(os.listdir(out)) if out.exists() else []


def row_differences(got: pl.DataFrame, want: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the rows ``got`` has fewer times than ``want``, the rows it has more times), each
    once, with the difference in ``times``."""
    got_h = got.with_columns(_h=got.hash_rows(seed=7))
    want_h = want.with_columns(_h=want.hash_rows(seed=7))
    counts = (
        got_h.group_by("_h")
        .len("_got")
        .join(want_h.group_by("_h").len("_want"), on="_h", how="full", coalesce=True)
        .with_columns(pl.col("_got", "_want").fill_null(0).cast(pl.Int64))
        .with_columns(times=pl.col("_got") - pl.col("_want"))
    )

    def rows(df: pl.DataFrame, sign: int) -> pl.DataFrame:
        diff = counts.filter(pl.col("times") * sign > 0).select("_h", times=pl.col("times").abs())
        return df.unique("_h", keep="first").join(diff, on="_h").drop("_h")

    return rows(want_h, -1), rows(got_h, 1)


# ====================================================================== fixtures


@pytest.fixture(scope="session")
def crash_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The killed processes' environment: this checkout's vstream, and one numba cache
    so kernels compile once per test run, not once per process."""
    env = dict(os.environ)
    cache = os.environ.get("NUMBA_CACHE_DIR") or str(tmp_path_factory.mktemp("numba-cache"))
    env["NUMBA_CACHE_DIR"] = cache
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + path if path else "")
    return env


@pytest.fixture(scope="session")
def crash_case(
    tmp_path_factory: pytest.TempPathFactory, crash_env: dict[str, str]
) -> Callable[[int], Case]:
    """``crash_case(rows)``: the data of ``rows`` rows and an uninterrupted run's output
    (the same script, unthrottled), made once per session."""
    made: dict[int, Case] = {}

    def make(rows: int) -> Case:
        if rows in made:
            return made[rows]
        root = tmp_path_factory.mktemp(f"crash-{rows}")
        write_data(root / "data", rows)
        out, ckpt, log = root / "ref-out", root / "ref-ckpt", root / "ref.log"
        proc = start(root / "data", out, ckpt, 0.0, crash_env, log)
        wait_ready(proc, log)
        finish(proc, log)
        reference = pl.read_parquet(out / "*.parquet")
        assert all(PART.match(n) for n in visible(out)), visible(out)
        # the reference is itself right: the pipeline collected in memory, no checkpoints
        direct = crash_pipeline.build(root / "data", 0.0).collect()
        assert_frame_equal(
            reference.sort(reference.columns, nulls_last=True),
            direct.sort(direct.columns, nulls_last=True),
            check_exact=True,
        )
        assert reference.height > rows // 2
        assert reference["n"].null_count() > 0  # events before their host's first window
        made[rows] = Case(root / "data", reference, latest_epoch(ckpt))
        return made[rows]

    return make


# ====================================================================== the series


def kill_series(
    case: Case, root: Path, env: dict[str, str], min_kills: int, seed: int
) -> tuple[Path, list[Run]]:
    """Run the pipeline into ``root/out`` again and again, killing runs, until at least
    ``min_kills`` were killed, then ``FINAL_EPOCH_KILLS`` more aimed at the final epoch;
    then let a run finish."""
    rng = Random(seed)
    out, ckpt = root / "out", root / "ckpt"
    timing = Timing()
    runs: list[Run] = []
    kills = final_kills = 0
    while True:
        first = latest_epoch(ckpt)
        remaining = max(case.epochs - first, 1)
        need = min_kills - kills
        if need > 0:
            # a run commits about j epochs; j <= remaining - 2 so that it cannot finish,
            # and on average the remaining epochs spread over the kills still needed
            top = max(0, min(remaining - 2 * need, 2 * remaining // need - 1))
            j: int | None = rng.randint(0, top)
        elif final_kills < FINAL_EPOCH_KILLS and first < case.epochs:
            j = remaining - 1
            final_kills += 1
        else:
            j = None  # the last run: no kill
        # the checkpoint is written at the end of the epoch: aim there more often
        u = rng.uniform(0.7, 1.05) if rng.random() < AIM_AT_CHECKPOINT else rng.random()
        log = root / f"run-{len(runs):03d}.log"
        t0 = time.monotonic()
        tmp_before = checkpoints_in_writing(ckpt)
        proc = start(case.data, out, ckpt, THROTTLE, env, log)
        try:
            wait_ready(proc, log)
            if j is None:
                finish(proc, log)
            else:
                kill_at(proc, ckpt, first, j, u, timing)
            killed = proc.wait() == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if not killed and proc.returncode != 0:
            pytest.fail(f"run {len(runs)} exited with {proc.returncode}:\n{log.read_text()}")
        interrupted = ""
        if killed and checkpoints_in_writing(ckpt) - tmp_before:
            interrupted = "writing"
        elif killed and uncommitted(ckpt):
            interrupted = "commit"
        runs.append(
            Run(
                index=len(runs),
                j=-1 if j is None else j,
                u=u,
                start_epoch=first,
                end_epoch=latest_epoch(ckpt),
                killed=killed,
                interrupted=interrupted,
                seconds=time.monotonic() - t0,
            )
        )
        stray = [n for n in visible(out) if not PART.match(n)]
        assert not stray, f"after {runs[-1]}: {stray} visible in the output directory"
        kills += killed
        if not killed:
            return out, runs
        assert len(runs) < 20 * min_kills, "the series makes no progress:\n" + summary(runs)


def kill_at(
    proc: subprocess.Popen[bytes], ckpt: Path, first: int, j: int, u: float, timing: Timing
) -> None:
    """SIGKILL ``proc`` ``u`` of the way from its ``j``-th new checkpoint to the next
    (measured from "ready" for ``j = 0``), unless it ends before; records the gaps."""
    t_last = time.monotonic()
    seen = first
    new = 0
    deadline: float | None = t_last + u * timing.gap(0) if j == 0 else None
    give_up = t_last + PATIENCE_S
    while proc.poll() is None:
        now = time.monotonic()
        epoch = latest_epoch(ckpt)
        if epoch > seen:
            # a first checkpoint after "ready", or the next one (several if polled late)
            (timing.first if new == 0 else timing.between).append(now - t_last)
            new += epoch - seen
            seen, t_last = epoch, now
            if new >= j and deadline is None:
                deadline = now + u * timing.gap(new)
        if deadline is not None and now >= deadline:
            os.kill(proc.pid, signal.SIGKILL)
            return
        if now > give_up:
            proc.kill()
            pytest.fail(f"a run made no checkpoint in {PATIENCE_S}s")
        time.sleep(0.002)


def summary(runs: list[Run]) -> str:
    kills = sum(r.killed for r in runs)
    writing = sum(r.interrupted == "writing" for r in runs)
    commit = sum(r.interrupted == "commit" for r in runs)
    epochs = sorted({r.end_epoch for r in runs})
    lines = [
        f"seed {SEED}: {len(runs)} runs, {kills} kills ({writing} while a checkpoint was "
        f"written, {commit} in its commit), "
        f"checkpoint epochs seen after the runs: {epochs}",
        *map(str, runs),
    ]
    return "\n".join(lines)


def check_series(case: Case, root: Path, env: dict[str, str], min_kills: int) -> None:
    out, runs = kill_series(case, root, env, min_kills, SEED)
    report = summary(runs)
    print(report)
    kills = sum(r.killed for r in runs)
    assert kills >= min_kills, f"the run finished after {kills} kills:\n{report}"

    # once finished, a run has nothing to do: it says so, and writes nothing
    before = {n: (out / n).stat().st_mtime_ns for n in visible(out)}
    log = root / "again.log"
    proc = start(case.data, out, root / "ckpt", THROTTLE, env, log)
    wait_ready(proc, log)
    finish(proc, log)
    stderr = log.read_text()
    assert "CheckpointWarning" in stderr, stderr
    assert "finished" in stderr, stderr
    assert "nothing to do" in stderr, stderr
    assert {n: (out / n).stat().st_mtime_ns for n in visible(out)} == before

    names = visible(out)
    stray = [n for n in names if not PART.match(n)]
    assert not stray, f"not part files, in the output directory: {stray}\n{report}"
    got = pl.read_parquet(out / "*.parquet")
    want = case.reference
    missing, extra = row_differences(got, want)
    detail = (
        f"{report}\n{got.height} rows, the reference has {want.height}\n"
        f"missing ({missing['times'].sum()} rows):\n{missing}\n"
        f"extra ({extra['times'].sum()} rows):\n{extra}"
    )
    assert missing.height == 0, detail
    assert extra.height == 0, detail
    assert got.height == want.height, detail
    assert got.is_duplicated().sum() == want.is_duplicated().sum(), detail
    assert_frame_equal(
        got.sort(got.columns, nulls_last=True),
        want.sort(want.columns, nulls_last=True),
        check_exact=True,
    )


def test_sigkilled_runs_write_exactly_the_uninterrupted_output(
    tmp_path: Path, crash_case: Callable[[int], Case], crash_env: dict[str, str]
) -> None:
    check_series(crash_case(CI_ROWS), tmp_path, crash_env, CI_KILLS)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VSTREAM_SLOW") != "1", reason="VSTREAM_SLOW=1 runs it")
def test_sigkilled_runs_write_exactly_the_uninterrupted_output_slow(
    tmp_path: Path, crash_case: Callable[[int], Case], crash_env: dict[str, str]
) -> None:
    check_series(crash_case(SLOW_ROWS), tmp_path, crash_env, SLOW_KILLS)
