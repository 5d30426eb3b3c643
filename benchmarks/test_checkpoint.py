"""Checkpoints: what periodic checkpoints cost a running query, and what writing and
restoring a large operator state costs.

- Overhead: Q1 of ``test_windows.py`` (1 s tumbling windows by the ``host`` string over
  10 k hosts, len, mean(cpu), max(cpu), sum(latency_ms), 2 s watermark bound) over a
  generator source that cycles 2 M pre-generated telemetry events (65,536-row batches in
  Polars' layout, string_view), shifting ``ts`` by a whole number of cycle lengths each
  cycle so event time keeps increasing and windows keep firing, for 300 M events
  (21-35 s a run on this VM). Without checkpoints vs ``checkpoint_interval="1s"`` into a fresh
  temporary directory (the sink: a callback that discards its rows). Both run through
  the executor directly (as ``Stream.sink_callback`` does) so the checkpoints' write
  times (``Checkpointing.written``) can be read. Runs alternate, the order flipping
  every round; best and mean of each are reported.
- Write / restore: an operator's state of 1 M keys, keyed by ``host_id`` (Int32) and
  by ``host`` (String), fed directly (``op.process`` with the watermark at MIN_WM, so
  nothing fires or retires): a tumbling-window operator holding one open window per key
  (Q1's aggregates, 1 h windows, every event in the same hour), and an as-of join whose
  right side holds one row (ts, key, version) per key. Write = ``op.snapshot()`` +
  ``CheckpointStore.write``; restore = ``CheckpointStore.load`` + a fresh operator's
  ``restore``. Best of 5 rounds (after a warm-up round), each part also timed alone;
  the restored operator's snapshot is checked equal to the original's outside the
  timing.

``VSTREAM_BENCH_QUICK=1`` shrinks everything to a few seconds in all.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _bench import RESULTS, note, q1_aggs, size

import vstream as vs
from vstream.ops.base import MIN_WM, Chunk
from vstream.runtime.executor import Executor, Target
from vstream.runtime.lower import build_op
from vstream.state.checkpoint import CheckpointStore

BATCH = 65_536
HOSTS = 10_000
SECOND = 1_000  # ms

AGGS = q1_aggs()

# Targets (checked by reading the summary, not asserted: the VM's speed varies).
TARGET_OVERHEAD = 0.10  # checkpoints every 1 s: at most 10 % slower


def _batches(frame: pl.DataFrame) -> list[pa.RecordBatch]:
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return table.to_batches(max_chunksize=BATCH)


# ---------------------------------------------------------------- overhead on Q1
CYCLE = size(2_000_000, 100_000)  # events generated once, then cycled
EVENTS = size(300_000_000, 300_000)  # events per run
ROUNDS = size(3, 1)  # rounds, each running both variants


@pytest.fixture(scope="module")
def cycle_batches() -> list[pa.RecordBatch]:
    frame = vs.datasets.telemetry(CYCLE, hosts=HOSTS, events_per_second=1_000, max_disorder="2s")
    return _batches(frame)


def _cycling(batches: list[pa.RecordBatch], n: int) -> Callable[[], Iterator[pa.RecordBatch]]:
    """A replayable source: ``n`` events of ``batches`` over and over, the k-th pass with
    its event times moved k cycle lengths (whole seconds) later."""
    ts = pa.chunked_array([b.column("ts") for b in batches])
    lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
    span = ((hi - lo) // SECOND + 1) * SECOND  # past every event of the pass before
    at = batches[0].schema.get_field_index("ts")

    def factory() -> Iterator[pa.RecordBatch]:
        left, k = n, 0
        while left > 0:
            shift = pa.scalar(k * span, pa.int64())
            for b in batches:
                if left <= 0:
                    return
                if b.num_rows > left:
                    b = b.slice(0, left)
                if k:
                    b = b.set_column(at, "ts", pc.add(b.column(at), shift))
                left -= b.num_rows
                yield b
            k += 1

    return factory


def _q1(factory: Callable[[], Iterator[pa.RecordBatch]]) -> vs.Stream:
    return (
        vs.from_arrow(factory, bounded=True)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1s"), by="host")
        .agg(*AGGS)
    )


def _run_q1(factory: Callable[[], Iterator[pa.RecordBatch]], checkpoint_dir: Path | None) -> dict:  # type: ignore[type-arg]
    """One run through the executor; its seconds, metrics and checkpoints' (s, bytes)."""
    stream = _q1(factory)
    if checkpoint_dir is None:
        sink = stream.sink_callback(lambda df: None, lazy=True)
    else:
        sink = stream.sink_callback(
            lambda df, epoch: None,
            lazy=True,
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval="1s",
        )
    t = time.perf_counter()
    ex = Executor([Target(sink.stream._node, sink._factory())], sink.checkpoint)
    for _ in ex.run():
        pass
    seconds = time.perf_counter() - t
    m = ex.metrics
    assert m.events_in == EVENTS
    assert m.late_events == 0
    written = ex.checkpointing.written if ex.checkpointing is not None else []
    return {"s": seconds, "checkpoints": m.checkpoints, "written": written}


