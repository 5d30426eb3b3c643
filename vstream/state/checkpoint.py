"""Checkpoints on disk: Arrow IPC files plus a JSON manifest, one directory each.

Layout of a checkpoint directory (``checkpoint_dir`` of a sink or a background run)::

    ckpt/
      chk-00000007/               one complete checkpoint (epoch 7)
        manifest.json             format, version, plan, positions, watermarks, sinks
        op-003.state.arrow        table "state" of plan step 3 (Arrow IPC file)
        op-003.keys.keys.arrow    table "keys.keys" of the same step
        ...
      chk-00000008/
      pending/sink-0/             a Parquet sink's part files not yet committed

Each file is a plain Arrow IPC file: ``pl.read_ipc("ckpt/chk-00000007/op-003.state.arrow")``
opens it. The manifest lists every file with its size and CRC-32, so a truncated or
damaged file is found before anything is restored. A checkpoint is written into
``.tmp-chk-...`` and renamed into place once every file is on disk (fsync), so a crash
leaves the previous checkpoints and perhaps a temporary directory, never a half one.
Loading reads JSON and Arrow only: no code runs (no pickle).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from vstream._files import fsync
from vstream.errors import CheckpointError, CheckpointWarning

__all__ = ["FORMAT", "VERSION", "CheckpointStore", "LoadedCheckpoint"]

FORMAT = "vstream-checkpoint"
#: 2: window aggregates count non-null rows as the slot's rows minus the input's nulls
#: (one shared field), float min / max start at NaN (no non-NaN count)
VERSION = 2
MANIFEST = "manifest.json"
_DIR = re.compile(r"^chk-(\d{8,})$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _crc_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint that passed every check: its manifest and its tables."""

    path: Path
    manifest: dict[str, Any]
    tables: dict[str, pa.Table]

    @property
    def epoch(self) -> int:
        return int(self.manifest["epoch"])

    def tables_of(self, prefix: str) -> dict[str, pa.Table]:
        """The tables stored under ``prefix.`` (one operator's state), without the prefix."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in self.tables.items() if k.startswith(prefix + ".")}


class CheckpointStore:
    """The checkpoints in one directory: write a new one, find the newest good one,
    keep the last ``keep``."""

    def __init__(self, path: str | os.PathLike[str], keep: int = 3) -> None:
        self.path = Path(path)
        self.keep = keep
        if self.path.exists() and not self.path.is_dir():
            msg = f"checkpoint_dir {str(self.path)!r} exists and is not a directory"
            raise CheckpointError(msg)

    def epochs(self) -> list[int]:
        """Epochs of the complete checkpoints on disk, oldest first."""
        if not self.path.is_dir():
            return []
        found = [int(m.group(1)) for p in self.path.iterdir() if (m := _DIR.match(p.name))]
        return sorted(found)

    def dir_of(self, epoch: int) -> Path:
        return self.path / f"chk-{epoch:08d}"

    # ------------------------------------------------------------------ writing
    def write(self, manifest: dict[str, Any], tables: Mapping[str, pa.Table]) -> Path:
        """Write checkpoint ``manifest["epoch"]`` with ``tables`` (name -> Arrow table);
        returns its directory once it is durable."""
        epoch = int(manifest["epoch"])
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.dir_of(epoch)
        tmp = self.path / f".tmp-{final.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files: dict[str, dict[str, Any]] = {}
        for name, table in tables.items():
            fname = f"op-{_SAFE.sub('_', name)}.arrow"
            fpath = tmp / fname
            # in memory first: the checksum then costs no second pass over the file
            stream = pa.BufferOutputStream()
            with ipc.new_file(stream, table.schema) as out:
                out.write_table(table)
            data = stream.getvalue()
            with open(fpath, "wb") as f:
                f.write(memoryview(data))
                f.flush()
                os.fsync(f.fileno())
            files[name] = {
                "file": fname,
                "rows": table.num_rows,
                "bytes": data.size,
                "crc32": zlib.crc32(memoryview(data)),
            }
        body = {"format": FORMAT, "version": VERSION, **manifest, "files": files}
        mpath = tmp / MANIFEST
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        fsync(tmp)
        if final.exists():  # left by a run that crashed after writing it: same epoch again
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync(self.path)
        return final

    def prune(self) -> None:
        """Delete all but the newest ``keep`` checkpoints, and leftover temporary dirs."""
        for old in self.epochs()[: -self.keep]:
            shutil.rmtree(self.dir_of(old), ignore_errors=True)
        for p in self.path.glob(".tmp-chk-*"):
            shutil.rmtree(p, ignore_errors=True)

    def size_of(self, epoch: int) -> int:
        """Bytes on disk of checkpoint ``epoch``."""
        return sum(p.stat().st_size for p in self.dir_of(epoch).iterdir())

    # ------------------------------------------------------------------ reading
    def load(self, epoch: int) -> LoadedCheckpoint:
        """Read and check checkpoint ``epoch``; raises CheckpointError saying what is wrong."""
        where = self.dir_of(epoch)
        try:
            text = (where / MANIFEST).read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"{where}: cannot read {MANIFEST} ({exc.strerror or exc})"
            raise CheckpointError(msg) from exc
        try:
            manifest = json.loads(text)
        except ValueError as exc:
            msg = f"{where}: {MANIFEST} is not valid JSON ({exc})"
            raise CheckpointError(msg) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            msg = f"{where}: {MANIFEST} is not a vstream checkpoint manifest"
            raise CheckpointError(msg)
        version = manifest.get("version")
        if version != VERSION:
            msg = (
                f"{where}: checkpoint format version {version!r}, but this vstream reads "
                f"version {VERSION}; run the vstream version that wrote it, or start afresh "
                "with an empty checkpoint_dir"
            )
            raise CheckpointError(msg)
        if manifest.get("epoch") != epoch:
            msg = f"{where}: the manifest says epoch {manifest.get('epoch')!r}, not {epoch}"
            raise CheckpointError(msg)
        tables: dict[str, pa.Table] = {}
        files = manifest.get("files")
        if not isinstance(files, dict):
            msg = f"{where}: {MANIFEST} lists no state files"
            raise CheckpointError(msg)
        for name, info in files.items():
            fpath = where / str(info.get("file", ""))
            try:
                size = fpath.stat().st_size
            except OSError as exc:
                msg = f"{where}: state file {fpath.name} is missing"
                raise CheckpointError(msg) from exc
            if size != info.get("bytes") or _crc_of(fpath) != info.get("crc32"):
                msg = (
                    f"{where}: state file {fpath.name} is damaged ({size} bytes, the manifest "
                    f"says {info.get('bytes')}, or its checksum differs)"
                )
                raise CheckpointError(msg)
            try:
                with pa.memory_map(str(fpath)) as source:
                    tables[name] = ipc.open_file(source).read_all()
            except (OSError, pa.ArrowInvalid) as exc:
                msg = f"{where}: state file {fpath.name} is not a readable Arrow IPC file ({exc})"
                raise CheckpointError(msg) from exc
        return LoadedCheckpoint(where, manifest, tables)

    def latest(self, notes: list[str] | None = None) -> LoadedCheckpoint | None:
        """The newest checkpoint that passes every check, or None if there is none.

        A damaged newer one is skipped, with a note of why appended to ``notes`` (a
        :class:`CheckpointWarning` without it); if every one is damaged,
        :class:`CheckpointError` lists what is wrong with each.
        """
        epochs = self.epochs()
        problems: list[str] = []
        for epoch in reversed(epochs):
            try:
                loaded = self.load(epoch)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            for problem in problems:
                note = f"{problem}; falling back to the previous checkpoint, epoch {epoch}"
                if notes is None:
                    warnings.warn(note, CheckpointWarning, stacklevel=2)
                else:
                    notes.append(note)
            return loaded
        if problems:
            msg = (
                "no usable checkpoint in "
                f"{str(self.path)!r}: " + "; ".join(problems) + ". Remove the directory to "
                "start afresh (the output written so far would be written again)"
            )
            raise CheckpointError(msg)
        return None
