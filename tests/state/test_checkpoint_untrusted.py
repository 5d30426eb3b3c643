"""A checkpoint directory is untrusted input (DESIGN.md "Untrusted input").

Nothing a checkpoint names may lead a restart to move, overwrite or delete a file outside
the checkpoint and the sink's own directories; damage that is still valid JSON (a moved
position, a missing key, a wrong type, another step's table) is found before anything is
acted on: the run falls back to the previous good checkpoint with a warning, or is
refused with a CheckpointError that says what is wrong. Nothing from Arrow or Polars
escapes as a BaseException.

Damage comes in two kinds here: *edited* (the manifest changed, its checksum not: what a
stray edit or a disk error gives) and *resealed* (the checksum recomputed: a deliberate
edit, which only the schema and the path checks stand against).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.state.checkpoint import (
    RUN_MANIFEST,
    CheckpointStore,
    manifest_problems,
    seal_manifest,
)

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]
ROWS = 6_000


class Crash(Exception):
    """The simulated process failure."""


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": pl.int_range(0, ROWS, eager=True) * 7,
            "host": pl.Series([f"h{i % 13}" for i in range(ROWS)]),
            "cpu": (pl.int_range(0, ROWS, eager=True) % 100).cast(pl.Float64),
        }
    )


def _pipeline(crash_after: int = 0) -> vs.Stream:
    """Events -> a tumbling window per host; raises after ``crash_after`` batches."""
    left = [crash_after]

    def fuse(df: pl.DataFrame) -> pl.DataFrame:
        if left[0]:
            left[0] -= 1
            if left[0] == 0:
                raise Crash
        return df

    return (
        vs.from_polars(_frame(), batch_size=400)
        .map_batches(fuse)
        .with_watermark("ts", 50)
        .window(vs.tumbling(500), by="host")
        .agg(pl.len(), pl.col("cpu").sum())
    )


def _run(tmp_path: Path, crash_after: int = 0) -> None:
    _pipeline(crash_after).sink_parquet(
        tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2, rows_per_file=7
    )


@pytest.fixture
def interrupted(tmp_path: Path) -> Path:
    """A run that failed after 9 batches, with checkpoints every 2 (epochs 1 to 4)."""
    with pytest.raises(vs.VStreamError) as info:
        _run(tmp_path, crash_after=9)
    assert isinstance(info.value.__cause__, Crash)
    return tmp_path


def _chk(tmp_path: Path, which: int = -1) -> Path:
    return sorted((tmp_path / "ckpt").glob("chk-*"))[which]


def _read(d: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((d / "manifest.json").read_text())
    return body


def _write(d: Path, body: dict[str, Any], *, reseal: bool) -> None:
    if reseal:
        body = seal_manifest({k: v for k, v in body.items() if k != "checksum"})
    (d / "manifest.json").write_text(json.dumps(body))


def _edit(d: Path, change: Callable[[dict[str, Any]], None], *, reseal: bool) -> None:
    body = _read(d)
    change(body)
    _write(d, body, reseal=reseal)


def _committed(tmp_path: Path) -> pl.DataFrame:
    return pl.read_parquet(tmp_path / "out")


def _expected() -> pl.DataFrame:
    return _pipeline().collect()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------- item 4: paths
@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Files outside the checkpoint and the output, where a hostile manifest points."""
    d = tmp_path / "victim"
    d.mkdir()
    pl.DataFrame({"precious": [1, 2, 3]}).write_parquet(d / "part-00000004-0000.parquet")
    (d / "notes.arrow").write_bytes(b"not yours")
    return d


def _sink_files(d: Path) -> list[str]:
    (sink,) = _read(d)["sinks"]
    files: list[str] = sink["files"]
    return files


