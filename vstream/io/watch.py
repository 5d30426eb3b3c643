"""Watched directories: every file that appears in a directory becomes a new split.

``vs.from_parquet("landing/", watch=True)`` and ``vs.from_ndjson("landing/", watch=True)``
read the files there at the start and then every file that appears while the job runs,
each once, as a split of its own (announced with :class:`~vstream.io.base.SplitAdded`).
What is shared by the formats lives here: listing the directory, judging when a file is
complete (its size and modification time unchanged for ``settle``) and too old to read
(``max_file_age``), the order, ``max_files_per_batch``, what the reader reports
(:meth:`~vstream.io.base.Reader.status`: caught up when no unread file waits) and which
files leave the checkpoint (:meth:`~vstream.io.base.Reader.retired_splits`). A format
(:class:`FileFormat`) only opens one file.

A file is named by its path relative to the directory; a checkpoint keeps every file
read (by name) until it is older than ``max_file_age``, so a restart never reads a file
again and the checkpoint stays bounded. Files are complete when they have not changed for
``settle``; the safe way to write into a watched directory is to write a file under a
name the watch skips (starting with ``.`` or ``_``) or elsewhere on the same file system,
and rename it into place.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa

from vstream._duration import Duration, wall_seconds
from vstream.errors import PipelineError, SourceError, VStreamError
from vstream.io._schema import polars_schema
from vstream.io.base import (
    Data,
    Reader,
    ReaderStatus,
    Source,
    SourceEvent,
    SplitAdded,
    SplitEnd,
    SplitPosition,
    SplitStatus,
    ThreadedReader,
    dead_letter_batch,
)
from vstream.io.ndjson import NdjsonSource
from vstream.io.parquet import ParquetSource

__all__ = [
    "FileFormat",
    "FileOrder",
    "NdjsonFiles",
    "ParquetFiles",
    "WatchOptions",
    "WatchSource",
]

FileOrder = Literal["name", "mtime"]

#: the position of a file that went to the dead letters whole or in part: it is done
DEAD = [-1]
#: what reading a bad file raises (beside our own errors): pyarrow on a damaged file,
#: the file system on one that vanished or cannot be opened
_FILE_ERRORS = (VStreamError, OSError, pa.ArrowException, ValueError, EOFError)


@dataclass(frozen=True)
class WatchOptions:
    """How a directory is watched (the ``watch=True`` options of ``from_parquet`` and
    ``from_ndjson``), checked.

    Examples
    --------
    >>> from vstream.io.watch import WatchOptions
    >>> o = WatchOptions.parse(order="mtime", max_file_age="1d", settle=0)
    >>> o.order, o.max_files_per_batch, o.max_file_age, o.poll_interval, o.settle
    ('mtime', 100, 86400.0, 1.0, 0.0)
    >>> WatchOptions.parse(max_files_per_batch=0)
    Traceback (most recent call last):
    ...
    vstream.errors.PipelineError: watch: max_files_per_batch must be an int >= 1, got 0
    """

    order: FileOrder = "name"
    max_files_per_batch: int = 100
    max_file_age: float | None = 7 * 86_400.0
    poll_interval: float = 1.0
    settle: float = 1.0

    @classmethod
    def parse(
        cls,
        *,
        order: FileOrder = "name",
        max_files_per_batch: int = 100,
        max_file_age: Duration | float | None = "7d",
        poll_interval: Duration | float = "1s",
        settle: Duration | float = "1s",
    ) -> WatchOptions:
        """The options as ``from_parquet`` / ``from_ndjson`` take them (durations as
        Polars strings, timedeltas or seconds), checked."""
        if order not in ("name", "mtime"):
            msg = f"watch: order must be 'name' or 'mtime', got {order!r}"
            raise PipelineError(msg)
        n = max_files_per_batch
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            msg = f"watch: max_files_per_batch must be an int >= 1, got {n!r}"
            raise PipelineError(msg)
        age = None if max_file_age is None else wall_seconds(max_file_age, "watch: max_file_age")
        poll = wall_seconds(poll_interval, "watch: poll_interval")
        if poll <= 0:
            msg = f"watch: poll_interval must be > 0, got {poll_interval!r}"
            raise PipelineError(msg)
        return cls(order, n, age, poll, wall_seconds(settle, "watch: settle"))


class FileFormat(Protocol):
    """What a watched directory needs of a file format: its name for messages, the files
    it reads, a schema from a file, and a reader of one file."""

    @property
    def step(self) -> str:
        """The step named in messages and dead letters (``"from_parquet"``)."""
        ...

    @property
    def suffix(self) -> str:
        """The files' suffix (``".parquet"``)."""
        ...

    def infer_schema(self, path: str) -> pa.Schema:
        """The schema of the file at ``path`` (a SourceError when it cannot tell)."""
        ...

    def open_file(
        self, path: str, schema: pa.Schema, position: object, columns: frozenset[str] | None
    ) -> Reader:
        """A reader of the file as split 0, from ``position`` (None: its start); a
        SourceError (or an error of the file system or of Arrow) for a file that is
        damaged or does not fit ``schema``."""
        ...


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    name: str
    size: int
    mtime_ns: int


