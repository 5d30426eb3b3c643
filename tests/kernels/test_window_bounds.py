"""Memory safety of the window step: every array index its kernels use stays in bounds.

numba does not check bounds: an index past an array's end reads or writes whatever
memory follows it (the heap corruption and the crashes at garbage collection that Nexmark
q5 / q8 showed with millions of auctions and sellers). Here the window kernels the step
calls run as the plain Python functions numba compiles (``py_func``), where numpy checks
every index, on small pipelines built to reach the paths that large runs reach: many keys
(the per-key cache cut to one pane a key, the pane directory off), new integer keys
deferred to a second kernel call, late rows, allowed lateness, compaction of the slots.
CI also runs these tests (and the kernel tests) with ``NUMBA_BOUNDSCHECK=1`` and compiled
kernels.
"""

from __future__ import annotations

import warnings
from random import Random

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import vstream as vs
import window_reference as ref
from vstream.kernels import window as kernels
from vstream.kernels.window.slots import _slot_hash
from vstream.ops import window as op_window
from vstream.ops.base import MAX_WM as MAX
from vstream.ops.base import MIN_WM as MIN
from vstream.ops.base import Chunk
from vstream.ops.window import finalize, operator, panes, sessions, zones
from vstream.runtime.lower import build_op
from vstream.state.window import SessionState

AGGS = [pl.len().alias("n"), pl.col("x").sum().alias("sx"), pl.col("x").max().alias("mx")]


_MODULES = (operator, panes, sessions, finalize, zones)  # the window step's modules


def _set(monkeypatch: pytest.MonkeyPatch, name: str, value: object) -> None:
    """Set ``name`` in every module of the window step that has it."""
    found = [m for m in _MODULES if hasattr(m, name)]
    assert found, name
    for module in found:
        monkeypatch.setattr(module, name, value)


def _kernels() -> dict[str, object]:
    """Every numba kernel the window step calls, by the name it imported it under."""
    return {
        name: f for module in _MODULES for name, f in vars(module).items() if hasattr(f, "py_func")
    }


