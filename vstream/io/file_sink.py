"""File sinks: part files of one format (:mod:`vstream.io.file_formats`) in a directory,
optionally in Hive-style partition directories, or one file; exactly-once with
checkpoints.

One mechanism serves every format: :class:`FileSink` takes a format strategy, and
:class:`ParquetSink` is the Parquet sink ``sink_parquet`` has always built.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import polars as pl

from vstream._files import fsync, os_problem
from vstream.errors import CheckpointError, PipelineError, SinkError
from vstream.io.file_formats import (
    MAX_SEGMENT_BYTES,
    FileFormat,
    IpcFormat,
    ParquetFormat,
    check_partition_columns,
    hive_segment,
)
from vstream.io.sink_base import MODES, Sink

__all__ = ["FileSink", "ParquetSink"]

#: the claim a checkpointed sink writes into its own directory beside the output
_OWNER = "owner.json"
_CLAIM = "vstream-output-claim"
#: what a process writes into the sink's ``tmp/``: its pid tells whether it still runs
_TMP = re.compile(r"^(?:part|whole|owner|probe)-(\d+)-")
#: any format's file staged by a checkpointed run (``part-<epoch>-<k>.<ext>``)
_ANY_EPOCH_PART = re.compile(r"^part-\d{8,}-\d{4,}\.")
#: the format of a single-file output's parts: exact types, fast to write and to scan
_CHUNKS = IpcFormat("lz4")
#: the columns a partitioned batch is split by (the partition values as text)
_KEY = "__vstream_partition_{}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def _write_errors() -> tuple[type[BaseException], ...]:
    """What writing a file may raise: OS errors, Polars errors (ENOSPC comes as a
    ComputeError), and a Rust panic (a BaseException)."""
    from polars.exceptions import PanicException, PolarsError

    return (OSError, PolarsError, PanicException)


def _lstat_kind(path: Path) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def _walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (symbolic links are not followed)."""
    for d, _, names in os.walk(root):
        for name in names:
            yield Path(d) / name


