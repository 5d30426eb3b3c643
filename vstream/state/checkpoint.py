"""Checkpoints on disk: Arrow IPC files plus a JSON manifest, one directory each.

Layout of a checkpoint directory (``checkpoint_dir`` of a sink or a background run)::

    ckpt/
      chk-00000007/               one complete checkpoint (epoch 7)
        manifest.json             format, version, checksum, key groups, steps,
                                  positions, sinks
        op-window-3f0c9a1b2d4e.state.arrow      table "state" of that step (Arrow IPC)
        op-window-3f0c9a1b2d4e.keys.keys.arrow  table "keys.keys" of the same step
        ...
      chk-00000008/

Steps are keyed by their stable step id (:mod:`vstream.plan.ids`), source splits by
name. Each file is a plain Arrow IPC file: ``pl.read_ipc("ckpt/chk-00000007/op-....arrow")``
opens it. The manifest lists every file with its size and CRC-32, so a truncated or
damaged file is found before anything is restored. A checkpoint is written into
``.tmp-chk-...`` and renamed into place once every file is on disk (fsync), so a crash
leaves the previous checkpoints and perhaps a temporary directory, never a half one.
Loading reads JSON and Arrow only: no code runs (no pickle).

A checkpoint directory is untrusted input. The manifest carries its own checksum
(SHA-256 of its canonical JSON) and is checked against a schema (:data:`RUN_MANIFEST`,
the one place that says what a run's manifest holds) before anything is acted on. The
only paths it names are state file names, which must be plain names inside the
checkpoint (no ``/``, no ``..``, no symbolic links); a sink's staged files are named
``part-<epoch>-<k>.<ext>`` (below percent-encoded ``col=value/`` partition directories)
and are taken from the sink's own directory only (the
directory the manifest records is compared with it, never used). A checkpoint that
fails a check is skipped for the previous one, with a warning; if none is left, the
run is refused with a :class:`CheckpointError` that lists what is wrong.

Older formats are refused, not migrated: a format 3 checkpoint keys steps by their
position in the plan and splits by their index, which a changed plan or input cannot be
mapped from with certainty; the refusal says to delete the directory or use a new
``checkpoint_dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from vstream._files import fsync, os_problem
from vstream.errors import CheckpointError, CheckpointWarning

__all__ = [
    "FORMAT",
    "PART",
    "RUN_MANIFEST",
    "VERSION",
    "CheckpointStore",
    "LoadedCheckpoint",
    "ManifestSchema",
    "manifest_problems",
    "seal_manifest",
]

FORMAT = "vstream-checkpoint"
#: 2: window aggregates count non-null rows as the slot's rows minus the input's nulls
#: (one shared field), float min / max start at NaN (no non-NaN count).
#: 3: the manifest carries its checksum and follows :data:`RUN_MANIFEST`; a sink's
#: staged part files are plain names in its own directory.
#: 4: steps are keyed by stable step ids with per-step fingerprints (no whole-plan
#: fingerprint), source splits by name (:class:`vstream.runtime.run_state.RunState`),
#: the Polars version is recorded; watermark splits carry their names; the manifest
#: records the number of key groups (``key_groups``) keyed state is organised in.
VERSION = 4
MANIFEST = "manifest.json"
_DIR = re.compile(r"^chk-(\d{8,})$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
#: a state file's name: a plain name inside the checkpoint directory
_FILE = re.compile(r"^op-[A-Za-z0-9_.-]+\.arrow$")
#: a file sink's staged part file, by its path in the output: ``part-<epoch>-<k>.<ext>``
#: below Hive-style partition directories ``col=value/`` whose names are percent-encoded
#: (letters, digits, ``_.~-`` and ``%``: never ``.``, ``..``, absolute or a link name)
PART = re.compile(
    r"^(?:[A-Za-z0-9_.~%-]+=[A-Za-z0-9_.~%-]*/)*"
    r"part-(\d{8,})-(\d{4,})\.(?:parquet|arrow|ndjson|csv)(?:\.gz|\.zst)?$"
)
#: a step id (:mod:`vstream.plan.ids`): it names state files, so a plain name
_STEP = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
#: problems listed in a refusal (a thoroughly broken manifest has hundreds)
_SHOWN = 6


def _crc_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def _checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {k: v for k, v in body.items() if k != "checksum"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def seal_manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with its ``checksum``, as :meth:`CheckpointStore.write` stores it."""
    return {**body, "checksum": _checksum(body)}


