"""A source opens some of its splits: ``open(splits=...)`` and ``open_split(name,
position, columns)``. A partition that owns some splits of a source reads them alone, and
gets exactly the events a read of the whole source gives for them (split indexes,
batches, positions, dead letters, split ends)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vstream.errors import SourceError
from vstream.io.base import Data, Reader, Source, SourceEvent, SplitEnd, SplitPosition
from vstream.io.memory import ArrowSource, PolarsSource
from vstream.io.ndjson import NdjsonSource
from vstream.io.parquet import ParquetSource
from vstream.io.records import RecordsSource

NDJSON_SCHEMA = {"ts": pl.Int64, "host": pl.String}

# ====================================================================== helpers


def _drain(reader: Reader) -> list[SourceEvent]:
    """Every event of a reader, polled until it is exhausted."""
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


def _same_batch(a: pa.RecordBatch | None, b: pa.RecordBatch | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(a.equals(b))


def _assert_same_events(got: list[SourceEvent], want: list[SourceEvent]) -> None:
    assert len(got) == len(want), f"{len(got)} events, expected {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert type(g) is type(w), f"event {k}: {g} != {w}"
        assert g.split == w.split, f"event {k}: split {g.split} != {w.split}"
        if isinstance(g, Data) and isinstance(w, Data):
            assert g.position == w.position, f"event {k}: {g.position} != {w.position}"
            assert _same_batch(g.batch, w.batch), f"event {k}: batches differ"
            assert _same_batch(g.dead, w.dead), f"event {k}: dead letters differ"


def _of(events: list[SourceEvent], split: int) -> list[SourceEvent]:
    return [ev for ev in events if ev.split == split]


def _dead(events: list[SourceEvent]) -> int:
    return sum(ev.dead.num_rows for ev in events if isinstance(ev, Data) and ev.dead is not None)


def _as_checkpointed(position: object) -> SplitPosition:
    """A position as a checkpoint gives it back (through JSON, as a manifest holds it)."""
    return SplitPosition(json.loads(json.dumps(position)))


def _strings(values: list[bytes]) -> pa.Array:
    """An Arrow string array holding exactly these bytes, invalid UTF-8 included (which
    Arrow's constructors refuse)."""
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    )


def _parquet_dir(tmp_path: Path, sizes: list[int], row_group: int) -> Path:
    """Files ``part-<i>.parquet`` of ``sizes[i]`` rows; one row in 17 has a host that is
    not UTF-8 (a dead letter)."""
    folder = tmp_path / "pq"
    folder.mkdir()
    for i, n in enumerate(sizes):
        hosts = [b"h\xff\xfe" if (r + i) % 17 == 5 else b"h%d" % (r % 5) for r in range(n)]
        table = pa.table(
            {
                "ts": pa.array(np.arange(n, dtype=np.int64) * 1_000 + i),
                "host": _strings(hosts),
                "v": pa.array(np.arange(n, dtype=np.float64) % 13),
            }
        )
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=row_group)
    return folder


def _ndjson_lines(n: int, seed: int, every: int) -> bytes:
    """NDJSON text; about one line in ``every`` is bad (a dead letter), some are blank."""
    lines = []
    for i in range(n):
        if i % every == 4:
            lines.append(b'{"ts": 1, "host": ')  # cut short
        elif i % 31 == 2:
            lines.append(b"   ")
        else:
            lines.append(b'{"ts": %d, "host": "h%d"}' % (i * 10 + seed, i % 4))
    return b"\n".join(lines) + b"\n"


def _ndjson_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "nd"
    folder.mkdir()
    # blocks are at least 64 KiB: 6,000 lines of ~25 bytes make several blocks, each
    # giving several batches of 700
    (folder / "1.ndjson").write_bytes(_ndjson_lines(6_000, 0, every=400))
    (folder / "2.ndjson").write_bytes(_ndjson_lines(2_000, 1, every=40))
    (folder / "3.ndjson").write_bytes(_ndjson_lines(4_000, 2, every=250))
    return folder


