"""``vs.from_arrow(data, rate=...)``: rows released on a wall-clock schedule, cut into
micro-batches by count or by ``max_delay``, resumable from any batch.

Timing checks run on a virtual clock (the ``virtual_clock`` fixture: the reader's waits
return at once and move it), so they are exact: a batch is handed out when its schedule
says, not before and not later, however busy the machine is. Wall-clock time appears
only in failure guards."""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

import vstream as vs
from vstream.errors import DurationError, PipelineError
from vstream.io import memory
from vstream.io.base import Data, SourceEvent, SplitEnd, SplitPosition, ThreadedReader
from vstream.io.memory import ArrowSource

N = 20_000


def _table(n: int = N) -> pa.Table:
    return pa.table({"i": pa.array(range(n), pa.int64()), "s": [f"r{k % 7}" for k in range(n)]})


def _input(kind: str, table: pa.Table) -> object:
    """``table`` as each kind of input from_arrow takes (batches of uneven sizes)."""
    batches = [table.slice(a, b - a).to_batches()[0] for a, b in _cuts(table.num_rows)]
    if kind == "table":
        return table
    if kind == "list":
        return batches
    if kind == "factory":
        return lambda: iter(batches)
    assert kind == "generator"
    return iter(batches)


def _cuts(n: int) -> list[tuple[int, int]]:
    ends = sorted({0, n, *range(0, n, 3_331), *range(0, n, 1_000)})
    return list(itertools.pairwise(ends))


def _source(stream: vs.Stream) -> ArrowSource:
    src = stream._node.source  # type: ignore[attr-defined]
    assert isinstance(src, ArrowSource)
    return src


def _read(
    src: ArrowSource, resume: dict[int, SplitPosition] | None = None
) -> list[tuple[float, SourceEvent]]:
    """Every event of a run with the ``perf_counter`` time it was handed out."""
    reader = src.open(resume)
    got: list[tuple[float, SourceEvent]] = []
    deadline = time.monotonic() + 30
    try:
        while not reader.exhausted:
            assert time.monotonic() < deadline, "the reader did not finish"
            ev = reader.poll(0.5)
            if ev is not None:
                got.append((time.perf_counter(), ev))
    finally:
        reader.close()
    return got


def _released(
    src: ArrowSource,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
    resume: dict[int, SplitPosition] | None = None,
) -> list[tuple[float, SourceEvent]]:
    """Every event of a run with the (virtual) time at which the reader handed it out."""
    log: list[tuple[float, SourceEvent]] = []
    put = ThreadedReader._put

    def recording(self: ThreadedReader, item: SourceEvent) -> bool:
        if isinstance(item, Data | SplitEnd):  # not the reader's own end marker
            log.append((clock.now(), item))
        return put(self, item)

    with monkeypatch.context() as m:
        m.setattr(ThreadedReader, "_put", recording)
        _read(src, resume)
    return log


def _data(events: list[tuple[float, SourceEvent]]) -> list[Data]:
    return [ev for _, ev in events if isinstance(ev, Data)]


@pytest.mark.parametrize("kind", ["table", "list", "factory", "generator"])
def test_rows_come_out_complete_and_in_order(kind: str) -> None:
    table = _table()
    stream = vs.from_arrow(_input(kind, table), rate=1_000_000, bounded=True)
    assert stream.collect()["i"].to_list() == list(range(N))
    assert _source(stream).bounded


@pytest.mark.parametrize("kind", ["table", "factory"])
def test_a_replayable_input_replays_twice(kind: str) -> None:
    stream = vs.from_arrow(_input(kind, _table(5_000)), rate=1_000_000, bounded=True)
    assert stream.collect().height == stream.collect().height == 5_000


def test_boundedness_is_as_without_rate() -> None:
    gen = _input("generator", _table(10))
    assert not _source(vs.from_arrow(gen, rate=10)).bounded
    assert _source(vs.from_arrow(_table(10), rate=10)).bounded