def _show(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------- manifest schema
class _Spec:
    """What one JSON value must be; ``check`` appends a line per problem to ``out``."""

    def check(self, value: object, at: str, out: list[str]) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class _Any(_Spec):
    def check(self, value: object, at: str, out: list[str]) -> None:
        pass


@dataclass(frozen=True)
class _Bool(_Spec):
    def check(self, value: object, at: str, out: list[str]) -> None:
        if not isinstance(value, bool):
            out.append(f"{at}: expected true or false, got {_show(value)}")


@dataclass(frozen=True)
class _Int(_Spec):
    low: int = -(1 << 63)

    def check(self, value: object, at: str, out: list[str]) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(f"{at}: expected an integer, got {_show(value)}")
        elif not self.low <= value < (1 << 63):
            out.append(f"{at}: {value} is out of range")


@dataclass(frozen=True)
class _Str(_Spec):
    pattern: re.Pattern[str] | None = None
    what: str = ""

    def check(self, value: object, at: str, out: list[str]) -> None:
        if not isinstance(value, str):
            out.append(f"{at}: expected a string, got {_show(value)}")
        elif self.pattern is not None and not self.pattern.match(value):
            out.append(f"{at}: {_show(value)} is not {self.what}")


@dataclass(frozen=True)
class _List(_Spec):
    item: _Spec

    def check(self, value: object, at: str, out: list[str]) -> None:
        if not isinstance(value, list):
            out.append(f"{at}: expected a list, got {_show(value)}")
            return
        for i, v in enumerate(value):
            self.item.check(v, f"{at}[{i}]", out)


@dataclass(frozen=True)
class _Map(_Spec):
    """An object with any keys (matching ``key``) and values of one kind."""

    value: _Spec
    key: _Str = field(default_factory=_Str)

    def check(self, value: object, at: str, out: list[str]) -> None:
        if not isinstance(value, dict):
            out.append(f"{at}: expected an object, got {_show(value)}")
            return
        for k, v in value.items():
            self.key.check(k, f"{at} key", out)
            self.value.check(v, f"{at}[{k!r}]", out)


@dataclass(frozen=True)
class _Obj(_Spec):
    """An object with the ``required`` keys and perhaps the ``optional`` ones; any other
    key is wrong unless ``open``."""

    required: Mapping[str, _Spec]
    optional: Mapping[str, _Spec] = field(default_factory=dict)
    open: bool = False

    def check(self, value: object, at: str, out: list[str]) -> None:
        if not isinstance(value, dict):
            out.append(f"{at}: expected an object, got {_show(value)}")
            return
        for k, spec in self.required.items():
            if k not in value:
                out.append(f"{at}: the key {k!r} is missing")
            else:
                spec.check(value[k], f"{at}.{k}", out)
        for k, spec in self.optional.items():
            if k in value:
                spec.check(value[k], f"{at}.{k}", out)
        if not self.open:
            out.extend(
                f"{at}: unexpected key {_show(k)}"
                for k in value
                if k not in self.required and k not in self.optional
            )


#: a check between parts of a manifest whose types are right; returns its problems
Rule = Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class ManifestSchema:
    """What a manifest holds beside the store's own keys (format, version, checksum,
    epoch, files): ``body``, and ``rules`` between its parts."""

    body: Mapping[str, _Spec]
    rules: tuple[Rule, ...] = ()


#: the store's own keys, in every manifest
_ENVELOPE: dict[str, _Spec] = {
    "format": _Str(),
    "version": _Int(),
    "checksum": _Str(),
    "epoch": _Int(1),
    "files": _Map(
        _Obj(
            {
                "file": _Str(_FILE, "a state file name (op-<table>.arrow)"),
                "rows": _Int(0),
                "bytes": _Int(0),
                "crc32": _Int(0),
            }
        ),
        key=_Str(re.compile(r"^[^/\\]+$"), "a table name"),
    ),
}


def _rule_tables(m: dict[str, Any]) -> list[str]:
    """Each state file is the one of the table (and so of the plan step) that lists it."""
    out = []
    for name, info in m["files"].items():
        stem = f"op-{_SAFE.sub('_', name)}"
        fname = info["file"]
        if fname != f"{stem}.arrow" and not re.fullmatch(re.escape(stem) + r"-\d+\.arrow", fname):
            out.append(f"files[{name!r}]: {fname!r} is not the file of table {name!r}")
        step = name.split(".", 1)[0]
        if step not in {s["id"] for s in m["steps"]}:
            out.append(f"files[{name!r}]: the checkpoint has no step {step!r}")
    files = [info["file"] for info in m["files"].values()]
    if len(set(files)) != len(files):
        out.append("files: two tables name the same state file")
    return out


def _rule_steps(m: dict[str, Any]) -> list[str]:
    """Step ids are unique; a source is a step; split names are unique per source."""
    out = []
    ids = [s["id"] for s in m["steps"]]
    if len(set(ids)) != len(ids):
        out.append("steps: a step id is listed twice")
    known = set(ids)
    for i, src in enumerate(m["sources"]):
        if src["step"] not in known:
            out.append(f"sources[{i}].step: the checkpoint has no step {src['step']!r}")
        names = [sp["name"] for sp in src["splits"]]
        if len(set(names)) != len(names):
            out.append(f"sources[{i}].splits: a split name is listed twice")
    if len({s["step"] for s in m["sources"]}) != len(m["sources"]):
        out.append("sources: a source step is listed twice")
    return out


def _rule_parts(m: dict[str, Any]) -> list[str]:
    """A sink lists the part files it staged during this epoch, each once."""
    out = []
    for i, sink in enumerate(m["sinks"]):
        names = sink.get("files", [])
        for name in names:
            match = PART.match(name)
            if match is not None and int(match.group(1)) != m["epoch"]:
                out.append(f"sinks[{i}].files: {name!r} was not staged in epoch {m['epoch']}")
        # staged under their last name in one directory: each last name once
        if len({n.rpartition("/")[2] for n in names}) != len(names):
            out.append(f"sinks[{i}].files: a part file is listed twice")
        if ("files" in sink) != ("pending" in sink):
            out.append(f"sinks[{i}]: 'files' and 'pending' go together")
    return out


#: the manifest of a run's checkpoint (written by :mod:`vstream.runtime.checkpointing`)
RUN_MANIFEST = ManifestSchema(
    body={
        "finished": _Bool(),
        "created": _Str(),
        # informational: the Polars version that wrote it (expression display text)
        "polars": _Str(),
        # the number G of key groups keyed state is in (vstream.kernels.keyhash): the
        # unit of rescaling, fixed for the life of a checkpointed run
        "key_groups": _Int(1),
        "steps": _List(
            _Obj(
                {
                    "id": _Str(_STEP, "a step id (letters, digits, '_' and '-')"),
                    "label": _Str(),
                    "kind": _Str(),
                    "stateful": _Bool(),
                    "fingerprint": _Str(),
                    "anchor": _Str(),
                    # only quoted in messages (what changed)
                    "description": _Map(_Any()),
                    "in_wm": _List(_Int()),
                    "op_out_wm": _Int(),
                    "done": _Bool(),
                    "out_wm": _Int(),
                    "finished": _Bool(),
                }
            )
        ),
        "sources": _List(
            _Obj(
                {
                    "step": _Str(_STEP, "a step id (letters, digits, '_' and '-')"),
                    "label": _Str(),
                    "splits": _List(_Obj({"name": _Str(), "position": _Any(), "ended": _Bool()})),
                }
            )
        ),
        "sinks": _List(
            _Obj(
                {},
                {
                    "files": _List(
                        _Str(PART, "a part file name ([col=value/...]part-<epoch>-<k>.<ext>)")
                    ),
                    # where the sink stages: compared with the sink's own directory, never
                    # used as a path
                    "pending": _Str(),
                },
            )
        ),
        "events_in": _Int(0),
    },
    rules=(_rule_steps, _rule_tables, _rule_parts),
)


def manifest_problems(manifest: object, schema: ManifestSchema | None) -> list[str]:
    """What is wrong with ``manifest`` (a parsed manifest.json), one line each; empty if
    nothing. Without ``schema`` only the store's own keys are checked."""
    out: list[str] = []
    if schema is None:
        _Obj(_ENVELOPE, open=True).check(manifest, "manifest", out)
        return out
    _Obj({**_ENVELOPE, **schema.body}).check(manifest, "manifest", out)
    if not out:
        assert isinstance(manifest, dict)
        for rule in schema.rules:
            out.extend(rule(manifest))
    return out


def _is_plain(path: Path, kind: int) -> bool:
    """``path`` is a file (``stat.S_IFREG``) or directory (``stat.S_IFDIR``) itself,
    not a symbolic link to one: nothing a checkpoint names may lead outside it."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode) == kind
    except OSError:
        return False


# ---------------------------------------------------------------------- the store
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
    keep the last ``keep``. ``schema`` says what a manifest holds beside the store's own
    keys (:data:`RUN_MANIFEST` for a run; None checks the store's keys only)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        keep: int = 3,
        *,
        schema: ManifestSchema | None = None,
    ) -> None:
        self.path = Path(path)
        self.keep = keep
        self.schema = schema
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
        returns its directory once it is durable. A file-system failure (no space
        left, ...) raises :class:`CheckpointError` and leaves the previous checkpoints."""
        epoch = int(manifest["epoch"])
        tmp = self.path / f".tmp-{self.dir_of(epoch).name}"
        try:
            return self._write(epoch, tmp, manifest, tables)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            msg = os_problem(
                exc, f"checkpoint_dir: cannot write the checkpoint of epoch {epoch}", self.path
            )
            msg += " (the run can resume from its previous checkpoint)"
            raise CheckpointError(msg) from exc

    def _write(
        self, epoch: int, tmp: Path, manifest: dict[str, Any], tables: Mapping[str, pa.Table]
    ) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.dir_of(epoch)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files: dict[str, dict[str, Any]] = {}
        taken: set[str] = set()
        for name, table in tables.items():
            stem = f"op-{_SAFE.sub('_', name)}"
            fname, k = f"{stem}.arrow", 0
            while fname in taken:  # two names that differ only in unsafe characters
                k += 1
                fname = f"{stem}-{k}.arrow"
            taken.add(fname)
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
        body = seal_manifest({**manifest, "format": FORMAT, "version": VERSION, "files": files})
        problems = manifest_problems(body, self.schema)
        if problems:  # a bug of the writer: never leave a checkpoint the reader refuses
            msg = f"checkpoint of epoch {epoch} does not follow its schema: {problems[:_SHOWN]}"
            raise CheckpointError(msg)
        mpath = tmp / MANIFEST
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        fsync(tmp)
        # left by a run that crashed after writing it (same epoch again), or not ours
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
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
        manifest = self._manifest(where, epoch)
        tables: dict[str, pa.Table] = {}
        for name, info in manifest["files"].items():
            fpath = where / info["file"]  # a plain name: checked by the schema
            if not _is_plain(fpath, stat.S_IFREG):
                what = "a symbolic link" if fpath.is_symlink() else "missing"
                msg = f"{where}: state file {fpath.name} (table {name!r}) is {what}"
                raise CheckpointError(msg)
            size = fpath.stat().st_size
            if size != info["bytes"] or _crc_of(fpath) != info["crc32"]:
                msg = (
                    f"{where}: state file {fpath.name} is damaged ({size} bytes, the manifest "
                    f"says {info['bytes']}, or its checksum differs)"
                )
                raise CheckpointError(msg)
            try:
                with pa.memory_map(str(fpath)) as source:
                    table = ipc.open_file(source).read_all()
            except Exception as exc:  # any Arrow error, or a broken extension type's
                msg = f"{where}: state file {fpath.name} is not a readable Arrow IPC file ({exc})"
                raise CheckpointError(msg) from exc
            if table.num_rows != info["rows"]:
                msg = (
                    f"{where}: state file {fpath.name} holds {table.num_rows} rows, the "
                    f"manifest says {info['rows']}"
                )
                raise CheckpointError(msg)
            tables[name] = table
        return LoadedCheckpoint(where, manifest, tables)

    def _manifest(self, where: Path, epoch: int) -> dict[str, Any]:
        """The manifest of the checkpoint in ``where``, checked: format, version,
        checksum, schema, epoch."""
        if not _is_plain(where, stat.S_IFDIR):
            msg = f"{where}: not a directory (a symbolic link?); a checkpoint is a directory"
            raise CheckpointError(msg)
        mpath = where / MANIFEST
        if not _is_plain(mpath, stat.S_IFREG):
            what = "a symbolic link" if mpath.is_symlink() else "missing"
            msg = f"{where}: {MANIFEST} is {what}"
            raise CheckpointError(msg)
        try:
            text = mpath.read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"{where}: cannot read {MANIFEST} ({exc.strerror or exc})"
            raise CheckpointError(msg) from exc
        except UnicodeDecodeError as exc:
            msg = f"{where}: {MANIFEST} is not valid JSON (not UTF-8: {exc.reason})"
            raise CheckpointError(msg) from exc
        try:
            manifest = json.loads(text)
        except (ValueError, RecursionError) as exc:
            msg = f"{where}: {MANIFEST} is not valid JSON ({exc})"
            raise CheckpointError(msg) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            msg = f"{where}: {MANIFEST} is not a vstream checkpoint manifest"
            raise CheckpointError(msg)
        version = manifest.get("version")
        if version != VERSION:
            older = (
                isinstance(version, int) and not isinstance(version, bool) and version < VERSION
            )
            by = "an older" if older else "another"
            msg = (
                f"{where}: checkpoint format version {version!r} (written by {by} vstream), "
                f"but this vstream reads format {VERSION} only: delete the directory or run "
                "with a new checkpoint_dir (and a new output directory), or finish the run "
                "with the vstream version that wrote it"
            )
            raise CheckpointError(msg)
        if manifest.get("checksum") != _checksum(manifest):
            msg = (
                f"{where}: the checksum of {MANIFEST} differs from its content (it was "
                "changed or damaged after it was written)"
            )
            raise CheckpointError(msg)
        problems = manifest_problems(manifest, self.schema)
        if problems:
            more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
            msg = f"{where}: {MANIFEST} is wrong: " + "; ".join(problems[:_SHOWN]) + more
            raise CheckpointError(msg)
        if manifest["epoch"] != epoch:
            msg = f"{where}: the manifest says epoch {manifest['epoch']!r}, not {epoch}"
            raise CheckpointError(msg)
        return manifest

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
                f"{str(self.path)!r}: " + "; ".join(problems) + ". To start afresh, "
                "remove it and the run's output (whose rows would be written again)"
            )
            raise CheckpointError(msg)
        return None