class WatchSource(Source):
    """An unbounded source over a directory: the files there at the start, then every
    file that appears, each a split read once (see the module's docstring).

    Positions are those of the format (rows of a Parquet file, ``[offset, rows]`` of an
    NDJSON file), or ``[-1]`` for a file that went to the dead letters. Opened with
    ``splits=`` (some of the files listed at open) it reads those and does not watch.
    """

    bounded = False
    live = True
    replayable = True
    concurrent_splits = False
    splits_may_grow = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: FileFormat,
        options: WatchOptions,
        schema: pa.Schema | None,
    ) -> None:
        root = os.fspath(path)
        if not os.path.isdir(root):
            msg = (
                f"{fmt.step}(..., watch=True) watches a directory, and {root!r} is "
                f"{'not a directory' if os.path.exists(root) else 'not there'}: pass the "
                "directory the files are written into (create it first)"
            )
            raise SourceError(msg)
        self.split_root = root
        self.fmt = fmt
        self.options = options
        self.label = f"{fmt.step}({root}, watch=True)"
        self._listing: list[_File] | None = None
        if schema is None:
            schema = self._infer(root)
        self._schema = schema

    def _infer(self, root: str) -> pa.Schema:
        errors = []
        for f in self.list_files():
            try:
                return self.fmt.infer_schema(f.path)
            except _FILE_ERRORS as exc:
                errors.append(f"{f.name}: {exc}")
        why = f" (none could be read: {'; '.join(errors[:2])})" if errors else ""
        msg = (
            f"{self.fmt.step}(..., watch=True) cannot infer a schema: {root!r} holds no "
            f"{self.fmt.suffix} file yet{why}; pass schema={{...}}"
        )
        raise SourceError(msg)

    # ------------------------------------------------------------------ listing
    def list_files(self, now: float | None = None) -> list[_File]:
        """The visible files of the directory not older than ``max_file_age``, in the
        watch's order. Files in hidden folders and files named ``.*`` or ``_*`` are
        left out (files being written, a sink's temporary files, markers)."""
        root = Path(self.split_root or ".")
        suffix = self.fmt.suffix
        now = time.time() if now is None else now
        age = self.options.max_file_age
        oldest = None if age is None else int((now - age) * 1e9)
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in filenames:
                if not fn.endswith(suffix) or fn.startswith((".", "_")):
                    continue
                full = os.path.join(dirpath, fn)
                try:
                    st = os.stat(full)
                except OSError:  # gone since the listing
                    continue
                if oldest is not None and st.st_mtime_ns < oldest:
                    continue
                name = os.path.relpath(full, root).replace(os.sep, "/")
                out.append(_File(full, name, st.st_size, st.st_mtime_ns))
        if self.options.order == "mtime":
            out.sort(key=lambda f: (f.mtime_ns, f.name))
        else:
            out.sort(key=lambda f: f.name)
        return out

    def splits(self) -> list[str]:
        # one listing per run: what split_names() says before open() is what it opens
        if self._listing is None:
            self._listing = self.list_files()
        return [f.path for f in self._listing]

    def schema(self) -> pa.Schema:
        return self._schema

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        self.splits()
        listing = self._listing or []
        points = self.resume_points(resume, splits)
        self._listing = None  # the next run lists the directory again
        return _WatchReader(self, listing, points, resume or {}, columns, watch=splits is None)


