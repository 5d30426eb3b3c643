"""The source interface: the columns a run reads are an argument of ``Source.open``
(never state of the source object), ``on_checkpoint_complete`` hears of every durable
checkpoint, a reader of fixed splits has no status to report and no split to retire
(splits that appear while running are ``SplitAdded`` events: tests/test_live_splits.py),
and a reader is told the column to align its splits on right after it opens."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vstream as vs
from vstream.errors import CheckpointError, SourceError
from vstream.io.base import Data, Reader, Source, SourceEvent, SplitPosition
from vstream.io.memory import ArrowSource, PolarsSource
from vstream.io.ndjson import NdjsonSource
from vstream.io.parquet import ParquetSource
from vstream.io.records import RecordsSource
from vstream.plan.nodes import SourceNode
from vstream.state.checkpoint import MANIFEST, CheckpointStore


def _stream(src: Source) -> vs.Stream:
    return vs.Stream(SourceNode(src))


def _strings(values: list[bytes]) -> pa.Array:
    """A string array holding exactly these bytes (invalid UTF-8 included)."""
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(np.int32)
    data = pa.py_buffer(b"".join(values))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), data])


def _drain(reader: Reader) -> list[Data]:
    out: list[Data] = []
    try:
        while not reader.exhausted:
            event = reader.poll(5.0)
            if isinstance(event, Data):
                out.append(event)
    finally:
        reader.close()
    return out


# ---------------------------------------------------------------------- columns


class OpenSpy(ArrowSource):
    """An Arrow table source that records the columns of every ``open``."""

    def __init__(self, table: pa.Table, batch_size: int = 2) -> None:
        super().__init__(table, batch_size, None)
        self.opened: list[frozenset[str] | None] = []

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        self.opened.append(columns)
        return super().open(resume, columns=columns, splits=splits)


def test_the_runtime_opens_a_source_with_the_columns_the_run_reads() -> None:
    src = OpenSpy(pa.table({"ts": [1, 2, 3], "a": [4, 5, 6], "b": ["x", "y", "z"]}))
    s = _stream(src)
    assert s.select("a").collect()["a"].to_list() == [4, 5, 6]
    assert s.filter(pl.col("b") != "y").select("ts").collect()["ts"].to_list() == [1, 3]
    # a dead-letters branch keeps whole rows: every column is read
    vs.collect_all([s.select("a"), s.dead_letters()])
    assert s.collect().columns == ["ts", "a", "b"]
    assert src.opened == [frozenset({"a"}), frozenset({"ts", "b"}), None, None]
    assert not hasattr(src, "read_columns")  # no channel beside the argument


def test_one_source_opened_twice_with_other_columns() -> None:
    """Two runs of one source object, read in turns: each checks the strings it reads
    (invalid UTF-8 in a column the run does not read is not its concern), and neither
    sees the other's columns."""
    table = pa.table(
        {"n": [1, 2, 3, 4], "s": _strings([b"ok", b"\xff", b"fine", b"\xc3"]), "t": ["a"] * 4}
    )
    src = ArrowSource(table, 2, None)
    narrow = src.open(columns=frozenset({"n", "t"}))
    whole = src.open()
    events: dict[str, list[Data]] = {"narrow": [], "whole": []}
    while not (narrow.exhausted and whole.exhausted):
        for name, reader in (("narrow", narrow), ("whole", whole)):
            event = reader.poll(1.0)
            if isinstance(event, Data):
                events[name].append(event)
    assert [e.position for e in events["narrow"]] == [2, 4]
    assert all(e.dead is None for e in events["narrow"])
    assert sum(e.batch.num_rows for e in events["narrow"] if e.batch is not None) == 4
    assert [e.position for e in events["whole"]] == [2, 4]
    dead = [e.dead for e in events["whole"] if e.dead is not None]
    assert sum(d.num_rows for d in dead) == 2
    kept = [e.batch["n"].to_pylist() for e in events["whole"] if e.batch is not None]
    assert kept == [[1], [3]]


