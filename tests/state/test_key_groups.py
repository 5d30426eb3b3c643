"""Key groups in a run (issue 17 item 4): keyed state is organised in a fixed number G of
key groups, recorded in the RunState and the checkpoint manifest; a state of another G is
refused. A keyed window (string and int keys) and a keyed interval join run halfway, their
state split by groups into 2 and 3 parts as partitions own them:

(a) every key lands in the part owning its group, computed here from ``key_hash`` of the
    key values and the contiguous ranges ``[p * G // P, (p + 1) * G // P)``;
(b) the parts merged back, restored into a fresh run, give the rest of the uninterrupted
    run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import vstream as vs
from vstream.io.sinks import CollectSink
from vstream.kernels.keyhash import DEFAULT_KEY_GROUPS, key_group, key_hash
from vstream.runtime.executor import Executor, Target
from vstream.runtime.run_state import RunState
from vstream.state.checkpoint import seal_manifest
from vstream.state.join import JoinState
from vstream.state.window import PaneState, SessionState

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]
KEYS = {"string": "host", "int": "host_id"}
STEPS = 12  # source batches before the snapshot (of ~29 for the window, ~22 for the join)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    """Telemetry over 300 hosts: enough keys that every part of 3 has some."""
    return vs.datasets.telemetry(20_000, hosts=300, seed=3).select("ts", "host", "host_id", "cpu")


def _window(kind: str, key: str) -> Callable[[pl.DataFrame], vs.Stream]:
    spec = vs.tumbling("1s") if kind == "tumbling" else vs.session("700ms")

    def build(df: pl.DataFrame) -> vs.Stream:
        return (
            vs.from_polars(df, batch_size=700)
            .with_watermark("ts", "2s", time_unit="ms")
            .window(spec, by=key)
            .agg(pl.len(), pl.col("cpu").mean())
        )

    return build


def _join(key: str) -> Callable[[pl.DataFrame], vs.Stream]:
    def build(df: pl.DataFrame) -> vs.Stream:
        left = vs.from_polars(df.gather_every(2), batch_size=500)
        right = vs.from_polars(df.gather_every(2, offset=1).select("ts", key), batch_size=500)
        return left.with_watermark("ts", "2s", time_unit="ms").join_interval(
            right.with_watermark("ts", "2s", time_unit="ms"),
            on=key,
            lower="-300ms",
            upper="500ms",
            how="left",
        )

    return build


def _executor(
    stream: vs.Stream, key_groups: int = DEFAULT_KEY_GROUPS
) -> tuple[Executor, CollectSink]:
    sink = CollectSink()
    return Executor([Target(stream._node, sink)], key_groups=key_groups), sink


def _halfway(stream: vs.Stream) -> tuple[Executor, CollectSink, RunState]:
    ex, sink = _executor(stream)
    loop = ex.run()
    for _ in range(STEPS):
        next(loop)
    state = ex.snapshot()
    loop.close()
    return ex, sink, state


def _keys_of(state: PaneState | SessionState | JoinState) -> pl.DataFrame:
    assert state.keys is not None
    return state.keys.keys(np.arange(len(state.keys)))


def _check_parts_own_their_groups(
    whole: pl.DataFrame, parts: list[PaneState] | list[SessionState] | list[JoinState], n: int
) -> None:
    """(a): each key is in exactly one part, the one whose range holds its group."""
    g = DEFAULT_KEY_GROUPS
    seen = []
    for p, part in enumerate(parts):
        keys = _keys_of(part)
        groups = key_group(key_hash(keys), g)
        lo, hi = p * g // n, (p + 1) * g // n
        assert ((groups >= lo) & (groups < hi)).all(), f"part {p} holds keys of other groups"
        assert keys.height > 0, f"part {p} of {n} is empty: the test shows nothing"
        seen.append(keys)
    together = pl.concat(seen).sort(whole.columns)
    assert together.equals(whole.sort(whole.columns))


def _resume_from(
    build: Callable[[pl.DataFrame], vs.Stream],
    df: pl.DataFrame,
    state: RunState,
    sid: str,
    merged: PaneState | SessionState | JoinState,
) -> pl.DataFrame:
    """(b): the run state with ``merged`` as step ``sid``'s state, restored into a
    fresh run, run to its end."""
    tables = dict(state.steps[sid].tables)
    tables.update(merged.snapshot())
    state.steps[sid].tables = tables
    second, sink = _executor(build(df))
    assert second.restore(state) == []
    for _ in second.run():
        pass
    return sink.result()


def _uninterrupted(stream: vs.Stream) -> pl.DataFrame:
    ex, sink = _executor(stream)
    for _ in ex.run():
        pass
    return sink.result()


@pytest.mark.parametrize("n_parts", [2, 3])
@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
@pytest.mark.parametrize("kind", ["tumbling", "session"])
def test_window_state_split_by_groups_then_merged_resumes_the_run(
    kind: str, key: str, n_parts: int, events: pl.DataFrame, same_rows: SameRows
) -> None:
    build = _window(kind, key)
    expected = _uninterrupted(build(events))
    first, first_sink, state = _halfway(build(events))
    (i,) = [i for i, ident in enumerate(first.step_ids) if ident.kind == "window"]
    op = first.ops[i]
    window = op.state  # type: ignore[attr-defined]
    assert isinstance(window, PaneState if kind == "tumbling" else SessionState)
    whole = _keys_of(window)
    assert whole.height > 100  # halfway: most hosts have open windows

    parts = window.split_by_groups(n_parts)
    assert len(parts) == n_parts
    _check_parts_own_their_groups(whole, parts, n_parts)

    merged = type(window).merge(parts)
    got = _resume_from(build, events, state, first.step_ids[i].id, merged)
    same_rows(pl.concat([first_sink.result(), got]), expected)


@pytest.mark.parametrize("n_parts", [2, 3])
@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_join_state_split_by_groups_then_merged_resumes_the_run(
    key: str, n_parts: int, events: pl.DataFrame, same_rows: SameRows
) -> None:
    build = _join(key)
    expected = _uninterrupted(build(events))
    assert expected["cpu"].null_count() < expected.height  # pairs and unmatched rows
    first, first_sink, state = _halfway(build(events))
    (i,) = [i for i, ident in enumerate(first.step_ids) if ident.kind.startswith("join")]
    join = first.ops[i].state  # type: ignore[attr-defined]
    assert isinstance(join, JoinState)
    whole = _keys_of(join)
    assert whole.height > 100

    parts = join.split_by_groups(n_parts)
    _check_parts_own_their_groups(whole, parts, n_parts)
    rows = [sum(r.snapshot().num_rows for r in p.rows().values()) for p in parts]
    assert sum(rows) == sum(r.snapshot().num_rows for r in join.rows().values())

    merged = JoinState.merge(parts)
    got = _resume_from(build, events, state, first.step_ids[i].id, merged)
    same_rows(pl.concat([first_sink.result(), got]), expected)


def test_a_state_without_keys_is_all_in_the_first_part(events: pl.DataFrame) -> None:
    stream = (
        vs.from_polars(events, batch_size=700)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"))
        .agg(pl.len())
    )
    first, _, _ = _halfway(stream)
    (i,) = [i for i, ident in enumerate(first.step_ids) if ident.kind == "window"]
    window = first.ops[i].state  # type: ignore[attr-defined]
    assert window.keys is None
    parts = window.split_by_groups(3)
    slots = [p.snapshot()["slots"].num_rows for p in parts]
    assert slots == [window.snapshot()["slots"].num_rows, 0, 0]
    assert slots[0] > 0


# ---------------------------------------------------------------------- G in a run
def test_the_run_state_and_the_manifest_record_the_key_groups(
    tmp_path: Path, events: pl.DataFrame
) -> None:
    build = _window("tumbling", "host")
    _, _, state = _halfway(build(events))
    assert state.key_groups == DEFAULT_KEY_GROUPS == 128
    ex, _ = _executor(build(events), key_groups=64)
    loop = ex.run()
    next(loop)
    assert ex.snapshot().key_groups == 64
    loop.close()

    build(events).sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    newest = max((tmp_path / "ckpt").glob("chk-*"))
    manifest = json.loads((newest / "manifest.json").read_text())
    assert manifest["key_groups"] == 128


def test_a_state_of_another_number_of_key_groups_is_refused(events: pl.DataFrame) -> None:
    build = _window("tumbling", "host")
    _, _, state = _halfway(build(events))
    other, _ = _executor(build(events), key_groups=64)
    with pytest.raises(vs.CheckpointError, match="in 128 key groups, this run uses 64"):
        other.restore(state)


def _interrupted(tmp_path: Path, df: pl.DataFrame) -> None:
    """A checkpointed run of a window that fails after 9 batches."""
    seen = [0]

    def fuse(batch: pl.DataFrame) -> pl.DataFrame:
        seen[0] += 1
        if seen[0] == 9:
            raise RuntimeError("crash")
        return batch

    stream = (
        vs.from_polars(df, batch_size=700)
        .map_batches(fuse)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.len())
    )
    with pytest.raises(vs.VStreamError):
        stream.sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )


def test_a_checkpoint_of_another_number_of_key_groups_is_refused(
    tmp_path: Path, events: pl.DataFrame
) -> None:
    _interrupted(tmp_path, events)
    checkpoints = sorted((tmp_path / "ckpt").glob("chk-*"))
    assert checkpoints
    for d in checkpoints:
        path = d / "manifest.json"
        body = json.loads(path.read_text())
        assert body["key_groups"] == 128
        body["key_groups"] = 32
        path.write_text(
            json.dumps(seal_manifest({k: v for k, v in body.items() if k != "checksum"}))
        )
    stream = (
        vs.from_polars(events, batch_size=700)
        .map_batches(lambda b: b)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.len())
    )
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(vs.CheckpointError) as err:
        stream.sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    text = str(err.value)
    assert "holds keyed state in 32 key groups, this run uses 128" in text
    assert "cannot be re-grouped" in text
    # refused before the sink recovered anything
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