@pytest.fixture(params=["parquet", "ndjson"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> Source:
    """A file source of three splits whose batches carry dead letters."""
    if request.param == "parquet":
        return ParquetSource(_parquet_dir(tmp_path, [250, 90, 333], row_group=70), batch_size=32)
    return NdjsonSource(_ndjson_dir(tmp_path), NDJSON_SCHEMA, 700, 0.1, None)


# ====================================================================== one split at a time


def test_each_split_alone_gives_its_events_of_the_full_read(files: Source) -> None:
    full = _drain(files.open())
    names = files.split_names()
    assert len(names) == 3
    alone = [_drain(files.open_split(name)) for name in names]
    for i, events in enumerate(alone):
        assert events, f"split {names[i]} gave nothing"
        assert isinstance(events[-1], SplitEnd)
        assert sum(isinstance(ev, SplitEnd) for ev in events) == 1
        assert _dead(events) > 0  # the dead letters come with their split
        _assert_same_events(events, _of(full, i))
    # read one after another, the splits give the whole read
    _assert_same_events([ev for events in alone for ev in events], full)


def test_open_some_splits_by_index(files: Source) -> None:
    full = _drain(files.open())
    want = [ev for ev in full if ev.split in (0, 2)]
    _assert_same_events(_drain(files.open(splits=[0, 2])), want)
    _assert_same_events(_drain(files.open(splits=(2, 0))), want)  # in split order
    _assert_same_events(_drain(files.open(splits={1})), _of(full, 1))
    _assert_same_events(_drain(files.open(splits=range(3))), full)
    assert _drain(files.open(splits=[])) == []


def test_a_split_resumes_in_the_middle(files: Source) -> None:
    full = _drain(files.open())
    for i, name in enumerate(files.split_names()):
        events = _of(full, i)
        data = [k for k, ev in enumerate(events) if isinstance(ev, Data)]
        assert len(data) >= 3
        for k in (data[0], data[len(data) // 2], data[-1]):
            ev = events[k]
            assert isinstance(ev, Data)
            got = _drain(files.open_split(name, _as_checkpointed(ev.position)))
            _assert_same_events(got, events[k + 1 :])
        ended = SplitPosition(_as_checkpointed(events[data[-1]].position).position, ended=True)
        assert _drain(files.open_split(name, ended)) == []
        assert _drain(files.open_split(name, SplitPosition(None))) != []


def test_resume_some_splits_by_index(files: Source) -> None:
    full = _drain(files.open())
    middle = next(
        k for k, ev in enumerate(full) if ev.split == 1 and isinstance(ev, Data) and k > 0
    )
    ev = full[middle]
    assert isinstance(ev, Data)
    got = _drain(files.open({1: _as_checkpointed(ev.position)}, splits=[1, 2]))
    _assert_same_events(got, [e for e in full[middle + 1 :] if e.split in (1, 2)])


def test_columns_are_honoured(files: Source) -> None:
    cols = frozenset({"ts"})
    full = _drain(files.open(columns=cols))
    for i, name in enumerate(files.split_names()):
        got = _drain(files.open_split(name, columns=cols))
        _assert_same_events(got, _of(full, i))
        batches = [ev.batch for ev in got if isinstance(ev, Data) and ev.batch is not None]
        assert batches
        if isinstance(files, ParquetSource):
            # only the column read: and no string checked, so no row is refused
            assert all(b.schema.names == ["ts"] for b in batches)
            assert _dead(got) == 0
        else:
            assert all("ts" in b.schema.names for b in batches)
    # the same rows at the same positions as a read of every column
    everything = _drain(files.open())
    assert [ev.position for ev in full if isinstance(ev, Data)] == [
        ev.position for ev in everything if isinstance(ev, Data)
    ]


@given(
    sizes=st.lists(st.integers(0, 200), min_size=1, max_size=3),
    row_group=st.integers(1, 80),
    batch_size=st.integers(1, 60),
)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parquet_splits_alone_whatever_the_cuts(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], row_group: int, batch_size: int
) -> None:
    folder = _parquet_dir(tmp_path_factory.mktemp("p"), sizes, row_group)
    src = ParquetSource(folder, batch_size=batch_size)
    full = _drain(src.open())
    for i, name in enumerate(src.split_names()):
        _assert_same_events(_drain(src.open_split(name)), _of(full, i))


# ====================================================================== refusals


def test_an_unknown_name_is_refused_with_the_known_ones(files: Source, tmp_path: Path) -> None:
    first = files.split_names()[0]
    with pytest.raises(SourceError, match=rf"no split named 'nope' to open; .*'{first}'"):
        files.open_split("nope")
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(7):
        pq.write_table(pa.table({"ts": [k]}), folder / f"f-{k}.parquet")
    many = ParquetSource(folder, batch_size=4)
    # seven splits: the first five are named
    with pytest.raises(SourceError, match=r"its splits are 'f-0\.parquet', .* and 2 more$"):
        many.open_split("f-9.parquet")


@pytest.mark.parametrize("splits", [[3], [0, 7], [-1], [True], ["0"], [0.0]])
def test_an_index_out_of_range_is_refused(files: Source, splits: list[Any]) -> None:
    bad = next(k for k in splits if k != 0 or isinstance(k, bool | float))
    with pytest.raises(SourceError, match=rf"cannot open split\(s\) {bad!r}: it has 3 split"):
        files.open(splits=splits)


def test_splits_must_be_a_collection(files: Source) -> None:
    with pytest.raises(SourceError, match="collection of split indexes, got str"):
        files.open(splits="1.ndjson")  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="collection of split indexes, got int"):
        files.open(splits=1)  # type: ignore[arg-type]


def test_resume_keys_must_be_among_the_splits(files: Source) -> None:
    with pytest.raises(
        SourceError, match=r"cannot resume split\(s\) \[1\]: .* only split\(s\) \[0, 2\]"
    ):
        files.open({1: SplitPosition(None)}, splits=[0, 2])
    # an ended split of the reader's own is fine
    got = _drain(files.open({0: SplitPosition(None, ended=True)}, splits=[0]))
    assert got == []


def test_a_file_listed_twice_is_opened_by_its_checkpoint_name(tmp_path: Path) -> None:
    folder = _parquet_dir(tmp_path, [10, 20], row_group=8)
    a, b = str(folder / "part-0.parquet"), str(folder / "part-1.parquet")
    src = ParquetSource([a, b, a], batch_size=4)
    assert src.split_names() == ["part-0.parquet", "part-1.parquet", "part-0.parquet"]
    full = _drain(src.open())
    _assert_same_events(_drain(src.open_split("part-0.parquet")), _of(full, 0))
    _assert_same_events(_drain(src.open_split("part-0.parquet#2")), _of(full, 2))


# ====================================================================== one-split sources


def _records() -> list[dict[str, Any]]:
    return [{"ts": i, "host": f"h{i % 3}"} if i % 7 != 3 else {"ts": "x"} for i in range(40)]


SINGLE: dict[str, Callable[[], Source]] = {
    "polars": lambda: PolarsSource(pl.DataFrame({"ts": range(40), "v": [1.5] * 40}), 6),
    "arrow": lambda: ArrowSource(pa.table({"ts": range(40)}), 6, None),
    "arrow-iterator": lambda: ArrowSource(
        iter(pa.table({"ts": range(40)}).to_batches(6)), 6, None
    ),
    "records": lambda: RecordsSource(
        _records(), {"ts": pl.Int64, "host": pl.String}, 6, 0.1, None
    ),
    "ndjson-lines": lambda: NdjsonSource(
        _ndjson_lines(60, 0, every=9).split(b"\n"), NDJSON_SCHEMA, 6, 0.1, None
    ),
}


@pytest.mark.parametrize("kind", list(SINGLE))
def test_a_source_of_one_split_opens_split_0_or_nothing(kind: str) -> None:
    src = SINGLE[kind]()
    assert len(src.splits()) == 1
    # opening no split reads nothing, and leaves a one-shot input for the run
    assert _drain(src.open(splits=[])) == []
    full = _drain(src.open_split(src.split_names()[0]))
    assert full
    assert all(ev.split == 0 for ev in full)
    assert isinstance(full[-1], SplitEnd)
    assert sum(ev.batch.num_rows for ev in full if isinstance(ev, Data) and ev.batch) > 0
    with pytest.raises(
        SourceError, match=r"cannot open split\(s\) 1: it has 1 split\(s\), index 0"
    ):
        src.open(splits=[1])
    with pytest.raises(SourceError, match=r"no split named 'other' to open; its split is '"):
        src.open_split("other")
    if src.replayable:
        _assert_same_events(_drain(src.open(splits=[0])), full)
        middle = full[len(full) // 2]
        assert isinstance(middle, Data)
        rest = _drain(src.open_split(src.split_names()[0], _as_checkpointed(middle.position)))
        _assert_same_events(rest, full[len(full) // 2 + 1 :])
