"""The write-ahead log of a non-replayable source (MQTT): received micro-batches, fsynced
before the broker hears they were taken, replayed after a restart.

A log is a directory of segment files ``wal-<first seq>.log``. Each entry is one
micro-batch of raw messages, framed as ``seq (u64) | length (u64) | crc32 (u32)`` and an
Arrow IPC stream of ``length`` bytes. An entry is appended and fsynced before the
messages in it are acknowledged; entries a checkpoint covers are trimmed (whole segments
whose last entry the checkpoint consumed). The log lives in the checkpoint directory and
is untrusted on reading: a damaged entry (checksum, framing, Arrow) is refused with a
:class:`~vstream.errors.SourceError`, except a torn entry at the very end of the newest
segment (a crash while appending; never acknowledged), which is cut off.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from vstream._files import fsync, os_problem
from vstream.errors import SourceError

__all__ = ["WAL_SCHEMA", "WriteAheadLog", "log_directory"]

#: one row per received message
WAL_SCHEMA = pa.schema(
    [
        ("payload", pa.binary()),
        ("topic", pa.string()),
        ("qos", pa.int8()),
        ("retain", pa.bool_()),
        ("mid", pa.int32()),
        ("timestamp", pa.int64()),  # receive time, ms since the epoch
    ]
)

_HEADER = struct.Struct("<QQI")
_SEGMENT = re.compile(r"^wal-(\d{16})\.log$")
#: a segment is closed (a new one started) past this size
_SEGMENT_BYTES = 64 << 20
#: the highest sequence number trimmed, kept so a resume before it is refused
_TRIMMED = "trimmed"


def log_directory(checkpoint_dir: Path, step: str) -> Path:
    """Where the log of source step ``step`` lives: ``checkpoint_dir/sources/<safe>``,
    with ``<safe>`` made of letters, digits, ``_`` and ``-`` only plus a hash of the
    step id, so no step name (untrusted) can lead outside the checkpoint directory.

    Examples
    --------
    >>> from vstream.io.mqtt_wal import log_directory
    >>> from pathlib import Path
    >>> log_directory(Path("ckpt"), "../../etc").parent
    PosixPath('ckpt/sources')
    >>> log_directory(Path("ckpt"), "../../etc").name
    '______etc-...'
    """
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", step)[:64]
    digest = hashlib.sha256(step.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return checkpoint_dir / "sources" / f"{safe}-{digest}"


class WriteAheadLog:
    """The log in ``directory`` (created if missing), for source ``label``.

    Examples
    --------
    >>> from vstream.io.mqtt_wal import WAL_SCHEMA
    >>> from vstream.io.mqtt_wal import WriteAheadLog
    >>> import tempfile
    >>> import pyarrow as pa
    >>> from pathlib import Path
    >>> log = WriteAheadLog(Path(tempfile.mkdtemp()) / "wal", "from_mqtt")
    >>> raw = pa.table({"payload": [b"{}"], "topic": ["t"], "qos": pa.array([1], pa.int8()),
    ...                 "retain": [False], "mid": pa.array([7], pa.int32()),
    ...                 "timestamp": [0]}, schema=WAL_SCHEMA)
    >>> log.append(raw), log.append(raw)
    (1, 2)
    >>> [seq for seq, _ in log.entries(after=1)]
    [2]
    >>> log.trim(2); list(log.entries(after=0)), log.next_seq
    ([], 3)
    """

    def __init__(self, directory: Path, label: str) -> None:
        self.directory = directory
        self.label = label
        self._fd: int | None = None
        self._size = 0
        # appends come from the reader's thread, trims from the run's
        self._lock = threading.Lock()
        try:
            if directory.is_symlink():
                msg = f"{label}: its log directory {str(directory)!r} is a symlink; refusing it"
                raise SourceError(msg)
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(
                os_problem(exc, f"{label}: cannot create its write-ahead log", directory)
            ) from exc
        self.trimmed = self._read_trimmed()
        #: (first seq, path, last seq or None when empty) of every segment, oldest first
        self._segments = self._scan()
        last = max((s[2] for s in self._segments if s[2] is not None), default=0)
        self.next_seq = max(last, self.trimmed) + 1

    # ------------------------------------------------------------------ reading
    def _read_trimmed(self) -> int:
        path = self.directory / _TRIMMED
        if not path.exists():
            return 0
        text = path.read_text("ascii", errors="replace").strip()
        if not text.isdigit() or len(text) > 19:
            msg = f"{self.label}: its write-ahead log's {str(path)!r} is damaged ({text[:40]!r})"
            raise SourceError(msg)
        return int(text)

    def _scan(self) -> list[tuple[int, Path, int | None]]:
        names = sorted(n for n in os.listdir(self.directory) if _SEGMENT.match(n))
        out: list[tuple[int, Path, int | None]] = []
        for k, name in enumerate(names):
            path = self.directory / name
            if path.is_symlink() or not path.is_file():
                msg = f"{self.label}: write-ahead log segment {str(path)!r} is not a plain file"
                raise SourceError(msg)
            last = None
            for seq, _, _ in self._frames(path, newest=k == len(names) - 1):
                last = seq
            out.append((int(_SEGMENT.match(name).group(1)), path, last))  # type: ignore[union-attr]
        return out

    def _frames(self, path: Path, *, newest: bool) -> Iterator[tuple[int, int, bytes]]:
        """(seq, offset, body) of each entry of a segment, checked; a torn tail of the
        newest segment is cut off the file."""
        data = path.read_bytes()
        at = 0
        prev = None
        while at < len(data):
            problem = None
            if len(data) - at < _HEADER.size:
                problem = "a truncated entry header"
            else:
                seq, length, crc = _HEADER.unpack_from(data, at)
                body = data[at + _HEADER.size : at + _HEADER.size + length]
                if len(body) < length:
                    problem = "a truncated entry"
                elif zlib.crc32(body) != crc:
                    problem = "an entry whose checksum does not match"
                elif prev is not None and seq != prev + 1:
                    problem = f"entry {seq} after entry {prev}"
            if problem is not None:
                if newest and problem.startswith("a truncated"):
                    # a crash while appending: the entry was never fsynced nor acknowledged
                    os.truncate(path, at)
                    return
                msg = (
                    f"{self.label}: write-ahead log segment {str(path)!r} is damaged at byte "
                    f"{at}: {problem}. Its messages cannot be replayed; restore the "
                    "checkpoint directory, or start with a new checkpoint_dir"
                )
                raise SourceError(msg)
            yield seq, at, body
            prev = seq
            at += _HEADER.size + length

    def entries(self, after: int) -> Iterator[tuple[int, pa.Table]]:
        """Every entry with a sequence number above ``after``, as (seq, raw messages)."""
        for _, path, last in self._segments:
            if last is None or last <= after:
                continue
            for seq, at, body in self._frames(path, newest=False):
                if seq <= after:
                    continue
                try:
                    table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
                except (pa.ArrowInvalid, OSError) as exc:
                    msg = (
                        f"{self.label}: write-ahead log entry {seq} in {str(path)!r} (byte "
                        f"{at}) is not Arrow IPC ({exc}); restore the checkpoint directory, "
                        "or start with a new checkpoint_dir"
                    )
                    raise SourceError(msg) from None
                if table.schema != WAL_SCHEMA:
                    msg = (
                        f"{self.label}: write-ahead log entry {seq} in {str(path)!r} has "
                        f"schema {table.schema}, not the log's; restore the checkpoint "
                        "directory, or start with a new checkpoint_dir"
                    )
                    raise SourceError(msg)
                yield seq, table

    # ------------------------------------------------------------------ writing
    def append(self, raw: pa.Table) -> int:
        """Append ``raw`` (of :data:`WAL_SCHEMA`) durably (fsynced); its sequence number."""
        with self._lock:
            return self._append(raw)

    def _append(self, raw: pa.Table) -> int:
        seq = self.next_seq
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, WAL_SCHEMA) as writer:
            writer.write_table(raw)
        body = sink.getvalue().to_pybytes()
        frame = _HEADER.pack(seq, len(body), zlib.crc32(body)) + body
        try:
            if self._fd is None or self._size >= _SEGMENT_BYTES:
                self._roll(seq)
            assert self._fd is not None
            os.write(self._fd, frame)
            os.fdatasync(self._fd)
        except OSError as exc:
            msg = os_problem(
                exc, f"{self.label}: cannot append to its write-ahead log", self.directory
            )
            raise SourceError(msg) from exc
        self._size += len(frame)
        first, path, _ = self._segments[-1]
        self._segments[-1] = (first, path, seq)
        self.next_seq = seq + 1
        return seq

    def _roll(self, seq: int) -> None:
        """Start a new segment at ``seq`` (never append to a segment of an earlier run:
        its tail may have been torn)."""
        self._close()
        path = self.directory / f"wal-{seq:016d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        fsync(self.directory)
        self._segments.append((seq, path, None))

    def trim(self, upto: int) -> None:
        """Drop the segments whose entries all have sequence numbers <= ``upto`` (a
        durable checkpoint consumed them)."""
        with self._lock:
            self._trim(upto)

    def _trim(self, upto: int) -> None:
        if upto <= self.trimmed:
            return
        keep = []
        removed = False
        for k, (first, path, last) in enumerate(self._segments):
            current = k == len(self._segments) - 1 and self._fd is not None
            if last is not None and last <= upto and not current:
                path.unlink(missing_ok=True)
                removed = True
            elif last is not None and last <= upto:
                # the segment being appended to: start a new one so it can go next time
                self._close()
                path.unlink(missing_ok=True)
                removed = True
            else:
                keep.append((first, path, last))
        self._segments = keep
        tmp = self.directory / f".{_TRIMMED}.tmp"
        tmp.write_text(str(upto), "ascii")
        fsync(tmp)
        os.replace(tmp, self.directory / _TRIMMED)
        if removed:
            fsync(self.directory)
        self.trimmed = upto

    def size_bytes(self) -> int:
        """Bytes on disk in the log's segments."""
        return sum(p.stat().st_size for _, p, _ in self._segments if p.exists())

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