PATH_ATTACKS: dict[str, tuple[Callable[[dict[str, Any], Path], None], str]] = {
    "state file with ../": (
        lambda m, v: next(iter(m["files"].values())).update(file="../../victim/notes.arrow"),
        "is not a state file name",
    ),
    "state file absolute": (
        lambda m, v: next(iter(m["files"].values())).update(file=str(v / "notes.arrow")),
        "is not a state file name",
    ),
    "part file with ../": (
        lambda m, v: m["sinks"][0].update(files=["../victim/part-00000004-0000.parquet"]),
        "is not a part file name",
    ),
    "part file absolute": (
        lambda m, v: m["sinks"][0].update(files=[str(v / "part-00000004-0000.parquet")]),
        "is not a part file name",
    ),
}


@pytest.mark.parametrize("attack", sorted(PATH_ATTACKS))
def test_paths_out_of_the_checkpoint_are_refused(
    attack: str, interrupted: Path, victim: Path
) -> None:
    tmp_path = interrupted
    change, reason = PATH_ATTACKS[attack]
    before = _tree(victim)
    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(d, lambda m: change(m, victim), reseal=True)
    with pytest.raises(vs.CheckpointError, match=f"no usable checkpoint.*{reason}"):
        _run(tmp_path)
    assert _tree(victim) == before


def test_a_pending_folder_elsewhere_is_refused(interrupted: Path, victim: Path) -> None:
    # the manifest says its part files were staged in the victim's folder: a restart
    # that believed it would move the victim's file into the output
    tmp_path = interrupted
    newest = _chk(tmp_path)
    body = _read(newest)
    epoch = body["epoch"]
    name = f"part-{epoch:08d}-0000.parquet"
    shutil.copy(victim / "part-00000004-0000.parquet", victim / name)
    body["sinks"][0].update(pending=str(victim), files=[name])
    _write(newest, body, reseal=True)
    before = _tree(victim)
    with pytest.raises(vs.CheckpointError, match="staged for another output"):
        _run(tmp_path)
    assert _tree(victim) == before


def test_a_pending_folder_that_is_a_symlink_is_refused(interrupted: Path, victim: Path) -> None:
    # the sink's own staging folder replaced by a link to the victim: the restart would
    # delete the staged files no checkpoint lists, i.e. the victim's
    tmp_path = interrupted
    pending = tmp_path / ".out.vstream" / "pending"
    assert pending.is_dir()
    shutil.rmtree(pending)
    pending.symlink_to(victim, target_is_directory=True)
    before = _tree(victim)
    with pytest.raises(vs.CheckpointError, match="symbolic link"):
        _run(tmp_path)
    assert _tree(victim) == before


def test_a_state_file_that_is_a_symlink_is_refused(interrupted: Path, same_rows: SameRows) -> None:
    # a link to an identical copy outside passes size and CRC: the link itself is refused
    tmp_path = interrupted
    newest = _chk(tmp_path)
    f = next(newest.glob("op-*.arrow"))
    outside = tmp_path / f"copy-{f.name}"
    shutil.copy(f, outside)
    f.unlink()
    f.symlink_to(outside)
    with pytest.warns(vs.CheckpointWarning, match=f"(?s){f.name}.*symbolic link.*falling back"):
        _run(tmp_path)
    same_rows(_committed(tmp_path), _expected())


def test_a_checkpoint_directory_that_is_a_symlink_is_refused(interrupted: Path) -> None:
    tmp_path = interrupted
    newest = _chk(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    newest.rename(elsewhere)
    newest.symlink_to(elsewhere, target_is_directory=True)
    with pytest.warns(vs.CheckpointWarning, match="(?s)not a directory.*falling back"):
        _run(tmp_path)


# ---------------------------------------------------------------------- item 5: JSON damage
def _move_position(m: dict[str, Any]) -> None:
    m["sources"][0]["splits"][0]["position"] += 500


def _drop_key(m: dict[str, Any]) -> None:
    del m["steps"][1]["out_wm"]


def _wrong_type(m: dict[str, Any]) -> None:
    m["steps"][1]["in_wm"] = ["12"]


def _swap_tables(m: dict[str, Any]) -> None:
    # two tables of different steps trade files (sizes and CRCs follow them)
    names = sorted(m["files"])
    a, b = names[0], names[-1]
    assert a.split(".")[0] != b.split(".")[0]
    m["files"][a], m["files"][b] = m["files"][b], m["files"][a]


def _extra_key(m: dict[str, Any]) -> None:
    m["sinks"][0]["delete"] = "/"


JSON_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "position moved by 500 rows": (_move_position, ""),
    "missing key": (_drop_key, "'out_wm' is missing"),
    "wrong type": (_wrong_type, r"in_wm\[0\]: expected an integer"),
    "another step's table": (_swap_tables, "is not the file of table"),
    "unexpected key": (_extra_key, "unexpected key"),
}


