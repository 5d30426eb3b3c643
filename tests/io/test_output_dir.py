"""Who owns an output directory, and what readers of it see (issue 16, items 6 to 8).

- A checkpointed sink claims its output directory; another run into it is refused.
- The output directory holds committed part files and nothing else, so Polars and
  pyarrow read exactly the committed rows at every moment, mid-epoch too.
- ``mode`` decides what a plain run does with a non-empty directory; a path ending in
  ``.parquet`` is one file, written at once.
- Staging is beside the output, on its file system: an output on a bind mount works.
- A full disk is an error that names the directory.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.dataset as ds
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
from vstream.io.sinks import SinkError

ROWS = 5_000


def _frame(rows: int = ROWS) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": pl.int_range(0, rows, eager=True), "x": pl.int_range(0, rows, eager=True) % 17}
    )


def _stream(rows: int = ROWS, batch: int = 250) -> vs.Stream:
    return vs.from_polars(_frame(rows), batch_size=batch)


def _readers(out: Path) -> dict[str, int]:
    """Rows each reader sees in ``out`` (a reader that fails raises)."""
    return {
        "read_parquet": pl.read_parquet(out).height,
        "scan_parquet": pl.scan_parquet(out).select(pl.len()).collect().item(),
        "pyarrow.dataset": ds.dataset(out, format="parquet").count_rows(),
    }


def _see(out: Path) -> int:
    """The rows every reader sees in ``out``; they all agree."""
    if not any(out.iterdir()):
        return 0  # Polars refuses an empty directory: nothing to check but emptiness
    seen = _readers(out)
    assert len(set(seen.values())) == 1, seen
    return next(iter(seen.values()))


# ---------------------------------------------------------------------- item 6: one owner
def test_two_checkpointed_runs_into_one_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c1", checkpoint_interval=3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SinkError, match=r"output of the checkpointed run of checkpoint_dir .*c1"):
        _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c2", checkpoint_interval=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _see(out) == ROWS


def test_two_sinks_of_one_checkpointed_run_into_one_directory(tmp_path: Path) -> None:
    s = _stream()
    out = tmp_path / "out"
    a = s.sink_parquet(out, lazy=True)
    b = s.filter(pl.col("x") > 3).sink_parquet(out, lazy=True)
    with pytest.raises(SinkError, match=r"another sink .* of this run"):
        vs.collect_all([a, b], checkpoint_dir=tmp_path / "c")


@pytest.mark.parametrize("mode", ["error", "append", "overwrite"])
def test_a_claimed_directory_is_refused_whatever_the_mode(tmp_path: Path, mode: Any) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c1")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SinkError, match="output of the checkpointed run"):
        _stream().sink_parquet(out, mode=mode)
    with pytest.raises(SinkError, match="output of the checkpointed run"):
        _stream().sink_parquet(out, mode=mode, checkpoint_dir=tmp_path / "c2")
    assert sorted(p.name for p in out.iterdir()) == before
    assert _see(out) == ROWS


def test_overwrite_of_unclaimed_checkpointed_output_is_refused(tmp_path: Path) -> None:
    # committed part files of a checkpointed run whose claim is gone (removed by hand,
    # or written before claims existed)
    out = tmp_path / "out"
    _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c1")
    shutil.rmtree(tmp_path / ".out.vstream")
    with pytest.raises(SinkError, match=r"overwrite' refused.*committed output of a checkpointed"):
        _stream().sink_parquet(out, mode="overwrite")
    assert _see(out) == ROWS


def test_the_claim_survives_a_restart_and_is_left_after_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ckpt = tmp_path / "ckpt"
    _stream().sink_parquet(out, checkpoint_dir=ckpt)
    claim = json.loads((tmp_path / ".out.vstream" / "owner.json").read_text())
    assert claim["checkpoint_dir"] == os.path.realpath(ckpt)
    with pytest.warns(vs.CheckpointWarning, match="nothing to do"):
        _stream().sink_parquet(out, checkpoint_dir=ckpt)  # its own output: no refusal
    assert _see(out) == ROWS


def test_a_claim_goes_with_the_output_it_claimed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c1")
    shutil.rmtree(out)  # the user starts over, unaware of .out.vstream/
    _stream(rows=700).sink_parquet(out)
    assert _see(out) == 700
    shutil.rmtree(out)
    _stream(rows=600).sink_parquet(out, checkpoint_dir=tmp_path / "c2")
    assert _see(out) == 600


@pytest.mark.parametrize("where", ["out/ckpt", "out", "."])
def test_a_checkpoint_inside_the_output_is_refused(tmp_path: Path, where: str) -> None:
    # its manifest and Arrow files would be read as part of the output (or the reverse)
    out = tmp_path / "out"
    with pytest.raises(vs.PipelineError, match="inside one another"):
        _stream().sink_parquet(out, checkpoint_dir=tmp_path / where)
    assert not (tmp_path / ".out.vstream").exists()
    assert not out.exists()
    lazy = _stream().sink_parquet(out, lazy=True)
    with pytest.raises(vs.PipelineError, match="inside one another"):
        vs.collect_all([lazy], checkpoint_dir=tmp_path / where)
    assert not out.exists()


def test_a_damaged_claim_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c")
    (tmp_path / ".out.vstream" / "owner.json").write_text("{")
    with pytest.raises(SinkError, match=r"claim of a checkpointed run .* is damaged"):
        _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c")


# ---------------------------------------------------------------------- readers' view
def test_readers_see_exactly_the_committed_rows_mid_epoch(tmp_path: Path) -> None:
    """A callback of the same run reads the output directory between batches: it holds
    the rows of the epochs committed so far, never a staged file or anything else."""
    out = tmp_path / "out"
    delivered: dict[int, int] = {}  # epoch -> rows delivered to the callback
    checks = []

    def look(df: pl.DataFrame, epoch: int) -> None:
        committed = sum(n for e, n in delivered.items() if e < epoch)
        checks.append((epoch, _see(out), committed))
        delivered[epoch] = delivered.get(epoch, 0) + df.height

    s = _stream()
    ckpt: dict[str, Any] = {"checkpoint_dir": tmp_path / "c", "checkpoint_interval": 3}
    vs.collect_all(
        [
            s.sink_parquet(out, lazy=True, rows_per_file=100, **ckpt),
            s.sink_callback(look, lazy=True, **ckpt),
        ]
    )
    assert len({e for e, _, _ in checks}) >= 5  # several epochs, several batches each
    assert all(seen == committed for _, seen, committed in checks), checks
    assert any(seen > 0 for _, seen, _ in checks)
    # staged files were somewhere else, beside the output
    assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in out.iterdir())
    assert _see(out) == ROWS


def test_readers_see_the_committed_rows_after_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    delivered: dict[int, int] = {}

    def look(df: pl.DataFrame, epoch: int) -> None:
        delivered[epoch] = delivered.get(epoch, 0) + df.height
        if sum(delivered.values()) >= 3_000:
            msg = "stop here"
            raise RuntimeError(msg)

    s = _stream()
    ckpt: dict[str, Any] = {"checkpoint_dir": tmp_path / "c", "checkpoint_interval": 3}
    with pytest.raises(Exception, match="stop here"):
        vs.collect_all(
            [
                s.sink_parquet(out, lazy=True, rows_per_file=100, **ckpt),
                s.sink_callback(look, lazy=True, **ckpt),
            ]
        )
    last = max(delivered)
    assert _see(out) == sum(n for e, n in delivered.items() if e < last) > 0


def test_a_plain_run_shows_only_complete_part_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[int] = []
    s = _stream()
    vs.collect_all(
        [
            s.sink_parquet(out, lazy=True, rows_per_file=300),
            s.sink_callback(lambda df: seen.append(_see(out)), lazy=True),
        ]
    )
    assert seen == sorted(seen)
    assert all(n % 300 == 0 for n in seen)  # whole files only
    assert seen[-1] > 0
    assert _see(out) == ROWS
    assert not (tmp_path / ".out.vstream").exists()  # a plain run leaves nothing beside


def test_files_of_a_killed_writer_are_cleaned_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    tmp = tmp_path / ".out.vstream" / "tmp"
    tmp.mkdir(parents=True)
    stale = tmp / f"part-{int(dead.stdout)}-7f00-000003.parquet"
    live = tmp / f"part-{os.getpid()}-7f00-000003.parquet"  # a running writer's
    stale.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    _stream(rows=10).sink_parquet(out, mode="append")
    assert not stale.exists()
    assert live.exists()
    assert _see(out) == ROWS + 10


# ---------------------------------------------------------------------- item 7: modes
def test_rerunning_a_plain_sink_is_refused_by_default(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SinkError, match=r"not empty .*mode='append'.*mode='overwrite'"):
        _stream().sink_parquet(out)  # the notebook cell run twice
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _see(out) == ROWS


def test_a_non_empty_directory_is_refused_by_default_with_checkpoints_too(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    with pytest.raises(SinkError, match="not empty"):
        _stream().sink_parquet(out, checkpoint_dir=tmp_path / "c")
    assert not (tmp_path / ".out.vstream" / "owner.json").exists()  # nothing claimed


def test_overwrite_replaces_the_content(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out, rows_per_file=1_000)
    (out / "sub").mkdir()
    (out / "sub" / "old.parquet").write_bytes(b"old")
    _stream(rows=700).sink_parquet(out, mode="overwrite")
    assert_frame_equal(pl.read_parquet(out), _frame(700))


def test_overwrite_with_checkpoints_starts_afresh_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out)
    _stream(rows=700).sink_parquet(out, mode="overwrite", checkpoint_dir=tmp_path / "c")
    # resuming its own output never deletes it
    with pytest.warns(vs.CheckpointWarning, match="nothing to do"):
        _stream(rows=700).sink_parquet(out, mode="overwrite", checkpoint_dir=tmp_path / "c")
    assert_frame_equal(pl.read_parquet(out).sort("ts"), _frame(700))


def test_append_adds_part_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _stream().sink_parquet(out)
    _stream(rows=700).sink_parquet(out, mode="append")
    assert _see(out) == ROWS + 700


def test_bad_mode_fails_when_built(tmp_path: Path) -> None:
    with pytest.raises(vs.PipelineError, match="mode must be one of"):
        _stream().sink_parquet(tmp_path / "out", mode="replace", lazy=True)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_single_file(tmp_path: Path) -> None:
    target = tmp_path / "result.parquet"
    _stream().sink_parquet(target, rows_per_file=333)
    assert target.is_file()
    assert_frame_equal(pl.read_parquet(target), _frame())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.parquet"]


def test_single_file_of_an_empty_stream(tmp_path: Path) -> None:
    target = tmp_path / "empty.parquet"
    _stream().filter(pl.col("x") < 0).sink_parquet(target)
    assert_frame_equal(pl.read_parquet(target), _frame().clear())


def test_single_file_appears_at_once(tmp_path: Path) -> None:
    target = tmp_path / "result.parquet"
    exists: list[bool] = []
    s = _stream()
    vs.collect_all(
        [
            s.sink_parquet(target, lazy=True, rows_per_file=100),
            s.sink_callback(lambda df: exists.append(target.exists()), lazy=True),
        ]
    )
    assert exists
    assert not any(exists)
    assert pl.read_parquet(target).height == ROWS


def test_single_file_modes(tmp_path: Path) -> None:
    target = tmp_path / "result.parquet"
    _stream(rows=10).sink_parquet(target)
    with pytest.raises(SinkError, match="already exists; pass mode='overwrite'"):
        _stream().sink_parquet(target)
    assert pl.read_parquet(target).height == 10
    _stream(rows=20).sink_parquet(target, mode="overwrite")
    assert pl.read_parquet(target).height == 20
    with pytest.raises(vs.PipelineError, match="cannot append to the Parquet file"):
        _stream().sink_parquet(target, mode="append")


def test_single_file_is_not_written_by_a_failed_run(tmp_path: Path) -> None:
    target = tmp_path / "result.parquet"
    _stream(rows=10).sink_parquet(target)

    def fail(df: pl.DataFrame) -> pl.DataFrame:
        if df.height and df["ts"].max() >= 1_000:  # type: ignore[operator]
            msg = "bad batch"
            raise ValueError(msg)
        return df

    with pytest.raises(Exception, match="bad batch"):
        _stream().map_batches(fail).sink_parquet(target, mode="overwrite")
    assert pl.read_parquet(target).height == 10  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.parquet"]


def test_single_file_refusals_when_built(tmp_path: Path, endless: Any) -> None:
    with pytest.raises(vs.PipelineError, match="cannot be written exactly-once"):
        _stream().sink_parquet(tmp_path / "r.parquet", checkpoint_dir=tmp_path / "c")
    with pytest.raises(vs.PipelineError, match="unbounded"):
        endless.stream().sink_parquet(tmp_path / "r.parquet", lazy=True)
    assert not (tmp_path / "r.parquet").exists()


def test_an_existing_directory_named_like_a_file_stays_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "data.parquet"  # as Spark writes them
    target.mkdir()
    _stream().sink_parquet(target)
    assert target.is_dir()
    assert _see(target) == ROWS


# ---------------------------------------------------------------------- item 8: mounts
_BIND_SCRIPT = """
import sys
import polars as pl
import vstream as vs
from vstream.io.sinks import SinkError

