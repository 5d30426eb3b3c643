"""RunState, stable step ids, named splits and the checkpoint format 4.

- ``Executor.snapshot()`` -> ``Executor.restore()`` into a fresh executor gives the rest
  of an uninterrupted run;
- step ids are the same in two processes, do not depend on Polars' serialised expression
  bytes, and a stateless step added or changed keeps a stateful step's id and state;
- a changed stateful step is refused, named with what changed;
- a Parquet file added to a source directory while a checkpointed run is paused is read
  on resume, the old files are not read again; a file that disappeared is a warning;
- a checkpoint of format 3 is refused with a message saying what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import vstream as vs
from vstream.errors import PipelineError
from vstream.io.sinks import CollectSink
from vstream.plan.ids import step_identities
from vstream.plan.nodes import ancestors
from vstream.runtime.executor import Executor, Target
from vstream.state.checkpoint import VERSION, seal_manifest

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]


class Crash(Exception):
    """The simulated process failure."""


class Fuse:
    """A map_batches step that raises once it has seen ``after`` batches (0: never), and
    remembers the values of ``column`` it saw."""

    def __init__(self, after: int = 0, column: str | None = None) -> None:
        self.after = after
        self.column = column
        self.seen: set[object] = set()
        self.rows = 0

    def __call__(self, df: pl.DataFrame) -> pl.DataFrame:
        if self.after:
            self.after -= 1
            if self.after == 0:
                raise Crash
        self.rows += df.height
        if self.column is not None:
            self.seen |= set(df.get_column(self.column).unique().to_list())
        return df


def _ids(stream: vs.Stream) -> list[str]:
    return [i.id for i in step_identities(ancestors([stream._node]))]


def _windowed(source: vs.Stream, fuse: Fuse, threshold: int = 10) -> vs.Stream:
    return (
        source.map_batches(fuse)
        .with_watermark("ts", "2s", time_unit="ms")
        .filter(pl.col("cpu") >= threshold)
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.len(), pl.col("cpu").mean())
    )


def _parts(folder: Path) -> pl.DataFrame:
    files = sorted(folder.glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


# ---------------------------------------------------------------------- RunState round trip
def _executor(stream: vs.Stream) -> tuple[Executor, CollectSink]:
    sink = CollectSink()
    return Executor([Target(stream._node, sink)]), sink


@pytest.mark.parametrize("steps", [3, 11, 25])
def test_snapshot_then_restore_gives_the_rest_of_an_uninterrupted_run(
    steps: int, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    def build() -> vs.Stream:
        return _windowed(vs.from_polars(telemetry_small, batch_size=700), Fuse())

    whole, whole_sink = _executor(build())
    for _ in whole.run():
        pass
    expected = whole_sink.result()

    first, first_sink = _executor(build())
    loop = first.run()
    for _ in range(steps):
        next(loop)
    state = first.snapshot()
    loop.close()  # the first run ends here, its state kept in `state`
    assert state.positions
    assert all(isinstance(t, dict) for t in state.positions.values())
    stateful = {s.kind for s in state.steps.values() if s.stateful}
    assert stateful == {"source", "watermark", "window"}

    second, second_sink = _executor(build())
    assert second.restore(state) == []
    for _ in second.run():
        pass
    got = pl.concat([first_sink.result(), second_sink.result()])
    same_rows(got, expected)


# ---------------------------------------------------------------------- step ids
_SCRIPT = textwrap.dedent(
    """
    import json
    import polars as pl
    import vstream as vs
    from vstream.plan.ids import step_identities
    from vstream.plan.nodes import ancestors

    df = pl.DataFrame({"ts": [1, 2, 3], "host": ["a", "b", "a"], "cpu": [1.0, 2.0, 3.0]})
    ev = vs.from_polars(df).with_watermark("ts", 1)
    a = ev.filter(pl.col("cpu") > 1).window(vs.tumbling(2), by="host").agg(pl.len())
    b = ev.filter(pl.col("cpu") > 1).window(vs.tumbling(2), by="host").agg(pl.len())
    j = vs.concat([a, b])
    print(json.dumps([i.id for i in step_identities(ancestors([j._node]))]))
    """
)


def test_step_ids_are_the_same_in_two_processes() -> None:
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    ids = runs[0]
    assert len(set(ids)) == len(ids)  # two identical branches: distinct ids
    windows = [i for i in ids if i.startswith("window-")]
    assert len(windows) == 2
    assert windows[1] == windows[0] + "-2"


def test_step_ids_do_not_use_polars_expression_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from polars.expr.meta import ExprMetaNameSpace

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("step ids must not use Polars' serialised expressions")

    df = pl.DataFrame({"ts": [1, 2], "host": ["a", "b"], "cpu": [1.0, 2.0]})
    s = vs.from_polars(df).with_watermark("ts", 1).with_columns(x=pl.col("cpu") * 2)
    w = s.window(vs.tumbling(2), by="host").agg(pl.col("x").sum())
    before = _ids(w)
    # building inspects expressions; the ids are derived without their bytes
    monkeypatch.setattr(ExprMetaNameSpace, "serialize", refuse)
    monkeypatch.setattr(pl.Expr, "__getstate__", refuse, raising=False)
    ids = _ids(w)
    assert ids == before
    assert [i.split("-")[0] for i in ids] == ["source", "watermark", "step", "window"]


def test_a_stateless_step_changes_no_stateful_id(telemetry_small: pl.DataFrame) -> None:
    src = vs.from_polars(telemetry_small, batch_size=700)
    base = _ids(_windowed(src, Fuse()))
    other = _ids(_windowed(src, Fuse(), threshold=50))
    more = _ids(_windowed(src, Fuse()).with_columns(pl.col("len") * 2))
    kept = [i for i in base if not i.startswith("step-")]
    assert kept == [i for i in other if not i.startswith("step-")]
    assert kept == [i for i in more if not i.startswith("step-")]
    changed = _ids(
        src.map_batches(Fuse())
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("2s"), by="host")
        .agg(pl.len(), pl.col("cpu").mean())
    )
    assert [i for i in changed if i.startswith("window-")] != [
        i for i in base if i.startswith("window-")
    ]


def test_a_step_name_is_its_id_and_names_are_unique() -> None:
    df = pl.DataFrame({"ts": [1, 2], "host": ["a", "b"]})
    w = vs.from_polars(df).with_watermark("ts", 1).window(vs.tumbling(2), by="host").agg(pl.len())
    w._node.name = "per_host"  # the API's name= sets this
    assert _ids(w)[-1] == "per_host"
    w._node.inputs[0].name = "per_host"
    with pytest.raises(PipelineError, match="two steps are named 'per_host'"):
        _ids(w)
    w._node.inputs[0].name = "a/b"
    with pytest.raises(PipelineError, match="cannot name a step"):
        _ids(w)


# ---------------------------------------------------------------------- changed plans
def _crash_then(tmp_path: Path, first: Callable[[Fuse], list[vs.Stream]], after: int = 9) -> None:
    fuse = Fuse(after)
    with pytest.raises(vs.VStreamError):
        vs.collect_all(
            [b.sink_parquet(tmp_path / f"out{k}", lazy=True) for k, b in enumerate(first(fuse))],
            checkpoint_dir=tmp_path / "ckpt",
            checkpoint_interval=2,
        )


def _two_branches(df: pl.DataFrame, extra: bool) -> Callable[[Fuse], list[vs.Stream]]:
    def build(fuse: Fuse) -> list[vs.Stream]:
        ev = (
            vs.from_polars(df, batch_size=700)
            .map_batches(fuse)
            .with_watermark("ts", "2s", time_unit="ms")
        )
        w = ev.window(vs.tumbling("1s"), by="host").agg(pl.len(), pl.col("cpu").mean())
        other = ev.filter(pl.col("status") >= 500).select("ts", "host", "cpu")
        if extra:  # stateless steps added on the other branch and after the window
            other = other.with_columns(pl.col("cpu") * 2).filter(pl.col("cpu") >= 0)
            w = w.with_columns(pl.col("len") + 0)
        return [w, other]

    return build


def test_a_stateless_step_added_elsewhere_keeps_the_window_state(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    expected = vs.collect_all(_two_branches(telemetry_small, True)(Fuse()))
    _crash_then(tmp_path, _two_branches(telemetry_small, False))
    fuse = Fuse()
    vs.collect_all(
        [
            b.sink_parquet(tmp_path / f"out{k}", lazy=True)
            for k, b in enumerate(_two_branches(telemetry_small, True)(fuse))
        ],
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert 0 < fuse.rows < telemetry_small.height  # resumed, not started afresh
    window = expected[0]
    assert window is not None
    same_rows(_parts(tmp_path / "out0"), window)  # the window's state was kept


def test_a_changed_window_is_refused_naming_it(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    def build(size: str) -> Callable[[Fuse], list[vs.Stream]]:
        def make(fuse: Fuse) -> list[vs.Stream]:
            return [
                vs.from_polars(telemetry_small, batch_size=700)
                .map_batches(fuse)
                .with_watermark("ts", "2s", time_unit="ms")
                .window(vs.tumbling(size), by="host")
                .agg(pl.len())
            ]

        return make

    _crash_then(tmp_path, build("1s"))
    (other,) = build("2s")(Fuse())
    label = other._node.label
    with pytest.raises(vs.CheckpointError) as err:
        other.sink_parquet(tmp_path / "out0", checkpoint_dir=tmp_path / "ckpt")
    text = str(err.value)
    assert "different pipeline" in text
    assert f"step {label!r} changed its window size: it was 1000, it is now 2000" in text


# ---------------------------------------------------------------------- named splits
def _day(k: int, rows: int = 1000) -> pl.DataFrame:
    frame = vs.datasets.telemetry(rows, hosts=7, seed=k)
    # one day after another (ms): file k's events come after file k-1's
    return frame.with_columns(ts=pl.col("ts") + k * 86_400_000, day=pl.lit(k, pl.Int64)).sort("ts")


def _from_dir(d: Path, fuse: Fuse) -> vs.Stream:
    return (
        vs.from_parquet(d, batch_size=250)
        .map_batches(fuse)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1h"), by="host")
        .agg(pl.len(), pl.col("cpu").sum(), pl.col("day").max())
    )


def test_a_file_added_while_paused_is_read_and_old_ones_are_not(
    tmp_path: Path, same_rows: SameRows
) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for k in (1, 2):
        _day(k).write_parquet(data / f"day-{k}.parquet")
    _day(3).write_parquet(data / "sub" / "day-3.parquet")
    with pytest.raises(vs.VStreamError):
        # 4 batches a file; the 7th batch fails (map_batches sees an empty frame when
        # built): the last checkpoint is in the middle of file 2
        _from_dir(data, Fuse(after=8)).sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )
    _day(4).write_parquet(data / "sub" / "day-4.parquet")  # added while paused
    fuse = Fuse(column="day")
    _from_dir(data, fuse).sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    assert fuse.seen == {2, 3, 4}  # file 1 is not read again
    assert fuse.rows == 2 * 1000 + 500  # and file 2 from its checkpointed position
    expected = _from_dir(data, Fuse()).collect()
    same_rows(_parts(tmp_path / "out"), expected)


def test_a_file_gone_while_paused_is_a_warning(tmp_path: Path, same_rows: SameRows) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for k in (1, 2, 3):
        _day(k).write_parquet(data / f"day-{k}.parquet")
    with pytest.raises(vs.VStreamError):
        _from_dir(data, Fuse(after=8)).sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )
    (data / "day-3.parquet").unlink()
    with pytest.warns(vs.CheckpointWarning, match="split 'day-3.parquet' of the .* is gone"):
        _from_dir(data, Fuse()).sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    same_rows(_parts(tmp_path / "out"), _from_dir(data, Fuse()).collect())


def test_split_names_are_relative_to_the_source_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    _day(1).write_parquet(data / "a.parquet")
    _day(2).write_parquet(data / "sub" / "b.parquet")
    src = vs.from_parquet(data)._node.source  # type: ignore[attr-defined]
    assert src.split_names() == ["a.parquet", "sub/b.parquet"]
    glob = vs.from_parquet(str(data / "**" / "*.parquet"))._node.source  # type: ignore[attr-defined]
    assert glob.split_names() == ["a.parquet", "sub/b.parquet"]
    one = vs.from_parquet(data / "a.parquet")._node.source  # type: ignore[attr-defined]
    assert one.split_names() == ["a.parquet"]


def test_ndjson_split_names_are_relative_too(tmp_path: Path) -> None:
    data = tmp_path / "logs"
    (data / "2024").mkdir(parents=True)
    for name in ("a.ndjson", "2024/b.ndjson"):
        (data / name).write_text('{"ts": 1, "x": 2}\n')
    src = vs.from_ndjson(data)._node.source  # type: ignore[attr-defined]
    assert sorted(src.split_names()) == ["2024/b.ndjson", "a.ndjson"]


# ---------------------------------------------------------------------- format 4
def test_the_manifest_keys_steps_by_id_and_splits_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _day(1).write_parquet(data / "day-1.parquet")
    _from_dir(data, Fuse()).sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    newest = max((tmp_path / "ckpt").glob("chk-*"))
    m = json.loads((newest / "manifest.json").read_text())
    assert m["version"] == VERSION == 4
    assert m["polars"] == pl.__version__
    ids = [s["id"] for s in m["steps"]]
    assert all(name.split(".")[0] in ids for name in m["files"])
    (src,) = m["sources"]
    assert src["step"] == ids[0]
    assert src["step"].startswith("source-")
    assert src["splits"] == [{"name": "day-1.parquet", "position": 1000, "ended": True}]


def test_a_format_3_checkpoint_is_refused(tmp_path: Path, telemetry_small: pl.DataFrame) -> None:
    def build(fuse: Fuse) -> list[vs.Stream]:
        return [_windowed(vs.from_polars(telemetry_small, batch_size=700), fuse)]

    _crash_then(tmp_path, build)
    for d in (tmp_path / "ckpt").glob("chk-*"):
        path = d / "manifest.json"
        body = json.loads(path.read_text())
        body["version"] = 3
        path.write_text(json.dumps(seal_manifest(body)))
    with pytest.raises(vs.CheckpointError) as err:
        build(Fuse())[0].sink_parquet(tmp_path / "out0", checkpoint_dir=tmp_path / "ckpt")
    text = str(err.value)
    assert "format version 3 (written by an older vstream)" in text
    assert "reads format 4 only: delete the directory or run with a new checkpoint_dir" in text