# a moved position with a recomputed checksum is a well-formed checkpoint of another
# history, which no reader can tell from a real one: the checksum is what finds it
DAMAGE_CASES = [
    pytest.param(damage, reseal, id=f"{damage}-{'resealed' if reseal else 'edited'}")
    for damage, (_, reason) in sorted(JSON_DAMAGE.items())
    for reseal in ((False, True) if reason else (False,))
]


@pytest.mark.parametrize(("damage", "reseal"), DAMAGE_CASES)
def test_valid_json_damage_falls_back_to_the_previous_checkpoint(
    damage: str, reseal: bool, interrupted: Path, same_rows: SameRows
) -> None:
    tmp_path = interrupted
    change, reason = JSON_DAMAGE[damage]
    _edit(_chk(tmp_path), change, reseal=reseal)
    why = reason if reseal else "checksum of manifest.json differs"
    with pytest.warns(vs.CheckpointWarning, match=f"(?s){why}.*falling back"):
        _run(tmp_path)
    same_rows(_committed(tmp_path), _expected())


@pytest.mark.parametrize("damage", sorted(k for k, v in JSON_DAMAGE.items() if v[1]))
def test_valid_json_damage_everywhere_is_refused_with_a_list(
    damage: str, interrupted: Path
) -> None:
    tmp_path = interrupted
    change, reason = JSON_DAMAGE[damage]
    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(d, change, reseal=True)
    with pytest.raises(vs.CheckpointError, match=f"no usable checkpoint.*{reason}"):
        _run(tmp_path)


def test_a_table_from_another_step_with_valid_checksums_is_refused(interrupted: Path) -> None:
    # the bytes of one step's table written over another's, the manifest's sizes and
    # CRCs updated and resealed: every check of the files passes; the operator refuses
    tmp_path = interrupted
    for d in (tmp_path / "ckpt").glob("chk-*"):
        body = _read(d)
        files = body["files"]
        window = next(k for k in files if k.endswith(".meta"))
        other = next(k for k in files if k.split(".")[0] != window.split(".")[0])
        data = (d / files[other]["file"]).read_bytes()
        (d / files[window]["file"]).write_bytes(data)
        files[window].update(bytes=len(data), crc32=zlib.crc32(data), rows=files[other]["rows"])
        _write(d, body, reseal=True)
    with pytest.raises(vs.CheckpointError, match=r"holds state that step .* cannot take"):
        _run(tmp_path)


def test_a_table_of_other_types_is_refused(interrupted: Path) -> None:
    # the window's slots with 64-bit key ids and float pane numbers (sizes, CRCs,
    # manifest resealed): the step's own types say it is not its table
    tmp_path = interrupted
    for d in (tmp_path / "ckpt").glob("chk-*"):
        body = _read(d)
        info = next(v for k, v in body["files"].items() if k.endswith(".slots"))
        path = d / info["file"]
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        other = {"pane": pa.float64(), "key": pa.int64()}
        schema = pa.schema([pa.field(f.name, other.get(f.name, f.type)) for f in table.schema])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, schema) as w:
            w.write_table(table.cast(schema))
        data = sink.getvalue().to_pybytes()
        path.write_bytes(data)
        info.update(bytes=len(data), crc32=zlib.crc32(data))
        _write(d, body, reseal=True)
    with pytest.raises(vs.CheckpointError, match=r"table 'slots' is \{pane: double, key: int64"):
        _run(tmp_path)