def test_checkpoint_overhead_q1(benchmark, cycle_batches: list[pa.RecordBatch]) -> None:  # type: ignore[no-untyped-def]
    """Q1 by ``host``, 300 M events, without checkpoints vs checkpoints every 1 s."""
    factory = _cycling(cycle_batches, EVENTS)
    root = Path(tempfile.mkdtemp(prefix="vstream-bench-ckpt-"))
    runs: dict[str, list[dict]] = {"off": [], "1s": []}  # type: ignore[type-arg]
    counter = iter(range(1_000_000))

    def one(variant: str) -> dict:  # type: ignore[type-arg]
        where = None if variant == "off" else root / f"run-{next(counter)}"
        try:
            return _run_q1(factory, where)
        finally:
            if where is not None:
                shutil.rmtree(where, ignore_errors=True)

    flip = iter(range(1_000_000))

    def one_round() -> None:
        order = ("off", "1s") if next(flip) % 2 == 0 else ("1s", "off")
        for variant in order:
            runs[variant].append(one(variant))

    try:
        if getattr(benchmark, "disabled", False):
            benchmark.pedantic(one_round, rounds=1, iterations=1)
            assert runs["1s"][0]["checkpoints"] >= 1  # the final one at least
            return
        # warm-up on a short run (numba JIT, the checkpoint path's imports), not timed
        short = _cycling(cycle_batches, 2 * CYCLE)
        for where in (None, root / "warm-up"):
            stream = _q1(short)
            if where is None:
                stream.sink_callback(lambda df: None)
            else:
                stream.sink_callback(lambda df, epoch: None, checkpoint_dir=where)
        shutil.rmtree(root / "warm-up", ignore_errors=True)
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    off = [r["s"] for r in runs["off"]]
    on = [r["s"] for r in runs["1s"]]
    name_off = "vstream Q1 by host, generator, no checkpoints"
    name_on = "vstream Q1 by host, generator, checkpoint every 1s"
    RESULTS[name_off] = (min(off), EVENTS, 0)
    RESULTS[name_on] = (min(on), EVENTS, 0)
    slow_best = min(on) / min(off) - 1
    slow_mean = statistics.mean(on) / statistics.mean(off) - 1
    written = [w for r in runs["1s"] for w in r["written"]]
    counts = [r["checkpoints"] for r in runs["1s"]]
    secs = [s for s, _ in written]
    nbytes = [b for _, b in written]
    met = "met" if slow_best < TARGET_OVERHEAD else "NOT met"
    rate = ", ".join(f"{EVENTS / s / 1e6:.1f}" for s in off)
    rate_on = ", ".join(f"{EVENTS / s / 1e6:.1f}" for s in on)
    note(
        f"checkpoint overhead, Q1 by host, {EVENTS / 1e6:.0f} M events a run, {ROUNDS} rounds: "
        f"no checkpoints best {min(off):.2f} s / mean {statistics.mean(off):.2f} s "
        f"({EVENTS / min(off) / 1e6:.1f} M events/s best; runs {rate}); every 1 s best "
        f"{min(on):.2f} s / mean {statistics.mean(on):.2f} s "
        f"({EVENTS / min(on) / 1e6:.1f} M events/s best; runs {rate_on})"
    )
    note(
        f"checkpoint overhead: {slow_best * 100:+.1f} % (best vs best), "
        f"{slow_mean * 100:+.1f} % (mean vs mean) (target < {TARGET_OVERHEAD * 100:.0f} %: "
        f"{met}); checkpoints per run {counts}, write time mean "
        f"{statistics.mean(secs) * 1e3:.1f} ms / max {max(secs) * 1e3:.1f} ms, "
        f"{statistics.mean(nbytes) / 1e6:.2f} MB each on average "
        f"(total {sum(secs):.2f} s of checkpoints over {len(on)} runs)"
    )
    benchmark.extra_info["slowdown best"] = slow_best
    benchmark.extra_info["slowdown mean"] = slow_mean
    benchmark.extra_info["seconds off"] = off
    benchmark.extra_info["seconds 1s"] = on
    benchmark.extra_info["checkpoints per run"] = counts
    benchmark.extra_info["checkpoint write s mean"] = statistics.mean(secs)


