"""Window state by key group (vstream.state.window): split into key-group ranges and
merged back, it gives the results of the state it came from; each part alone gives
exactly the results of its keys. Checked on random events, with every kind of window,
int, string and no keys, allowed lateness (revisions), n_unique (distinct rows) and a
first of strings (a value store)."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import vstream as vs
from vstream.errors import VStreamError
from vstream.ops.base import Chunk
from vstream.ops.window import WindowOp
from vstream.runtime.lower import build_op
from vstream.state.window import PaneState, SessionState

SPECS = {
    "tumbling": vs.tumbling(1_000),
    "hopping": vs.hopping(3_000, slide=1_000),
    "hopping-gcd": vs.hopping(2_500, slide=1_000),
    "session": vs.session(gap=400),
}
AGGS = [
    pl.len(),
    pl.col("x").mean().alias("mx"),
    pl.col("x").sum().alias("sx"),
    pl.col("x").max().alias("hx"),
    pl.col("x").std().alias("dx"),
    pl.col("s").first().alias("fs"),
    pl.col("s").n_unique().alias("us"),
]


def _op(kind: str, keys: str, lateness: int) -> WindowOp:
    schema = {"k": pl.String if keys == "str" else pl.Int64, "ts": pl.Int64}
    schema |= {"x": pl.Float64, "s": pl.String}
    w = vs.from_polars(pl.DataFrame(schema=schema)).with_watermark("ts", 0)
    by = "k" if keys != "none" else None
    op = build_op(w.window(SPECS[kind], by=by, allowed_lateness=lateness).agg(*AGGS)._node)
    assert isinstance(op, WindowOp)
    return op


def _events(rng: np.random.Generator, keys: str, n: int) -> pl.DataFrame:
    k = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.1] = np.nan
    return pl.DataFrame(
        {
            "k": k.astype(str) if keys == "str" else k,
            "ts": rng.integers(0, 8_000, n),
            "x": pl.Series(x).fill_nan(None) if rng.random() < 0.5 else x,
            "s": (rng.integers(0, 4, n)).astype(str),
        }
    )


def _fed(kind: str, keys: str, lateness: int, seed: int) -> WindowOp:
    """An operator fed random events in batches, the watermark behind the largest time
    (windows fired, late rows within and past the lateness)."""
    rng = np.random.default_rng(seed)
    op = _op(kind, keys, lateness)
    top = -(2**62)
    for _ in range(int(rng.integers(1, 5))):
        df = _events(rng, keys, int(rng.integers(1, 80)))
        top = max(top, int(df["ts"].max()))
        op.process(0, Chunk(df), top - int(rng.integers(0, 3_000)))
    return op


def _fired(op: WindowOp, state: PaneState | SessionState) -> pl.DataFrame:
    """Every window of ``state`` fired, in a fresh operator of the step."""
    fresh = WindowOp(op.name, op.setup)
    fresh.load(state)
    return _sorted(fresh.fire_all())


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort([c for c in ("k", "window_start", "window_end") if c in df.columns])


def _ranges(cuts: list[int], n_groups: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted(set(cuts)), n_groups]
    return list(itertools.pairwise(bounds))


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(SPECS)),
    keys=st.sampled_from(["int", "str", "none"]),
    lateness=st.sampled_from([0, 2_000]),
    seed=st.integers(0, 2**32 - 1),
    n_groups=st.integers(1, 16),
    data=st.data(),
)
def test_split_then_merge_gives_the_same_results(
    kind: str, keys: str, lateness: int, seed: int, n_groups: int, data: st.DataObject
) -> None:
    op = _fed(kind, keys, lateness, seed)
    state = op.state
    n_keys = state.n_keys()
    groups = np.array(
        data.draw(st.lists(st.integers(0, n_groups - 1), min_size=n_keys, max_size=n_keys))
    )
    cuts = data.draw(st.lists(st.integers(1, max(n_groups - 1, 1)), max_size=3))
    ranges = _ranges([c for c in cuts if c < n_groups], n_groups)
    assert 1 <= len(ranges) <= 4
    # the key values of each id, with their group, before the split (which leaves the
    # state as it is)
    labels = (
        state.keys.keys(np.arange(n_keys)).with_columns(group=pl.Series(groups))
        if state.keys is not None
        else None
    )
    parts = state.split(groups, ranges)
    assert len(parts) == len(ranges)
    assert all(type(p) is type(state) for p in parts)
    copy = WindowOp(op.name, op.setup)
    copy.restore(op.snapshot())
    want = _sorted(copy.fire_all())

    merged = type(state).merge(parts)
    assert_frame_equal(_fired(op, merged), want)

    for part, (lo, hi) in zip(parts, ranges, strict=True):
        got = _fired(op, part)
        if labels is None:
            mine = want if lo <= groups[0] < hi else want.clear()
        else:
            ours = labels.filter((pl.col("group") >= lo) & (pl.col("group") < hi))
            mine = want.filter(pl.col("k").is_in(ours["k"].implode()))
            assert part.keys is not None
            assert len(part.keys) == ours.height  # its own keys only
        assert_frame_equal(got, mine)


@pytest.mark.parametrize("kind", ["tumbling", "session"])
def test_split_wants_one_group_a_key_id(kind: str) -> None:
    op = _fed(kind, "int", 0, seed=3)
    n_keys = op.state.n_keys()
    with pytest.raises(VStreamError, match=rf"not \({n_keys},\), one group for each"):
        op.state.split(np.zeros(n_keys + 1, np.int64), [(0, 1)])


def test_a_part_restores_from_its_own_snapshot() -> None:
    """A part is a state like any other: its snapshot restores to the same results."""
    op = _fed("hopping", "str", 2_000, seed=11)
    groups = np.arange(op.state.n_keys()) % 2
    part = op.state.split(groups, [(1, 2)])[0]
    again = PaneState(op.state_config)
    again.restore(part.snapshot())
    assert_frame_equal(_fired(op, again), _fired(op, part))


def test_load_refuses_another_steps_state() -> None:
    op = _op("tumbling", "int", 0)
    other = _op("session", "int", 0)
    with pytest.raises(VStreamError, match="another window step"):
        op.load(other.state)