def test_parquet_opened_twice_with_other_columns(tmp_path: Path) -> None:
    table = pa.table({"ts": list(range(10)), "a": list(range(10, 20)), "b": ["x"] * 10})
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=4)
    src = ParquetSource(tmp_path / "f.parquet", batch_size=3)
    first = src.open(columns=frozenset({"a"}))
    second = src.open(columns=frozenset({"ts", "b"}))
    a = _drain(first)
    b = _drain(second)
    assert {tuple(e.batch.schema.names) for e in a if e.batch is not None} == {("a",)}
    assert {tuple(e.batch.schema.names) for e in b if e.batch is not None} == {("ts", "b")}
    assert (
        [e.position for e in a]
        == [e.position for e in b]
        == [e.position for e in _drain(src.open())]
    )


# ---------------------------------------------------------------------- on_checkpoint_complete


class CheckpointSpy(ArrowSource):
    """A replayable Arrow table source that records every ``on_checkpoint_complete``,
    with what was on disk at the call."""

    def __init__(self, table: pa.Table, ckpt: Path, out: Path) -> None:
        super().__init__(table, 10, None)
        self.ckpt, self.out = ckpt, out
        self.calls: list[dict[str, Any]] = []
        self.fail = False

    def on_checkpoint_complete(self, epoch: int, positions: Mapping[str, object]) -> None:
        mpath = CheckpointStore(self.ckpt).dir_of(epoch) / MANIFEST
        manifest = json.loads(mpath.read_text()) if mpath.is_file() else None
        committed = pl.read_parquet(self.out).height if any(self.out.glob("*.parquet")) else 0
        self.calls.append(
            {
                "epoch": epoch,
                "positions": dict(positions),
                "manifest": manifest,
                "committed": committed,
            }
        )
        if self.fail:
            raise RuntimeError("broker unreachable")


def _table(n: int) -> pa.Table:
    return pa.table({"ts": list(range(n)), "v": [i * 2 for i in range(n)]})