def test_bad_arrow_extension_metadata_is_refused(interrupted: Path) -> None:
    # a column of a state table relabelled as an Arrow extension type with garbage
    # metadata (sizes and CRCs updated, manifest resealed)
    tmp_path = interrupted
    for d in (tmp_path / "ckpt").glob("chk-*"):
        body = _read(d)
        for info in body["files"].values():
            path = d / info["file"]
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            fields = [
                f.with_metadata(
                    {b"ARROW:extension:name": b"arrow.uuid", b"ARROW:extension:metadata": b"\xff"}
                )
                for f in table.schema
            ]
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, pa.schema(fields)) as w:
                w.write_table(table.cast(pa.schema(fields)))
            data = sink.getvalue().to_pybytes()
            path.write_bytes(data)
            info.update(bytes=len(data), crc32=zlib.crc32(data))
        _write(d, body, reseal=True)
    with pytest.raises(vs.CheckpointError, match=r"no usable checkpoint.*not a readable Arrow"):
        _run(tmp_path)


def _lookup(crash_after: int = 0) -> vs.Stream:
    """Events enriched from a table with a Categorical column (a dictionary column in
    the lookup join's checkpointed state)."""
    left = [crash_after]

    def fuse(df: pl.DataFrame) -> pl.DataFrame:
        if left[0]:
            left[0] -= 1
            if left[0] == 0:
                raise Crash
        return df

    sites = pl.Series([f"s{i % 2}" for i in range(13)], dtype=pl.Categorical)
    table = pl.DataFrame({"host": [f"h{i}" for i in range(13)], "site": sites})
    return vs.from_polars(_frame(), batch_size=400).map_batches(fuse).join(table, on="host")


def test_polars_metadata_that_makes_polars_panic_is_refused(tmp_path: Path) -> None:
    # Polars reads its own field metadata when it converts an Arrow table: enum values
    # whose lengths point past their text make it panic (a pyo3 PanicException, a
    # BaseException); sizes and CRCs updated, manifest resealed
    def run(crash_after: int = 0) -> None:
        _lookup(crash_after).sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )

    with pytest.raises(vs.VStreamError):
        run(crash_after=7)
    for d in (tmp_path / "ckpt").glob("chk-*"):
        body = _read(d)
        for info in body["files"].values():
            path = d / info["file"]
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            if not any(pa.types.is_dictionary(f.type) for f in table.schema):
                continue
            fields = [
                f.with_metadata({b"_PL_ENUM_VALUES2": b"99999;a"})
                if pa.types.is_dictionary(f.type)
                else f
                for f in table.schema
            ]
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, pa.schema(fields)) as w:
                w.write_table(table.cast(pa.schema(fields)))
            data = sink.getvalue().to_pybytes()
            path.write_bytes(data)
            info.update(bytes=len(data), crc32=zlib.crc32(data))
            break
        else:
            pytest.fail("no dictionary column in the checkpoint")
        _write(d, body, reseal=True)
    with pytest.raises(vs.CheckpointError, match=r"cannot take \(PanicException"):
        run()