def _check(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in _MODULES:
        for name, f in vars(module).items():
            if hasattr(f, "py_func"):
                monkeypatch.setattr(module, name, f.py_func)
    _set(monkeypatch, "_DIR_BYTES", 0)
    _set(monkeypatch, "_ONE_WAY_KEYS", 64)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The window step with its kernels as Python functions (numpy checks every index),
    and with the pane directory off and the per-key cache cut to one pane a key beyond
    64 keys, as they are beyond ~260 k keys."""
    _check(monkeypatch)


def assert_same_rows(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Same rows in any order (order within a firing is unspecified)."""
    assert got.columns == want.columns
    cols = got.columns
    assert_frame_equal(got.sort(cols), want.sort(cols), check_exact=False, rel_tol=1e-9)


def _frame(keys: np.ndarray, ts: np.ndarray, seed: int = 0) -> pl.DataFrame:
    x = np.random.default_rng(seed).integers(0, 100, keys.size).astype(np.float64)
    return pl.DataFrame({"k": keys.astype(np.int64), "ts": ts.astype(np.int64), "x": x})


def _run(batches: list[pl.DataFrame], spec: object, **window: object) -> pl.DataFrame:
    stream = vs.from_arrow([b.to_arrow() for b in batches]).with_watermark("ts", 0)
    return stream.window(spec, by="k", **window).agg(*AGGS).collect()  # type: ignore[arg-type]


@pytest.mark.usefixtures("checked")
def test_new_keys_that_cut_the_key_cache_to_one_way_within_a_batch() -> None:
    """The q5 / q8 crash in small form: a batch of integer keys whose new keys are
    deferred to a second pane_slots call, after the key index gave them ids; those keys
    grow the per-key cache and cut it to one way, while the batch's geometry still said
    eight: the second call wrote up to 8x past the cache's end (IndexError here and under
    NUMBA_BOUNDSCHECK=1 before the fix, silent heap corruption without)."""
    first = _frame(np.arange(10), np.zeros(10))  # the key index builds its dense array
    keys = np.arange(1_500)
    second = _frame(keys, np.full(keys.size, 5), seed=1)  # 1,490 new keys: deferred
    third = _frame(keys[::-1], np.full(keys.size, 15), seed=2)
    got = _run([first, second, third], vs.tumbling(10))
    want = ref.tumbling(pl.concat([first, second, third]), 10, by="k", aggs=AGGS)
    assert_same_rows(got, want)


@pytest.mark.usefixtures("checked")
@pytest.mark.parametrize("hop", [False, True], ids=["tumbling", "hopping"])
@pytest.mark.parametrize("keys", ["dense", "sparse", "extremes"])
def test_many_keys_over_many_batches_stay_in_bounds(hop: bool, keys: str) -> None:
    """Keys that come and go over 40 batches (dense ids in a moving range, sparse keys
    over a huge span, int64 extremes; the directory off, one cached pane a key) with
    disorder within the bound: the result is the reference's, every index checked."""
    rng = np.random.default_rng(7)
    batches = []
    for b in range(40):
        n = 300
        if keys == "dense":
            k = rng.integers(50 * b, 50 * b + 400, n)
        elif keys == "sparse":
            k = rng.integers(0, 2_000, n) * 1_000_003 - 10**9
        else:
            k = rng.choice(np.array([-(2**63), 2**63 - 1, 0, -1, 1]), n)
            k[: n // 2] = rng.integers(-(2**62), 2**62, n // 2)
        batches.append(_frame(k, 10 * b + rng.integers(0, 10, n), seed=b))
    stream = vs.from_arrow([b.to_arrow() for b in batches]).with_watermark("ts", 10)
    spec = vs.hopping(30, 10) if hop else vs.tumbling(10)
    got = stream.window(spec, by="k").agg(*AGGS).collect()
    whole = pl.concat(batches)
    if hop:
        want = ref.hopping(whole, 30, 10, by="k", aggs=AGGS)
    else:
        want = ref.tumbling(whole, 10, by="k", aggs=AGGS)
    assert_same_rows(got, want)


@pytest.mark.parametrize("hop", [False, True], ids=["tumbling", "hopping"])
def test_late_rows_and_allowed_lateness_stay_in_bounds(
    monkeypatch: pytest.MonkeyPatch, hop: bool
) -> None:
    """Rows behind the watermark (dropped as late, or re-emitting a window kept for the
    allowed lateness) among new keys deferred to a second kernel call, slots compacted as
    windows close: the checked run emits exactly what the compiled one does."""
    rng = np.random.default_rng(3)
    batches = []
    for b in range(12):
        k = rng.integers(0, 200 + 150 * b, 250)
        ts = 20 * b + rng.integers(-60, 10, 250)  # many behind the watermark
        batches.append(_frame(k, ts, seed=b))
    spec = vs.hopping(40, 20) if hop else vs.tumbling(20)
    compiled = _run(batches, spec, allowed_lateness=30)
    _check(monkeypatch)
    got = _run(batches, spec, allowed_lateness=30)
    assert got["revision"].max() >= 1  # windows were re-emitted
    assert_same_rows(got, compiled)


def test_checked_mode_covers_the_window_kernels() -> None:
    """The kernels the fixture swaps include those of the pane and session paths."""
    names = set(_kernels())
    assert {"pane_slots", "take_final", "fire_hopping", "session_update", "apply_rows"} <= names


def test_a_kernel_index_past_the_end_raises_in_the_checked_mode() -> None:
    """The fixture's premise: a Python-mode kernel raises where the compiled one would
    have written past the end (here pane_slots with a cache too small for its ways)."""
    ts = np.zeros(4, np.int64)
    kid = np.arange(4, dtype=np.int32)
    geom = np.array([10, 0, -(2**62), -(2**62), 8, -1, 1, 0], np.int64)
    tab = np.zeros(64, np.int32)
    F, In = np.zeros((0, 16)), np.zeros((0, 16), np.int64)
    args = (
        ts, kid, geom, tab, np.zeros(16, np.int64), np.zeros(16, np.int32), F, In,
        np.zeros(0), np.zeros(0, np.int64), np.zeros(4, np.int32), np.zeros(4, np.bool_),
        np.zeros(0, np.int64), np.zeros(0, np.int32), np.array([0, 0, 0, 0, 0, 0], np.int64),
        0, np.full(8, -1, np.int32), np.zeros(8, np.int64),  # room for 1 key x 8 ways
        np.zeros((0, 0), np.int32), np.zeros(0, np.int64), np.zeros((0, 3), np.int64),
        (np.zeros(0),), np.zeros(0, np.int32), np.zeros(0, np.int64),
    )  # fmt: skip
    with pytest.raises(IndexError):
        kernels.pane_slots.py_func(*args)


# ---------------------------------------------------------------------- bounded key state
def _phased(
    n_phases: int, per_phase: int, *, string: bool, seed: int = 0, nulls: bool = False
) -> list[pl.DataFrame]:
    """Keys alive in phases: phase p's keys are ``p * per_phase + i``, alive for 4
    windows of 100 (with disorder up to 30), then never seen again; the next phase's keys
    start one window before the last one ends (two phases live at a time). With
    ``nulls``, a null key in every batch (a group alive throughout)."""
    rng = np.random.default_rng(seed)
    batches = []
    for p in range(n_phases):
        for w in range(4):
            n = 3 * per_phase
            k = p * per_phase + rng.integers(0, per_phase, n)
            ts = 300 * p + 100 * w + rng.integers(0, 100, n)
            key = pl.Series("k", k.astype(str) if string else k)
            if nulls:
                key = key.scatter(rng.integers(0, n, 5), None)
            x = rng.integers(0, 9, n).astype(np.float64)
            batches.append(pl.DataFrame({"k": key, "ts": ts, "x": x}))
    return sorted(batches, key=lambda b: int(b["ts"].min()))


def _window_op(string: bool, spec: object, lateness: int) -> op_window.WindowOp:
    schema = {"k": pl.String if string else pl.Int64, "ts": pl.Int64, "x": pl.Float64}
    w = (
        vs.from_polars(pl.DataFrame(schema=schema))
        .with_watermark("ts", 30)
        .window(spec, by="k", allowed_lateness=lateness)  # type: ignore[arg-type]
        .agg(*AGGS)
    )
    op = build_op(w._node)
    assert isinstance(op, op_window.WindowOp)
    return op


def _feed(
    op: op_window.WindowOp, batches: list[pl.DataFrame], check: bool = False
) -> tuple[list[pl.DataFrame], list[int]]:
    """Every batch with the watermark (max time so far - 30); with ``check``, the key
    rows of a snapshot after every fourth batch, each checked to be the live keys."""
    out, key_rows, top = [], [], MIN
    for i, df in enumerate(batches):
        top = max(top, int(df["ts"].max()))
        got, _ = op.process(0, Chunk(df), top - 30)
        out.extend(c.df for c in got)
        if check and i % 4 == 3:
            snap = op.snapshot()
            keys, slots = snap["keys.keys"], snap["slots"]
            live = np.unique(slots.column("key").to_numpy())
            assert keys.num_rows == live.size  # live keys only, ids 0..n-1
            assert live.tolist() == list(range(live.size))
            key_rows.append(keys.num_rows)
    got, _ = op.process(0, None, MAX)
    out.extend(c.df for c in got)
    return out, key_rows


@pytest.mark.parametrize(
    ("string", "nulls"),
    [(False, False), (True, False), (False, True)],
    ids=["int", "string", "nulls"],
)
@pytest.mark.parametrize(
    ("hop", "lateness"), [(False, 0), (True, 0), (False, 150)], ids=["tumbling", "hopping", "late"]
)
def test_keys_alive_in_phases_keep_the_key_index_bounded(
    monkeypatch: pytest.MonkeyPatch, string: bool, nulls: bool, hop: bool, lateness: int
) -> None:
    """30 phases of 400 keys (12,000 in all, ~800 live at a time; with a null key that
    stays live, and is renumbered with the others): the key index never holds more than
    twice the live keys (+ a slack of 500 here), and the results are those of an index
    that never shrinks, and Polars'."""
    _set(monkeypatch, "_KEY_SLACK", 500)
    batches = _phased(30, 400, string=string, nulls=nulls)
    spec = vs.hopping(200, 100) if hop else vs.tumbling(100)
    op = _window_op(string, spec, lateness)
    sizes = []
    top = MIN
    out: list[pl.DataFrame] = []
    for df in batches:
        top = max(top, int(df["ts"].max()))
        got, _ = op.process(0, Chunk(df), top - 30)
        out.extend(c.df for c in got)
        assert op.keys is not None
        live = np.unique(op.state.slot_key[: op.state.n_slots]).size  # type: ignore[union-attr]
        sizes.append(len(op.keys))
        assert len(op.keys) <= 2 * live + 500 + df.height
    assert max(sizes) < 3_000  # against 12,000 keys seen
    got, _ = op.process(0, None, MAX)
    out.extend(c.df for c in got)
    bounded = pl.concat(out)
    # the same without releasing keys
    _set(monkeypatch, "_KEY_SLACK", 1 << 40)
    unbounded, _ = _feed(_window_op(string, spec, lateness), batches)
    assert_same_rows(bounded, pl.concat(unbounded))
    if not lateness:
        whole = pl.concat(batches)
        if hop:
            want = ref.hopping(whole, 200, 100, by="k", aggs=AGGS)
        else:
            want = ref.tumbling(whole, 100, by="k", aggs=AGGS)
        assert_same_rows(bounded, want)


@pytest.mark.parametrize("string", [False, True], ids=["int", "string"])
def test_a_snapshot_holds_live_keys_only_and_restores(
    monkeypatch: pytest.MonkeyPatch, string: bool
) -> None:
    """Snapshots taken every fourth batch hold exactly the keys of live slots (not the
    12,000 seen), and a run restored from one of them mid-way gives the same rows."""
    _set(monkeypatch, "_KEY_SLACK", 1 << 40)  # only snapshots compact here
    batches = _phased(30, 400, string=string, seed=1)
    spec = vs.tumbling(100)
    full, key_rows = _feed(_window_op(string, spec, 0), batches, check=True)
    assert max(key_rows) <= 2 * 400
    # restart from a snapshot after half of the batches
    half = len(batches) // 2
    first = _window_op(string, spec, 0)
    out = []
    top = MIN
    for df in batches[:half]:
        top = max(top, int(df["ts"].max()))
        got, _ = first.process(0, Chunk(df), top - 30)
        out.extend(c.df for c in got)
    state = first.snapshot()
    second = _window_op(string, spec, 0)
    second.restore(state)
    rest, _ = _feed(second, batches[half:])
    assert_same_rows(pl.concat(out + rest), pl.concat(full))


def _live_sessions(op: op_window.WindowOp) -> int:
    state = op.state
    assert isinstance(state, SessionState)
    return int(state.counters[1] - state.counters[0])


@pytest.mark.parametrize(
    ("string", "nulls"),
    [(False, False), (True, False), (False, True)],
    ids=["int", "string", "nulls"],
)
@pytest.mark.parametrize("lateness", [0, 150], ids=["closed", "late"])
def test_session_keys_alive_in_phases_keep_the_key_index_bounded(
    monkeypatch: pytest.MonkeyPatch, string: bool, nulls: bool, lateness: int
) -> None:
    """Sessions release key ids too: 30 phases of 400 keys (a session or two a key
    and phase; with a null key that stays live): the key index never holds more than twice
    the live sessions (+ a slack of 500 here), and the results are those of an index that
    never shrinks, and Polars'."""
    _set(monkeypatch, "_KEY_SLACK", 500)
    batches = _phased(30, 400, string=string, nulls=nulls, seed=2)
    spec = vs.session(gap=100)  # no late rows: every session ends past the watermark
    op = _window_op(string, spec, lateness)
    sizes = []
    top = MIN
    out: list[pl.DataFrame] = []
    for df in batches:
        top = max(top, int(df["ts"].max()))
        got, _ = op.process(0, Chunk(df), top - 30)
        out.extend(c.df for c in got)
        assert op.keys is not None
        sizes.append(len(op.keys))
        assert len(op.keys) <= 2 * _live_sessions(op) + 500 + df.height
    assert max(sizes) < 3_000  # against 12,000 keys seen
    got, _ = op.process(0, None, MAX)
    out.extend(c.df for c in got)
    assert op.late_events == 0
    bounded = pl.concat(out)
    _set(monkeypatch, "_KEY_SLACK", 1 << 40)
    unbounded, _ = _feed(_window_op(string, spec, lateness), batches)
    assert_same_rows(bounded, pl.concat(unbounded))
    if not lateness:
        assert_same_rows(bounded, ref.session(pl.concat(batches), 100, by="k", aggs=AGGS))


@pytest.mark.parametrize("string", [False, True], ids=["int", "string"])
def test_a_session_snapshot_holds_live_keys_only_and_restores(
    monkeypatch: pytest.MonkeyPatch, string: bool
) -> None:
    """A session step's snapshots hold exactly the keys of its live sessions (ids
    0..n-1), and a run restored from one mid-way gives the same rows."""
    _set(monkeypatch, "_KEY_SLACK", 1 << 40)  # only snapshots compact here
    batches = _phased(30, 400, string=string, seed=3)
    spec = vs.session(gap=100)
    op = _window_op(string, spec, 0)
    full: list[pl.DataFrame] = []
    top = MIN
    half = len(batches) // 2
    state = None
    for i, df in enumerate(batches):
        top = max(top, int(df["ts"].max()))
        got, _ = op.process(0, Chunk(df), top - 30)
        full.extend(c.df for c in got)
        if i % 4 == 3 or i == half - 1:
            snap = op.snapshot()
            live = np.unique(snap["sessions"].column("key").to_numpy())
            assert snap["keys.keys"].num_rows == live.size  # ids 0..n-1 of live keys
            assert live.tolist() == list(range(live.size))
            assert snap["sessions"].num_rows == _live_sessions(op)
            assert live.size <= 2 * 400
            if i == half - 1:
                state = snap
    got, _ = op.process(0, None, MAX)
    full.extend(c.df for c in got)
    assert state is not None
    second = _window_op(string, spec, 0)
    second.restore(state)
    first_half: list[pl.DataFrame] = []
    again = _window_op(string, spec, 0)
    top = MIN
    for df in batches[:half]:
        top = max(top, int(df["ts"].max()))
        got, _ = again.process(0, Chunk(df), top - 30)
        first_half.extend(c.df for c in got)
    rest, _ = _feed(second, batches[half:])
    assert_same_rows(pl.concat(first_half + rest), pl.concat(full))


# ---------------------------------------------------------------------- the slot hash
def test_the_slot_hash_wraps_the_same_compiled_and_as_python() -> None:
    """The (pane, key) -> slot hash is arithmetic modulo 2**64: as the plain Python
    function (``NUMBA_DISABLE_JIT=1``, coverage) it gives the compiled values, with no
    overflow (numpy scalars raised OverflowError or warned before the explicit wrapping
    helpers), for panes across int64 (negative ones too) and int32 key ids."""
    rng = np.random.default_rng(7)
    info = np.iinfo(np.int64)
    panes = np.concatenate(
        [
            rng.integers(info.min, info.max, 3_000, dtype=np.int64),
            np.arange(-100, 100, dtype=np.int64),
            np.array([info.min, info.min + 1, info.max, -1, 0], np.int64),
        ]
    )
    keys = rng.integers(0, np.iinfo(np.int32).max, panes.size, dtype=np.int64).astype(np.int32)
    keys[:5] = [0, 1, np.iinfo(np.int32).max, 2, 3]
    hash_ = _slot_hash
    for mask in (np.int64(2047), np.int64((1 << 40) - 1)):
        with np.errstate(all="raise"), warnings.catch_warnings():
            warnings.simplefilter("error")
            plain = [int(hash_.py_func(p, k, mask)) for p, k in zip(panes, keys, strict=True)]
        compiled = [int(hash_(p, k, mask)) for p, k in zip(panes, keys, strict=True)]
        assert plain == compiled
        assert min(compiled) >= 0
        assert max(compiled) <= mask


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=60), st.randoms(use_true_random=False))
def test_session_order_lists_every_key_from_its_head(keys: list[int], rnd: Random) -> None:
    """session_order (a snapshot's order of the live sessions) against a walk of the
    lists in Python, on per-key lists built over shuffled slots with free slots between
    them; both compiled and as the plain Python function."""
    slots = list(range(2 * len(keys)))
    rnd.shuffle(slots)
    n_keys = 10
    head = np.full(n_keys, -1, np.int32)
    nxt = np.full(max(len(slots), 1), -7, np.int32)  # free slots hold garbage
    for k, j in zip(keys, slots, strict=False):
        nxt[j] = head[k]
        head[k] = j
    want = []
    for k in range(n_keys):
        j = int(head[k])
        while j >= 0:
            want.append(j)
            j = int(nxt[j])
    for fn in (kernels.session_order, kernels.session_order.py_func):
        assert fn(head, nxt, n_keys, len(keys)).tolist() == want


