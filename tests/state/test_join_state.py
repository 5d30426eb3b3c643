"""Join state by key group (:mod:`vstream.state.join`): split into key-group ranges and
merged back, a state holds the same rows and the run goes on with the same results; each
part alone, fed the rows of its keys, gives the results of those keys. And its snapshot:
columns named after the fields, checked when read back."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.errors import CheckpointError
from vstream.ops.base import MAX_WM, Chunk
from vstream.ops.join.base import JoinOperator
from vstream.runtime.lower import build_op
from vstream.state.join import JoinState

DELAY = 300
N_KEYS = 24
_Input = list[tuple[int, pl.DataFrame, int]]  # (port, batch, watermark after it)


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 20_000, n)) + rng.integers(0, DELAY, n)
    k = rng.integers(0, N_KEYS, n)
    return pl.DataFrame(
        {
            "ts": ts.astype(np.int64),
            # a few null keys: outer joins keep them (unmatched), the others drop them
            "k": pl.Series(k).set(pl.Series(rng.random(n) < 0.04), None),
            "v": np.arange(n) + seed * 100_000,
        }
    )


def _joins() -> dict[str, Callable[[vs.Stream, vs.Stream], vs.Stream]]:
    table = pl.DataFrame({"k": np.arange(0, N_KEYS, 2), "name": [f"n{i}" for i in range(12)]})
    return {
        "asof": lambda a, b: a.join_asof(b, by="k"),
        "asof-nearest": lambda a, b: a.join_asof(b, by="k", strategy="nearest", tolerance=400),
        "asof-no-key": lambda a, b: a.join_asof(b.drop("k"), tolerance=300),
        "interval-left": lambda a, b: a.join_interval(
            b, on="k", lower=-200, upper=500, how="left"
        ),
        "window-full": lambda a, b: a.join(b, on="k", window=vs.hopping(1_000, 500), how="full"),
        "regular": lambda a, b: a.join(b, on="k", ttl=700),
        "lookup": lambda a, b: a.join(table, on="k", how="left"),
        "lookup-updates": lambda a, b: a.join(vs.table(b.drop("ts")), on="k"),
    }


def _make(kind: str) -> JoinOperator:
    sample = _frame(1, 0)
    a = vs.from_polars(sample).with_watermark("ts", DELAY)
    b = vs.from_polars(sample).with_watermark("ts", DELAY)
    op = build_op(_joins()[kind](a, b)._node)
    assert isinstance(op, JoinOperator)
    return op


def _inputs(kind: str, seed: int) -> _Input:
    left, right = _frame(1_200, seed), _frame(500, seed + 1)
    if kind == "lookup-updates":  # an update stream without event time
        right = right.drop("ts")
    steps: _Input = []
    for i in range(10):
        for port, df, size in ((0, left, 120), (1, right, 50)):
            part = df.slice(i * size, size)
            # now and then a watermark ahead of the data: the next batch has late rows
            ahead = 800 if i % 4 == 3 else 0
            wm = int(left.slice(i * 120, 120)["ts"].max()) - DELAY + ahead
            steps.append((port, part, wm))
    steps += [(0, left.clear(), MAX_WM), (1, right.clear(), MAX_WM)]
    return steps


def _feed(op: JoinOperator, steps: _Input) -> list[pl.DataFrame]:
    out = []
    for port, df, wm in steps:
        if port >= op.n_inputs:
            continue
        got, _ = op.process(port, Chunk(df), wm)
        out.extend(c.df for c in got)
    return out


def _canon(frames: list[pl.DataFrame], schema: pl.Schema) -> pl.DataFrame:
    df = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return df.sort(df.columns, nulls_last=True)


def _group(key: pl.Expr, n_groups: int) -> pl.Expr:
    """The key group of a key (a null key, or none at all: group 0)."""
    return (key * 7 % n_groups).fill_null(0)


def _key_groups(state: JoinState, n_groups: int) -> np.ndarray:
    if state.keys is None:
        return np.zeros(1, np.int64)
    keys = state.keys.keys(np.arange(len(state.keys)))
    return keys.select(_group(pl.col("k"), n_groups)).to_series().to_numpy()


def _rows(state: JoinState) -> dict[str, pl.DataFrame]:
    """Each row set's snapshot, its key ids replaced by the keys, sorted: what the state
    holds, whatever the ids."""
    out = {}
    for name, rows in state.rows().items():
        df = pl.DataFrame(rows.snapshot())
        if state.keys is not None:
            kid = df.get_column("key_id").to_numpy()
            known = state.keys.keys(np.maximum(kid, 0)).to_series()
            df = df.with_columns(known.set(pl.Series(kid < 0), None).alias("key"))
        df = df.drop("key_id")
        out[name] = df.sort(df.columns, nulls_last=True)
    return out


def _ranges(cuts: list[int], n_groups: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted(set(cuts)), n_groups]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if lo < hi]


def _resumed(kind: str, meta: pa.Table, state: JoinState) -> JoinOperator:
    """A fresh operator of ``kind`` with the progress ``meta`` and the rows of
    ``state``, through their snapshot tables."""
    op = _make(kind)
    op.restore({"meta": meta, **state.snapshot()})
    return op


_CASE = {
    "kind": st.sampled_from(sorted(_joins())),
    "cut": st.integers(0, 21),
    "seed": st.integers(0, 1_000),
    "n_groups": st.integers(1, 8),
    "cuts": st.lists(st.integers(1, 7), max_size=3),
}


@settings(max_examples=30, deadline=None)
@given(**_CASE)
def test_split_then_merge_is_the_same_state(
    kind: str, cut: int, seed: int, n_groups: int, cuts: list[int]
) -> None:
    steps = _inputs(kind, seed)
    whole = _make(kind)
    expected = _feed(whole, steps)

    first = _make(kind)
    before = _feed(first, steps[:cut])
    meta = first.snapshot()["meta"]
    ranges = _ranges([c for c in cuts if c < n_groups], n_groups)
    parts = first.state.split(_key_groups(first.state, n_groups), ranges)
    assert len(parts) == len(ranges)
    merged = JoinState.merge(parts)

    held, again = _rows(first.state), _rows(merged)
    assert held.keys() == again.keys()
    for name, rows in held.items():
        assert again[name].equals(rows), name
        assert sum(p.rows()[name].snapshot().num_rows for p in parts) == rows.height
    if first.state.keys is not None:  # every key, rows or not, in exactly one part
        assert merged.keys is not None
        old = first.state.keys.keys(np.arange(len(first.state.keys)))
        new = merged.keys.keys(np.arange(len(merged.keys)))
        assert sorted(old["k"].to_list(), key=str) == sorted(new["k"].to_list(), key=str)
        assert sum(p.n_keys for p in parts) == len(first.state.keys)

    after = _feed(_resumed(kind, meta, merged), steps[cut:])
    schema = whole.setup.schema
    assert _canon(before + after, schema).equals(_canon(expected, schema))
    assert sum(f.height for f in expected) > 0


@settings(max_examples=30, deadline=None)
@given(**_CASE)
def test_each_part_gives_the_results_of_its_keys(
    kind: str, cut: int, seed: int, n_groups: int, cuts: list[int]
) -> None:
    steps = _inputs(kind, seed)
    first = _make(kind)
    _feed(first, steps[:cut])
    meta = first.snapshot()["meta"]
    # the results after the cut, of all keys: from the state as it is
    expected = _feed(_resumed(kind, meta, first.state), steps[cut:])
    ranges = _ranges([c for c in cuts if c < n_groups], n_groups)
    keyless = first.state.keys is None
    parts = first.state.split(_key_groups(first.state, n_groups), ranges)

    schema = first.setup.schema
    out_key = pl.coalesce("k", "k_right") if "k_right" in schema else pl.col("k")
    for i, ((lo, hi), part) in enumerate(zip(ranges, parts, strict=True)):

        def mine(key: pl.Expr, lo: int = lo, hi: int = hi, first: bool = i == 0) -> pl.Expr:
            if keyless:
                return pl.lit(first)
            g = _group(key, n_groups)
            return g.is_between(lo, hi, closed="left") | (key.is_null() & first)

        own = [
            (port, df.filter(mine(pl.col("k"))) if "k" in df.columns else df, wm)
            for port, df, wm in steps[cut:]
        ]
        got = _feed(_resumed(kind, meta, part), own)
        want = [f.filter(mine(out_key)) for f in expected]
        assert _canon(got, schema).equals(_canon(want, schema)), (lo, hi)


def _snapshot_at(kind: str, cut: int = 12) -> tuple[JoinOperator, dict[str, pa.Table]]:
    op = _make(kind)
    _feed(op, _inputs(kind, 3)[:cut])
    return op, op.snapshot()


@pytest.mark.parametrize("kind", sorted(_joins()))
def test_snapshot_columns_are_named_after_the_fields(kind: str) -> None:
    op, state = _snapshot_at(kind)
    fields = {
        "left": {"time", "key_id", "matched", "next_window"},
        "right": {"time", "key_id", "matched", "next_window"},
        "pending": {"time", "key_id"},
        "table": {"key_id"},
    }
    assert set(state) == {"meta", *op.state.ROWS} | ({"keys"} if op.keys is not None else set())
    for name in op.state.ROWS:
        columns = set(state[name].column_names)
        assert fields[name] <= columns
        assert all(c.startswith("row.") for c in columns - fields[name]), columns
    meta = set(state["meta"].column_names)
    assert {"in_wm.left", "in_wm.right", "late_events.left", "late_events.right"} <= meta


def _replace(table: pa.Table, column: str, values: np.ndarray) -> pa.Table:
    i = table.column_names.index(column)
    return table.set_column(i, column, pa.array(values, table.schema.field(column).type))


@pytest.mark.parametrize("kind", ["window-full", "asof", "lookup-updates"])
def test_a_key_id_past_the_key_index_is_refused(kind: str) -> None:
    op, state = _snapshot_at(kind)
    name = op.state.ROWS[-1] if kind != "asof" else "right"
    table = state[name]
    assert table.num_rows, name
    kid = table.column("key_id").to_numpy().copy()
    kid[-1] = op.n_keys  # past the last id: a kernel would index out of bounds
    bad = {**state, name: _replace(table, "key_id", kid)}
    with pytest.raises(CheckpointError, match=f"table '{name}', column 'key_id'"):
        _make(kind).restore(bad)


@pytest.mark.parametrize("column", ["time", "key_id", "row.v"])
def test_a_missing_column_is_refused(column: str) -> None:
    _, state = _snapshot_at("interval-left")
    bad = {**state, "left": state["left"].drop_columns([column])}
    with pytest.raises(CheckpointError, match=f"column '{column}'"):
        _make("interval-left").restore(bad)


def test_a_missing_table_is_refused() -> None:
    _, state = _snapshot_at("regular")
    with pytest.raises(CheckpointError, match="lacks the state table 'right'"):
        _make("regular").restore({k: v for k, v in state.items() if k != "right"})


def test_key_groups_must_cover_every_key_id() -> None:
    op, _ = _snapshot_at("regular")
    with pytest.raises(Exception, match="key_groups must give the group of each"):
        op.state.split(np.zeros(op.n_keys - 1, np.int64), [(0, 1)])