def test_a_polars_panic_while_restoring_is_a_checkpoint_error(
    interrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polars.exceptions import PanicException

    from vstream.ops.window import WindowOp

    def panic(self: object, state: object) -> None:
        raise PanicException("index out of bounds")

    monkeypatch.setattr(WindowOp, "restore", panic)
    with pytest.raises(vs.CheckpointError, match="PanicException: index out of bounds"):
        _run(interrupted)


def test_an_older_format_version_is_refused_clearly(interrupted: Path) -> None:
    tmp_path = interrupted
    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(d, lambda m: m.update(version=2), reseal=True)
    with pytest.raises(vs.CheckpointError, match=r"version 2 \(written by an older vstream\)"):
        _run(tmp_path)


def test_a_split_the_input_no_longer_has_is_a_warning(
    interrupted: Path, same_rows: SameRows
) -> None:
    # well-formed, resealed, but one source split more than the input has: splits go by
    # name, so the others resume at their positions and the missing one is reported
    tmp_path = interrupted
    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(
            d,
            lambda m: m["sources"][0]["splits"].append(
                {"name": "x", "position": 0, "ended": False}
            ),
            reseal=True,
        )
    with pytest.warns(vs.CheckpointWarning, match="split 'x' of the checkpointed run is gone"):
        _run(tmp_path)
    same_rows(_committed(tmp_path), _expected())


def test_a_step_with_other_inputs_is_refused(interrupted: Path) -> None:
    # well-formed, resealed, but a step with one input watermark too many
    tmp_path = interrupted
    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(d, lambda m: m["steps"][2]["in_wm"].append(0), reseal=True)
    with pytest.raises(vs.CheckpointError, match="has 2 input watermarks in it, 1 inputs"):
        _run(tmp_path)


def test_a_source_without_positions_is_refused(interrupted: Path) -> None:
    # the positions are filed under another step: the source would be read afresh
    tmp_path = interrupted

    def move(m: dict[str, Any]) -> None:
        m["sources"][0]["step"] = m["steps"][-1]["id"]

    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(d, move, reseal=True)
    with pytest.raises(vs.CheckpointError, match="has no split positions for source"):
        _run(tmp_path)


def test_a_stateful_step_of_another_id_is_refused(interrupted: Path) -> None:
    # the checkpoint's window has another id: the plan's window is not in it
    tmp_path = interrupted

    def rename(m: dict[str, Any]) -> None:
        (step,) = [s for s in m["steps"] if s["kind"] == "window"]
        old = step["id"]
        step["id"] = "renamed"
        step["anchor"] = "elsewhere"
        m["files"] = {k: v for k, v in m["files"].items() if not k.startswith(old + ".")}

    for d in (tmp_path / "ckpt").glob("chk-*"):
        _edit(d, rename, reseal=True)
    with pytest.raises(
        vs.CheckpointError, match=r"different pipeline: step .* \(window\) is not in it"
    ):
        _run(tmp_path)


def test_the_run_manifest_written_follows_its_schema(interrupted: Path) -> None:
    body = _read(_chk(interrupted))
    assert manifest_problems(body, RUN_MANIFEST) == []
    assert body["checksum"] == seal_manifest(body)["checksum"]


# ---------------------------------------------------------------------- the store's branches
def _store(tmp_path: Path) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "c", keep=5)
    store.write({"epoch": 1}, {"000.state": pa.table({"a": [1, 2, 3]})})
    return store


def test_store_unreadable_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    real = Path.read_text

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "manifest.json":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(vs.CheckpointError, match=r"cannot read manifest.json .Permission denied"):
        store.load(1)


def test_store_manifest_not_utf8(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.dir_of(1) / "manifest.json").write_bytes(b'{"format": "\xff"}')
    with pytest.raises(vs.CheckpointError, match=r"not valid JSON .not UTF-8"):
        store.load(1)