class _WatchReader(ThreadedReader):
    """Reads the files listed at open, then watches the directory (in its thread)."""

    def __init__(
        self,
        source: WatchSource,
        listing: list[_File],
        points: dict[int, object | None],
        resume: Mapping[int, SplitPosition],
        columns: frozenset[str] | None,
        *,
        watch: bool,
    ) -> None:
        self._src = source
        self._opts = source.options
        self._columns = columns
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # shared with the run's thread (under the lock): what status() reports
        self._connected = True
        self._errors = 0
        self._waiting = False  # files wait that no announced split holds
        self._unread: set[int] = set()  # announced splits not read to their end yet
        self._retired: list[int] = []
        # the reader thread's own: every name announced (or listed at open) and the ended
        # files' (index, mtime), until they are retired
        self._seen: dict[str, int] = {}
        self._ended: dict[str, tuple[int, int]] = {}
        self._next = len(listing)
        todo = []
        for k, f in enumerate(listing):
            self._seen[f.name] = k
            if k in points:
                todo.append((k, f, points[k]))
                self._unread.add(k)
            elif k in resume:
                self._ended[f.name] = (k, f.mtime_ns)  # ended in the checkpoint

        def produce(put: Callable[[SourceEvent], bool]) -> None:
            for k, f, pos in todo:
                if not self._read(put, k, f, pos):
                    return
            if watch:
                self._watch(put)

        super().__init__(produce, name=f"vstream-{source.fmt.step}-watch")

    # ------------------------------------------------------------------ the run's thread
    def status(self) -> ReaderStatus:
        with self._lock:
            return ReaderStatus(
                connected=self._connected,
                errors=self._errors,
                splits={k: SplitStatus(caught_up=False) for k in self._unread},
                caught_up=not self._waiting,
            )

    def retired_splits(self) -> list[int]:
        with self._lock:
            out, self._retired = self._retired, []
        return out

    def close(self) -> None:
        self._closed.set()
        super().close()

    # ------------------------------------------------------------------ the reader thread
    def _watch(self, put: Callable[[SourceEvent], bool]) -> None:
        src, opts = self._src, self._opts
        looks: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime, seen since
        while not self._closed.is_set():
            try:
                files = src.list_files()
            except OSError:
                with self._lock:
                    self._connected = False
                    self._errors += 1
                self._closed.wait(opts.poll_interval)
                continue
            now_wall, now = time.time(), time.monotonic()
            ready, waiting = [], False
            for f in files:
                if f.name in self._seen:
                    continue
                if self._settled(f, looks, now_wall, now):
                    ready.append(f)
                else:
                    waiting = True
            present = {f.name for f in files}
            looks = {n: v for n, v in looks.items() if n in present}
            self._retire(present, now_wall)  # before the new files: a test can wait on them
            take = ready[: opts.max_files_per_batch]
            indexes = list(range(self._next, self._next + len(take)))
            with self._lock:
                self._connected = True
                self._waiting = waiting or len(ready) > len(take)
                self._unread.update(indexes)
            for k, f in zip(indexes, take, strict=True):
                self._seen[f.name] = k
                if not put(SplitAdded(k, f.name)):
                    return
            self._next += len(take)
            for k, f in zip(indexes, take, strict=True):
                if not self._read(put, k, f, None):
                    return
            if not take:
                self._closed.wait(opts.poll_interval)

    def _settled(
        self, f: _File, looks: dict[str, tuple[int, int, float]], now_wall: float, now: float
    ) -> bool:
        """Whether ``f`` has not changed for ``settle``: its modification time is that old,
        or two looks that far apart saw the same size and modification time."""
        settle = self._opts.settle
        if f.mtime_ns <= (now_wall - settle) * 1e9:
            return True
        seen = looks.get(f.name)
        if seen is None or seen[:2] != (f.size, f.mtime_ns):
            looks[f.name] = (f.size, f.mtime_ns, now)
            return settle == 0
        return now - seen[2] >= settle

    def _wait_settled(self, f: _File) -> _File | None:
        """``f`` once it has not changed for ``settle`` (a file listed at open may still
        be being written), or None when it is gone or the reader is closed."""
        looks: dict[str, tuple[int, int, float]] = {}
        while not self._closed.is_set():
            try:
                st = os.stat(f.path)
            except OSError:
                return None
            f = _File(f.path, f.name, st.st_size, st.st_mtime_ns)
            if self._settled(f, looks, time.time(), time.monotonic()):
                return f
            self._closed.wait(min(self._opts.poll_interval, max(self._opts.settle / 4, 0.01)))
        return None

    def _read(
        self, put: Callable[[SourceEvent], bool], k: int, f: _File, pos: object | None
    ) -> bool:
        """Hand out the events of file ``f`` as split ``k`` from ``pos``, then its end; a
        file that cannot be read, or not to its end, goes to the dead letters."""
        if self._read_file(put, k, f, pos) is None:
            return False
        self._ended[f.name] = (k, f.mtime_ns)
        if not put(SplitEnd(k)):
            return False
        with self._lock:
            self._unread.discard(k)
        return True

    def _read_file(
        self, put: Callable[[SourceEvent], bool], k: int, f: _File, pos: object | None
    ) -> bool | None:
        """True: read (or dead-lettered); None: the run is over."""
        if pos == DEAD:
            return True
        done = self._wait_settled(f)
        if done is None:
            return None if self._closed.is_set() else True  # gone before it was complete
        fmt = self._src.fmt
        try:
            reader = fmt.open_file(done.path, self._src.schema(), pos, self._columns)
        except _FILE_ERRORS as exc:
            return True if put(self._dead(k, f, exc)) else None
        try:
            while True:
                try:
                    ev = reader.poll(0.2)
                except _FILE_ERRORS as exc:
                    return True if put(self._dead(k, f, exc)) else None
                if ev is None:
                    if reader.exhausted:
                        return True
                    if self._closed.is_set():
                        return None
                    continue
                if isinstance(ev, Data) and not put(Data(k, ev.batch, ev.position, ev.dead)):
                    return None
        finally:
            reader.close()

    def _dead(self, k: int, f: _File, exc: BaseException) -> Data:
        detail = " ".join(str(exc).split())
        reason = (
            f"{self._src.fmt.step}: watched file {f.name!r} cannot be read ({detail}); the "
            "rest of it is left out: fix it and write it again under a new name"
        )
        return Data(k, None, DEAD, dead_letter_batch([f.name], [reason], self._src.fmt.step))

    def _retire(self, present: set[str], now_wall: float) -> None:
        """Files read to their end that are gone from the directory or older than
        max_file_age leave the checkpoint (and are not listed again)."""
        age = self._opts.max_file_age
        oldest = None if age is None else (now_wall - age) * 1e9
        gone = [
            name
            for name, (_, mtime) in self._ended.items()
            if name not in present or (oldest is not None and mtime < oldest)
        ]
        if not gone:
            return
        indexes = []
        for name in gone:
            k, _ = self._ended.pop(name)
            self._seen.pop(name, None)
            indexes.append(k)
        with self._lock:
            self._retired.extend(indexes)


