"""Sinks: where a branch's batches go (memory, a callback, Parquet part files)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast, get_args

import polars as pl

from vstream._files import fsync, os_problem
from vstream.errors import CheckpointError, PipelineError, SinkError

__all__ = [
    "CallbackSink",
    "CollectSink",
    "ParquetSink",
    "ResultsSink",
    "Sink",
    "SinkError",
    "SinkMode",
    "takes_epoch",
]


class Sink:
    """Takes a branch's batches. ``close`` is called once at the end of the run.

    With checkpoints a sink takes part in a two-phase commit: rows written during epoch
    ``e`` are staged by :meth:`precommit` (whose JSON state the checkpoint manifest
    lists), and made visible by :meth:`commit` once that manifest is durable. After a
    restart, :meth:`recover` gets the state of the checkpoint the run resumes from.
    A sink that keeps rows in memory has nothing to stage.
    """

    label = "sink"
    #: the epoch whose rows :meth:`write` receives (0 without checkpoints)
    epoch = 0

    def open(self, schema: pl.Schema) -> None:
        self.schema = schema

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        """Called before :meth:`open` when the run checkpoints into ``checkpoint_dir``;
        ``index`` is the sink's place among the run's targets."""

    def recover(self, epoch: int, state: dict[str, Any] | None) -> None:
        """After :meth:`open`: the run resumes after checkpoint ``epoch`` (0: none), whose
        manifest holds ``state`` for this sink. Redo its commit, drop anything later."""
        self.epoch = epoch + 1

    def precommit(self, epoch: int) -> dict[str, Any]:
        """Stage every row of ``epoch`` durably; returns what :meth:`commit` needs."""
        return {}

    def commit(self, epoch: int, state: dict[str, Any]) -> None:
        """The checkpoint of ``epoch`` is durable: make its rows visible; the next rows
        belong to ``epoch + 1``."""
        self.epoch = epoch + 1

    def write(self, df: pl.DataFrame) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called now and then with the wall clock (time-based flushes)."""

    def close(self) -> None:
        """The run has ended (finished, stopped or failed)."""


class CollectSink(Sink):
    label = "collect"

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []

    def write(self, df: pl.DataFrame) -> None:
        self.frames.append(df)

    def result(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=self.schema)
        # no rechunk: Polars works on chunked frames, and copying 10 M rows costs ~0.2 s
        return pl.concat(self.frames, how="vertical", rechunk=False)


class ResultsSink(Sink):
    """Keeps the newest ``keep`` rows for a background job, readable while it runs."""

    label = "results"

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._frames: deque[pl.DataFrame] = deque()
        self._rows = 0
        self._lock = threading.Lock()

    def write(self, df: pl.DataFrame) -> None:
        with self._lock:
            self._frames.append(df)
            self._rows += df.height
            while self._frames and self._rows - self._frames[0].height >= self.keep:
                self._rows -= self._frames.popleft().height

    def result(self) -> pl.DataFrame:
        with self._lock:
            frames = list(self._frames)
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames, how="vertical").tail(self.keep)


class CallbackSink(Sink):
    """Calls ``fn(df)``, or ``fn(df, epoch)`` when the run checkpoints (at least once:
    after a restart, the epochs after the last checkpoint are delivered again)."""

    def __init__(self, fn: Callable[..., object], *, with_epoch: bool = False) -> None:
        if not callable(fn):
            msg = f"sink_callback takes a function of a polars.DataFrame, got {type(fn).__name__}"
            raise PipelineError(msg)
        self.fn = fn
        self.with_epoch = with_epoch
        self.label = f"sink_callback({getattr(fn, '__name__', type(fn).__name__)})"

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        # a lazy sink_callback run by collect_all / start_all with a checkpoint_dir: the
        # function needs the epoch to drop the rows a restart delivers again
        if not self.with_epoch:
            if not takes_epoch(self.fn):
                msg = (
                    f"{self.label}: the run checkpoints, so the function is called as "
                    "fn(df, epoch) (the epoch id lets it drop rows a restart delivers "
                    "again); it does not take two arguments"
                )
                raise PipelineError(msg)
            self.with_epoch = True

    def write(self, df: pl.DataFrame) -> None:
        if self.with_epoch:
            self.fn(df, self.epoch)
        else:
            self.fn(df)


