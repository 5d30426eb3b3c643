"""snapshot()/restore() of the join operators: restored mid-stream (through Arrow IPC),
an operator emits exactly what the uninterrupted one emits, late counts included."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.ops.base import MAX_WM, Chunk, Operator
from vstream.runtime.lower import build_op

DELAY = 300
_Input = list[tuple[int, pl.DataFrame, int]]  # (port, batch, watermark after it)


def _frame(n: int, seed: int, keys: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 20_000, n)) + rng.integers(0, DELAY, n)
    return pl.DataFrame(
        {
            "ts": ts.astype(np.int64),
            "k": rng.integers(0, keys, n),
            "v": np.arange(n) + seed * 100_000,
        }
    )


def _joins() -> dict[str, Callable[[vs.Stream, vs.Stream], vs.Stream]]:
    table = pl.DataFrame({"k": [0, 1, 2], "name": ["a", "b", "c"]})
    return {
        "asof": lambda a, b: a.join_asof(b, by="k"),
        "asof-nearest": lambda a, b: a.join_asof(b, by="k", strategy="nearest", tolerance=400),
        "interval-left": lambda a, b: a.join_interval(
            b, on="k", lower=-200, upper=500, how="left"
        ),
        "window-full": lambda a, b: a.join(b, on="k", window=vs.hopping(1_000, 500), how="full"),
        "regular": lambda a, b: a.join(b, on="k", ttl=700),
        "lookup": lambda a, b: a.join(table, on="k", how="left"),
        "lookup-updates": lambda a, b: a.join(vs.table(b.drop("ts")), on="k"),
    }


def _make(kind: str) -> Operator:
    sample = _frame(1, 0, 1)
    a = vs.from_polars(sample).with_watermark("ts", DELAY)
    b = vs.from_polars(sample).with_watermark("ts", DELAY)
    return build_op(_joins()[kind](a, b)._node)


def _inputs(seed: int) -> _Input:
    left, right = _frame(1_500, seed, 6), _frame(600, seed + 1, 6)
    steps: _Input = []
    for i in range(10):
        for port, df, size in ((0, left, 150), (1, right, 60)):
            part = df.slice(i * size, size)
            # now and then a watermark ahead of the data: the next batch has late rows
            ahead = 800 if i % 4 == 3 else 0
            steps.append((port, part, int(part["ts"].max()) - DELAY + ahead))
    steps += [(0, left.clear(), MAX_WM), (1, right.clear(), MAX_WM)]
    return steps


def _feed(op: Operator, steps: _Input) -> list[pl.DataFrame]:
    out = []
    for port, df, wm in steps:
        if port >= op.n_inputs:
            continue
        got, _ = op.process(port, Chunk(df), wm)
        out.extend(c.df for c in got)
    return out


def _ipc(state: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Each table through the Arrow IPC stream format, as a checkpoint would store it."""
    out = {}
    for name, table in state.items():
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        out[name] = pa.ipc.open_stream(sink.getvalue()).read_all()
    return out


def _canon(frames: list[pl.DataFrame]) -> pl.DataFrame:
    df = pl.concat(frames)
    return df.sort(df.columns, nulls_last=True)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(_joins())),
    cut=st.integers(0, 22),
    seed=st.integers(0, 1_000),
)
def test_join_op_round_trip(kind: str, cut: int, seed: int) -> None:
    steps = _inputs(seed)
    if kind == "lookup-updates":  # the update stream has no ts column
        steps = [(p, df.drop("ts") if p == 1 else df, wm) for p, df, wm in steps]

    whole = _make(kind)
    expected = _feed(whole, steps)

    first = _make(kind)
    before = _feed(first, steps[:cut])
    state = first.snapshot()
    assert state
    assert all(isinstance(t, pa.Table) for t in state.values())
    second = _make(kind)
    second.restore(_ipc(state))
    after = _feed(second, steps[cut:])

    assert second.late_events == whole.late_events
    assert _canon(before + after).equals(_canon(expected))
    assert sum(f.height for f in expected) > 0