def test_store_manifest_deeply_nested(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.dir_of(1) / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(vs.CheckpointError, match="not valid JSON"):
        store.load(1)


@pytest.mark.parametrize("fmt", ["something-else", 7, None])
def test_store_wrong_format(tmp_path: Path, fmt: object) -> None:
    store = _store(tmp_path)
    _edit(store.dir_of(1), lambda m: m.update(format=fmt), reseal=True)
    with pytest.raises(vs.CheckpointError, match="not a vstream checkpoint manifest"):
        store.load(1)


def test_store_not_an_object(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.dir_of(1) / "manifest.json").write_text("[1, 2]")
    with pytest.raises(vs.CheckpointError, match="not a vstream checkpoint manifest"):
        store.load(1)


def test_store_epoch_mismatch(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.dir_of(1).rename(store.dir_of(4))
    with pytest.raises(vs.CheckpointError, match="the manifest says epoch 1, not 4"):
        store.load(4)


def test_store_unreadable_arrow_file(tmp_path: Path) -> None:
    # garbage whose size and CRC the (resealed) manifest agrees with
    store = _store(tmp_path)
    d = store.dir_of(1)
    body = _read(d)
    info = body["files"]["000.state"]
    garbage = b"ARROW1\x00\x00" + b"\x13" * 200
    (d / info["file"]).write_bytes(garbage)
    info.update(bytes=len(garbage), crc32=zlib.crc32(garbage))
    _write(d, body, reseal=True)
    with pytest.raises(vs.CheckpointError, match="not a readable Arrow IPC file"):
        store.load(1)


def test_store_row_count_mismatch(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _edit(store.dir_of(1), lambda m: m["files"]["000.state"].update(rows=2), reseal=True)
    with pytest.raises(vs.CheckpointError, match="holds 3 rows, the manifest says 2"):
        store.load(1)


def test_store_missing_checksum(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _edit(store.dir_of(1), lambda m: m.pop("checksum"), reseal=False)
    with pytest.raises(vs.CheckpointError, match="checksum"):
        store.load(1)


def test_store_names_that_differ_only_in_unsafe_characters(tmp_path: Path) -> None:
    # "a b" and "a_b" map to the same safe file name: both tables survive
    store = CheckpointStore(tmp_path / "c")
    a, b = pa.table({"x": [1]}), pa.table({"y": [2, 3]})
    store.write({"epoch": 1}, {"000.a b": a, "000.a_b": b})
    loaded = store.load(1)
    assert loaded.tables_of("000") == {"a b": a, "a_b": b}


def test_store_write_failure_names_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(vs.CheckpointError) as info:
        store.write({"epoch": 2}, {"000.state": pa.table({"a": [1]})})
    msg = str(info.value)
    assert "epoch 2" in msg
    assert str(store.path) in msg
    assert "no space left on device" in msg
    assert "free space" in msg
    monkeypatch.undo()
    assert store.epochs() == [1]  # the previous checkpoint stays, nothing half-written
    assert not list(store.path.glob(".tmp-*"))


# ---------------------------------------------------------------------- fuzz
def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (keys of objects, indexes of lists)."""
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*at, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*at, i)))
    return out


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interrupted run's output and checkpoints in ``work/``, and a copy of them in
    ``saved/`` to put back before each example (in the same place: a checkpoint and its
    output know where they are)."""
    root = tmp_path_factory.mktemp("pristine")
    with pytest.raises(vs.VStreamError):
        _run(root / "work", crash_after=9)
    shutil.copytree(root / "work", root / "saved", symlinks=True)
    return root


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_resealed_manifest_damage_is_a_vstream_error_or_a_run(
    data: st.DataObject, pristine: Path
) -> None:
    """Replace, delete or add one value anywhere in the newest manifest (checksum
    recomputed): the restart either runs or fails with a VStreamError; nothing else
    escapes (no KeyError, IndexError, TypeError, PanicException, ...)."""
    work = pristine / "work"
    shutil.rmtree(work)
    shutil.copytree(pristine / "saved", work, symlinks=True)
    newest = _chk(work)
    for older in sorted((work / "ckpt").glob("chk-*"))[:-1]:
        shutil.rmtree(older)  # no falling back: the damaged one is used or refused
    body = _read(newest)
    # not inside "plan": only a message quotes it (the fingerprint stands for it)
    places = [w for w in _paths(body)[1:] if w[0] != "plan" or len(w) == 1]
    where = data.draw(st.sampled_from(places))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    parent: Any = body
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    if action == "replace":
        parent[last] = data.draw(_JSON)
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=6))] = data.draw(_JSON)
    else:
        parent.insert(last, data.draw(_JSON))
    _write(newest, body, reseal=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _run(work)
            event("ran")
        except vs.VStreamError as exc:
            event(f"refused: {type(exc).__name__}")