mnt, ckpt = sys.argv[1], sys.argv[2]
s = vs.from_polars(pl.DataFrame({"x": range(1000)}), batch_size=100)
s.sink_parquet(mnt + "/out", checkpoint_dir=ckpt, checkpoint_interval=2)
assert pl.read_parquet(mnt + "/out").height == 1000
try:  # the mount point itself: nothing can be renamed into it from beside it
    s.sink_parquet(mnt, checkpoint_dir=ckpt + "2", mode="append")
except SinkError as exc:
    print("refused:", exc)
print("ok")
"""


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _unshare_works(), reason="unshare -rm (a user mount namespace) is not allowed here"
)
def test_output_on_a_bind_mount(tmp_path: Path) -> None:
    """The output on a bind mount of the checkpoint's file system (same st_dev, as a
    container volume): a rename out of the checkpoint into it fails with EXDEV, so the
    sink stages beside the output, inside the mount."""
    vol, mnt = tmp_path / "vol", tmp_path / "mnt"
    vol.mkdir()
    mnt.mkdir()
    script = tmp_path / "bind.py"
    script.write_text(_BIND_SCRIPT)
    cmd = f"mount --bind {vol} {mnt} && {sys.executable} {script} {mnt} {tmp_path / 'ckpt'}"
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout
    assert "refused:" in done.stdout
    assert "mount point" in done.stdout
    # what the run wrote through the mount is in the volume
    assert pl.read_parquet(vol / "out").height == 1000


def test_a_cross_device_rename_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.rename

    def exdev(src: Any, dst: Any) -> None:
        if "vstream-probe" in str(dst):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real(src, dst)

    monkeypatch.setattr(os, "rename", exdev)
    with pytest.raises(
        SinkError,
        match=r"cannot move files into the output.*invalid cross-device link.*subdirectory",
    ):
        _stream().sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "c")


# ---------------------------------------------------------------------- ENOSPC (item 14)
def test_a_full_output_disk_names_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: pl.DataFrame, *args: Any, **kwargs: Any) -> None:
        # what Polars raises when the disk fills up
        raise pl.exceptions.ComputeError("failed to write: No space left on device (os error 28)")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    for ckpt in (None, tmp_path / "c"):
        out = tmp_path / f"out-{ckpt is None}"
        with pytest.raises(SinkError) as info:
            _stream().sink_parquet(out, checkpoint_dir=ckpt)
        msg = str(info.value)
        assert "no space left on device" in msg
        assert str(tmp_path / f".{out.name}.vstream") in msg
        assert "free space" in msg


_FULL_SCRIPT = """
import sys
import numpy as np
import polars as pl
import vstream as vs
from vstream.io.sinks import SinkError