def test_on_checkpoint_complete_follows_every_durable_checkpoint(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    src = CheckpointSpy(_table(45), ckpt, out)
    _stream(src).sink_parquet(
        out, checkpoint_dir=ckpt, checkpoint_interval=2, keep_checkpoints=100
    )
    epochs = [c["epoch"] for c in src.calls]
    # once per checkpoint, in order: every checkpoint on disk was announced, no other
    assert epochs == CheckpointStore(ckpt).epochs()
    assert epochs == list(range(1, len(epochs) + 1))
    assert len(epochs) >= 3
    for call in src.calls:
        manifest = call["manifest"]
        assert manifest is not None, "called before the manifest was on disk"
        (source,) = manifest["sources"]
        held = {sp["name"]: sp["position"] for sp in source["splits"]}
        assert call["positions"] == held
        # the sinks committed before: every row up to the position is in the output
        assert call["committed"] == held["arrow"]
    assert src.calls[-1]["positions"] == {"arrow": 45}
    assert src.calls[-1]["manifest"]["finished"] is True


def test_on_checkpoint_complete_positions_by_split_name(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(_table(6), data / "a.parquet")
    pq.write_table(_table(4), data / "b.parquet")
    got: list[tuple[int, dict[str, object]]] = []

    class Files(ParquetSource):
        def on_checkpoint_complete(self, epoch: int, positions: Mapping[str, object]) -> None:
            got.append((epoch, dict(positions)))

    ckpt = tmp_path / "ckpt"
    _stream(Files(data, batch_size=2)).sink_parquet(
        tmp_path / "out", checkpoint_dir=ckpt, checkpoint_interval=1, keep_checkpoints=100
    )
    assert [e for e, _ in got] == CheckpointStore(ckpt).epochs()
    assert all(set(p) == {"a.parquet", "b.parquet"} for _, p in got)
    assert got[0][1] == {"a.parquet": 2, "b.parquet": None}  # nothing of b consumed yet
    assert got[-1][1] == {"a.parquet": 6, "b.parquet": 4}


def test_on_checkpoint_complete_not_called_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    src = CheckpointSpy(_table(60), ckpt, out)
    original = CheckpointStore._write

    def failing(self: CheckpointStore, epoch: int, *args: Any) -> Path:
        if epoch == 3:
            raise OSError(28, "No space left on device")
        return original(self, epoch, *args)

    monkeypatch.setattr(CheckpointStore, "_write", failing)
    with pytest.raises(CheckpointError, match="epoch 3"):
        _stream(src).sink_parquet(
            out, checkpoint_dir=ckpt, checkpoint_interval=2, keep_checkpoints=100
        )
    assert [c["epoch"] for c in src.calls] == [1, 2]
    assert CheckpointStore(ckpt).epochs() == [1, 2]


def test_a_failing_hook_fails_the_run_after_a_durable_checkpoint(tmp_path: Path) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    src = CheckpointSpy(_table(30), ckpt, out)
    src.fail = True
    with pytest.raises(SourceError, match="on_checkpoint_complete failed for checkpoint 1") as e:
        _stream(src).sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1)
    assert "broker unreachable" in str(e.value)
    assert [c["epoch"] for c in src.calls] == [1]
    assert CheckpointStore(ckpt).epochs() == [1]
    # the checkpoint stands: a run with a working hook resumes from it
    src.fail = False
    _stream(src).sink_parquet(out, checkpoint_dir=ckpt, checkpoint_interval=1)
    assert src.calls[1]["epoch"] == 2
    assert pl.read_parquet(out).sort("ts")["ts"].to_list() == list(range(30))


# ---------------------------------------------------------------------- reader status


def test_sources_with_fixed_splits_report_no_status(tmp_path: Path) -> None:
    pq.write_table(_table(3), tmp_path / "a.parquet")
    sources: list[Source] = [
        PolarsSource(pl.DataFrame({"a": [1]}), 10),
        ArrowSource(_table(3), None, None),
        ParquetSource(tmp_path / "a.parquet", batch_size=2),
        NdjsonSource([b'{"a": 1}'], None, 10, 0.05, None),
        RecordsSource([{"a": 1}], None, 10, 0.05, None),
    ]
    for src in sources:
        reader = src.open()
        try:
            assert reader.status() is None
            assert reader.retired_splits() == []
        finally:
            reader.close()
        assert src.on_checkpoint_complete(1, dict.fromkeys(src.split_names(), 0)) is None


# ---------------------------------------------------------------------- align


class _Told(Reader):
    """A reader that records the runtime's ``align`` calls, and how many polls came
    before each."""

    def __init__(self, inner: Reader, calls: list[tuple[str, int, int]]) -> None:
        self.inner, self.calls, self.polls = inner, calls, 0

    def poll(self, timeout: float) -> SourceEvent | None:
        self.polls += 1
        return self.inner.poll(timeout)

    @property
    def exhausted(self) -> bool:
        return self.inner.exhausted

    def close(self) -> None:
        self.inner.close()

    def align(self, column: str, drift: int) -> None:
        self.calls.append((column, drift, self.polls))


class AlignSpy(ArrowSource):
    """An Arrow table source whose readers record the runtime's ``align`` calls."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__(table, 2, None)
        self.calls: list[tuple[str, int, int]] = []

    def open(
        self,
        resume: Mapping[int, SplitPosition] | None = None,
        *,
        columns: frozenset[str] | None = None,
        splits: Collection[int] | None = None,
    ) -> Reader:
        return _Told(super().open(resume, columns=columns, splits=splits), self.calls)


def test_the_runtime_tells_a_reader_the_column_to_align_its_splits_on() -> None:
    src = AlignSpy(pa.table({"ts": [1, 2, 3], "k": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]}))
    s = _stream(src)
    out = s.rename({"ts": "t"}).with_watermark("t", 2).window(vs.tumbling(10), by="k")
    assert out.agg(pl.len()).collect().height == 2
    assert src.calls == [("ts", 2, 0)]  # once, right after open (before any poll)
    src.calls.clear()
    assert s.select("x").collect().height == 3  # no watermark: nothing to align on
    assert s.with_columns(ts=pl.col("ts") * 2).with_watermark("ts", 2).collect().height == 3
    assert src.calls == []


def test_align_is_a_no_op_for_a_reader_of_one_split() -> None:
    src = ArrowSource(pa.table({"ts": [3, 1, 2]}), 1, None)
    reader = src.open()
    reader.align("ts", 0)
    assert [e.batch["ts"][0].as_py() for e in _drain(reader) if e.batch is not None] == [3, 1, 2]
