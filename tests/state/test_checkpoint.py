"""Checkpoints: resuming after a failure gives exactly the uninterrupted output; damaged
checkpoints are skipped or refused; a changed pipeline is refused.

A failure is simulated in-process by a ``map_batches`` step that raises after a given
number of batches (the SIGKILL test is tests/state/test_crash.py): the run stops between two
checkpoints, and the next run resumes from the last one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import vstream as vs
from vstream.io.sinks import ParquetSink
from vstream.state.checkpoint import VERSION, CheckpointStore

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]


class Crash(Exception):
    """The simulated process failure."""


class Fuse:
    """A map_batches step that raises once it has seen ``after`` batches (0: never)."""

    def __init__(self) -> None:
        self.after = 0

    def __call__(self, df: pl.DataFrame) -> pl.DataFrame:
        if self.after:
            self.after -= 1
            if self.after == 0:
                raise Crash
        return df


def _parts(folder: Path) -> pl.DataFrame:
    files = sorted(folder.glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------- pipelines
# Each builds its branches from a fuse; the first branch is the main output.
Build = Callable[[Fuse], list[vs.Stream]]


def _events(df: pl.DataFrame, fuse: Fuse, batch: int, delay: str = "2s") -> vs.Stream:
    return (
        vs.from_polars(df, batch_size=batch)
        .map_batches(fuse)
        .with_watermark("ts", delay, time_unit="ms")
        .filter(pl.col("cpu") >= 10)
    )


def _tumbling(df: pl.DataFrame) -> Build:
    return lambda f: [
        _events(df, f, 700)
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.len(), pl.col("cpu").mean(), pl.col("region").first(), pl.col("mem").n_unique())
    ]


def _late(df: pl.DataFrame) -> Build:
    # a watermark tighter than the disorder: late events, revisions and a late branch,
    # which depend on where batches start: a resumed run must cut them the same way
    def build(f: Fuse) -> list[vs.Stream]:
        w = (
            _events(df, f, 500, delay="300ms")
            .window(vs.tumbling("1s"), by="host_id", allowed_lateness="500ms", late="side")
            .agg(pl.len(), pl.col("cpu").sum())
        )
        return [w, w.late_events()]

    return build


def _hopping(df: pl.DataFrame) -> Build:
    return lambda f: [
        _events(df, f, 900)
        .window(vs.hopping("2s", "500ms"), by="region")
        .agg(pl.len(), pl.col("latency_ms").max())
    ]


def _session(df: pl.DataFrame) -> Build:
    return lambda f: [
        _events(df, f, 800)
        .window(vs.session("300ms"), by="host")
        .agg(pl.len(), pl.col("cpu").min())
    ]


def _asof(df: pl.DataFrame) -> Build:
    def build(f: Fuse) -> list[vs.Stream]:
        ev = _events(df, f, 600)
        w = ev.window(vs.tumbling("1s"), by="host_id").agg(pl.col("cpu").mean().alias("cpu_1s"))
        return [ev.join_asof(w, left_on="ts", right_on="window_end", by="host_id")]

    return build


def _interval(df: pl.DataFrame) -> Build:
    def build(f: Fuse) -> list[vs.Stream]:
        ev = _events(df, f, 600)
        errors = ev.filter(pl.col("status") >= 500).select("ts", "host", err=pl.col("status"))
        slow = ev.filter(pl.col("latency_ms") > 40).select("ts", "host", "latency_ms")
        return [slow.join_interval(errors, on="host", lower="-300ms", upper="300ms", how="left")]

    return build


def _windowed_join(df: pl.DataFrame) -> Build:
    def build(f: Fuse) -> list[vs.Stream]:
        ev = _events(df, f, 600)
        a = ev.filter(pl.col("status") == 404).select("ts", "region", a=pl.col("host"))
        b = ev.filter(pl.col("status") >= 500).select("ts", "region", b=pl.col("host"))
        return [a.join(b, on="region", window=vs.tumbling("500ms"), how="full")]

    return build


def _regular_join(df: pl.DataFrame) -> Build:
    def build(f: Fuse) -> list[vs.Stream]:
        ev = _events(df, f, 600)
        a = ev.filter(pl.col("status") == 503).select("ts", "host", a=pl.col("bytes"))
        b = ev.filter(pl.col("status") == 500).select("ts", "host", b=pl.col("latency_ms"))
        return [a.join(b, on="host", ttl="1s", how="left")]

    return build


def _lookup(df: pl.DataFrame) -> Build:
    def build(f: Fuse) -> list[vs.Stream]:
        updates = vs.from_polars(
            df.select("ts", "host", owner=pl.col("host_id") % 7).head(3000), batch_size=400
        ).with_watermark("ts", "2s", time_unit="ms")
        return [_events(df, f, 600).join(vs.table(updates), on="host")]

    return build


def _head_concat(df: pl.DataFrame) -> Build:
    def build(f: Fuse) -> list[vs.Stream]:
        a = _events(df.head(9000), f, 500)
        b = (
            vs.from_polars(df.tail(9000), batch_size=700)
            .with_watermark("ts", "2s", time_unit="ms")
            .filter(pl.col("cpu") >= 10)
        )
        both = vs.concat([a, b])
        return [both.window(vs.tumbling("2s"), by="region").agg(pl.len()), both.head(5000)]

    return build


def _dead_letters(df: pl.DataFrame) -> Build:
    rows: list[dict[str, Any]] = df.head(6000).to_dicts()
    for i in range(0, len(rows), 97):
        rows[i] = {**rows[i], "cpu": "not a number"}

    def build(f: Fuse) -> list[vs.Stream]:
        s = (
            vs.from_records(rows, schema=df.schema, batch_size=400)
            .map_batches(f)
            .with_watermark("ts", "2s", time_unit="ms")
        )
        return [s.window(vs.tumbling("1s"), by="host").agg(pl.len()), s.dead_letters()]

    return build


PIPELINES: dict[str, Callable[[pl.DataFrame], Build]] = {
    "tumbling": _tumbling,
    "late": _late,
    "hopping": _hopping,
    "session": _session,
    "asof": _asof,
    "interval": _interval,
    "windowed_join": _windowed_join,
    "lookup": _lookup,
    "regular_join": _regular_join,
    "head_concat": _head_concat,
    "dead_letters": _dead_letters,
}


def _sinks(branches: list[vs.Stream], out: Path) -> list[vs.LazySink]:
    return [
        b.sink_parquet(out / f"b{k}", lazy=True, rows_per_file=2_000)
        for k, b in enumerate(branches)
    ]


def _run_with_failures(
    build: Build, out: Path, ckpt: Path, rng: random.Random, interval: int | str = 2
) -> int:
    """Run until a run finishes; each run fails after a random number of batches.
    Returns the number of failed runs."""
    failures = 0
    while True:
        fuse = Fuse()
        fuse.after = rng.randint(1, 5) if failures < 12 else 0
        try:
            vs.collect_all(
                _sinks(build(fuse), out), checkpoint_dir=ckpt, checkpoint_interval=interval
            )
        except Exception as exc:
            if not isinstance(exc.__cause__, Crash) and not isinstance(exc, Crash):
                raise
            failures += 1
            continue
        return failures


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_resumed_runs_write_exactly_the_uninterrupted_output(
    name: str, tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    build = PIPELINES[name](telemetry_small)
    expected = vs.collect_all(build(Fuse()))
    failures = _run_with_failures(build, tmp_path / "out", tmp_path / "ckpt", random.Random(name))
    assert failures >= 3
    for k, want in enumerate(expected):
        assert want is not None
        got = _parts(tmp_path / "out" / f"b{k}")
        if want.height == 0:
            assert got.height == 0
            continue
        same_rows(got, want)
    # nothing but committed part files is visible in the output
    for k in range(len(expected)):
        assert all(n.startswith("part-") for n in _visible(tmp_path / "out" / f"b{k}"))


def test_checkpoint_interval_in_time(tmp_path: Path, telemetry_small: pl.DataFrame) -> None:
    m = _tumbling(telemetry_small)(Fuse())[0].sink_parquet(
        tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval="0s"
    )
    # one checkpoint after every step of the run (interval 0 s), the final one included
    assert m.checkpoints > m.batches_in
    assert m.last_checkpoint_epoch == m.checkpoints


def test_finished_run_does_nothing_and_says_so(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    build = _tumbling(telemetry_small)
    build(Fuse())[0].sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    before = _visible(tmp_path / "out")
    with pytest.warns(vs.CheckpointWarning, match="finished .* nothing to do"):
        m = build(Fuse())[0].sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    assert m.events_in == 0
    assert _visible(tmp_path / "out") == before


def test_keeps_the_last_n_checkpoints(tmp_path: Path, telemetry_small: pl.DataFrame) -> None:
    _tumbling(telemetry_small)(Fuse())[0].sink_parquet(
        tmp_path / "out",
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_interval=1,
        keep_checkpoints=2,
    )
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("chk-"))
    assert len(names) == 2
    assert not list((tmp_path / "ckpt").glob(".tmp-*"))


def test_state_files_open_with_polars(tmp_path: Path, telemetry_small: pl.DataFrame) -> None:
    _asof(telemetry_small)(Fuse())[0].sink_parquet(
        tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=3
    )
    newest = max((tmp_path / "ckpt").glob("chk-*"))
    manifest = json.loads((newest / "manifest.json").read_text())
    assert manifest["format"] == "vstream-checkpoint"
    assert manifest["version"] == VERSION
    assert manifest["finished"] is True
    for name, info in manifest["files"].items():
        frame = pl.read_ipc(newest / info["file"])
        assert frame.height == info["rows"], name
    # the source's position: the whole input, and its split ended
    (src,) = manifest["sources"]
    assert src["splits"] == [{"name": "dataframe", "position": 20_000, "ended": True}]


# ---------------------------------------------------------------------- damaged checkpoints
def _interrupted(tmp_path: Path, df: pl.DataFrame, after: int = 9) -> Build:
    """Leave a run failed after ``after`` batches, with checkpoints every 2 batches."""
    build = _tumbling(df)
    fuse = Fuse()
    fuse.after = after
    with pytest.raises(vs.VStreamError):
        build(fuse)[0].sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )
    return build


def _finish(build: Build, tmp_path: Path) -> None:
    build(Fuse())[0].sink_parquet(
        tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
    )


def _newest(tmp_path: Path) -> Path:
    return max((tmp_path / "ckpt").glob("chk-*"))


def _damage_truncate(d: Path) -> None:
    f = next(p for p in d.iterdir() if p.name.endswith(".slots.arrow"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _damage_bitflip(d: Path) -> None:
    f = next(p for p in d.iterdir() if p.name.endswith(".keys.keys.arrow"))
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def _damage_manifest(d: Path) -> None:
    m = d / "manifest.json"
    m.write_text(m.read_text()[:100])


def _damage_version(d: Path) -> None:
    m = d / "manifest.json"
    body = json.loads(m.read_text())
    body["version"] = 99
    m.write_text(json.dumps(body))


def _damage_missing_file(d: Path) -> None:
    next(p for p in d.iterdir() if p.suffix == ".arrow").unlink()


DAMAGE = {
    "truncated state file": (_damage_truncate, "damaged"),
    "flipped byte": (_damage_bitflip, "damaged"),
    "half-written manifest": (_damage_manifest, "not valid JSON"),
    "wrong format version": (_damage_version, "format version 99"),
    "missing state file": (_damage_missing_file, "missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_latest_checkpoint_falls_back_to_the_previous(
    damage: str, tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    build = _interrupted(tmp_path, telemetry_small)
    spoil, reason = DAMAGE[damage]
    newest = _newest(tmp_path)
    spoil(newest)
    with pytest.warns(vs.CheckpointWarning, match=f"(?s){reason}.*falling back.*epoch"):
        _finish(build, tmp_path)
    # the epoch committed by the damaged checkpoint was withdrawn and written again
    same_rows(_parts(tmp_path / "out"), build(Fuse())[0].collect())


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_no_usable_checkpoint_is_refused(
    damage: str, tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    build = _interrupted(tmp_path, telemetry_small)
    spoil, reason = DAMAGE[damage]
    for d in (tmp_path / "ckpt").glob("chk-*"):
        spoil(d)
    with pytest.raises(vs.CheckpointError, match=f"no usable checkpoint.*{reason}"):
        _finish(build, tmp_path)


def test_leftovers_of_a_crash_while_writing_are_ignored(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    build = _interrupted(tmp_path, telemetry_small)
    # a checkpoint half written (its temporary directory) and a staged file no manifest
    # lists: the crash hit while epoch 99 was being written
    tmp = tmp_path / "ckpt" / ".tmp-chk-00000099"
    tmp.mkdir()
    (tmp / "manifest.json").write_text("{")
    pending = tmp_path / ".out.vstream" / "pending"
    pl.DataFrame({"junk": [1]}).write_parquet(pending / "part-00000099-0000.parquet")
    _finish(build, tmp_path)
    same_rows(_parts(tmp_path / "out"), build(Fuse())[0].collect())
    assert not tmp.exists()
    assert not list(pending.iterdir())


def test_commit_is_redone_after_a_crash_between_manifest_and_rename(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    build = _interrupted(tmp_path, telemetry_small)
    manifest = json.loads((_newest(tmp_path) / "manifest.json").read_text())
    (sink,) = manifest["sinks"]
    assert sink["files"], "the newest epoch should have written a file"
    # undo the renames of the newest checkpoint: as if the process died right after
    # the manifest became durable
    pending = tmp_path / ".out.vstream" / "pending"  # the sink's own, beside the output
    for name in sink["files"]:
        os.replace(tmp_path / "out" / name, pending / name)
    _finish(build, tmp_path)
    same_rows(_parts(tmp_path / "out"), build(Fuse())[0].collect())


def test_output_of_an_unknown_checkpointed_run_is_refused(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    build = _interrupted(tmp_path, telemetry_small)
    shutil.rmtree(tmp_path / "ckpt")
    with pytest.raises(vs.CheckpointError, match="part files of a checkpointed run"):
        _finish(build, tmp_path)


# ---------------------------------------------------------------------- another pipeline
CHANGES: dict[str, tuple[Callable[[vs.Stream], vs.Stream], str]] = {
    "another key": (
        lambda s: s.window(vs.tumbling("1s"), by="region").agg(pl.len()),
        "by",
    ),
    "another aggregation": (
        lambda s: s.window(vs.tumbling("1s"), by="host").agg(pl.col("cpu").max().alias("len")),
        "",
    ),
    "another window": (
        lambda s: s.window(vs.tumbling("2s"), by="host").agg(pl.len()),
        "size",
    ),
    "a join added": (
        lambda s: (
            s.window(vs.tumbling("1s"), by="host")
            .agg(pl.len())
            .join(pl.DataFrame({"host": ["host-00001"], "x": [1]}), on="host")
        ),
        "steps",
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_changed_pipeline_is_refused(
    change: str, tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    def base(s: vs.Stream) -> vs.Stream:
        return s.window(vs.tumbling("1s"), by="host").agg(pl.len())

    fuse = Fuse()
    fuse.after = 9
    with pytest.raises(vs.VStreamError):
        base(_events(telemetry_small, fuse, 700)).sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )
    alter, what = CHANGES[change]
    other = alter(_events(telemetry_small, Fuse(), 700))
    with pytest.raises(vs.CheckpointError, match=f"different pipeline.*{what}"):
        other.sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")


def test_changed_filter_keeps_the_checkpoint(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    # stateless steps may change as long as the schemas stay (as in Spark)
    _interrupted(tmp_path, telemetry_small)
    (
        vs.from_polars(telemetry_small, batch_size=700)
        .map_batches(Fuse())
        .with_watermark("ts", "2s", time_unit="ms")
        .filter(pl.col("cpu") >= 11)
        .window(vs.tumbling("1s"), by="host")
        .agg(pl.len(), pl.col("cpu").mean(), pl.col("region").first(), pl.col("mem").n_unique())
        .sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    )


# ---------------------------------------------------------------------- sources and sinks
def test_one_shot_iterator_is_refused(tmp_path: Path) -> None:
    rows = iter([{"ts": i, "x": i} for i in range(10)])
    s = vs.from_records(rows, schema={"ts": pl.Int64, "x": pl.Int64}, bounded=True)
    with pytest.raises(vs.CheckpointError, match=r"cannot be replayed.*function returning"):
        s.sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")


def test_factory_of_records_is_replayable(tmp_path: Path, same_rows: SameRows) -> None:
    def rows() -> Any:
        return ({"ts": i, "x": i % 5} for i in range(5000))

    fuse = Fuse()

    def build() -> vs.Stream:
        return (
            vs.from_records(
                rows, schema={"ts": pl.Int64, "x": pl.Int64}, batch_size=300, bounded=True
            )
            .map_batches(fuse)
            .with_watermark("ts", 0)
            .window(vs.tumbling(100), by="x")
            .agg(pl.len())
        )

    fuse.after = 6
    with pytest.raises(vs.VStreamError):
        build().sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )
    build().sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2)
    same_rows(_parts(tmp_path / "out"), build().collect())


def test_callback_gets_epochs_and_replays_uncommitted_ones(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    seen: list[tuple[int, pl.DataFrame]] = []
    build = _tumbling(telemetry_small)

    def keep(df: pl.DataFrame, epoch: int) -> None:
        seen.append((epoch, df))

    fuse = Fuse()
    fuse.after = 9
    with pytest.raises(vs.VStreamError):
        build(fuse)[0].sink_callback(keep, checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2)
    committed = max(int(p.name[4:]) for p in (tmp_path / "ckpt").glob("chk-*"))
    first = len(seen)
    build(Fuse())[0].sink_callback(keep, checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2)
    # the second run starts with the epoch after the last checkpoint
    assert seen[first][0] == committed + 1
    # deduplicating by epoch (a replayed epoch replaces what it wrote before) is exact
    by_epoch: dict[int, list[pl.DataFrame]] = {}
    for k, (epoch, df) in enumerate(seen):
        if k == first:
            for e in [e for e in by_epoch if e > committed]:
                del by_epoch[e]
        by_epoch.setdefault(epoch, []).append(df)
    got = pl.concat([df for dfs in by_epoch.values() for df in dfs])
    same_rows(got, build(Fuse())[0].collect())


def test_callback_must_take_the_epoch(tmp_path: Path) -> None:
    s = vs.from_polars(pl.DataFrame({"x": [1]}))
    with pytest.raises(vs.PipelineError, match=r"fn\(df, epoch\)"):
        s.sink_callback(lambda df: None, checkpoint_dir=tmp_path / "ckpt")


@pytest.mark.parametrize(
    ("interval", "match"),
    [(1.5, "ambiguous"), (0, ">= 1"), ("soon", "duration"), (True, "ambiguous")],
)
def test_bad_checkpoint_interval_fails_when_built(
    interval: Any, match: str, tmp_path: Path
) -> None:
    s = vs.from_polars(pl.DataFrame({"x": [1]}))
    with pytest.raises(vs.PipelineError, match=match):
        s.sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "c", checkpoint_interval=interval
        )


def test_sinks_of_one_run_share_one_checkpoint_dir(tmp_path: Path) -> None:
    s = vs.from_polars(pl.DataFrame({"x": [1]}))
    a = s.sink_parquet(tmp_path / "a", lazy=True, checkpoint_dir=tmp_path / "c1")
    b = s.sink_parquet(tmp_path / "b", lazy=True, checkpoint_dir=tmp_path / "c2")
    with pytest.raises(vs.PipelineError, match="different checkpoint dirs"):
        vs.collect_all([a, b])


def test_background_job_stops_at_a_checkpoint_and_resumes(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    import time

    build = _tumbling(telemetry_small)

    def crawl(df: pl.DataFrame) -> pl.DataFrame:
        time.sleep(0.05)  # ~1.5 s for the whole input: stop() lands mid-run
        return df

    def start() -> vs.Job:
        return (
            build(Fuse())[0]
            .map_batches(crawl)
            .sink_parquet(
                tmp_path / "out",
                lazy=True,
                checkpoint_dir=tmp_path / "ckpt",
                checkpoint_interval="1h",
            )
            .start()
        )

    job = start()
    deadline = time.monotonic() + 30
    while job.metrics.events_in == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    assert job.metrics.checkpoints == 1  # taken by stop(), not by the interval
    assert 0 < job.metrics.events_in < telemetry_small.height
    job2 = start()
    job2.join(timeout=60)
    assert job.metrics.events_in + job2.metrics.events_in == telemetry_small.height
    same_rows(_parts(tmp_path / "out"), build(Fuse())[0].collect())


def test_store_rejects_a_file_as_directory(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(vs.CheckpointError, match="not a directory"):
        CheckpointStore(f)


def test_store_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    t = pa.table({"a": [1, 2, 3]})
    for e in (1, 2, 3):
        store.write({"epoch": e, "x": e}, {"7.state": t})
    store.prune()
    assert store.epochs() == [2, 3]
    loaded = store.latest()
    assert loaded is not None
    assert loaded.epoch == 3
    assert loaded.manifest["x"] == 3
    assert loaded.tables_of("7") == {"state": t}


def test_sink_recover_without_checkpoint_leaves_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    sink = ParquetSink(
        out, rows_per_file=10, flush_interval=None, compression="zstd", mode="append"
    )
    sink.use_checkpoints(tmp_path / "ckpt", 0)
    sink.open(pl.Schema({"x": pl.Int64}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sink.recover(0, None)
    assert _visible(out) == ["notes.txt"]


def test_two_runs_of_one_checkpoint_dir_are_refused(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    def crawl(df: pl.DataFrame) -> pl.DataFrame:
        import time

        time.sleep(0.01)
        return df

    build = _tumbling(telemetry_small)
    job = (
        build(Fuse())[0]
        .map_batches(crawl)
        .sink_parquet(tmp_path / "out", lazy=True, checkpoint_dir=tmp_path / "ckpt")
        .start()
    )
    try:
        with pytest.raises(vs.CheckpointError, match="in use by another run"):
            build(Fuse())[0].sink_parquet(tmp_path / "out2", checkpoint_dir=tmp_path / "ckpt")
    finally:
        job.stop()
    # released when the job ended
    build(Fuse())[0].map_batches(crawl).sink_parquet(
        tmp_path / "out", checkpoint_dir=tmp_path / "ckpt"
    )


def test_dead_letter_rows_in_flight_survive_a_snapshot() -> None:
    from vstream.ops.stateless import DeadLetterOp

    op = DeadLetterOp("dead_letters")
    op.pending = [pl.DataFrame({"record": ["x"], "reason": ["bad"], "step": ["s"]})]
    fresh = DeadLetterOp("dead_letters")
    fresh.restore(op.snapshot())
    assert fresh.pending[0].equals(op.pending[0])
    assert DeadLetterOp("d").snapshot() == {}


def test_an_idle_run_does_not_checkpoint_again_and_again(tmp_path: Path) -> None:
    import threading
    import time

    done = threading.Event()

    def rows() -> Any:
        yield from ({"ts": i, "x": i} for i in range(10))
        done.wait(10)  # then idle until the test ends

    job = (
        vs.from_records(rows, schema={"ts": pl.Int64, "x": pl.Int64}, max_delay="10ms")
        .sink_parquet(
            tmp_path / "out", lazy=True, checkpoint_dir=tmp_path / "c", checkpoint_interval="0s"
        )
        .start()
    )
    ex = job._executor
    deadline = time.monotonic() + 30  # a failure guard
    while job.metrics.events_in < 10:
        assert time.monotonic() < deadline, "the rows did not arrive"
        time.sleep(0.01)
    # 25 steps of the run's loop with nothing to read (a call is served between two
    # steps), counted rather than timed: a busy machine makes fewer steps in 0.5 s
    for _ in range(25):
        ex.call(lambda: None)
    busy = ex.call(lambda: ex.metrics.checkpoints)
    done.set()
    job.stop()
    assert 1 <= busy <= 2  # after the batch (and perhaps its flush), not while idle
    assert pl.read_parquet(tmp_path / "out").height == 10