mnt, ckpt = sys.argv[1], sys.argv[2]
df = pl.DataFrame({"ts": np.arange(300_000), "x": np.random.default_rng(0).random(300_000)})
for checkpoint_dir in (None, ckpt):
    try:
        vs.from_polars(df, batch_size=50_000).sink_parquet(
            mnt + f"/out-{checkpoint_dir is None}",
            checkpoint_dir=checkpoint_dir,
            rows_per_file=100_000,
            compression="uncompressed",
        )
    except SinkError as exc:
        print("refused:", exc)
"""


@pytest.mark.skipif(
    not _unshare_works(), reason="unshare -rm (a user mount namespace) is not allowed here"
)
def test_a_really_full_disk(tmp_path: Path) -> None:
    """A 1 MB tmpfs fills up: what Polars raises (a ComputeError naming os error 28) is
    a SinkError naming the directory."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "full.py"
    script.write_text(_FULL_SCRIPT)
    cmd = (
        f"mount -t tmpfs -o size=1m tmpfs {mnt} && "
        f"{sys.executable} {script} {mnt} {tmp_path / 'ckpt'}"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("refused:")]
    assert len(lines) == 2, done.stdout
    for line in lines:
        assert "no space left on device" in line
        assert str(mnt) in line
        assert "free space" in line


def test_a_full_checkpoint_disk_names_the_directory_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "ckpt"
    real = os.fsync
    manifests = [0]

    def full(fd: int) -> None:
        # the disk of the checkpoint dir fills up while its third checkpoint is written
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(ckpt)) and path.endswith("manifest.json"):
            manifests[0] += 1
            if manifests[0] == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(vs.CheckpointError) as info:
        _stream().sink_parquet(tmp_path / "out", checkpoint_dir=ckpt, checkpoint_interval=3)
    msg = str(info.value)
    assert str(ckpt) in msg
    assert "no space left on device" in msg
    assert "free space" in msg
    monkeypatch.undo()
    assert len(list(ckpt.glob("chk-*"))) == 2
    # space freed: the run resumes from its last checkpoint and ends with every row once
    _stream().sink_parquet(tmp_path / "out", checkpoint_dir=ckpt, checkpoint_interval=3)
    assert_frame_equal(pl.read_parquet(tmp_path / "out").sort("ts"), _frame())