# ---------------------------------------------------------------- write / restore
KEYS = size(1_000_000, 10_000)
STATE_ROUNDS = size(5, 1)


@pytest.fixture(scope="module")
def state_frame() -> pl.DataFrame:
    """2 events for each of KEYS hosts, all in one hour of event time (so one open
    window per key), ids and names rewritten so every host id in range occurs."""
    n = 2 * KEYS
    frame = vs.datasets.telemetry(n, hosts=KEYS, events_per_second=1_000, max_disorder=0)
    host_id = (pl.int_range(n, dtype=pl.Int64) * 7_919 % KEYS).cast(pl.Int32)
    frame = frame.with_columns(host_id=host_id).with_columns(
        host=pl.format("host-{}", pl.col("host_id"))
    )
    assert frame["host_id"].n_unique() == KEYS
    return frame


def _feed(op, port: int, batches: list[pa.RecordBatch]) -> None:  # type: ignore[no-untyped-def]
    """Every batch on ``port`` with the watermark at MIN_WM: nothing fires or retires."""
    for b in batches:
        out, _ = op.process(port, Chunk(pl.DataFrame(b)), MIN_WM)
        assert not out


def _window_op(frame: pl.DataFrame, by: str):  # type: ignore[no-untyped-def]
    """The window node of a 1 h tumbling Q1 and an operator of it holding one open
    window for each of the frame's keys."""
    batches = _batches(frame)
    stream = (
        vs.from_arrow(batches)
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("1h"), by=by)
        .agg(*AGGS)
    )
    node = stream._node
    op = build_op(node)
    _feed(op, 0, batches)
    assert op.snapshot()["slots"].num_rows == KEYS
    return node, op


def _asof_op(frame: pl.DataFrame, by: str):  # type: ignore[no-untyped-def]
    """The node of ``events.join_asof(deploys, by=by)`` and an operator of it whose
    right side holds one deploy (ts, key, version) for each of KEYS keys: the rows an
    as-of join keeps per key between batches (no left rows wait)."""
    deploys = frame.head(KEYS).select("ts", by, version=pl.int_range(KEYS, dtype=pl.Int32))
    assert deploys[by].n_unique() == KEYS
    events = vs.from_arrow(_batches(frame.head(BATCH))).with_watermark("ts", "2s", time_unit="ms")
    right = vs.from_arrow(_batches(deploys)).with_watermark("ts", "0s", time_unit="ms")
    node = events.join_asof(right, on="ts", by=by)._node
    op = build_op(node)
    _feed(op, 1, _batches(deploys))
    assert op.snapshot()["right"].num_rows == KEYS
    return node, op


