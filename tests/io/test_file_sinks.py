"""File sinks in every format (``sink_parquet``, ``sink_ndjson``, ``sink_csv``,
``sink_ipc``): round trips, Hive-style partitions with hostile values, file rolling,
modes, refusals, and exactly-once under SIGKILL (tests/file_sink_pipeline.py)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import unquote

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import file_sink_pipeline
import vstream as vs
from vstream.io.file_formats import HIVE_NULL
from vstream.io.sinks import SinkError
from vstream.state.checkpoint import PART

FORMATS = file_sink_pipeline.FORMATS
EXT = {"parquet": ".parquet", "ndjson": ".ndjson", "csv": ".csv", "ipc": ".arrow"}
PATIENCE_S = 120.0
#: seconds each source batch sleeps in a killed run: 40 batches take 2 s, and each of the
#: 3 kills lands at most 0.5 s after "ready", so the series cannot finish before them
THROTTLE = 0.05


def _frame() -> pl.DataFrame:
    n = 50
    return pl.DataFrame(
        {
            "i": pl.Series(range(n), dtype=pl.Int64),
            "f": [k / 4 for k in range(n)],
            "s": [None if k % 7 == 0 else f'v{k}, "q"\n' for k in range(n)],
            "b": [k % 3 == 0 for k in range(n)],
        }
    )


def _sink(stream: vs.Stream, fmt: str, path: Path, **options: Any) -> Any:
    return getattr(stream, f"sink_{fmt}")(path, **options)


def _read_file(fmt: str, path: Path, schema: pl.Schema) -> pl.DataFrame:
    if fmt == "parquet":
        return pl.read_parquet(path)
    if fmt == "ipc":
        return pl.read_ipc(path)
    if fmt == "ndjson":
        return pl.read_ndjson(path, schema=schema)
    return pl.read_csv(path, schema=schema)


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def _read(fmt: str, out: Path, schema: pl.Schema) -> pl.DataFrame:
    """Every file under ``out`` in name order (the order a single-partition sink wrote)."""
    frames = [_read_file(fmt, p, schema) for p in _files(out)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_equals_collect(tmp_path: Path, fmt: str) -> None:
    s = vs.from_polars(_frame(), batch_size=8).filter(pl.col("i") != 3)
    want = s.collect()
    _sink(s, fmt, tmp_path / "out", max_rows_per_file=16)
    names = [p.name for p in _files(tmp_path / "out")]
    assert names == [f"part-{k:06d}{EXT[fmt]}" for k in range(4)]
    assert_frame_equal(_read(fmt, tmp_path / "out", want.schema), want)
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging left behind


@pytest.mark.parametrize("fmt", FORMATS)
def test_single_file(tmp_path: Path, fmt: str) -> None:
    s = vs.from_polars(_frame(), batch_size=8)
    path = tmp_path / f"rows{EXT[fmt]}"
    _sink(s, fmt, path)
    assert_frame_equal(_read_file(fmt, path, s.schema), s.collect())
    assert sorted(os.listdir(tmp_path)) == [path.name]
    with pytest.raises(SinkError, match="already exists; pass mode='overwrite'"):
        _sink(s, fmt, path)
    _sink(s.head(3), fmt, path, mode="overwrite")
    assert _read_file(fmt, path, s.schema).height == 3


@pytest.mark.parametrize(
    ("fmt", "compression", "magic"),
    [
        ("parquet", "gzip", b"PAR1"),
        ("ipc", "zstd", b"ARROW1"),
        ("ndjson", "gzip", b"\x1f\x8b"),
        ("csv", "zstd", b"\x28\xb5\x2f\xfd"),
    ],
)
def test_compression(tmp_path: Path, fmt: str, compression: str, magic: bytes) -> None:
    s = vs.from_polars(_frame())
    _sink(s, fmt, tmp_path / "out", compression=compression)
    (path,) = _files(tmp_path / "out")
    assert path.read_bytes().startswith(magic)
    if fmt in ("ndjson", "csv"):
        suffix = {"gzip": ".gz", "zstd": ".zst"}[compression]
        assert path.name == f"part-000000{EXT[fmt]}{suffix}"
        # Polars reads the compressed text back
        assert_frame_equal(_read_file(fmt, path, s.schema), s.collect())
    else:
        assert_frame_equal(_read_file(fmt, path, s.schema), s.collect())


def test_csv_options(tmp_path: Path) -> None:
    s = vs.from_polars(pl.DataFrame({"a": [1, 2], "b": ["x", None]}))
    s.sink_csv(tmp_path / "out", separator="\t", include_header=False, null_value="NULL")
    (path,) = _files(tmp_path / "out")
    assert path.read_text() == "1\tx\n2\tNULL\n"


# ---------------------------------------------------------------------- partitions
HOSTILE = ["../x", "a/b", "x=y", "100%", None, "", "é", ".", "..", "/etc", "a\\b", "a?b#c"]


def _partitioned() -> pl.DataFrame:
    n = len(HOSTILE) * 4
    return pl.DataFrame(
        {
            "k": [HOSTILE[j % len(HOSTILE)] for j in range(n)],
            "day": [f"2024-01-0{1 + j % 2}" for j in range(n)],
            "v": pl.Series(range(n), dtype=pl.Int64),
        }
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_hive_partitions_with_hostile_values(tmp_path: Path, fmt: str) -> None:
    df = _partitioned()
    s = vs.from_polars(df, batch_size=5)
    out = tmp_path / "out"
    _sink(s, fmt, out, partition_by=["k", "day"])
    assert sorted(os.listdir(tmp_path)) == ["out"]  # nothing written beside the output
    seen: set[tuple[str | None, str]] = set()
    real = os.path.realpath(out)
    frames = []
    for path in _files(out):
        assert os.path.commonpath([real, os.path.realpath(path)]) == real
        rel = path.relative_to(out).parts
        assert len(rel) == 3, rel  # k=.../day=.../part-...: one directory per column
        (kname, kval), (dname, dval) = (p.split("=", 1) for p in rel[:2])
        assert (kname, dname) == ("k", "day")
        key = None if kval == HIVE_NULL else unquote(kval)
        part = _read_file(fmt, path, df.schema)
        # the directory names the rows' values (the columns stay in the files)
        assert part["k"].to_list() == [key] * part.height
        assert part["day"].to_list() == [unquote(dval)] * part.height
        seen.add((key, unquote(dval)))
        frames.append(part)
    assert seen == set(df.select("k", "day").unique().iter_rows())
    assert_frame_equal(pl.concat(frames).sort("v"), df)
    if fmt == "parquet":
        back = pl.scan_parquet(out, hive_partitioning=True).collect()
        assert_frame_equal(back.sort("v"), df, check_column_order=False)


def test_partition_values_of_other_dtypes_read_back(tmp_path: Path) -> None:
    import datetime as dt

    df = pl.DataFrame(
        {
            "d": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), None],
            "n": [1, -2, 1],
            "t": [dt.datetime(2024, 1, 1, 1, 2, 3, 500), None, dt.datetime(2024, 1, 1)],
            "v": [1.5, 2.5, 3.5],
        }
    )
    out = tmp_path / "out"
    vs.from_polars(df).sink_parquet(out, partition_by=["d", "n", "t"])
    back = pl.scan_parquet(out, hive_partitioning=True).collect()
    assert_frame_equal(back.sort("v"), df, check_column_order=False)
    assert (out / "d=2024-01-01" / "n=1").is_dir()
    assert (out / f"d={HIVE_NULL}").is_dir()


@pytest.mark.parametrize("fmt", FORMATS)
def test_rolling_per_partition(tmp_path: Path, fmt: str) -> None:
    df = pl.DataFrame({"p": [j % 3 for j in range(100)], "v": list(range(100))})
    s = vs.from_polars(df, batch_size=9)
    out = tmp_path / "out"
    _sink(s, fmt, out, partition_by="p", max_rows_per_file=7)
    for p in range(3):
        files = _files(out / f"p={p}")
        sizes = [_read_file(fmt, f, df.schema).height for f in files]
        rows = df.filter(pl.col("p") == p).height
        assert len(sizes) == -(-rows // 7)
        assert all(n == 7 for n in sizes[:-1])
        assert 0 < sizes[-1] <= 7
    assert_frame_equal(_read(fmt, out, df.schema).sort("v"), df)


def test_too_long_a_partition_value_is_refused(tmp_path: Path) -> None:
    df = pl.DataFrame({"k": ["ok", "é" * 100], "v": [1, 2]})  # 100 x %C3%A9: 600 bytes
    with pytest.raises(SinkError, match=r"partition column 'k' .* over the 255"):
        vs.from_polars(df).sink_parquet(tmp_path / "out", partition_by="k")


def test_a_partition_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "k=a").symlink_to(victim)
    s = vs.from_polars(pl.DataFrame({"k": ["a"], "v": [1]}))
    with pytest.raises(SinkError, match=r"partition directory .*k=a.* symbolic link"):
        s.sink_csv(out, partition_by="k", mode="append")
    assert list(victim.iterdir()) == []


@pytest.mark.parametrize(
    ("partition_by", "match"),
    [
        ("nope", r"partition_by column 'nope' is not in the stream"),
        ("l", r"partition_by column 'l' is List"),
        (["k", "k"], "names a column twice"),
        (["k", "l", "v"], "takes every column"),
        ([], "takes a column name or a list"),
    ],
)
def test_bad_partition_by_is_refused_when_built(
    tmp_path: Path, partition_by: Any, match: str
) -> None:
    s = vs.from_polars(pl.DataFrame({"k": ["a"], "l": [[1]], "v": [1]}))
    with pytest.raises(vs.PipelineError, match=match):
        s.sink_ndjson(tmp_path / "out", partition_by=partition_by, lazy=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fmt", "options", "match"),
    [
        ("csv", {"separator": ";;"}, "separator must be a single one-byte"),
        ("csv", {"quote_char": ","}, "separator and quote_char are both"),
        ("csv", {"compression": "lz4"}, "compression must be one of"),
        ("ipc", {"compression": "gzip"}, "compression must be one of"),
        ("ndjson", {"max_rows_per_file": 0}, "max_rows_per_file must be an int >= 1"),
        ("ndjson", {"mode": "replace"}, "mode must be one of"),
        ("csv", {"partition_by": "k"}, "directory"),  # a single file takes no partitions
    ],
)
def test_bad_arguments_are_refused_when_built(
    tmp_path: Path, fmt: str, options: dict[str, Any], match: str
) -> None:
    s = vs.from_polars(pl.DataFrame({"k": ["a"], "v": [1]}))
    path = tmp_path / ("one.csv" if "partition_by" in options else "out")
    with pytest.raises(vs.PipelineError, match=match):
        _sink(s, fmt, path, lazy=True, **options)


def test_csv_refuses_nested_columns_when_built(tmp_path: Path) -> None:
    s = vs.from_polars(pl.DataFrame({"l": [[1, 2]], "v": [1]}))
    with pytest.raises(vs.PipelineError, match=r"column 'l' is List.*sink_ndjson"):
        s.sink_csv(tmp_path / "out", lazy=True)
    s.sink_ndjson(tmp_path / "nd")  # NDJSON holds it
    assert pl.read_ndjson(_files(tmp_path / "nd")[0])["l"].to_list() == [[1, 2]]


def test_single_file_refuses_checkpoints_and_unbounded(tmp_path: Path) -> None:
    s = vs.from_polars(pl.DataFrame({"v": [1]}))
    with pytest.raises(vs.PipelineError, match="cannot be written exactly-once"):
        s.sink_ipc(tmp_path / "one.arrow", checkpoint_dir=tmp_path / "ckpt")


def test_sink_parquet_takes_max_rows_per_file(tmp_path: Path) -> None:
    s = vs.from_polars(pl.DataFrame({"v": range(10)}))
    s.sink_parquet(tmp_path / "out", max_rows_per_file=4)
    assert [pl.read_parquet(p).height for p in _files(tmp_path / "out")] == [4, 4, 2]
    with pytest.raises(vs.PipelineError, match="not both"):
        s.sink_parquet(tmp_path / "o2", max_rows_per_file=4, rows_per_file=5)


# ---------------------------------------------------------------------- modes
@pytest.mark.parametrize("fmt", FORMATS)
def test_modes(tmp_path: Path, fmt: str) -> None:
    df = pl.DataFrame({"p": ["a", "b", "a"], "v": [1, 2, 3]})
    s = vs.from_polars(df)
    out = tmp_path / "out"
    _sink(s, fmt, out, partition_by="p")
    with pytest.raises(SinkError, match=r"not empty .*mode='append'.*mode='overwrite'"):
        _sink(s, fmt, out, partition_by="p")
    _sink(s, fmt, out, partition_by="p", mode="append")
    assert [p.name for p in _files(out / "p=a")] == [
        f"part-000000{EXT[fmt]}",
        f"part-000001{EXT[fmt]}",
    ]
    assert _read(fmt, out, df.schema).height == 6
    _sink(s.head(1), fmt, out, partition_by="p", mode="overwrite")
    assert [p.relative_to(out).as_posix() for p in _files(out)] == [f"p=a/part-000000{EXT[fmt]}"]


# ---------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("fmt", FORMATS)
def test_checkpointed_partitions_commit_and_resume(tmp_path: Path, fmt: str) -> None:
    df = pl.DataFrame({"p": [f"h/{j % 2}" for j in range(40)], "v": list(range(40))})
    s = vs.from_polars(df, batch_size=10)
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    _sink(s, fmt, out, partition_by="p", checkpoint_dir=ckpt, checkpoint_interval=1)
    rel = sorted(p.relative_to(out).as_posix() for p in _files(out))
    assert rel[0] == f"p=h%2F0/part-00000001-0000{EXT[fmt]}"
    assert all(PART.match(r) for r in rel), rel
    newest = max(ckpt.glob("chk-*"))
    listed = json.loads((newest / "manifest.json").read_text())["sinks"][0]["files"]
    assert all(PART.match(r) for r in listed)
    assert_frame_equal(_read(fmt, out, df.schema).sort("v"), df)
    with pytest.warns(vs.CheckpointWarning, match="nothing to do"):
        _sink(s, fmt, out, partition_by="p", checkpoint_dir=ckpt, checkpoint_interval=1)
    assert sorted(p.relative_to(out).as_posix() for p in _files(out)) == rel


@pytest.mark.parametrize(
    "name",
    [
        "../part-00000001-0000.parquet",
        "k=a/../part-00000001-0000.parquet",
        "/k=a/part-00000001-0000.parquet",
        "k=a/b/part-00000001-0000.parquet",
        "k=../../part-00000001-0000.csv/x",
        "k=a/part-00000001-0000.exe",
    ],
)
def test_part_names_in_a_manifest_stay_inside(name: str) -> None:
    assert PART.match(name) is None
    assert PART.match("k=..%2Fx/d=/part-00000001-0000.ndjson.gz") is not None


# ---------------------------------------------------------------------- SIGKILL
SCRIPT = Path(file_sink_pipeline.__file__).resolve()
PACKAGE_ROOT = Path(vs.__file__).resolve().parent.parent


def _start(
    fmt: str, data: Path, out: Path, ckpt: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    args = [fmt, str(data), str(out), str(ckpt), "--throttle", str(THROTTLE)]
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=0,
    )


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], PATIENCE_S)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no 'ready' ({line!r}); stderr:\n{err.decode()}")


def _contents(fmt: str, out: Path, schema: pl.Schema) -> dict[str, pl.DataFrame]:
    return {p.relative_to(out).as_posix(): _read_file(fmt, p, schema) for p in _files(out)}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_sigkilled_runs_write_the_uninterrupted_files(tmp_path: Path, fmt: str) -> None:
    """Killed at random moments and restarted with the same checkpoint_dir, the run
    ends with the same files, each with the same rows, as an uninterrupted run."""
    data = tmp_path / "data"
    data.mkdir()
    events = vs.datasets.telemetry(8_000, hosts=7, events_per_second=200, seed=5)
    events.write_parquet(data / "events.parquet", row_group_size=700)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    ref_out = tmp_path / "ref"
    file_sink_pipeline.sink(
        file_sink_pipeline.build(data, 0.0), fmt, ref_out, tmp_path / "ref-ckpt"
    )
    schema = file_sink_pipeline.build(data, 0.0).schema
    want = _contents(fmt, ref_out, schema)
    assert len(want) > 20  # several partitions, epochs and rolled files

    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    rng = Random(f"file-sinks-{fmt}")
    kills = 0
    for _ in range(30):
        proc = _start(fmt, data, out, ckpt, env)
        _wait_ready(proc)
        if kills < 3:
            try:
                proc.wait(timeout=rng.uniform(0.1, 0.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                kills += 1
                continue
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
        assert proc.returncode == 0, stderr.decode()
        if stdout.strip() == b"done":
            break
    assert kills == 3, "the runs ended before they could be killed"
    got = _contents(fmt, out, schema)
    assert sorted(got) == sorted(want)
    for name, frame in want.items():
        assert_frame_equal(got[name], frame, check_dtypes=True)
