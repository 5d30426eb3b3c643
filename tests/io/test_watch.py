"""Watched directories (``from_parquet`` / ``from_ndjson(..., watch=True)``): files that
appear while a job runs are read once, in name (or modification-time) order, at most
``max_files_per_batch`` a look; a file being written is read only once complete; a
restart reads no file twice (and the kill test: tests/watch_pipeline.py, killed with
SIGKILL and restarted, gives the output of an uninterrupted run); ``max_file_age``
bounds the checkpoint; bad files go to the dead letters.

Jobs run in the background; the tests wait on their output with a timeout.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
import watch_pipeline
from vstream.errors import PipelineError, SourceError
from vstream.io.watch import NdjsonFiles, WatchOptions, WatchSource
from vstream.state.checkpoint import MANIFEST, CheckpointStore

SCHEMA = {"ts": pl.Int64, "host": pl.String, "v": pl.Int64}
FAST = {"poll_interval": "20ms", "settle": 0}
PATIENCE = 60.0


def wait_until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            msg = f"condition not met within {timeout} s"
            raise AssertionError(msg)
        time.sleep(0.01)


def rows(first: int, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": range(first, first + n), "host": [f"h{i % 3}" for i in range(n)], "v": range(n)},
        schema=SCHEMA,
    )


def put(folder: Path, name: str, df: pl.DataFrame, *, mtime: float | None = None) -> Path:
    """Write ``df`` elsewhere and rename it into ``folder/name`` (the safe way)."""
    tmp = folder / f".{name.replace('/', '_')}.tmp"
    if name.endswith(".parquet"):
        df.write_parquet(tmp)
    else:
        df.write_ndjson(tmp)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    final = folder / name
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, final)
    return final


@pytest.fixture
def jobs() -> Iterator[list[vs.Job]]:
    started: list[vs.Job] = []
    yield started
    for job in started:
        if job.running:
            job.stop(timeout=10)


def manifest_names(ckpt: Path) -> dict[str, object]:
    store = CheckpointStore(ckpt)
    manifest = json.loads((store.dir_of(store.epochs()[-1]) / MANIFEST).read_text())
    (source,) = manifest["sources"]
    return {sp["name"]: sp["position"] for sp in source["splits"]}


# ---------------------------------------------------------------------- new files


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_files_appearing_while_a_job_runs_are_read_once(
    tmp_path: Path, jobs: list[vs.Job], fmt: str
) -> None:
    put(tmp_path, f"a.{fmt}", rows(0, 5))
    read = vs.from_parquet if fmt == "parquet" else vs.from_ndjson
    job = read(tmp_path, watch=True, **FAST).start()  # type: ignore[operator]
    jobs.append(job)
    wait_until(lambda: job.results.height == 5)
    put(tmp_path, f"b.{fmt}", rows(5, 3))
    wait_until(lambda: job.results.height == 8)
    put(tmp_path, f"sub/c.{fmt}", rows(8, 2))  # in a folder below, too
    wait_until(lambda: job.results.height == 10)
    assert job.running
    assert job.metrics.connected
    job.stop()
    assert job.results["ts"].to_list() == list(range(10))  # each once, in file order


def test_files_that_appear_together_are_read_in_name_or_mtime_order(
    tmp_path: Path, jobs: list[vs.Job]
) -> None:
    """Two files appear at once (a folder renamed into the directory): name order, or
    with ``order="mtime"`` the older first; the files there at the start likewise."""
    now = time.time()
    for order, expect in (("name", ["a", "b"]), ("mtime", ["b", "a"])):
        folder = tmp_path / order
        folder.mkdir()
        put(folder, "b0.ndjson", rows(0, 1).with_columns(host=pl.lit("b")), mtime=now - 50)
        put(folder, "a0.ndjson", rows(0, 1).with_columns(host=pl.lit("a")), mtime=now - 40)
        staging = folder / ".staging"
        staging.mkdir()
        put(staging, "b.ndjson", rows(1, 1).with_columns(host=pl.lit("b")), mtime=now - 20)
        put(staging, "a.ndjson", rows(1, 1).with_columns(host=pl.lit("a")), mtime=now - 10)
        job = vs.from_ndjson(folder, watch=True, order=order, **FAST).start()  # type: ignore[arg-type]
        jobs.append(job)
        wait_until(lambda job=job: job.results.height == 2)
        os.rename(staging, folder / "new")
        wait_until(lambda job=job: job.results.height == 4)
        job.stop()
        assert job.results["host"].to_list() == expect + expect, order


def test_at_most_max_files_per_batch_are_picked_up_a_look(tmp_path: Path) -> None:
    """The reader announces at most max_files_per_batch new files a look, and says the
    directory is not caught up while more wait."""
    put(tmp_path, "a.ndjson", rows(0, 1))
    src = WatchSource(
        tmp_path,
        NdjsonFiles(100),
        WatchOptions.parse(max_files_per_batch=2, poll_interval="20ms", settle=0),
        None,
    )
    staging = tmp_path / ".staging"
    staging.mkdir()
    for k in range(5):
        put(staging, f"f{k}.ndjson", rows(k, 1))
    reader = src.open()
    try:
        assert isinstance(reader.poll(10.0), vs.io.base.Data)  # a.ndjson, listed at open
        assert isinstance(reader.poll(10.0), vs.io.base.SplitEnd)
        os.rename(staging, tmp_path / "new")
        groups: list[list[str]] = []
        previous = None
        ends = 0
        while ends < 5:
            e = reader.poll(10.0)
            assert e is not None
            if isinstance(e, vs.io.base.SplitAdded):
                if not isinstance(previous, vs.io.base.SplitAdded):
                    groups.append([])
                    if len(groups) == 1:  # three more files wait behind the first two
                        assert not reader.status().caught_up
                groups[-1].append(e.name)
            ends += isinstance(e, vs.io.base.SplitEnd)
            previous = e
        assert groups == [
            ["new/f0.ndjson", "new/f1.ndjson"],
            ["new/f2.ndjson", "new/f3.ndjson"],
            ["new/f4.ndjson"],
        ]
        wait_until(lambda: reader.status().caught_up)
    finally:
        reader.close()


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_a_file_written_slowly_is_read_only_once_complete(
    tmp_path: Path, jobs: list[vs.Job], fmt: str
) -> None:
    """The file is written in place, in pieces cut anywhere (mid-line, mid-footer): read
    early it would give a partial file (a Parquet file without its footer is unreadable,
    an NDJSON line cut in two is a dead letter) and would never be read again."""
    whole = tmp_path.parent / f"whole.{fmt}"
    df = rows(0, 3_000)
    df.write_parquet(whole) if fmt == "parquet" else df.write_ndjson(whole)
    data = whole.read_bytes()
    read = vs.from_parquet if fmt == "parquet" else vs.from_ndjson
    s = read(tmp_path, watch=True, schema=SCHEMA, poll_interval="20ms", settle="2s")  # type: ignore[operator]
    job = vs.start_all([s, s.dead_letters()])
    jobs.append(job)
    with open(tmp_path / f"slow.{fmt}", "wb") as f:
        for k in range(0, len(data), len(data) // 7 + 1):
            f.write(data[k : k + len(data) // 7 + 1])
            f.flush()
            time.sleep(0.05)  # the writer's pace, far within settle
    wait_until(lambda: job.results_of(0).height == 3_000)
    job.stop()
    assert job.results_of(1).height == 0
    assert_frame_equal(job.results_of(0), df)


def test_a_watched_directory_is_caught_up_only_when_no_file_waits(tmp_path: Path) -> None:
    put(tmp_path, "a.ndjson", rows(0, 1), mtime=time.time() - 7_200)
    opts = WatchOptions.parse(poll_interval="20ms", settle="1h")
    src = WatchSource(tmp_path, NdjsonFiles(100), opts, None)
    reader = src.open()
    try:
        assert isinstance(reader.poll(10.0), vs.io.base.Data)  # old enough: settled
        with open(tmp_path / "b.ndjson", "wb") as f:
            f.write(b'{"ts": 1, "host": "x", "v": 1}\n')
        wait_until(lambda: not reader.status().caught_up)  # b waits for settle
        assert reader.status().connected
        os.utime(tmp_path / "b.ndjson", (time.time() - 7_200, time.time() - 7_200))
        wait_until(lambda: reader.status().caught_up)  # b unchanged for 2 h: read
    finally:
        reader.close()


# ---------------------------------------------------------------------- restarts


def test_a_restart_reads_only_the_files_it_has_not_read(
    tmp_path: Path, jobs: list[vs.Job]
) -> None:
    land, out, ckpt = tmp_path / "land", tmp_path / "out", tmp_path / "ckpt"
    land.mkdir()
    put(land, "a.ndjson", rows(0, 4))
    put(land, "b.ndjson", rows(4, 4))

    def start() -> vs.Job:
        s = vs.from_ndjson(land, watch=True, schema=SCHEMA, **FAST)  # type: ignore[arg-type]
        job = s.sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1, lazy=True).start()
        jobs.append(job)
        return job

    job = start()
    wait_until(lambda: job.metrics.events_in == 8)
    job.stop()
    put(land, "c.ndjson", rows(8, 2))
    job = start()
    wait_until(lambda: job.metrics.events_in == 2)
    put(land, "d.ndjson", rows(10, 2))
    wait_until(lambda: job.metrics.events_in == 4)
    job.stop()
    assert sorted(pl.read_parquet(out)["ts"].to_list()) == list(range(12))
    assert set(manifest_names(ckpt)) == {"a.ndjson", "b.ndjson", "c.ndjson", "d.ndjson"}


def test_max_file_age_bounds_the_checkpoint(tmp_path: Path, jobs: list[vs.Job]) -> None:
    """A file read leaves the checkpoint once it is older than max_file_age, and a
    restart does not read it again (it is too old to be read)."""
    land, out, ckpt = tmp_path / "land", tmp_path / "out", tmp_path / "ckpt"
    land.mkdir()

    def start(age: str | None) -> vs.Job:
        s = vs.from_ndjson(land, watch=True, schema=SCHEMA, max_file_age=age, **FAST)  # type: ignore[arg-type]
        job = s.sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1, lazy=True).start()
        jobs.append(job)
        return job

    old = time.time() - 7_200
    job = start("1h")
    for k in range(3):
        put(land, f"f{k}.ndjson", rows(k * 10, 2))
        wait_until(lambda k=k: job.metrics.events_in == 2 * (k + 1))
    os.utime(land / "f0.ndjson", (old, old))  # f0 and f1 are now 2 h old
    os.utime(land / "f1.ndjson", (old, old))
    put(land, "f3.ndjson", rows(30, 2))  # the look that finds it retires f0 and f1 first
    wait_until(lambda: job.metrics.events_in == 8)
    job.stop()
    assert set(manifest_names(ckpt)) == {"f2.ndjson", "f3.ndjson"}
    # a restart reads none of them again (f0, f1 too old; f2, f3 in the checkpoint)
    job = start("1h")
    put(land, "f4.ndjson", rows(40, 2))
    wait_until(lambda: job.metrics.events_in == 2)
    job.stop()
    assert sorted(pl.read_parquet(out)["ts"].to_list()) == [0, 1, 10, 11, 20, 21, 30, 31, 40, 41]
    assert set(manifest_names(ckpt)) == {"f2.ndjson", "f3.ndjson", "f4.ndjson"}


def test_without_max_file_age_every_file_stays_in_the_checkpoint(
    tmp_path: Path, jobs: list[vs.Job]
) -> None:
    land, out, ckpt = tmp_path / "land", tmp_path / "out", tmp_path / "ckpt"
    land.mkdir()
    old = time.time() - 30 * 86_400
    put(land, "f0.ndjson", rows(0, 2), mtime=old)
    s = vs.from_ndjson(land, watch=True, schema=SCHEMA, max_file_age=None, **FAST)  # type: ignore[arg-type]
    job = s.sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1, lazy=True).start()
    jobs.append(job)
    put(land, "f1.ndjson", rows(10, 2), mtime=old)
    wait_until(lambda: job.metrics.events_in == 4)
    job.stop()
    assert set(manifest_names(ckpt)) == {"f0.ndjson", "f1.ndjson"}


# ---------------------------------------------------------------------- bad input


def test_bad_files_go_to_the_dead_letters_and_the_stream_goes_on(
    tmp_path: Path, jobs: list[vs.Job]
) -> None:
    put(tmp_path, "a.parquet", rows(0, 3))
    s = vs.from_parquet(tmp_path, watch=True, **FAST)  # type: ignore[arg-type]
    job = vs.start_all([s, s.dead_letters()])
    jobs.append(job)
    wait_until(lambda: job.results_of(0).height == 3)
    put(tmp_path, "b.parquet", rows(3, 2).with_columns(pl.col("v").cast(pl.String)))
    (tmp_path / ".c.tmp").write_bytes(b"PAR1 not a parquet file")
    os.rename(tmp_path / ".c.tmp", tmp_path / "c.parquet")
    put(tmp_path, "d.parquet", rows(5, 2))
    wait_until(lambda: job.results_of(0).height == 5 and job.results_of(1).height == 2)
    assert job.running
    job.stop()
    dead = job.results_of(1).sort("record")
    assert dead["record"].to_list() == ["b.parquet", "c.parquet"]
    assert dead["step"].to_list() == ["from_parquet", "from_parquet"]
    assert "its column 'v' is String, the source reads Int64" in dead["reason"][0]
    assert "watched file 'c.parquet' cannot be read" in dead["reason"][1]
    assert job.results_of(0)["ts"].to_list() == [0, 1, 2, 5, 6]


def test_bad_lines_of_a_watched_ndjson_file_go_to_the_dead_letters(
    tmp_path: Path, jobs: list[vs.Job]
) -> None:
    s = vs.from_ndjson(tmp_path, watch=True, schema=SCHEMA, **FAST)  # type: ignore[arg-type]
    job = vs.start_all([s, s.dead_letters()])
    jobs.append(job)
    (tmp_path / ".x").write_bytes(
        b'{"ts": 1, "host": "a", "v": 1}\n{"ts": "no", "host": "a", "v": 2}\n\xff\xfe\n'
        b'{"ts": 3, "host": "a", "v": 3}\n'
    )
    os.rename(tmp_path / ".x", tmp_path / "x.ndjson")
    wait_until(lambda: job.results_of(0).height == 2 and job.results_of(1).height == 2)
    job.stop()
    assert job.results_of(0)["ts"].to_list() == [1, 3]


def test_watch_refusals(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"watches a directory, and .* is not there"):
        vs.from_parquet(tmp_path / "nope", watch=True)
    with pytest.raises(SourceError, match=r"cannot infer a schema: .* holds no .parquet file"):
        vs.from_parquet(tmp_path, watch=True)
    with pytest.raises(PipelineError, match=r"max_file_age= applies to a watched directory"):
        vs.from_parquet(tmp_path, max_file_age="1d")
    with pytest.raises(PipelineError, match=r"order must be 'name' or 'mtime'"):
        vs.from_ndjson(tmp_path, watch=True, schema=SCHEMA, order="size")  # type: ignore[arg-type]
    with pytest.raises(vs.UnboundedError):
        vs.from_ndjson(tmp_path, watch=True, schema=SCHEMA).collect()
    assert not vs.from_ndjson(tmp_path, watch=True, schema=SCHEMA).is_bounded


# ---------------------------------------------------------------------- kills


def run_pipeline(
    land: Path, out: Path, ckpt: Path, expect: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, watch_pipeline.__file__, str(land), str(out), str(ckpt), str(expect)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=0,
    )


def wait_line(proc: subprocess.Popen[bytes], want: bytes) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], PATIENCE)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != want:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"expected {want!r} from the pipeline, got {line!r}; stderr:\n{err.decode()}")


def latest_epoch(ckpt: Path) -> int:
    try:
        return max(CheckpointStore(ckpt).epochs(), default=0)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_a_killed_watch_job_restarted_reads_every_file_exactly_once(tmp_path: Path) -> None:
    """Files appear while the job runs; it is killed (SIGKILL) three times a few
    checkpoints in and restarted: the committed output equals an uninterrupted run's."""
    env = {**os.environ, "PYTHONPATH": str(Path(vs.__file__).resolve().parent.parent)}
    files = [watch_pipeline.file_rows(k) for k in range(watch_pipeline.FILES)]
    total = sum(df.height for df in files)

    def write(land: Path, ks: range) -> None:
        for k in ks:
            put(land, f"part-{k:03d}.ndjson", files[k])

    # the interrupted run: files keep appearing across kills
    land, out, ckpt = tmp_path / "land", tmp_path / "out", tmp_path / "ckpt"
    land.mkdir()
    write(land, range(0, 4))
    for kill, more in enumerate((range(4, 8), range(8, 12), range(12, 16))):
        proc = run_pipeline(land, out, ckpt, total, env)
        wait_line(proc, b"ready")
        need = latest_epoch(ckpt) + 2 + kill  # a few checkpoints into this run
        write(land, more)
        wait_until(lambda need=need: latest_epoch(ckpt) >= need)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.communicate()
    proc = run_pipeline(land, out, ckpt, total, env)
    wait_line(proc, b"ready")
    write(land, range(16, watch_pipeline.FILES))
    wait_line(proc, b"done")
    proc.communicate()
    # the uninterrupted run
    land2, out2, ckpt2 = tmp_path / "land2", tmp_path / "out2", tmp_path / "ckpt2"
    land2.mkdir()
    write(land2, range(watch_pipeline.FILES))
    proc = run_pipeline(land2, out2, ckpt2, total, env)
    wait_line(proc, b"ready")
    wait_line(proc, b"done")
    proc.communicate()
    keys = ["host", "window_start"]
    got = pl.read_parquet(out).sort(keys)
    expected = pl.read_parquet(out2).sort(keys)
    assert_frame_equal(got, expected)
    # every event counted exactly once (the last window is still open: its events wait)
    everything = pl.concat(files)
    closed = everything.filter(pl.col("ts") < watch_pipeline.last_window_start(everything))
    assert got["n"].sum() == closed.height
    assert names_read(ckpt) == {f"part-{k:03d}.ndjson" for k in range(watch_pipeline.FILES)}


def names_read(ckpt: Path) -> set[str]:
    return set(manifest_names(ckpt))


def test_the_watch_pipeline_data_is_what_the_kill_test_assumes() -> None:
    """The kill test's data: disorder within the watermark bound across files (nothing
    late), so an uninterrupted run counts every event of the closed windows."""
    df = pl.concat([watch_pipeline.file_rows(k) for k in range(watch_pipeline.FILES)])
    assert df["ts"].is_sorted() is False  # there is disorder
    running_max = df["ts"].cum_max()
    assert (running_max - df["ts"]).max() < watch_pipeline.DELAY_MS