def _same_state(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].equals(b[name]), name


@pytest.mark.parametrize("by", ["host_id", "host"])
@pytest.mark.parametrize("kind", ["window", "asof"])
def test_checkpoint_write_restore_1m_keys(  # type: ignore[no-untyped-def]
    benchmark, state_frame: pl.DataFrame, kind: str, by: str
) -> None:
    """Write and restore an operator's state of 1 M keys: a tumbling window's open
    windows (one each), or an as-of join's right rows (one each)."""
    node, op = (_window_op if kind == "window" else _asof_op)(state_frame, by)
    original = op.snapshot()
    root = Path(tempfile.mkdtemp(prefix="vstream-bench-state-"))
    store = CheckpointStore(root, keep=1_000)
    epochs = iter(range(1, 1_000_000))
    parts: dict[str, list[float]] = {
        k: [] for k in ("snapshot", "store.write", "store.load", "op.restore")
    }
    last: dict[str, object] = {}

    def one_round() -> None:
        epoch = next(epochs)
        t0 = time.perf_counter()
        snap = op.snapshot()
        t1 = time.perf_counter()
        store.write({"epoch": epoch}, {f"002.{k}": t for k, t in snap.items()})
        t2 = time.perf_counter()
        loaded = store.load(epoch)
        t3 = time.perf_counter()
        fresh = build_op(node)
        fresh.restore(loaded.tables_of("002"))
        t4 = time.perf_counter()
        for k, d in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[k].append(d)
        last.update(epoch=epoch, op=fresh)
        if epoch > 1:  # keep the disk use of one checkpoint (not timed)
            shutil.rmtree(store.dir_of(epoch - 1), ignore_errors=True)

    try:
        if getattr(benchmark, "disabled", False):
            benchmark.pedantic(one_round, rounds=1, iterations=1)
        else:
            one_round()  # warm-up: lazy imports, numba of the restore path
            benchmark.pedantic(one_round, rounds=STATE_ROUNDS, iterations=1)
        epoch = last["epoch"]
        assert isinstance(epoch, int)
        on_disk = store.size_of(epoch)
        files = sorted((p.stat().st_size, p.name) for p in store.dir_of(epoch).iterdir())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _same_state(original, last["op"].snapshot())  # type: ignore[attr-defined]
    if getattr(benchmark, "disabled", False):
        return
    timed = {k: v[1:] for k, v in parts.items()}  # the first round was the warm-up
    best = {k: min(v) for k, v in timed.items()}
    pairs = zip(timed["snapshot"], timed["store.write"], strict=True)
    write = min(a + b for a, b in pairs)
    pairs = zip(timed["store.load"], timed["op.restore"], strict=True)
    restore = min(a + b for a, b in pairs)
    big = ", ".join(f"{name} {nb / 1e6:.1f} MB" for nb, name in reversed(files[-2:]))
    what = "window state" if kind == "window" else "as-of join state"
    note(
        f"{what} of {KEYS:,} keys by {by}: write {write * 1e3:.0f} ms (snapshot "
        f"{best['snapshot'] * 1e3:.0f} + store.write {best['store.write'] * 1e3:.0f}), "
        f"restore {restore * 1e3:.0f} ms (store.load {best['store.load'] * 1e3:.0f} + "
        f"op.restore {best['op.restore'] * 1e3:.0f}), best of {STATE_ROUNDS}; "
        f"{on_disk / 1e6:.1f} MB on disk, {on_disk / KEYS:.1f} bytes a key (largest: {big})"
    )
    benchmark.extra_info["write ms"] = write * 1e3
    benchmark.extra_info["restore ms"] = restore * 1e3
    benchmark.extra_info["bytes"] = on_disk
    benchmark.extra_info.update({f"{k} ms (best)": v * 1e3 for k, v in best.items()})
