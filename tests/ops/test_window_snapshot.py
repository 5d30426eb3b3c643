"""snapshot()/restore() of the window operator: restored mid-stream, it emits exactly what
the uninterrupted operator emits, for every window kind, with lateness and n_unique."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vstream as vs
from vstream.ops.base import MAX_WM, Chunk
from vstream.ops.window import WindowOp
from vstream.runtime.lower import build_op

SPECS = {
    "tumbling": vs.tumbling(1_000),
    "hopping": vs.hopping(3_000, slide=1_000),
    "hopping-gcd": vs.hopping(2_500, slide=1_000),
    "session": vs.session(gap=700),
}
AGGS = [
    pl.len(),
    pl.col("cpu").mean(),
    pl.col("cpu").max().alias("cpu_max"),
    pl.col("status").first().alias("first_status"),
    pl.col("bytes").last().alias("last_bytes"),
    pl.col("cpu").std().alias("cpu_std"),
]


def _make(kind: str, lateness: int) -> WindowOp:
    df = vs.datasets.telemetry(1, hosts=5)
    aggs = [
        *AGGS,
        pl.col("region").n_unique().alias("regions"),
        pl.col("region").first().alias("first_region"),
    ]
    w = (
        vs.from_polars(df)
        .with_watermark("ts", 300)
        .window(SPECS[kind], by="host", allowed_lateness=lateness)
        .agg(*aggs)
    )
    op = build_op(w._node)
    assert isinstance(op, WindowOp)
    return op


def _feed(op: WindowOp, chunks: list[tuple[pl.DataFrame, int]]) -> list[pl.DataFrame]:
    out = []
    for df, wm in chunks:
        got, _ = op.process(0, Chunk(df), wm)
        out.extend(c.df for c in got)
    return out


def _canon(frames: list[pl.DataFrame]) -> pl.DataFrame:
    df = pl.concat(frames) if frames else pl.DataFrame()
    return df.sort(df.columns[:4]) if df.height else df


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(sorted(SPECS)),
    cut=st.integers(0, 10),
    seed=st.integers(0, 1000),
    lateness=st.sampled_from([0, 1_500]),
)
def test_window_op_round_trip(kind: str, cut: int, seed: int, lateness: int) -> None:
    df = vs.datasets.telemetry(2_000, hosts=5, events_per_second=200, seed=seed)
    # watermarks that trail the data by more than the disorder now and then: late rows
    chunks = []
    for i in range(10):
        part = df.slice(i * 200, 200)
        chunks.append((part, int(part["ts"].max()) - 300 + (1_500 if i % 4 == 3 else 0)))
    chunks.append((df.clear(), MAX_WM))

    whole = _make(kind, lateness)
    expected = _feed(whole, chunks)

    first = _make(kind, lateness)
    before = _feed(first, chunks[:cut])
    state = first.snapshot()
    assert all(isinstance(t, pa.Table) for t in state.values())
    second = _make(kind, lateness)
    second.restore(state)
    after = _feed(second, chunks[cut:])
    assert second.late_events == whole.late_events
    got = _canon(before + after)
    want = _canon(expected)
    assert got.equals(want)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_state_is_bounded_by_open_windows(kind: str) -> None:
    """Slots are freed once windows close: after a long input the live state holds only
    what the watermark has not passed yet, not one slot per window or session seen."""
    op = _make(kind, 0)
    # sessions (gap 700 ms) need pauses to close: 5 events/s over 5 hosts gives each
    # host ~1 s between events, so nearly every event is a session of its own
    rate = 5 if kind == "session" else 1_000
    df = vs.datasets.telemetry(50_000, hosts=5, events_per_second=rate, max_disorder=0)
    emitted = 0
    for i in range(50):
        part = df.slice(i * 1_000, 1_000)
        out, _ = op.process(0, Chunk(part), int(part["ts"].max()) - 300)
        emitted += sum(c.df.height for c in out)
    state = op.snapshot()
    live = state["sessions" if kind == "session" else "slots"].num_rows
    # many windows or sessions fired, yet only those near the watermark are held:
    # about one second of event time, a few panes (or one session) x 5 hosts
    assert emitted >= 200, emitted
    assert live <= 5 * 8, live
