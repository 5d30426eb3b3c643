"""Shared fixtures for the test suite.

pytest runs with ``--import-mode=importlib``, so test modules cannot import this file;
shared helpers are handed out as fixtures instead.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import vstream as vs
from vstream.testing import assert_same_result

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]


def assert_same_rows(a: pl.DataFrame, b: pl.DataFrame, **kwargs: object) -> None:
    """Order-insensitive equality: same columns, dtypes and multiset of rows.

    Both frames are sorted by all their columns (nulls last) before
    ``polars.testing.assert_frame_equal``; keyword arguments go to the latter
    (``check_exact=False`` for floats computed in a different order, ...).
    """
    assert a.columns == b.columns, f"columns differ: {a.columns} != {b.columns}"
    assert a.height == b.height, f"row counts differ: {a.height} != {b.height}"
    if a.width == 0:
        return
    sortable = [c for c, dt in a.schema.items() if not dt.is_nested()]
    a_sorted = a.sort(sortable, nulls_last=True, maintain_order=True) if sortable else a
    b_sorted = b.sort(sortable, nulls_last=True, maintain_order=True) if sortable else b
    assert_frame_equal(a_sorted, b_sorted, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def same_rows() -> SameRows:
    """The order-insensitive frame comparison :func:`assert_same_rows`."""
    return assert_same_rows


# ---------------------------------------------------------------------- every executor
#: builds a pipeline from its sources (one Stream per input frame): one output, or several
#: (run together, as ``vs.collect_all`` does)
Build = Callable[..., "vs.Stream | Sequence[vs.Stream]"]
#: the row counts of the micro-batches input number ``k`` of ``n`` rows is read in
Cuts = Callable[[int, int], list[int]]
#: runs the outputs of a pipeline to the end: their frames and the run's metrics
Runner = Callable[[list[vs.Stream]], tuple[list[pl.DataFrame], vs.Metrics]]

#: larger than any input the tests give: the whole input in one micro-batch
_WHOLE = 65_536


def _by_size(size: int) -> Cuts:
    return lambda n, k: [min(size, n - i) for i in range(0, n, size)]


def _random_sizes(n: int, k: int) -> list[int]:
    """Random micro-batch sizes of 1 to 97 rows, the same on every run (seeded by the
    input's number and size)."""
    rng = np.random.default_rng([17, k, n])
    ends = np.cumsum(rng.integers(1, 98, n + 1))
    bounds = [0, *ends[ends < n].tolist(), n]
    return [hi - lo for lo, hi in itertools.pairwise(bounds) if hi > lo]


def _collect(streams: list[vs.Stream], **options: Any) -> tuple[list[pl.DataFrame], vs.Metrics]:
    """Run the outputs together (``options`` go to ``vs.collect_all``)."""
    results, metrics = vs.collect_all(streams, return_metrics=True, **options)
    frames = [r for r in results if r is not None]
    assert len(frames) == len(streams)
    return frames, metrics


@dataclass(frozen=True)
class Under:
    """One way to run a pipeline: the micro-batches its inputs are cut in (``cuts``, so
    that a test can model the watermark), and what runs it."""

    name: str
    cuts: Cuts
    run: Runner = _collect
    #: feeds input ``k`` as a source: ``vs.from_polars`` of a fixed batch size, else
    #: ``vs.from_arrow`` of the cut record batches
    batch_size: int | None = None

    def source(self, df: pl.DataFrame, k: int = 0) -> vs.Stream:
        """Input number ``k``, cut as this executor cuts it."""
        if self.batch_size is not None:
            return vs.from_polars(df, batch_size=self.batch_size)
        table = df.rechunk().to_arrow()
        bounds = np.cumsum([0, *self.cuts(df.height, k)]).tolist()
        batches = [
            b
            for lo, hi in itertools.pairwise(bounds)
            for b in table.slice(lo, hi - lo).to_batches()
        ]
        return vs.from_arrow(pa.Table.from_batches(batches, table.schema))

    def outputs(self, build: Build, *frames: pl.DataFrame) -> Outputs:
        """The outputs of ``build`` over ``frames`` (fed as this executor feeds them)."""
        built = build(*(self.source(df, k) for k, df in enumerate(frames)))
        one = isinstance(built, vs.Stream)
        out, metrics = self.run([built] if one else list(built))
        return Outputs(out, metrics, one)

    def __call__(self, build: Build, *frames: pl.DataFrame) -> Any:
        """The result of ``build`` over ``frames``: a DataFrame, or one per output."""
        return self.outputs(build, *frames).result


@dataclass(frozen=True)
class Outputs:
    """What a pipeline gave under one executor."""

    frames: list[pl.DataFrame]
    metrics: vs.Metrics
    #: the pipeline has one output (a Stream, not a list of them)
    one: bool

    @property
    def result(self) -> Any:
        """The output (one), or the list of them."""
        return self.frames[0] if self.one else self.frames


#: every executor a pipeline must give the same rows under (DESIGN.md "Equality"). The
#: parallel issue adds its own here, one line each, e.g.
#: ``Under("threads-2", _random_sizes, functools.partial(_collect, threads=2))``
EXECUTORS: dict[str, Under] = {
    u.name: u
    for u in (
        Under("batch-1", _by_size(1), batch_size=1),  # every row its own micro-batch
        Under("batch-random", _random_sizes),  # random cuts of 1 to 97 rows
        Under("batch-large", _by_size(_WHOLE), batch_size=_WHOLE),  # the whole input at once
    )
}


def assert_same_everywhere(
    results: dict[str, list[pl.DataFrame]], *, ordered: bool = False
) -> None:
    """Every executor's outputs are the same rows as the first one's (in any order, unless
    ``ordered``; floats within a relative 1e-9: :func:`vstream.testing.assert_same_result`)."""
    (first, want), *others = results.items()
    for name, got in others:
        for k, (a, b) in enumerate(zip(want, got, strict=True)):
            try:
                assert_same_result(b, a, ordered=ordered)
            except AssertionError as exc:
                msg = f"under {name!r}, output {k} differs from its rows under {first!r}: {exc}"
                raise AssertionError(msg) from exc


class RunEverywhere:
    """Runs a pipeline under every executor of :data:`EXECUTORS`, asserts they give the
    same rows and returns them (the first executor's: ``batch-1``)::

        out = run_everywhere(lambda s: s.filter(pl.col("x") > 1), df)
        out = run_everywhere(lambda a, b: a.join_asof(b, by="k"), left, right)

    ``metrics`` (optional) is called with each run's metrics (``late_events`` ...);
    ``ordered=True`` asks for the rows in the same order too (stateless steps over one
    source keep their input's order).
    """

    def __init__(self, executors: dict[str, Under]) -> None:
        self.executors = executors

    def each(
        self,
        build: Build,
        *frames: pl.DataFrame,
        metrics: Callable[[vs.Metrics], object] | None = None,
    ) -> dict[str, Outputs]:
        """The outputs under each executor, by its name (not compared)."""
        results = {}
        for name, under in self.executors.items():
            out = under.outputs(build, *frames)
            if metrics is not None:
                try:
                    metrics(out.metrics)
                except AssertionError as exc:
                    raise AssertionError(f"under {name!r}: {exc}") from exc
            results[name] = out
        return results

    def __call__(
        self,
        build: Build,
        *frames: pl.DataFrame,
        metrics: Callable[[vs.Metrics], object] | None = None,
        ordered: bool = False,
    ) -> Any:
        results = self.each(build, *frames, metrics=metrics)
        assert_same_everywhere(
            {name: out.frames for name, out in results.items()}, ordered=ordered
        )
        return next(iter(results.values())).result


@pytest.fixture
def run_everywhere() -> RunEverywhere:
    """Runs a pipeline under every executor and checks they agree (:class:`RunEverywhere`)."""
    return RunEverywhere(EXECUTORS)


@pytest.fixture(params=list(EXECUTORS))
def executor(request: pytest.FixtureRequest) -> Under:
    """Each executor of :data:`EXECUTORS` in turn (a test parametrised by it):
    ``executor(build, *frames)`` runs the pipeline under it."""
    under: Under = EXECUTORS[request.param]
    return under


@pytest.fixture(scope="session")
def telemetry_small() -> pl.DataFrame:
    """20,000 rows of synthetic telemetry over 50 hosts (a DataFrame is immutable, so one
    copy serves the whole session)."""
    return vs.datasets.telemetry(20_000, hosts=50, seed=1)


EndlessKind = Literal["records", "ndjson", "arrow"]


class Endless:
    """Endless inputs for unbounded streams: rows ``{"i": 0}, {"i": 1}, ...``.

    ``produced`` counts the rows handed out so far (by every generator made here), so a
    test can see how far ahead of the pipeline a source reads, and whether it keeps
    reading after the run ended. ``halt`` ends every generator made here; the fixture
    sets it at teardown so that a reader thread a run failed to stop does not spin on
    (and slow down the rest of the session).
    """

    schema = pl.Schema({"i": pl.Int64})

    def __init__(self) -> None:
        self.produced = 0
        self.halt = threading.Event()

    def _numbers(self, delay: float) -> Iterator[int]:
        for i in itertools.count():
            if self.halt.is_set():
                return
            if delay:
                time.sleep(delay)
            self.produced += 1
            yield i

    def records(self, delay: float = 0.0) -> Iterator[dict[str, int]]:
        """An endless generator of dicts."""
        return ({"i": i} for i in self._numbers(delay))

    def lines(self, delay: float = 0.0) -> Iterator[bytes]:
        """An endless generator of NDJSON lines."""
        return (b'{"i": %d}' % i for i in self._numbers(delay))

    def batches(self, rows: int, delay: float = 0.0) -> Iterator[pa.RecordBatch]:
        """An endless generator of Arrow batches of ``rows`` rows each."""
        for start in itertools.count(0, rows):
            if self.halt.is_set():
                return
            if delay:
                time.sleep(delay)
            self.produced += rows
            yield pa.record_batch({"i": pa.array(range(start, start + rows), pa.int64())})

    def stream(
        self, kind: EndlessKind = "records", *, batch_size: int = 100, delay: float = 0.0
    ) -> vs.Stream:
        """An unbounded stream of the given source kind over a fresh endless generator."""
        if kind == "records":
            return vs.from_records(self.records(delay), schema=self.schema, batch_size=batch_size)
        if kind == "ndjson":
            return vs.from_ndjson(self.lines(delay), schema=self.schema, batch_size=batch_size)
        return vs.from_arrow(self.batches(batch_size, delay))

    def blocked(self) -> Iterator[dict[str, int]]:
        """A generator that yields nothing and blocks until ``halt`` is set."""
        self.halt.wait(60)
        yield from ()


@pytest.fixture
def endless() -> Iterator[Endless]:
    """An :class:`Endless` whose generators are all halted when the test ends."""
    e = Endless()
    yield e
    e.halt.set()


class DrivenClock:
    """The wall clock a run reads for ticks and idleness (``time.monotonic`` in the
    executor and the watermark step), which the test moves forward: real time plus an
    offset that only grows. Waiting on :meth:`step` replaces sleeping and sampling, so
    a watermark test asserts exact values however busy the machine is.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._reads = 0  # the executor's readings of the clock: one a step of its loop
        self._cond = threading.Condition()

    def now(self) -> float:
        """The clock as the run sees it."""
        with self._cond:
            return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (every reading after this call sees it)."""
        with self._cond:
            self._offset += seconds

    def step(self, timeout: float = 15.0) -> None:
        """Return once the run has taken a whole step of its loop, wall-clock tick and
        metrics included, on the clock as it is now (moved one tick forward, so the
        tick is due). ``timeout`` is a failure guard."""
        from vstream.runtime.executor import _TICK

        self.advance(2 * _TICK)
        with self._cond:
            # the first reading after the advance starts a step that ticks; the second
            # comes after that step has ended
            target = self._reads + 2
            if not self._cond.wait_for(lambda: self._reads >= target, timeout):
                msg = f"the run took no step in {timeout} s"
                raise AssertionError(msg)

    def _time_module(self, *, counted: bool) -> Any:
        clock = self

        class _Time:
            def __getattr__(self, name: str) -> Any:
                return getattr(time, name)

            def monotonic(self) -> float:
                with clock._cond:
                    value = time.monotonic() + clock._offset
                    if counted:
                        clock._reads += 1
                        clock._cond.notify_all()
                return value

        return _Time()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> DrivenClock:
    """A :class:`DrivenClock` that runs started in the test read."""
    from vstream.ops import watermark
    from vstream.runtime import executor

    driven = DrivenClock()
    monkeypatch.setattr(executor, "time", driven._time_module(counted=True))
    monkeypatch.setattr(watermark, "time", driven._time_module(counted=False))
    return driven


class VirtualClock:
    """Virtual time for the paced replay of ``vs.from_arrow(..., rate=...)``: the reader's
    waits (``threading.Event.wait`` in :mod:`vstream.io.memory`) return at once and move
    this clock by what they would have waited, and ``time.perf_counter`` there reads it.
    Rows then come out exactly on their schedule, however busy the machine is.
    """

    def __init__(self) -> None:
        self._now = 1_000.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def _modules(self) -> tuple[Any, Any]:
        clock = self

        class VirtualEvent(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                if timeout is None or self.is_set():
                    return super().wait(timeout)
                with clock._lock:
                    clock._now += max(timeout, 0.0)
                return self.is_set()

        class _Time:
            def __getattr__(self, name: str) -> Any:
                return getattr(time, name)

            def perf_counter(self) -> float:
                return clock.now()

        class _Threading:
            Event = VirtualEvent

            def __getattr__(self, name: str) -> Any:
                return getattr(threading, name)

        return _Time(), _Threading()


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """A :class:`VirtualClock` that paced replays started in the test run on."""
    from vstream.io import memory

    clock = VirtualClock()
    fake_time, fake_threading = clock._modules()
    monkeypatch.setattr(memory, "time", fake_time)
    monkeypatch.setattr(memory, "threading", fake_threading)
    return clock
