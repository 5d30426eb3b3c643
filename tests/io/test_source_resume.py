"""Sources resume from a checkpointed position: after the position of any event, a
resumed read gives exactly the events an uninterrupted read gives after it (batches and
their boundaries, positions, dead letters, split ends)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.io.base import Data, Source, SourceEvent, SplitEnd, SplitPosition

Resume = dict[int, SplitPosition]

HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ====================================================================== helpers


def _source(stream: vs.Stream) -> Source:
    return stream._node.source  # type: ignore[attr-defined, no-any-return]


def _read(src: Source, resume: Resume | None = None) -> list[SourceEvent]:
    """Every event of a run, polled until the reader is exhausted."""
    reader = src.open(resume)
    events: list[SourceEvent] = []
    deadline = time.monotonic() + 30
    try:
        while not reader.exhausted:
            assert time.monotonic() < deadline, "the reader did not finish"
            ev = reader.poll(0.5)
            if ev is not None:
                events.append(ev)
    finally:
        reader.close()
    return events


def _checkpoint(events: list[SourceEvent], n_splits: int) -> Resume:
    """What a checkpoint after ``events`` holds: every split, its last position (through
    JSON, as a manifest stores it), and whether its end was seen."""
    resume = {i: SplitPosition(None) for i in range(n_splits)}
    for ev in events:
        if isinstance(ev, Data):
            resume[ev.split] = SplitPosition(json.loads(json.dumps(ev.position)))
        else:
            resume[ev.split] = SplitPosition(resume[ev.split].position, ended=True)
    return resume


def _same_batch(a: pa.RecordBatch | None, b: pa.RecordBatch | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a.equals(b))


def _assert_same_events(got: list[SourceEvent], want: list[SourceEvent]) -> None:
    assert len(got) == len(want), f"{len(got)} events, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert type(g) is type(w), f"event {k}: {g} != {w}"
        assert g.split == w.split, f"event {k}"
        if isinstance(g, Data) and isinstance(w, Data):
            assert g.position == w.position, f"event {k}: {g.position} != {w.position}"
            assert _same_batch(g.batch, w.batch), f"event {k}: batches differ"
            assert _same_batch(g.dead, w.dead), f"event {k}: dead letters differ"


def _check_positions(events: list[SourceEvent]) -> None:
    """Every Data has a JSON position of its own within its split; each split ends once."""
    seen: dict[int, set[str]] = {}
    ended: set[int] = set()
    for ev in events:
        assert ev.split not in ended, "an event after its split's end"
        if isinstance(ev, SplitEnd):
            ended.add(ev.split)
            continue
        # (a Data with neither batch nor dead letters passes over blank lines)
        assert ev.batch is None or ev.batch.num_rows > 0
        text = json.dumps(ev.position)
        assert isinstance(json.loads(text), int | list)
        assert text not in seen.setdefault(ev.split, set()), f"position {text} twice"
        seen[ev.split].add(text)


def _assert_resumable(src: Source, cuts: list[int] | None = None) -> list[SourceEvent]:
    """Resuming after event k (every k, or those in ``cuts``) gives the events after k."""
    assert src.replayable
    full = _read(src)
    _check_positions(full)
    n = len(src.splits())
    _assert_same_events(_read(src, {}), full)
    for k in cuts if cuts is not None else range(len(full)):
        k = min(k, len(full) - 1)
        _assert_same_events(_read(src, _checkpoint(full[: k + 1], n)), full[k + 1 :])
    # a second uninterrupted run is the same as the first
    _assert_same_events(_read(src), full)
    return full


def _rows(events: list[SourceEvent]) -> int:
    return sum(ev.batch.num_rows for ev in events if isinstance(ev, Data) and ev.batch is not None)


def _dead(events: list[SourceEvent]) -> int:
    return sum(ev.dead.num_rows for ev in events if isinstance(ev, Data) and ev.dead is not None)


def _frame(n: int, seed: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": pl.int_range(n, eager=True) * 1_000 + seed,
            "host": [f"h{(i * 7 + seed) % 5}" for i in range(n)],
            "v": [float(i % 13) for i in range(n)],
        },
        schema={"ts": pl.Int64, "host": pl.String, "v": pl.Float64},
    )


# ====================================================================== parquet


def _parquet_dir(tmp_path: Path, sizes: list[int], row_group: int) -> Path:
    folder = tmp_path / "pq"
    folder.mkdir(exist_ok=True)
    for i, n in enumerate(sizes):
        pq.write_table(
            _frame(n, i).to_arrow(), folder / f"part-{i}.parquet", row_group_size=row_group
        )
    return folder


@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=3),
    row_group=st.integers(1, 120),
    batch_size=st.integers(1, 80),
)
@HYPOTHESIS
def test_parquet_resumes_after_any_batch(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], row_group: int, batch_size: int
) -> None:
    folder = _parquet_dir(tmp_path_factory.mktemp("p"), sizes, row_group)
    src = _source(vs.from_parquet(folder, batch_size=batch_size))
    full = _read(src)
    cuts = sorted({0, 1, len(full) // 2, len(full) - 2, len(full) - 1} - {-1, -2})
    _assert_resumable(src, cuts)
    assert _rows(full) == sum(sizes)


def test_parquet_several_files_every_batch(tmp_path: Path) -> None:
    # row groups of 70 rows, batches of 32: batches span row groups, and a resumed read
    # starts inside a group
    folder = _parquet_dir(tmp_path, [250, 0, 333], row_group=70)
    src = _source(vs.from_parquet(folder, batch_size=32))
    full = _assert_resumable(src)
    sizes = [ev.batch.num_rows for ev in full if isinstance(ev, Data) and ev.batch is not None]
    assert sizes == [32] * 7 + [26] + [32] * 10 + [13]
    assert [ev.position for ev in full[:3]] == [32, 64, 96]
    assert sum(isinstance(ev, SplitEnd) for ev in full) == 3


def test_parquet_resume_skips_the_row_groups_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _parquet_dir(tmp_path, [10_000], row_group=1_000)
    src = _source(vs.from_parquet(folder, batch_size=300))
    full = _read(src)
    read: list[tuple[Any, int]] = []
    original = pq.ParquetFile.iter_batches

    def counting(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            for rb in original(self, *args, **kwargs):
                rows += rb.num_rows
                yield rb
        finally:
            read.append((kwargs.get("row_groups"), rows))

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    k = next(k for k, ev in enumerate(full) if isinstance(ev, Data) and ev.position == 8_700)
    _assert_same_events(_read(src, _checkpoint(full[: k + 1], 1)), full[k + 1 :])
    # row 8,700 is in group 8: groups 0-7 are not read
    assert read == [([8, 9], 2_000)]


# ====================================================================== from_polars


@given(
    chunks=st.lists(st.integers(1, 60), min_size=1, max_size=5),
    batch_size=st.integers(1, 70),
    misaligned=st.booleans(),
)
@HYPOTHESIS
def test_from_polars_chunked_frame_resumes_after_any_batch(
    chunks: list[int], batch_size: int, misaligned: bool
) -> None:
    parts = [_frame(n, i) for i, n in enumerate(chunks)]
    df = pl.concat(parts, rechunk=False)
    if misaligned:  # one column in a single chunk, the others in several
        df = df.with_columns(pl.Series("w", range(df.height)).rechunk())
    assert df.n_chunks("all")[0] == len(chunks)
    src = _source(vs.from_polars(df, batch_size=batch_size))
    full = _assert_resumable(src)
    got = pl.from_arrow(pa.Table.from_batches([e.batch for e in full if isinstance(e, Data)]))
    assert isinstance(got, pl.DataFrame)
    assert got.equals(df)


def test_from_polars_slice_of_several_chunks_gives_several_positions() -> None:
    df = pl.concat([_frame(5), _frame(5, 1), _frame(5, 2)], rechunk=False)
    full = _assert_resumable(_source(vs.from_polars(df, batch_size=8)))
    assert [ev.position for ev in full if isinstance(ev, Data)] == [5, 8, 10, 15]


# ====================================================================== from_arrow


def _chunked_table(cuts_a: list[int], cuts_b: list[int]) -> pa.Table:
    """Columns "a" and "b" of the same length, chunked differently."""
    n = sum(cuts_a)
    assert sum(cuts_b) == n

    def chunked(cuts: list[int], values: list[Any], dtype: pa.DataType) -> pa.ChunkedArray:
        out, start = [], 0
        for c in cuts:
            out.append(pa.array(values[start : start + c], dtype))
            start += c
        return pa.chunked_array(out, dtype)

    return pa.table(
        {
            "a": chunked(cuts_a, list(range(n)), pa.int64()),
            "b": chunked(cuts_b, [str(i) for i in range(n)], pa.string()),
        }
    )


@st.composite
def _two_chunkings(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    a = draw(st.lists(st.integers(0, 40), min_size=1, max_size=5))
    n = sum(a)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    b = [y - x for x, y in zip([0, *cuts], [*cuts, n], strict=True)]
    return a, b


@given(chunking=_two_chunkings(), batch_size=st.none() | st.integers(1, 30))
@HYPOTHESIS
def test_from_arrow_table_resumes_after_any_batch(
    chunking: tuple[list[int], list[int]], batch_size: int | None
) -> None:
    table = _chunked_table(*chunking)
    src = _source(vs.from_arrow(table, batch_size=batch_size))
    full = _assert_resumable(src)
    got = pa.Table.from_batches([e.batch for e in full if isinstance(e, Data)], table.schema)
    assert got.equals(table)


def test_from_arrow_uneven_chunks() -> None:
    table = pa.Table.from_batches([pa.record_batch({"a": list(range(n))}) for n in (97, 3, 50, 1)])
    full = _assert_resumable(_source(vs.from_arrow(table, batch_size=40)))
    positions = [ev.position for ev in full if isinstance(ev, Data)]
    assert positions == [40, 80, 97, 100, 140, 150, 151]
    full = _assert_resumable(_source(vs.from_arrow(table)))
    assert [ev.position for ev in full if isinstance(ev, Data)] == [97, 100, 150, 151]


@given(sizes=st.lists(st.integers(0, 20), min_size=1, max_size=12))
@HYPOTHESIS
def test_from_arrow_factory_resumes_after_any_batch(sizes: list[int]) -> None:
    calls = []

    def batches() -> Iterator[pa.RecordBatch]:
        calls.append(1)
        start = 0
        for n in sizes:
            yield pa.record_batch({"a": pa.array(range(start, start + n), pa.int64())})
            start += n

    src = _source(vs.from_arrow(batches, bounded=True))
    assert src.bounded
    full = _assert_resumable(src)
    # empty batches are not events
    assert [ev.batch.num_rows for ev in full if isinstance(ev, Data)] == [n for n in sizes if n]
    # the build's call serves the first run; then a call per run, but for the resume after
    # the split's end, which reads nothing
    assert len(calls) == 1 + 1 + (len(full) - 1) + 1


def test_from_arrow_factory_as_in_the_docs() -> None:
    s = vs.from_arrow(lambda: vs.datasets.telemetry_batches(2_000, batch_size=300), bounded=True)
    full = _assert_resumable(_source(s), [0, 3])
    assert [ev.position for ev in full if isinstance(ev, Data)][:2] == [300, 600]
    assert s.collect().height == 2_000
    # boundedness follows what the function returns
    reader = pa.RecordBatchReader.from_batches(
        pa.schema([("a", pa.int64())]), [pa.record_batch({"a": [1]})]
    )
    assert _source(vs.from_arrow(lambda: reader)).bounded
    assert not _source(vs.from_arrow(lambda: iter([pa.record_batch({"a": [1]})]))).bounded
    assert _source(vs.from_arrow(lambda: [pa.record_batch({"a": [1]})])).replayable


def test_from_arrow_factory_returning_something_else() -> None:
    with pytest.raises(vs.PipelineError, match="function must return"):
        vs.from_arrow(lambda: 42)  # type: ignore[arg-type, return-value]


# ====================================================================== from_records


def _records(n: int) -> list[Any]:
    """Records with some that go to dead letters, a run of them filling a batch."""
    out: list[Any] = []
    for i in range(n):
        if i % 11 == 3:
            out.append({"ts": "not a number", "host": "x"})
        elif i % 17 == 5:
            out.append(None if i % 2 else [i])
        elif i % 19 == 7:
            out.append({"ts": i + 0.5, "host": "x"})
        elif 40 <= i < 50:
            out.append("garbage")
        else:
            out.append({"ts": i, "host": f"h{i % 3}"})
    return out


@given(n=st.integers(1, 120), batch_size=st.integers(1, 40), factory=st.booleans())
@HYPOTHESIS
def test_from_records_resumes_after_any_batch(n: int, batch_size: int, factory: bool) -> None:
    records = _records(n)
    arg: Any = (lambda: iter(records)) if factory else records
    src = _source(
        vs.from_records(arg, schema={"ts": pl.Int64, "host": pl.String}, batch_size=batch_size)
    )
    full = _assert_resumable(src)
    assert _rows(full) + _dead(full) == n


@pytest.mark.parametrize("factory", [False, True])
def test_from_records_dead_letters_neither_lost_nor_repeated(factory: bool) -> None:
    records = _records(100)
    arg: Any = (lambda: (r for r in records)) if factory else records
    schema = {"ts": pl.Int64, "host": pl.String}
    src = _source(vs.from_records(arg, schema=schema, batch_size=4, bounded=True))
    full = _assert_resumable(src)
    # batches of dead letters alone (records 40-49)
    assert any(isinstance(ev, Data) and ev.batch is None and ev.dead is not None for ev in full)
    assert [ev.position for ev in full if isinstance(ev, Data)] == [*range(4, 101, 4)]
    assert _dead(full) == sum(1 for i in range(100) if not isinstance(records[i], dict)) + sum(
        1 for r in records if isinstance(r, dict) and not isinstance(r["ts"], int)
    )


def test_from_records_batch_of_refused_records_only() -> None:
    """A batch whose every record is refused gives its dead letters (the run went on)."""
    src = _source(vs.from_records(["x", [1], {"a": 2}], schema={"a": pl.Int64}, batch_size=2))
    full = _assert_resumable(src)
    assert isinstance(full[0], Data)
    assert full[0].batch is None
    assert full[0].dead is not None
    assert full[0].dead.column("reason").to_pylist() == [
        "not a dict but str",
        "not a dict but list",
    ]


# ====================================================================== from_ndjson


def _ndjson_lines(n: int, seed: int = 0, long_line: int = 0, every: int = 13) -> list[bytes]:
    """Lines of NDJSON; about one in ``every`` is bad (and goes to dead letters), some
    are blank."""
    lines = []
    for i in range(n):
        if i % every == 4:
            lines.append(b'{"ts": 1, "host": ')  # cut short
        elif i % (2 * every + 3) == 9:
            lines.append(b'{"ts": "x", "host": "a"}')  # wrong type
        elif i % 31 == 2:
            lines.append(b"   ")
        else:
            lines.append(b'{"ts": %d, "host": "h%d"}' % (i * 10 + seed, i % 4))
    if long_line:
        lines.insert(n // 2, b'{"ts": 7, "host": "' + b"y" * long_line + b'"}')
    return lines


NDJSON_SCHEMA = {"ts": pl.Int64, "host": pl.String}


def _bad_lines(n: int, every: int = 13) -> int:
    return sum(1 for i in range(n) if i % every == 4 or i % (2 * every + 3) == 9)


def test_from_ndjson_files_resume_after_any_batch(tmp_path: Path) -> None:
    # blocks are at least 64 KiB: 5,000 lines of ~30 bytes make several blocks per file,
    # each giving several batches; a line longer than a block makes a block of its own
    folder = tmp_path / "nd"
    folder.mkdir()
    (folder / "1.ndjson").write_bytes(b"\n".join(_ndjson_lines(5_000, every=500)) + b"\n")
    (folder / "2.ndjson").write_bytes(  # no final newline
        b"\r\n".join(_ndjson_lines(3_000, 1, long_line=150_000, every=500))
    )
    (folder / "3.ndjson").write_bytes(b"")
    src = _source(vs.from_ndjson(folder, schema=NDJSON_SCHEMA, batch_size=700))
    full = _read(src)
    positions = [ev.position for ev in full if isinstance(ev, Data)]
    inner = [p for p in positions if isinstance(p, list) and p[1]]
    ends = [p for p in positions if isinstance(p, list) and not p[1]]
    # several blocks, several batches in a block
    assert len(inner) > 5
    assert len(ends) > 3
    _assert_resumable(src)
    assert _dead(full) == _bad_lines(5_000, 500) + _bad_lines(3_000, 500)


@given(n=st.integers(1, 3_000), batch_size=st.integers(1, 2_000), data=st.data())
@HYPOTHESIS
def test_from_ndjson_file_resumes_after_sampled_batches(
    tmp_path_factory: pytest.TempPathFactory, n: int, batch_size: int, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("nd") / "x.ndjson"
    path.write_bytes(b"\n".join(_ndjson_lines(n, every=300)) + b"\n")
    src = _source(vs.from_ndjson(path, schema=NDJSON_SCHEMA, batch_size=batch_size))
    full = _read(src)
    cuts = data.draw(st.lists(st.integers(0, len(full) - 1), max_size=6))
    _assert_resumable(src, cuts)


@given(n=st.integers(1, 150), batch_size=st.integers(1, 40), kind=st.sampled_from(["b", "s"]))
@HYPOTHESIS
def test_from_ndjson_lines_resume_after_any_batch(n: int, batch_size: int, kind: str) -> None:
    lines: list[Any] = _ndjson_lines(n)
    if kind == "s":
        lines = [ln.decode() for ln in lines]
    src = _source(vs.from_ndjson(lines, schema=NDJSON_SCHEMA, batch_size=batch_size))
    full = _assert_resumable(src)
    # a position counts lines, blank ones too
    assert [ev.position for ev in full if isinstance(ev, Data)][-1] == n


def test_from_ndjson_lines_with_inferred_schema_resume() -> None:
    lines = [ln for ln in _ndjson_lines(80) if b'"x"' not in ln]
    full = _assert_resumable(_source(vs.from_ndjson(lines, batch_size=6)))
    assert _dead(full) > 0


# ====================================================================== refusals, ends


def _gen_records() -> Iterator[dict[str, int]]:
    yield from ({"a": i} for i in range(5))


ONE_SHOT: dict[str, tuple[Callable[[], vs.Stream], str]] = {
    "records_generator": (
        lambda: vs.from_records(_gen_records(), schema={"a": pl.Int64}),
        "a function returning a fresh iterable",
    ),
    "ndjson_generator": (
        lambda: vs.from_ndjson((b'{"a": %d}' % i for i in range(5)), schema={"a": pl.Int64}),
        "pass a list",
    ),
    "ndjson_file_object": (
        lambda: vs.from_ndjson(io.BytesIO(b'{"a": 1}\n'), schema={"a": pl.Int64}),
        "pass a path",
    ),
    "arrow_generator": (
        lambda: vs.from_arrow(iter([pa.record_batch({"a": [1]})])),
        "a function returning a fresh iterable of batches",
    ),
    "arrow_reader": (
        lambda: vs.from_arrow(
            pa.RecordBatchReader.from_batches(
                pa.schema([("a", pa.int64())]), [pa.record_batch({"a": [1]})]
            )
        ),
        "a list of batches",
    ),
}


@pytest.mark.parametrize("kind", sorted(ONE_SHOT))
def test_one_shot_inputs_refuse_to_resume(kind: str) -> None:
    make, hint = ONE_SHOT[kind]
    src = _source(make())
    assert not src.replayable
    with pytest.raises(vs.SourceError, match="cannot be replayed") as info:
        src.open({0: SplitPosition(1)})
    assert hint in str(info.value)
    with pytest.raises(vs.SourceError, match="cannot be replayed"):
        src.open({})
    # the refusal consumed nothing: the run still reads everything
    events = _read(src)
    assert isinstance(events[-1], SplitEnd)
    assert _rows(events) >= 1


def test_replayable_flags(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    (tmp_path / "x.ndjson").write_bytes(b'{"a": 1}\n')
    batch = pa.record_batch({"a": [1]})
    replayable = [
        vs.from_parquet(tmp_path),
        vs.from_ndjson(tmp_path / "x.ndjson"),
        vs.from_ndjson([b'{"a": 1}']),
        vs.from_ndjson((b'{"a": 1}',)),
        vs.from_polars(pl.DataFrame({"a": [1]})),
        vs.from_arrow(pa.table({"a": [1]})),
        vs.from_arrow(batch),
        vs.from_arrow([batch, batch]),
        vs.from_arrow(lambda: iter([batch])),
        vs.from_records([{"a": 1}]),
        vs.from_records(lambda: iter([{"a": 1}])),
    ]
    for s in replayable:
        assert _source(s).replayable, s


@pytest.mark.parametrize(
    "make",
    [
        lambda: vs.from_polars(_frame(10), batch_size=3),
        lambda: vs.from_arrow(_frame(10).to_arrow(), batch_size=3),
        lambda: vs.from_arrow(lambda: iter(_frame(10).to_arrow().to_batches(3)), bounded=True),
        lambda: vs.from_records(_frame(10).to_dicts(), batch_size=3),
        lambda: vs.from_ndjson([b'{"a": %d}' % i for i in range(10)], batch_size=3),
    ],
)
def test_an_ended_split_gives_nothing(make: Callable[[], vs.Stream]) -> None:
    src = _source(make())
    assert _read(src, {0: SplitPosition(10, ended=True)}) == []
    # ended after its last batch but before its end was seen: only the end remains
    assert _read(src, {0: SplitPosition(10)}) == [SplitEnd(0)]


def test_resume_names_its_splits(tmp_path: Path) -> None:
    folder = _parquet_dir(tmp_path, [5, 6], row_group=4)
    src = _source(vs.from_parquet(folder, batch_size=4))
    events = _read(src, {0: SplitPosition(5, ended=True), 1: SplitPosition(4)})
    assert [ev.position if isinstance(ev, Data) else "end" for ev in events] == [6, "end"]
    assert all(ev.split == 1 for ev in events)
    with pytest.raises(vs.SourceError, match="cannot resume splits"):
        src.open({2: SplitPosition(0)})
    with pytest.raises(vs.SourceError, match="cannot resume from position"):
        src.open({0: SplitPosition([1, 2])})


# ====================================================================== expand_paths


def test_directory_reads_skip_hidden_and_underscore_files(tmp_path: Path) -> None:
    out = tmp_path / ".cache" / "out"  # the folder itself may be inside a hidden one
    (out / "sub" / ".pending").mkdir(parents=True)
    (out / ".pending-0").mkdir()
    written = {
        "a.parquet": True,
        "sub/b.parquet": True,
        ".a.parquet": False,
        "_temporary.parquet": False,
        "sub/_SUCCESS.parquet": False,
        ".pending-0/c.parquet": False,
        "sub/.pending/d.parquet": False,
    }
    for i, name in enumerate(written):
        pq.write_table(pa.table({"a": [i]}), out / name)
    got = vs.from_parquet(out).collect()["a"].sort().to_list()
    assert got == [i for i, keep in enumerate(written.values()) if keep]
    for name in written:
        (out / name).with_suffix(".ndjson").write_bytes(b'{"a": 1}\n')
    assert vs.from_ndjson(out).collect().height == 2
