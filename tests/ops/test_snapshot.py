"""snapshot()/restore() of every operator: a restored operator continues exactly like the
original, and its state is plain Arrow that Polars can read."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.ops.base import MAX_WM, Chunk
from vstream.ops.stateless import ConcatOp, HeadOp, StatelessOp
from vstream.ops.watermark import WatermarkOp


def _feed(op, chunks, wm_in=-(2**63)):  # type: ignore[no-untyped-def]
    out, wms = [], []
    for c in chunks:
        got, wm = op.process(0, c, wm_in)
        out.extend(x.df for x in got)
        wms.append(wm)
    return out, wms


@settings(max_examples=40, deadline=None)
@given(
    cut=st.integers(0, 12),
    seed=st.integers(0, 1000),
    delay=st.integers(0, 3000),
)
def test_watermark_op_round_trip(cut: int, seed: int, delay: int) -> None:
    df = vs.datasets.telemetry(1200, hosts=5, seed=seed)
    chunks = [Chunk(df.slice(i * 100, 100), split=i % 3) for i in range(12)]

    def fresh() -> WatermarkOp:
        op = WatermarkOp("wm", "ts", delay, None, 1_000_000)
        for k in range(3):
            op.register_split(k, lower=None, started=False)
        return op

    whole = fresh()
    expected, expected_wms = _feed(whole, chunks)

    first = fresh()
    _feed(first, chunks[:cut])
    state = first.snapshot()
    assert all(isinstance(t, pa.Table) for t in state.values())
    assert pl.from_arrow(state["splits"]).height == 3  # type: ignore[union-attr]
    second = fresh()
    second.restore(state)
    rest, rest_wms = _feed(second, chunks[cut:])
    assert rest_wms == expected_wms[cut:]
    assert second.behind_watermark == whole.behind_watermark
    for a, b in zip(rest, expected[cut:], strict=True):
        assert a.equals(b)


def test_watermark_op_restore_keeps_finished_splits() -> None:
    op = WatermarkOp("wm", "ts", 0, None, None)
    op.register_split(0, lower=None, started=False)
    op.register_split(1, lower=None, started=False)
    op.process(0, Chunk(pl.DataFrame({"ts": [5, 9]}), 0), -(2**63))
    op.split_ended(0)
    copy = WatermarkOp("wm", "ts", 0, None, None)
    copy.restore(op.snapshot())
    copy.split_ended(1)
    _, wm = copy.process(0, None, -(2**63))
    assert wm == MAX_WM  # both splits finished: the input has ended


def test_head_op_round_trip() -> None:
    op = HeadOp("head", 10)
    op.process(0, Chunk(pl.DataFrame({"x": range(7)})), 0)
    copy = HeadOp("head", 10)
    copy.restore(op.snapshot())
    out, wm = copy.process(0, Chunk(pl.DataFrame({"x": range(7)})), 0)
    assert sum(c.df.height for c in out) == 3
    assert wm == MAX_WM


@pytest.mark.parametrize(
    "op", [StatelessOp("f", lambda df: df), ConcatOp("c", 2)], ids=["stateless", "concat"]
)
def test_stateless_ops_have_empty_snapshots(op) -> None:  # type: ignore[no-untyped-def]
    assert op.snapshot() == {}
    op.restore({})
    with pytest.raises(vs.VStreamError, match="stateless"):
        op.restore({"x": pa.table({"a": [1]})})


def test_restore_refuses_a_foreign_snapshot() -> None:
    with pytest.raises(vs.VStreamError, match="lacks"):
        WatermarkOp("wm", "ts", 0, None, None).restore({"head": pa.table({"remaining": [1]})})
