"""Joins inside a running plan: event time and watermarks downstream of a join, a join
of a window's result with its own input (Nexmark q7's shape), lookup tables fed by an
endless update stream, and the state size the metrics report."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import polars as pl
import pytest

import join_reference as ref
import vstream as vs
from vstream.ops.base import MIN_WM, Chunk
from vstream.runtime.lower import build_op

SameRows = Callable[..., None]


def _events(n: int, seed: int, keys: int = 8, span: int = 60_000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, span, n)) + rng.integers(0, 500, n)
    return pl.DataFrame({"ts": ts, "k": rng.integers(0, keys, n), "x": rng.integers(0, 1000, n)})


def _stream(df: pl.DataFrame, batch: int) -> vs.Stream:
    return vs.from_polars(df, batch_size=batch).with_watermark("ts", 500)


@pytest.mark.parametrize("how", ["inner", "left", "full"])
def test_window_downstream_of_an_interval_join_sees_the_later_time(
    how: str, same_rows: SameRows
) -> None:
    """A pair's event time is the later of its two rows' (DESIGN.md); a window over the
    join counts it there, and the join holds its watermark back for the unmatched rows
    it has yet to emit, so nothing downstream is late."""
    left, right = _events(3_000, 1), _events(2_000, 2)
    joined = _stream(left, 97).join_interval(
        _stream(right, 301), on="k", lower=-300, upper=800, how=how
    )
    got, metrics = (
        joined.window(vs.tumbling(5_000), by="k").agg(pl.len()).collect(return_metrics=True)
    )
    assert metrics.late_events == 0
    rows = joined.collect()
    # right-only rows of a full join have a null "k": their own group, as in Polars
    later = rows.select("k", t=pl.max_horizontal("ts", "ts_right"))
    want = (
        later.group_by("k", window_start=pl.col("t") // 5_000 * 5_000)
        .agg(pl.len())
        .with_columns(window_end=pl.col("window_start") + 5_000)
        .select("k", "window_start", "window_end", "len")
    )
    same_rows(got, want)


def test_a_window_result_joined_back_to_its_own_input(same_rows: SameRows) -> None:
    """Nexmark q7's shape: the maximum per key and window, joined back to the events of
    that window; one source read once feeds both inputs of the join."""
    df = _events(4_000, 3)
    events = _stream(df, 211)
    best = events.window(vs.tumbling(10_000), by="k").agg(pl.col("x").max().alias("best"))
    top = events.join(best, on="k", window=vs.tumbling(10_000)).filter(
        pl.col("x") == pl.col("best")
    )
    got, metrics = top.select("ts", "k", "x", "window_start").collect(return_metrics=True)
    assert metrics.events_in == df.height  # the source was read once
    win = df.with_columns(window_start=pl.col("ts") // 10_000 * 10_000)
    want = win.filter(pl.col("x") == pl.col("x").max().over("k", "window_start")).select(
        "ts", "k", "x", "window_start"
    )
    same_rows(got, want)


def test_lookup_with_an_endless_update_stream_ends_with_the_events() -> None:
    """The update stream never ends; the join (and the run) ends with its events, and
    every event sees the table rows the stream had when the run started."""
    halt = threading.Event()

    def updates() -> Iterator[dict[str, object]]:
        yield {"k": 1, "name": "one"}
        yield {"k": 2, "name": "two"}
        while not halt.is_set():
            time.sleep(0.01)
        # nothing more: an idle, endless table

    table = vs.from_records(updates(), schema={"k": pl.Int64, "name": pl.String}, max_delay="5ms")
    events = vs.from_polars(pl.DataFrame({"k": [1, 2, 3, 1]}), batch_size=2)
    try:
        started = time.monotonic()
        out = events.join(vs.table(table), on="k", how="left").collect()
        assert time.monotonic() - started < 10
    finally:
        halt.set()
    assert out["name"].to_list() == ["one", "two", None, "one"]


def test_lookup_update_stream_latest_row_per_key_wins() -> None:
    updates = vs.from_polars(
        pl.DataFrame({"k": [1, 2, 1, None], "v": ["old", "b", "new", "null key"]}), batch_size=1
    )
    events = vs.from_polars(pl.DataFrame({"k": [1, 2, None]}))
    out = events.join(vs.table(updates), on="k", how="left").collect()
    assert out.rows() == [(1, "new"), (2, "b"), (None, None)]


def test_join_state_size_is_in_the_step_metrics() -> None:
    left, right = _events(5_000, 4), _events(5_000, 5)
    joined = _stream(left, 128).join_interval(_stream(right, 128), on="k", lower=0, upper=1_000)
    _, metrics = joined.collect(return_metrics=True)
    step = next(s for label, s in metrics.steps.items() if "join_interval" in label)
    # about 1.5 s of event time on each side (bound, interval), of 60 s of data
    assert 0 < step.peak_state_rows < 2 * 5_000 * 4_000 // 60_000
    assert step.state_rows == 0  # everything retired at the end of the input


def test_explain_shows_the_join_event_time() -> None:
    left, right = _events(10, 6), _events(10, 7)
    text = _stream(left, 4).join(_stream(right, 4), on="k", ttl=100).explain()
    assert "event time max('ts', 'ts_right')" in text.splitlines()[1]


def test_late_rows_are_counted_per_input() -> None:
    """Each input's late rows are counted apart, in the join's step metrics."""
    left = vs.from_polars(pl.DataFrame({"ts": [0, 10_000], "k": [1, 1]})).with_watermark("ts", 0)
    right_batches = [
        pl.DataFrame({"ts": [9_000], "k": [1]}).to_arrow(),
        # more than the TTL behind the join's watermark (9,000): late
        pl.DataFrame({"ts": [100, 200], "k": [1, 1]}).to_arrow(),
    ]
    right = vs.from_arrow(right_batches).with_watermark("ts", 0)
    joined = left.join(right, on="k", ttl=1_000)
    out, metrics = joined.collect(return_metrics=True)
    step = next(s for label, s in metrics.steps.items() if label.endswith(joined._node.label))
    assert step.late_events == (0, 2)
    assert metrics.late_events == 2
    assert out.select("ts", "ts_right").rows() == [(10_000, 9_000)]


@pytest.mark.parametrize("how", ["left", "inner"])
def test_lookup_checks_keys_that_share_a_hash(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """String keys are found by a 64-bit hash; an unknown key whose hash equals a known
    key's must not take that key's row. A hash by string length makes such pairs."""
    from vstream.state.key_index import KeyIndex

    def by_length(self: KeyIndex, keys: pl.DataFrame, *views: object) -> np.ndarray:
        out: np.ndarray = keys.select(pl.col(self.columns[0]).str.len_bytes()).to_series()
        return out.cast(pl.Int64).fill_null(-1).to_numpy()

    monkeypatch.setattr(KeyIndex, "_hash", by_length)
    table = pl.DataFrame({"k": ["a", "bb"], "v": [1, 2]})
    events = pl.DataFrame({"k": ["a", "c", "bb", "zz", None]})
    got = vs.from_polars(events).join(table, on="k", how=how).collect()
    assert got.rows() == events.join(table, on="k", how=how, maintain_order="left").rows()
    assert "c" not in got.filter(pl.col("v").is_not_null())["k"].to_list()


@pytest.mark.parametrize("kind", ["interval", "asof"])
def test_keys_seen_once_do_not_pile_up(kind: str) -> None:
    """Joined on request ids, every key is seen once a side: the key index forgets the
    keys no kept row has, so it stays bounded too, and every request still finds its
    partner (5 ms later for the interval join, 5 ms earlier for the as-of join)."""
    from vstream.ops.base import MAX_WM, Chunk

    n, batch = 400_000, 4_000
    req = pl.DataFrame({"ts": np.arange(n, dtype=np.int64), "id": np.arange(n)})
    shift = 5 if kind == "interval" else -5
    resp = req.with_columns(pl.col("ts") + shift, code=pl.col("id") % 7)
    a = vs.from_polars(req.head(1)).with_watermark("ts", 0)
    b = vs.from_polars(resp.head(1)).with_watermark("ts", 0)
    if kind == "interval":
        op = build_op(a.join_interval(b, on="id", lower=0, upper=10)._node)
    else:  # with a tolerance, a key's last row can go once it is too old to match
        op = build_op(a.join_asof(b, by="id", tolerance=10)._node)
    got, most_keys = 0, 0

    def count(out: list[Chunk]) -> int:
        return sum(c.df.filter(pl.col("code").is_not_null()).height for c in out)

    for start in range(0, n, batch):
        for port, df in ((1, resp), (0, req)):
            part = df.slice(start, batch)
            got += count(op.process(port, Chunk(part), int(part["ts"].max()))[0])
        most_keys = max(most_keys, len(op.keys))
    for port in (0, 1):
        got += count(op.process(port, None, MAX_WM)[0])
    assert got == n
    assert most_keys < 4 * 2 * batch + 65_536 + 2 * batch < n


def test_lookup_in_a_lazyframe_or_arrow_table() -> None:
    table = pl.DataFrame({"k": [1, 2], "name": ["one", "two"]})
    events = vs.from_polars(pl.DataFrame({"k": [2, 3, 1]}))
    want = [(2, "two"), (3, None), (1, "one")]
    assert events.join(table.lazy(), on="k", how="left").collect().rows() == want
    assert events.join(table.to_arrow(), on="k", how="left").collect().rows() == want


# ---------------------------------------------------------------------- lookup row map
def _lookup_keys(kind: str, ids: np.ndarray) -> pl.Series:
    """Key values for key numbers ``ids``: strings, integers in a compact range (the
    op's dense array) or integers far apart (hashed)."""
    if kind == "string":
        return pl.Series("k", [f"host-{i:05d}" for i in ids], dtype=pl.String)
    scale = 1 if kind == "dense_int" else 1_000_003_000
    return pl.Series("k", ids.astype(np.int64) * scale, dtype=pl.Int64)


@pytest.mark.parametrize("how", ["left", "inner"])
@pytest.mark.parametrize("kind", ["string", "dense_int", "sparse_int"])
def test_lookup_row_map_grows_and_the_update_stream_compacts(
    kind: str, how: str, same_rows: SameRows
) -> None:
    """An update stream over 3,000 keys (the row map starts at 1,024), each key updated
    about 30 times: the table's rows pile up until they pass twice the live keys plus
    65,536, then the op keeps only each key's latest row and renumbers the row map. After
    every update batch, events (known keys, unknown keys, nulls) see exactly the latest
    row per key so far; and a snapshot taken after compacting restores the same table."""
    from vstream.ops.join import LookupJoinOp

    n_keys, n_updates, batch = 3_000, 90_000, 4_500
    rng = np.random.default_rng(11)
    # keys 0..999 first (the map's first 1,024 slots), then every key
    ids = np.concatenate([rng.integers(0, 1_000, batch), rng.integers(0, n_keys, n_updates)])
    updates = pl.DataFrame(
        {"k": _lookup_keys(kind, ids), "rev": np.arange(ids.size), "v": ids % 97}
    ).with_columns(pl.when(pl.col("rev") % 1_009 == 0).then(None).otherwise("k").alias("k"))
    ev_ids = rng.integers(0, n_keys + 50, 2_000)  # the last 50 keys: never in the table
    events = pl.DataFrame({"k": _lookup_keys(kind, ev_ids), "e": np.arange(2_000)})
    events = events.with_columns(
        pl.when(pl.col("e") % 37 == 0).then(None).otherwise("k").alias("k")
    )
    lookup = vs.from_polars(events.head(0)).join(
        vs.table(vs.from_polars(updates.head(0))), on="k", how=how
    )
    op = build_op(lookup._node)
    assert isinstance(op, LookupJoinOp)
    assert op.state.table.rowmap.shape[0] == 1_024
    compacted = False
    for start in range(0, updates.height, batch):
        before = op.state_rows()
        op.process(1, Chunk(updates.slice(start, batch)), MIN_WM)
        compacted |= op.state_rows() < before
        table = ref.latest_per_key(updates.head(start + batch), "k")
        got = pl.concat(c.df for c in op.process(0, Chunk(events), MIN_WM)[0])
        same_rows(got, ref.lookup(events, table, on="k", how=how))
    assert compacted, "the update stream was never compacted"
    assert op.state.table.rowmap.shape[0] >= n_keys  # grew past its first 1,024 slots
    assert op.state_rows() <= 2 * n_keys + 65_536
    assert (op._dense is not None) == (kind == "dense_int")

    again = build_op(lookup._node)
    again.restore(op.snapshot())
    got = pl.concat(c.df for c in again.process(0, Chunk(events), MIN_WM)[0])
    same_rows(got, ref.lookup(events, ref.latest_per_key(updates, "k"), on="k", how=how))