def takes_epoch(fn: Callable[..., object]) -> bool:
    """Whether ``fn`` can be called as ``fn(df, epoch)``."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True


_PART = re.compile(r"^part-(\d+)\.parquet$")
# with checkpoints: part-<epoch>-<k>.parquet, names fixed by the epoch, so a redone
# commit renames the same files again
_EPOCH_PART = re.compile(r"^part-(\d{8,})-(\d{4,})\.parquet$")
_COMPRESSIONS = frozenset({"lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"})
#: what ``sink_parquet`` does with an output that is not its own checkpointed output
SinkMode = Literal["error", "overwrite", "append"]
_MODES: tuple[str, ...] = get_args(SinkMode)
#: the claim a checkpointed sink writes into its own directory beside the output
_OWNER = "owner.json"
_CLAIM = "vstream-output-claim"
#: what a process writes into the sink's ``tmp/``: its pid tells whether it still runs
_TMP = re.compile(r"^(?:part|whole|owner|probe)-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def _write_errors() -> tuple[type[BaseException], ...]:
    """What writing a Parquet file may raise: OS errors, Polars errors (ENOSPC comes as
    a ComputeError), and a Rust panic (a BaseException)."""
    from polars.exceptions import PanicException, PolarsError

    return (OSError, PolarsError, PanicException)


def _lstat_kind(path: Path) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


class ParquetSink(Sink):
    """Parquet output: part files ``part-000000.parquet`` ... in a directory, or one file.

    A file holds up to ``rows_per_file`` rows; a partial file is written when
    ``flush_interval`` seconds have passed since its first row, and at the end.
    Numbering continues after the part files already in the directory (``mode="append"``).

    The output directory holds committed part files and nothing else, so that
    ``pl.read_parquet(out)``, ``pl.scan_parquet(out)`` and ``pyarrow.dataset`` see the
    committed rows at every moment (Polars reads a directory recursively and refuses mixed
    extensions; it skips no hidden name). Everything else lives in the sink's own
    directory beside it, ``.<name>.vstream/`` (on the same file system, so a rename moves
    a file in): ``tmp/`` for files being written, and with checkpoints ``pending/`` for
    the part files staged during an epoch and ``owner.json``, the claim naming the
    checkpoint (and the sink) whose committed output the directory is.

    With checkpoints, files are named ``part-<epoch>-<k>.parquet``; a checkpoint lists
    the staged names and, once it is durable, they are renamed into the output directory.

    A path ending in ``.parquet`` that is not an existing directory is one file (a
    bounded run, no checkpoints): parts are written to ``tmp/`` and, at the end of a run
    that did not fail, joined into a temporary file renamed onto the path.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_file: int,
        flush_interval: float | None,
        compression: str,
        mode: str = "error",
    ) -> None:
        if (
            isinstance(rows_per_file, bool)
            or not isinstance(rows_per_file, int)
            or (rows_per_file < 1)
        ):
            msg = f"sink_parquet: rows_per_file must be an int >= 1, got {rows_per_file!r}"
            raise PipelineError(msg)
        if compression not in _COMPRESSIONS:
            allowed = sorted(_COMPRESSIONS)
            msg = f"sink_parquet: compression must be one of {allowed}, got {compression!r}"
            raise PipelineError(msg)
        if mode not in _MODES:
            msg = f"sink_parquet: mode must be one of {list(_MODES)}, got {mode!r}"
            raise PipelineError(msg)
        self.dir = Path(path)
        self.single = str(path).endswith(".parquet") and not self.dir.is_dir()
        if self.single and mode == "append":
            msg = (
                f"sink_parquet: cannot append to the Parquet file {str(self.dir)!r}; write "
                "to a directory of part files (a path not ending in .parquet) to append"
            )
            raise PipelineError(msg)
        if not self.single and self.dir.exists() and not self.dir.is_dir():
            msg = f"sink_parquet: {str(self.dir)!r} exists and is not a directory"
            raise PipelineError(msg)
        self.mode = mode
        self.rows_per_file = rows_per_file
        self.flush_interval = flush_interval
        self.compression = compression
        self.label = f"sink_parquet({str(self.dir)!r})"
        # the sink's own directory, beside the real output (not beside a symbolic link
        # to it: a rename must not cross file systems)
        real = Path(os.path.realpath(self.dir))
        self.home = real.parent / f".{real.name}.vstream"
        self._tmp = self.home / "tmp"
        self._pending = self.home / "pending"
        self.files: list[Path] = []
        self._chunks: list[Path] = []  # single file: the parts to join at the end
        self._buf: list[pl.DataFrame] = []
        self._rows = 0
        self._since = 0.0
        self._seq = 0
        self._ckpt: Path | None = None
        self._index = 0
        self._staged: list[str] = []
        self._k = 0

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        if self.single:
            msg = (
                f"{self.label}: a single Parquet file cannot be written exactly-once with "
                "checkpoints; pass a directory (a path not ending in .parquet)"
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
                committed = [n for n in found if _EPOCH_PART.match(n)]
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
        taken = [int(m.group(1)) for p in self.dir.iterdir() if (m := _PART.match(p.name))]
        self._seq = max(taken, default=-1) + 1

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
            for p in self.dir.iterdir()
            if (m := _EPOCH_PART.match(p.name)) and int(m.group(1)) > epoch
        ]
        if later and epoch == 0:
            msg = (
                f"{self.label}: the directory holds {len(later)} part files of a checkpointed "
                f"run (e.g. {later[0].name}) but {str(self._ckpt)!r} has no checkpoint; "
                "pass the checkpoint_dir that wrote them, or write to an empty directory"
            )
            raise CheckpointError(msg)
        if state:
            self._publish(state)
        # what a damaged (skipped) later checkpoint committed is written again
        for p in later:
            p.unlink()
        # staged files no checkpoint lists belong to the epoch the crash interrupted
        for p in self._pending.iterdir():
            if _EPOCH_PART.match(p.name):
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
        # names only (checked against part-<epoch>-<k>.parquet when the checkpoint was
        # read): nothing from the checkpoint says where to move files from or to
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
        for name in names:
            src, dst = self._pending / name, self.dir / name
            try:
                os.replace(src, dst)
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
        if names:
            fsync(self.dir)

    # ------------------------------------------------------------------ writing
    def write(self, df: pl.DataFrame) -> None:
        if not self._buf:
            self._since = time.monotonic()
        self._buf.append(df)
        self._rows += df.height
        while self._rows >= self.rows_per_file:
            whole = pl.concat(self._buf, how="vertical")
            self._write_file(whole.head(self.rows_per_file))
            rest = whole.slice(self.rows_per_file)
            self._buf = [rest] if rest.height else []
            self._rows = rest.height

    def tick(self, now: float) -> None:
        if (
            self._buf
            and self.flush_interval is not None
            and now - self._since >= self.flush_interval
        ):
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._write_file(pl.concat(self._buf, how="vertical"))
            self._buf, self._rows = [], 0

    def _write_parquet(self, df: pl.DataFrame | pl.LazyFrame, path: Path, doing: str) -> None:
        """Write ``df`` to ``path`` durably; any failure is a SinkError naming the step,
        the directory and what to do (no space left, ...)."""
        try:
            if isinstance(df, pl.LazyFrame):
                df.sink_parquet(path, compression=self.compression)  # type: ignore[call-overload]
            else:
                df.write_parquet(path, compression=self.compression)  # type: ignore[arg-type]
            fsync(path)
        except _write_errors() as exc:
            path.unlink(missing_ok=True)
            msg = os_problem(exc, f"{self.label}: {doing}", path.parent)
            raise SinkError(msg) from exc

    def _write_file(self, df: pl.DataFrame) -> None:
        if self._ckpt is not None:
            self._stage(df)
            return
        tmp = self._tmp / f"part-{os.getpid()}-{id(self):x}-{self._seq:06d}.parquet"
        try:  # again: another sink into the same directory may have ended and removed it
            self._mkdir(self.home)
            self._mkdir(self._tmp)
        except OSError as exc:
            msg = os_problem(exc, f"{self.label}: cannot write part {self._seq}", self.home)
            raise SinkError(msg) from exc
        self._write_parquet(df, tmp, f"cannot write part {self._seq}")
        if self.single:
            self._chunks.append(tmp)
            self._seq += 1
            return
        try:
            # claim the next free name atomically: a hard link fails if the name exists,
            # so two sinks (or runs) writing into one directory never replace each other
            while True:
                final = self.dir / f"part-{self._seq:06d}.parquet"
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    self._seq += 1
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    # no hard links on this file system: a plain rename (not race-free)
                    while final.exists():
                        self._seq += 1
                        final = self.dir / f"part-{self._seq:06d}.parquet"
                    os.replace(tmp, final)
                    break
                os.unlink(tmp)
                break
        except OSError as exc:
            msg = os_problem(
                exc, f"{self.label}: cannot write part-{self._seq:06d}.parquet", self.dir
            )
            raise SinkError(msg) from exc
        self.files.append(final)
        self._seq += 1

    def _stage(self, df: pl.DataFrame) -> None:
        name = f"part-{self.epoch:08d}-{self._k:04d}.parquet"
        self._write_parquet(df, self._pending / name, f"cannot stage {name}")
        self._staged.append(name)
        self._k += 1

    def _write_single(self) -> None:
        """Join the parts into one file, renamed onto the path at once."""
        tmp = self._tmp / f"whole-{os.getpid()}-{id(self):x}.parquet"
        if self._chunks:
            joined = pl.scan_parquet(self._chunks)
        else:
            joined = pl.DataFrame(schema=self.schema).lazy()
        self._write_parquet(joined, tmp, f"cannot write {self.dir.name}")
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