class FileSink(Sink):
    """Part files of format ``fmt`` in a directory (``part-000000<ext>`` ...), in
    Hive-style ``col=value/`` directories with ``partition_by``, or one file.

    A file holds up to ``max_rows_per_file`` rows (a partition's rows roll over to a
    new file); a partial file is written when ``flush_interval`` seconds have passed
    since the first buffered row, at every checkpoint, and at the end. Numbering
    continues after the part files already in a directory (``mode="append"``).

    The output directory holds committed part files and nothing else, so that readers
    (``pl.scan_parquet(out)``, ``pyarrow.dataset``) see the committed rows at every
    moment (Polars reads a directory recursively and refuses mixed extensions; it skips
    no hidden name). Everything else lives in the sink's own directory beside it,
    ``.<name>.vstream/`` (on the same file system, so a rename moves a file in):
    ``tmp/`` for files being written, and with checkpoints ``pending/`` for the part
    files staged during an epoch and ``owner.json``, the claim naming the checkpoint
    (and the sink) whose committed output the directory is.

    With checkpoints, files are named ``part-<epoch>-<k><ext>`` (``k`` counts the files
    of an epoch over all partitions, so ``pending/`` is flat); a checkpoint lists them
    by their path in the output and, once it is durable, they are renamed into it.

    A path ending in one of the format's suffixes (``.parquet``, ``.csv``, ...) that is
    not an existing directory is one file (a bounded run, no checkpoints, no
    partitions): parts are written to ``tmp/`` as Arrow IPC and, at the end of a run
    that did not fail, joined into a temporary file renamed onto the path.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: FileFormat,
        *,
        max_rows_per_file: int,
        flush_interval: float | None,
        mode: str = "error",
        partition_by: str | Sequence[str] | None = None,
    ) -> None:
        where = f"sink_{fmt.name}"
        if (
            isinstance(max_rows_per_file, bool)
            or not isinstance(max_rows_per_file, int)
            or (max_rows_per_file < 1)
        ):
            what = "rows_per_file" if isinstance(self, ParquetSink) else "max_rows_per_file"
            msg = f"{where}: {what} must be an int >= 1, got {max_rows_per_file!r}"
            raise PipelineError(msg)
        if mode not in MODES:
            msg = f"{where}: mode must be one of {list(MODES)}, got {mode!r}"
            raise PipelineError(msg)
        self.fmt = fmt
        self.partition_by = check_partition_columns(partition_by, None, where)
        self.dir = Path(path)
        self.single = str(path).endswith(fmt.single_suffixes) and not self.dir.is_dir()
        if self.single and mode == "append":
            msg = (
                f"{where}: cannot append to the {fmt.title} file {str(self.dir)!r}; write "
                f"to a directory of part files (a path not ending in {fmt.ext}) to append"
            )
            raise PipelineError(msg)
        if self.single and self.partition_by:
            msg = (
                f"{where}: {str(self.dir)!r} is one {fmt.title} file; partition_by writes "
                f"directories: pass a directory (a path not ending in {fmt.ext})"
            )
            raise PipelineError(msg)
        if not self.single and self.dir.exists() and not self.dir.is_dir():
            msg = f"{where}: {str(self.dir)!r} exists and is not a directory"
            raise PipelineError(msg)
        self.mode = mode
        self.max_rows_per_file = max_rows_per_file
        self.flush_interval = flush_interval
        self.label = f"{where}({str(self.dir)!r})"
        ext = re.escape(fmt.ext)
        self._part = re.compile(rf"^part-(\d+){ext}$")
        # with checkpoints: names fixed by the epoch, so a redone commit renames the same
        # files again
        self._epoch_part = re.compile(rf"^part-(\d{{8,}})-(\d{{4,}}){ext}$")
        # the sink's own directory, beside the real output (not beside a symbolic link
        # to it: a rename must not cross file systems)
        real = Path(os.path.realpath(self.dir))
        self.home = real.parent / f".{real.name}.vstream"
        self._tmp = self.home / "tmp"
        self._pending = self.home / "pending"
        self.files: list[Path] = []
        self._chunks: list[Path] = []  # single file: the parts to join at the end
        # buffered rows by partition directory ("" without partitions)
        self._buf: dict[str, list[pl.DataFrame]] = {}
        self._rows: dict[str, int] = {}
        self._since = 0.0
        self._seq: dict[str, int] = {}  # next part number by directory (no checkpoints)
        self._dirs: set[str] = set()  # partition directories known to be plain
        self._ckpt: Path | None = None
        self._index = 0
        self._staged: list[str] = []
        self._k = 0

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        if self.single:
            msg = (
                f"{self.label}: a single {self.fmt.title} file cannot be written "
                f"exactly-once with checkpoints; pass a directory (a path not ending in "
                f"{self.fmt.ext})"
            )
            raise PipelineError(msg)
        real_out, real_ckpt = os.path.realpath(self.dir), os.path.realpath(checkpoint_dir)
        if os.path.commonpath([real_out, real_ckpt]) in (real_out, real_ckpt):
            # readers of the output would read the checkpoint's files (or the reverse)
            msg = (
                f"{self.label}: the output directory and checkpoint_dir "
                f"{str(checkpoint_dir)!r} are inside one another; put them side by side "
                "(e.g. out/ and ckpt/)"
            )
            raise PipelineError(msg)
        self._ckpt = Path(checkpoint_dir)
        self._index = index

    # ------------------------------------------------------------------ opening
    def open(self, schema: pl.Schema) -> None:
        super().open(schema)
        self.fmt.check_schema(schema, self.label)
        check_partition_columns(self.partition_by or None, schema, self.label)
        try:
            if self.single:
                self._open_file()
                self._open_home()
            else:
                # refusals first, then the staging directory (and its probe), and only
                # then what changes the output: deleting it (overwrite), claiming it
                overwrite, claim = self._check_dir()
                self._open_home()
                self._take_dir(overwrite, claim)
        except OSError as exc:
            msg = os_problem(exc, f"{self.label}: cannot prepare the output", self.dir)
            raise SinkError(msg) from exc

    def _open_file(self) -> None:
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        if self.mode == "error" and _lstat_kind(self.dir) is not None:
            msg = (
                f"{self.label}: the file already exists; pass mode='overwrite' to replace "
                "it (at the end of the run, at once), or write to another path"
            )
            raise SinkError(msg)

    def _claim(self) -> dict[str, Any] | None:
        """What this sink writes into ``owner.json`` (None: it claims nothing)."""
        if self._ckpt is None:
            return None
        return {
            "format": _CLAIM,
            "checkpoint_dir": os.path.realpath(self._ckpt),
            "sink": self._index,
        }

    def _owner(self) -> dict[str, Any] | None:
        path = self.home / _OWNER
        kind = _lstat_kind(path)
        if kind is None:
            return None
        try:
            owner = json.loads(path.read_text(encoding="utf-8")) if kind == stat.S_IFREG else None
        except (OSError, ValueError):
            owner = None
        if (
            not isinstance(owner, dict)
            or owner.get("format") != _CLAIM
            or not isinstance(owner.get("checkpoint_dir"), str)
            or not isinstance(owner.get("sink"), int)
        ):
            msg = (
                f"{self.label}: {str(path)!r}, the claim of a checkpointed run on this output, "
                "is damaged; if no checkpointed run writes here any more, remove it "
                f"(or the whole {str(self.home)!r})"
            )
            raise SinkError(msg)
        return owner

    def _check_dir(self) -> tuple[bool, dict[str, Any] | None]:
        """Refuse a directory that is not ours to write; returns whether to delete its
        content first (overwrite) and the claim to write (a checkpointed sink's first
        run into it)."""
        existed = self.dir.is_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        owner, mine = self._owner(), self._claim()
        if owner is not None and not existed:
            # the user removed the output it claimed: the claim goes with it
            (self.home / _OWNER).unlink()
            owner = None
        if owner is not None and owner != mine:
            whose = f"the checkpointed run of checkpoint_dir {owner['checkpoint_dir']!r}"
            if mine is not None and owner["checkpoint_dir"] == mine["checkpoint_dir"]:
                whose = f"another sink (number {owner['sink']}) of this run"
            msg = (
                f"{self.label}: the directory is the output of {whose}; a directory takes "
                "one checkpointed sink's output. Write to another directory; if that run "
                f"is gone for good, remove {str(self.dir)!r} and {str(self.home)!r} (and "
                "its checkpoint_dir) to start afresh"
            )
            raise SinkError(msg)
        if owner is None:  # not this sink's checkpointed output: mode decides
            found = sorted(p.name for p in self.dir.iterdir())
            if found and self.mode == "error":
                msg = (
                    f"{self.label}: the directory is not empty ({len(found)} "
                    f"{'entry' if len(found) == 1 else 'entries'}, e.g. "
                    f"{found[0]!r}); pass mode='append' to add part files to it, "
                    "mode='overwrite' to replace its content, or write to another directory"
                )
                raise SinkError(msg)
            if found and self.mode == "overwrite":
                committed = [
                    p.relative_to(self.dir).as_posix()
                    for p in _walk_files(self.dir)
                    if _ANY_EPOCH_PART.match(p.name)
                ]
                if committed:
                    msg = (
                        f"{self.label}: mode='overwrite' refused: the directory holds the "
                        f"committed output of a checkpointed run (e.g. {committed[0]}); "
                        "remove it yourself if that run is gone for good"
                    )
                    raise SinkError(msg)
            return bool(found) and self.mode == "overwrite", mine
        return False, None

    def _take_dir(self, overwrite: bool, claim: dict[str, Any] | None) -> None:
        if overwrite:
            for p in self.dir.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            fsync(self.dir)
        if claim is not None:
            self._write_claim(claim)

    def _write_claim(self, claim: dict[str, Any]) -> None:
        self._mkdir(self.home)
        tmp = self._mkdir(self._tmp) / f"owner-{os.getpid()}-{id(self):x}"
        tmp.write_text(json.dumps(claim), encoding="utf-8")
        fsync(tmp)
        try:
            os.link(tmp, self.home / _OWNER)  # fails if another run claimed it meanwhile
        except FileExistsError:
            msg = f"{self.label}: another run claimed the directory at the same time"
            raise SinkError(msg) from None
        finally:
            tmp.unlink()
        fsync(self.home)

    def _mkdir(self, path: Path) -> Path:
        """Create one of the sink's own directories; a symbolic link there (which would
        lead the sink's deletes and renames elsewhere) is refused."""
        with contextlib.suppress(FileExistsError):
            path.mkdir(exist_ok=True)
        if _lstat_kind(path) != stat.S_IFDIR:
            msg = (
                f"{self.label}: {str(path)!r} is not a directory (a symbolic link?); it is "
                "the sink's own staging directory: remove it"
            )
            raise CheckpointError(msg)
        return path

    def _out_dir(self, rel: str) -> Path:
        """The output directory of partition ``rel`` (made of :func:`hive_segment`
        names, so it stays inside the output), created level by level; a level that is
        not a plain directory (a symbolic link planted there) is refused."""
        where = self.dir
        if not rel or rel in self._dirs:
            return where / rel
        for segment in rel.split("/"):
            where = where / segment
            with contextlib.suppress(FileExistsError):
                where.mkdir()
            if _lstat_kind(where) != stat.S_IFDIR:
                msg = (
                    f"{self.label}: the partition directory {str(where)!r} is not a "
                    "directory (a symbolic link?); remove it"
                )
                raise SinkError(msg)
        self._dirs.add(rel)
        return where

    def _open_home(self) -> None:
        self._mkdir(self.home)
        self._mkdir(self._tmp)
        if self._ckpt is not None:
            self._mkdir(self._pending)
        # what a killed process was writing (a plain run is not restarted to finish it)
        for p in self._tmp.iterdir():
            m = _TMP.match(p.name)
            if m is not None and not _alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    if p.is_dir() and not p.is_symlink():
                        p.rmdir()  # a probe
                    else:
                        p.unlink()
        # a rename from the sink's directory into the output must work: it fails with
        # EXDEV when the output is a mount point itself (a bind mount, a volume); find
        # it out now rather than at the first commit (an empty directory: no reader
        # lists anything in it)
        probe = self._tmp / f"probe-{os.getpid()}-{id(self):x}"
        there = self.dir.parent / f".{self.dir.name}.vstream-probe-{os.getpid()}-{id(self):x}"
        if not self.single:
            there = self.dir / f".vstream-probe-{os.getpid()}-{id(self):x}"
        probe.mkdir(exist_ok=True)
        try:
            os.rename(probe, there)
        except OSError as exc:
            probe.rmdir()
            if self._ckpt is None:  # leave nothing behind
                for d in (self._tmp, self.home):
                    with contextlib.suppress(OSError):
                        d.rmdir()
            msg = os_problem(exc, f"{self.label}: cannot move files into the output", self.dir)
            raise SinkError(msg) from exc
        there.rmdir()

    # ------------------------------------------------------------------ two-phase commit
    def recover(self, epoch: int, state: dict[str, Any] | None) -> None:
        assert self._ckpt is not None
        later = [
            p
            for p in _walk_files(self.dir)
            if (m := self._epoch_part.match(p.name)) and int(m.group(1)) > epoch
        ]
        if later and epoch == 0:
            msg = (
                f"{self.label}: the directory holds {len(later)} part files of a checkpointed "
                f"run (e.g. {later[0].relative_to(self.dir).as_posix()}) but "
                f"{str(self._ckpt)!r} has no checkpoint; pass the checkpoint_dir that "
                "wrote them, or write to an empty directory"
            )
            raise CheckpointError(msg)
        if state:
            self._publish(state)
        # what a damaged (skipped) later checkpoint committed is written again
        for p in later:
            p.unlink()
        # staged files no checkpoint lists belong to the epoch the crash interrupted
        for p in self._pending.iterdir():
            if self._epoch_part.match(p.name):
                p.unlink()
        self.epoch = epoch + 1
        self._k = 0

    def precommit(self, epoch: int) -> dict[str, Any]:
        self._flush()
        files, self._staged = self._staged, []
        if files:
            fsync(self._pending)  # the staged names are durable before a manifest lists them
        # "pending" is for the reader of the manifest, and to tell a resumed run writing
        # elsewhere: files are only ever taken from the sink's own directory
        return {"pending": str(self._pending), "files": files}

    def commit(self, epoch: int, state: dict[str, Any]) -> None:
        self._publish(state)
        self.epoch = epoch + 1
        self._k = 0

    def _publish(self, state: dict[str, Any]) -> None:
        # paths in the output (checked against [col=value/...]part-<epoch>-<k>.<ext>
        # when the checkpoint was read): staged under their last name in the sink's own
        # directory; nothing from the checkpoint says where to move files from or to
        names = cast("list[str]", state.get("files", []))
        staged_in = state.get("pending")
        if names and staged_in is not None and os.path.realpath(staged_in) != str(self._pending):
            msg = (
                f"{self.label}: the checkpoint's part files were staged for another output "
                f"({staged_in!r}; this sink stages in {str(self._pending)!r}); resume it "
                "with the output directory it wrote to, or start afresh with a new "
                "checkpoint_dir"
            )
            raise CheckpointError(msg)
        touched: set[Path] = set()
        for name in names:
            rel, _, base = name.rpartition("/")
            if not self._epoch_part.match(base):
                msg = (
                    f"{self.label}: the checkpoint lists {name!r}, not a {self.fmt.title} "
                    "part file of this sink; resume with the sink that wrote it"
                )
                raise CheckpointError(msg)
            try:
                dst = self._out_dir(rel) / base
                os.replace(self._pending / base, dst)
            except FileNotFoundError:
                if not dst.exists():
                    msg = (
                        f"{self.label}: {name}, listed by the checkpoint, is neither staged "
                        f"in {str(self._pending)!r} nor in the output directory"
                    )
                    raise CheckpointError(msg) from None
            except OSError as exc:
                msg = os_problem(exc, f"{self.label}: cannot commit {name}", self.dir)
                raise SinkError(msg) from exc
            self.files.append(dst)
            touched.add(dst.parent)
        for d in sorted(touched, key=lambda p: -len(p.parts)):
            fsync(d)
        if touched and self.partition_by:
            fsync(self.dir)  # new partition directories

    # ------------------------------------------------------------------ writing
    def write(self, df: pl.DataFrame) -> None:
        if not self._buf:
            self._since = time.monotonic()
        if not self.partition_by:
            self._add("", df)
            return
        for rel, part in self._split(df):
            self._add(rel, part)

    def _split(self, df: pl.DataFrame) -> Iterator[tuple[str, pl.DataFrame]]:
        """``df`` cut by partition: each part with its directory (``col=value/...``)."""
        keys = [_KEY.format(i) for i in range(len(self.partition_by))]
        keyed = df.with_columns(
            pl.col(c).cast(pl.String).alias(k)
            for c, k in zip(self.partition_by, keys, strict=True)
        )
        groups = keyed.partition_by(keys, as_dict=True, maintain_order=True)
        for values, part in groups.items():
            segments = []
            for col, value in zip(self.partition_by, values, strict=True):
                segment = hive_segment(col, cast("str | None", value))
                if len(segment.encode()) > MAX_SEGMENT_BYTES:
                    shown = str(value)[:40]
                    msg = (
                        f"{self.label}: a value of partition column {col!r} "
                        f"({shown!r}...) makes a directory name of {len(segment)} bytes, "
                        f"over the {MAX_SEGMENT_BYTES} a file system takes; partition by a "
                        "shorter column (a date, a hash bucket)"
                    )
                    raise SinkError(msg)
                segments.append(segment)
            yield "/".join(segments), part.drop(keys)

    def _add(self, rel: str, df: pl.DataFrame) -> None:
        buf = self._buf.setdefault(rel, [])
        buf.append(df)
        rows = self._rows.get(rel, 0) + df.height
        while rows >= self.max_rows_per_file:
            whole = pl.concat(buf, how="vertical")
            self._write_file(rel, whole.head(self.max_rows_per_file))
            rest = whole.slice(self.max_rows_per_file)
            buf = [rest] if rest.height else []
            rows = rest.height
        if buf:
            self._buf[rel], self._rows[rel] = buf, rows
        else:
            del self._buf[rel]
            self._rows.pop(rel, None)

    def tick(self, now: float) -> None:
        if (
            self._buf
            and self.flush_interval is not None
            and now - self._since >= self.flush_interval
        ):
            self._flush()

    def _flush(self) -> None:
        bufs, self._buf, self._rows = self._buf, {}, {}
        for rel in sorted(bufs):
            self._write_file(rel, pl.concat(bufs[rel], how="vertical"))

    def _write_to(
        self, df: pl.DataFrame | pl.LazyFrame, path: Path, doing: str, fmt: FileFormat
    ) -> None:
        """Write ``df`` to ``path`` durably; any failure is a SinkError naming the step,
        the directory and what to do (no space left, ...)."""
        try:
            fmt.write(df, path)
            fsync(path)
        except _write_errors() as exc:
            path.unlink(missing_ok=True)
            msg = os_problem(exc, f"{self.label}: {doing}", path.parent)
            raise SinkError(msg) from exc

    def _write_file(self, rel: str, df: pl.DataFrame) -> None:
        if self._ckpt is not None:
            self._stage(rel, df)
            return
        try:  # again: another sink into the same directory may have ended and removed it
            self._mkdir(self.home)
            self._mkdir(self._tmp)
        except OSError as exc:
            msg = os_problem(exc, f"{self.label}: cannot write a part file", self.home)
            raise SinkError(msg) from exc
        if self.single:  # parts as Arrow IPC (exact types), joined at the end
            seq = len(self._chunks)
            tmp = self._tmp / f"part-{os.getpid()}-{id(self):x}-{seq:06d}.arrow"
            self._write_to(df, tmp, f"cannot write part {seq}", _CHUNKS)
            self._chunks.append(tmp)
            return
        try:
            where = self._out_dir(rel)
        except OSError as exc:
            msg = os_problem(exc, f"{self.label}: cannot create {rel}", self.dir)
            raise SinkError(msg) from exc
        if rel not in self._seq:
            taken = [int(m.group(1)) for p in where.iterdir() if (m := self._part.match(p.name))]
            self._seq[rel] = max(taken, default=-1) + 1
        seq = self._seq[rel]
        tmp = self._tmp / f"part-{os.getpid()}-{id(self):x}-{seq:06d}{self.fmt.ext}"
        self._write_to(df, tmp, f"cannot write part {seq}", self.fmt)
        final = where / f"part-{seq:06d}{self.fmt.ext}"
        try:
            # claim the next free name atomically: a hard link fails if the name exists,
            # so two sinks (or runs) writing into one directory never replace each other
            while True:
                final = where / f"part-{seq:06d}{self.fmt.ext}"
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    seq += 1
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    # no hard links on this file system: a plain rename (not race-free)
                    while final.exists():
                        seq += 1
                        final = where / f"part-{seq:06d}{self.fmt.ext}"
                    os.replace(tmp, final)
                    break
                os.unlink(tmp)
                break
        except OSError as exc:
            msg = os_problem(exc, f"{self.label}: cannot write {final.name}", where)
            raise SinkError(msg) from exc
        self.files.append(final)
        self._seq[rel] = seq + 1

    def _stage(self, rel: str, df: pl.DataFrame) -> None:
        name = f"part-{self.epoch:08d}-{self._k:04d}{self.fmt.ext}"
        self._write_to(df, self._pending / name, f"cannot stage {name}", self.fmt)
        self._staged.append(f"{rel}/{name}" if rel else name)
        self._k += 1

    def _write_single(self) -> None:
        """Join the parts into one file, renamed onto the path at once."""
        tmp = self._tmp / f"whole-{os.getpid()}-{id(self):x}{self.fmt.ext}"
        if self._chunks:
            joined = pl.scan_ipc(self._chunks)
        else:
            joined = pl.DataFrame(schema=self.schema).lazy()
        self._write_to(joined, tmp, f"cannot write {self.dir.name}", self.fmt)
        try:
            os.replace(tmp, self.dir)
            fsync(self.dir.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            msg = os_problem(exc, f"{self.label}: cannot write {self.dir.name}", self.dir.parent)
            raise SinkError(msg) from exc
        self.files.append(self.dir)

    def close(self) -> None:
        # with checkpoints, rows after the last one are not committed: a restart
        # writes them again
        failed = sys.exc_info()[1] is not None  # close() runs while the run's error unwinds
        try:
            if self._ckpt is None and not (self.single and failed):
                self._flush()
                if self.single:
                    self._write_single()
        finally:
            for p in self._chunks:
                p.unlink(missing_ok=True)
            self._chunks = []
            if self._ckpt is None:  # nothing of a run without checkpoints stays behind
                for d in (self._tmp, self.home):
                    with contextlib.suppress(OSError):  # in use by another sink
                        d.rmdir()


class ParquetSink(FileSink):
    """Parquet output (``sink_parquet``): :class:`FileSink` with :class:`ParquetFormat`,
    built from its historical arguments."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_file: int,
        flush_interval: float | None,
        compression: str,
        mode: str = "error",
        partition_by: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            path,
            ParquetFormat(compression),  # type: ignore[arg-type]
            max_rows_per_file=rows_per_file,
            flush_interval=flush_interval,
            mode=mode,
            partition_by=partition_by,
        )
        self.compression = compression