# ---------------------------------------------------------------------- the formats


def _mismatch(have: pa.Schema, want: pa.Schema) -> str:
    """The first column in which a file's schema differs from the source's."""
    a, b = polars_schema(have), polars_schema(want)
    for name, dtype in b.items():
        if name not in a:
            return f"it has no column {name!r}"
        if a[name] != dtype:
            return f"its column {name!r} is {a[name]}, the source reads {dtype}"
    extra = [n for n in a if n not in b]
    if extra:
        return f"it has the column {extra[0]!r} the source does not read"
    return f"its columns are in another order ({list(a)}, the source reads {list(b)})"


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files in a watched directory (``from_parquet(..., watch=True)``)."""

    batch_size: int
    step: str = "from_parquet"
    suffix: str = ".parquet"

    def infer_schema(self, path: str) -> pa.Schema:
        return ParquetSource(path, self.batch_size).schema()

    def open_file(
        self, path: str, schema: pa.Schema, position: object, columns: frozenset[str] | None
    ) -> Reader:
        src = ParquetSource(path, self.batch_size)
        if polars_schema(src.schema()) != polars_schema(schema):
            msg = f"the file does not fit the source's schema: {_mismatch(src.schema(), schema)}"
            raise SourceError(msg)
        resume = None if position is None else {0: SplitPosition(position)}
        return src.open(resume, columns=columns)


@dataclass(frozen=True)
class NdjsonFiles:
    """NDJSON files in a watched directory (``from_ndjson(..., watch=True)``): lines that
    do not fit the schema go to the dead letters as in any NDJSON file."""

    batch_size: int
    step: str = "from_ndjson"
    suffix: str = ".ndjson"

    def infer_schema(self, path: str) -> pa.Schema:
        return NdjsonSource(path, None, self.batch_size, 0.0, True).schema()

    def open_file(
        self, path: str, schema: pa.Schema, position: object, columns: frozenset[str] | None
    ) -> Reader:
        src = NdjsonSource(path, schema, self.batch_size, 0.0, True)
        resume = None if position is None else {0: SplitPosition(position)}
        return src.open(resume, columns=columns)
