"""Sinks: where a branch's batches go (memory, a callback, Parquet part files)."""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import polars as pl

from vstream._files import fsync
from vstream.errors import CheckpointError, PipelineError, VStreamError

__all__ = ["CallbackSink", "CollectSink", "ParquetSink", "ResultsSink", "Sink"]


class SinkError(VStreamError):
    """A sink failed to write."""


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

    def write(self, df: pl.DataFrame) -> None:
        if self.with_epoch:
            self.fn(df, self.epoch)
        else:
            self.fn(df)


_PART = re.compile(r"^part-(\d+)\.parquet$")
# with checkpoints: part-<epoch>-<k>.parquet, names fixed by the epoch, so a redone
# commit renames the same files again
_EPOCH_PART = re.compile(r"^part-(\d{8,})-(\d+)\.parquet$")
_COMPRESSIONS = frozenset({"lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"})


class ParquetSink(Sink):
    """Part files ``part-000000.parquet`` ... written to a hidden name, then renamed.

    A file holds up to ``rows_per_file`` rows; a partial file is written when
    ``flush_interval`` seconds have passed since its first row, and at the end. Numbering
    continues after the part files already in the directory.

    With checkpoints, files are named ``part-<epoch>-<k>.parquet`` and staged in a
    pending folder (``<checkpoint_dir>/pending/sink-<i>/``, or a hidden folder next to
    the output directory when that is on another file system); a checkpoint lists them
    and, once it is durable, they are renamed into the output directory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_file: int,
        flush_interval: float | None,
        compression: str,
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
        self.dir = Path(path)
        if self.dir.exists() and not self.dir.is_dir():
            msg = f"sink_parquet: {str(self.dir)!r} exists and is not a directory"
            raise PipelineError(msg)
        self.rows_per_file = rows_per_file
        self.flush_interval = flush_interval
        self.compression = compression
        self.label = f"sink_parquet({str(self.dir)!r})"
        self.files: list[Path] = []
        self._buf: list[pl.DataFrame] = []
        self._rows = 0
        self._since = 0.0
        self._ckpt: Path | None = None
        self._index = 0
        self._staged: list[str] = []
        self._k = 0

    def use_checkpoints(self, checkpoint_dir: Path, index: int) -> None:
        self._ckpt = Path(checkpoint_dir)
        self._index = index

    def open(self, schema: pl.Schema) -> None:
        super().open(schema)
        self.dir.mkdir(parents=True, exist_ok=True)
        taken = [int(m.group(1)) for p in self.dir.iterdir() if (m := _PART.match(p.name))]
        self._seq = max(taken, default=-1) + 1
        if self._ckpt is not None:
            self._ckpt.mkdir(parents=True, exist_ok=True)
            pending = self._ckpt / "pending" / f"sink-{self._index}"
            if os.stat(self._ckpt).st_dev != os.stat(self.dir).st_dev:
                # a rename cannot cross file systems: stage next to the output instead
                pending = self.dir.parent / f".{self.dir.name}.pending-{self._index}"
            pending.mkdir(parents=True, exist_ok=True)
            self._pending = pending

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
            if p.is_file():
                p.unlink()
        self.epoch = epoch + 1
        self._k = 0

    def precommit(self, epoch: int) -> dict[str, Any]:
        self._flush()
        files, self._staged = self._staged, []
        if files:
            fsync(self._pending)  # the staged names are durable before a manifest lists them
        return {"pending": str(self._pending), "files": files}

    def commit(self, epoch: int, state: dict[str, Any]) -> None:
        self._publish(state)
        self.epoch = epoch + 1
        self._k = 0

    def _publish(self, state: dict[str, Any]) -> None:
        pending = Path(state["pending"])
        names = cast("list[str]", state["files"])
        for name in names:
            src, dst = pending / name, self.dir / name
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                if not dst.exists():
                    msg = (
                        f"{self.label}: {name}, listed by the checkpoint, is neither staged "
                        f"in {str(pending)!r} nor in the output directory"
                    )
                    raise CheckpointError(msg) from None
            self.files.append(dst)
        if names:
            fsync(self.dir)

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

    def _write_file(self, df: pl.DataFrame) -> None:
        if self._ckpt is not None:
            self._stage(df)
            return
        tmp = self.dir / f".part-{os.getpid()}-{id(self):x}-{self._seq:06d}.parquet.tmp"
        try:
            df.write_parquet(tmp, compression=self.compression)  # type: ignore[arg-type]
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
            msg = f"{self.label}: cannot write part-{self._seq:06d}.parquet: {exc}"
            raise SinkError(msg) from exc
        self.files.append(final)
        self._seq += 1

    def _stage(self, df: pl.DataFrame) -> None:
        name = f"part-{self.epoch:08d}-{self._k:04d}.parquet"
        path = self._pending / name
        try:
            df.write_parquet(path, compression=self.compression)  # type: ignore[arg-type]
            fsync(path)
        except OSError as exc:
            msg = f"{self.label}: cannot stage {name} in {str(self._pending)!r}: {exc}"
            raise SinkError(msg) from exc
        self._staged.append(name)
        self._k += 1

    def close(self) -> None:
        # with checkpoints, rows after the last one are not committed: a restart
        # writes them again
        if self._ckpt is None:
            self._flush()