def test_session_key_release_keeps_n_unique_and_stored_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The n_unique rows and the stored first values of sessions are per session slot:
    releasing key ids (renumbering the keys) leaves them right. The rows equal those of
    an index that never shrinks, and Polars'."""
    aggs = [
        pl.len().alias("n"),
        pl.col("x").n_unique().alias("ux"),
        pl.col("s").first().alias("fs"),
        pl.col("s").last().alias("ls"),
    ]
    batches = [
        b.with_columns(s=(pl.col("x").cast(pl.Int64) % 4).cast(pl.String))
        for b in _phased(20, 300, string=True, seed=4)
    ]

    def run(slack: int) -> tuple[pl.DataFrame, int]:
        _set(monkeypatch, "_KEY_SLACK", slack)
        w = (
            vs.from_polars(batches[0].clear())
            .with_watermark("ts", 30)
            .window(vs.session(gap=100), by="k", allowed_lateness=50)
            .agg(*aggs)
        )
        op = build_op(w._node)
        assert isinstance(op, op_window.WindowOp)
        out, top, most = [], MIN, 0
        for df in batches:
            top = max(top, int(df["ts"].max()))
            out.extend(c.df for c in op.process(0, Chunk(df), top - 30)[0])
            assert op.keys is not None
            most = max(most, len(op.keys))
        out.extend(c.df for c in op.process(0, None, MAX)[0])
        return pl.concat(out), most

    bounded, most = run(300)
    unbounded, everything = run(1 << 40)
    assert most < 2_000
    assert everything == 20 * 300
    assert_same_rows(bounded, unbounded)
    final = bounded.sort("revision").group_by("k", "window_start").last().drop("revision")
    want = ref.session(pl.concat(batches), 100, by="k", aggs=aggs)
    assert_same_rows(final.select(want.columns), want)