def test_release_is_paced(virtual_clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 rows at 100,000 rows/s: each batch is handed out exactly when its last row
    is due (time-cut: max_delay after its first), and the run takes the schedule."""
    src = _source(vs.from_arrow(_table(), rate=100_000, max_delay="20ms"))
    t = virtual_clock.now()
    events = _released(src, virtual_clock, monkeypatch)
    assert src.release_start == t  # row 0 is due when the run starts
    data = [(at, ev) for at, ev in events if isinstance(ev, Data)]
    assert len(data) == 10  # 9 of 2,001 rows (cut after 20 ms) and the rest
    for at, ev in data:
        last = ev.position - 1  # type: ignore[operator]
        assert at == pytest.approx(t + last / 100_000, abs=1e-9), "not when it was due"
    assert isinstance(events[-1][1], SplitEnd)
    assert virtual_clock.now() - t == pytest.approx((N - 1) / 100_000, abs=1e-9)


def test_collect_is_paced(virtual_clock: Any) -> None:
    stream = vs.from_arrow(_input("list", _table()), rate=100_000)
    t = virtual_clock.now()
    assert stream.collect().height == N
    assert virtual_clock.now() - t == pytest.approx((N - 1) / 100_000, abs=1e-9)


def test_small_max_delay_gives_small_batches() -> None:
    """At 100,000 rows/s a batch holds the rows released within max_delay of its first:
    501 rows for 5 ms (the first row and 500 more), whatever the input's chunks."""
    sizes: list[int] = []
    stream = vs.from_arrow(_input("list", _table()), rate=100_000, max_delay="5ms")
    stream.sink_callback(lambda df: sizes.append(df.height))
    assert sum(sizes) == N
    assert statistics.median(sizes) <= 1_000 < N
    assert max(sizes) == 501


def test_batch_size_caps_a_batch() -> None:
    src = _source(vs.from_arrow(_table(), rate=1_000_000, max_delay="1s", batch_size=3_000))
    sizes = [ev.batch.num_rows for ev in _data(_read(src)) if ev.batch is not None]
    assert sizes == [3_000] * 6 + [2_000]


@pytest.mark.parametrize("kind", ["table", "list", "factory"])
def test_resume_yields_the_rest(kind: str, virtual_clock: Any) -> None:
    """After any batch's position, a resumed run gives the batches and positions of a
    full read after it, its rows paced from the restart."""
    src = _source(vs.from_arrow(_input(kind, _table()), rate=500_000, max_delay="4ms"))
    full = _data(_read(src))
    assert [ev.position for ev in full][-1] == N
    for k in (0, 3, len(full) - 2):
        # through JSON, as a checkpoint's manifest keeps it
        pos = json.loads(json.dumps(full[k].position))
        t = virtual_clock.now()
        rest = _read(src, {0: SplitPosition(pos)})
        # row `pos` is due when the resumed run starts
        assert src.release_start is not None
        assert src.release_start + pos / 500_000 == pytest.approx(t, abs=1e-9)
        got = _data(rest)
        assert [ev.position for ev in got] == [ev.position for ev in full[k + 1 :]]
        for g, w in zip(got, full[k + 1 :], strict=True):
            assert g.batch is not None
            assert w.batch is not None
            assert g.batch.equals(w.batch)
        assert isinstance(rest[-1][1], SplitEnd)


def test_resume_inside_a_batch_and_after_the_end() -> None:
    src = _source(vs.from_arrow(_table(1_000), rate=1_000_000, batch_size=300))
    rest = _data(_read(src, {0: SplitPosition(450)}))
    assert [ev.position for ev in rest] == [750, 1_000]
    assert rest[0].batch is not None
    assert rest[0].batch["i"][0].as_py() == 450
    ended = _read(src, {0: SplitPosition(1_000, ended=True)})
    assert ended == []


def test_close_ends_a_long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A low rate means long waits between batches (99 s here, on the real clock);
    closing the reader ends the one under way."""
    waiting = threading.Event()

    class Signalling(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    class Threading:
        Event = Signalling

        def __getattr__(self, name: str) -> Any:
            return getattr(threading, name)

    monkeypatch.setattr(memory, "threading", Threading())
    src = _source(vs.from_arrow(_table(100), rate=1, max_delay="1h"))
    reader = src.open()
    try:
        assert waiting.wait(30), "the reader never waited"
    finally:
        reader.close()
    thread = reader._thread  # type: ignore[attr-defined]
    thread.join(30)  # a failure guard: the wait it ends is 99 s
    assert not thread.is_alive()


def test_head_stops_a_slow_replay(virtual_clock: Any) -> None:
    """head(3) stops the replay: the reader does not go on through its 5 s schedule."""
    stream = vs.from_arrow(_table(1_000), rate=200, max_delay="10ms").head(3)
    t = virtual_clock.now()
    assert stream.collect()["i"].to_list() == [0, 1, 2]
    # the reader may run ahead by its queue (a few batches of 3 rows), not to the end
    assert virtual_clock.now() - t < 1.0


@pytest.mark.parametrize("rate", [0, -5, float("nan"), float("inf"), "fast", True, [1]])
def test_bad_rate_is_refused(rate: object) -> None:
    with pytest.raises(PipelineError, match="rate"):
        vs.from_arrow(_table(10), rate=rate)  # type: ignore[arg-type]


def test_bad_max_delay_is_refused() -> None:
    with pytest.raises(DurationError, match="max_delay"):
        vs.from_arrow(_table(10), rate=10, max_delay="-5ms")


def test_without_rate_nothing_changes() -> None:
    """max_delay alone does nothing: a Table keeps its own chunks, read at once."""
    table = pa.Table.from_batches(_table(1_000).to_batches(max_chunksize=400))
    src = _source(vs.from_arrow(table, max_delay="1ms"))
    assert src.release_start is None
    assert [ev.position for ev in _data(_read(src))] == [400, 800, 1_000]


def _slow_generator(n: int, pause: float) -> Callable[[], Iterator[pa.RecordBatch]]:
    def gen() -> Iterator[pa.RecordBatch]:
        for k in range(n):
            time.sleep(pause)
            yield pa.record_batch({"i": [k]})

    return gen


def test_an_input_slower_than_the_rate_releases_rows_as_they_come() -> None:
    stream = vs.from_arrow(_slow_generator(20, 0.005), rate=1_000_000, batch_size=4, bounded=True)
    assert stream.collect()["i"].to_list() == list(range(20))
