"""A window step's state tables are untrusted input (DESIGN.md "Untrusted input").

Someone who edits a state table of a checkpoint and recomputes its size, its CRC and the
manifest's checksum passes every check of the files; what is left to stand against them
is the step's restore. The values of those tables reach numba kernels, which do not
check bounds: a key id past the key index, a pane far outside the event times, a
duplicated slot, a key given two ids would write into whatever memory follows an array
(or give silently wrong rows). Each kind of damage here is written into every checkpoint
of an interrupted run, resealed, and the restart must refuse it with a CheckpointError
naming the table, the column and what is wrong; the process goes on (the test after it
runs).

Without the checks, under ``NUMBA_BOUNDSCHECK=1``, a key id past the key index raised
IndexError inside ``rebuild_index`` (pane state) or at the relinking of sessions, and
without it wrote past the pane directory and the per-key cache.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import vstream as vs
from vstream.ops.base import Chunk
from vstream.ops.window import WindowOp
from vstream.runtime.lower import build_op
from vstream.state.checkpoint import seal_manifest

ROWS = 3_000
Damage = Callable[[pa.Table], pa.Table]


class Crash(Exception):
    """The simulated process failure."""


def _frame(string: bool) -> pl.DataFrame:
    i = pl.int_range(0, ROWS, eager=True)
    k = i % 13
    return pl.DataFrame(
        {
            "ts": i * 7,
            "k": k.cast(pl.String) if string else k,
            "x": pl.Series([f"s{j % 5}" for j in range(ROWS)]),
            "v": (i % 100).cast(pl.Float64),
        }
    )


def _pipeline(kind: str, string: bool, crash_after: int = 0) -> vs.Stream:
    """A window step by ``k`` with a stored first value (a position in the step's store
    of strings), n_unique (the distinct table) and allowed lateness (revisions)."""
    left = [crash_after]

    def fuse(df: pl.DataFrame) -> pl.DataFrame:
        if left[0]:
            left[0] -= 1
            if left[0] == 0:
                raise Crash
        return df

    spec = vs.session(gap=100) if kind == "session" else vs.tumbling(500)
    return (
        vs.from_polars(_frame(string), batch_size=300)
        .map_batches(fuse)
        .with_watermark("ts", 50)
        .window(spec, by="k", allowed_lateness=1_000)
        .agg(
            pl.len(),
            pl.col("v").sum(),
            pl.col("x").first().alias("fx"),
            pl.col("x").n_unique().alias("nx"),
        )
    )


def _run(tmp_path: Path, kind: str, string: bool, crash_after: int = 0) -> None:
    _pipeline(kind, string, crash_after).sink_parquet(
        tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
    )


def _interrupted(tmp_path: Path, kind: str, string: bool) -> Path:
    with pytest.raises(vs.VStreamError) as info:
        _run(tmp_path, kind, string, crash_after=7)
    assert isinstance(info.value.__cause__, Crash)
    return tmp_path


def _stored_ref_field(kind: str, string: bool) -> str:
    """The int field of the slots that holds the position of the first ``x`` in the
    step's store of values (named after the field: ``fx.first.value``)."""
    op = build_op(_pipeline(kind, string)._node)
    assert isinstance(op, WindowOp)
    (leaf,) = [lf for lf in op.plan.leaves if lf.stored]
    name = op.state_config.fields.ints[leaf.i0]
    assert name == "fx.first.value"
    return name


def _damage_all(tmp_path: Path, suffix: str, damage: Damage) -> None:
    """``damage`` applied to the table ``<window node>.<suffix>`` of every checkpoint,
    written in the same schema, its size and CRC updated, the manifest resealed."""
    done = 0
    for d in sorted((tmp_path / "ckpt").glob("chk-*")):
        body: dict[str, Any] = json.loads((d / "manifest.json").read_text())
        names = [k for k in body["files"] if k.split(".", 1)[1:] == [suffix]]
        if not names:
            continue
        (name,) = names
        info = body["files"][name]
        path = d / info["file"]
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        if not table.num_rows:
            continue  # nothing to damage in this one: an older checkpoint
        damaged = damage(table).cast(table.schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, damaged.schema) as w:
            w.write_table(damaged)
        data = sink.getvalue().to_pybytes()
        path.write_bytes(data)
        info.update(bytes=len(data), crc32=zlib.crc32(data), rows=damaged.num_rows)
        sealed = seal_manifest({k: v for k, v in body.items() if k != "checksum"})
        (d / "manifest.json").write_text(json.dumps(sealed))
        done += 1
    assert done, f"no checkpoint has rows in {suffix!r} to damage"


def _set(column: str, value: Callable[[np.ndarray], np.ndarray]) -> Damage:
    """Replace ``column`` by ``value(column as numpy)``."""

    def damage(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index(column)
        old = t.column(column).to_numpy()
        return t.set_column(i, column, pa.array(value(old.copy()), t.schema.field(i).type))

    return damage


def _first(v: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Set the first value (``v`` a function of the column, or a constant)."""

    def change(a: np.ndarray) -> np.ndarray:
        a[0] = v(a) if callable(v) else v
        return a

    return change


def _null(column: str) -> Damage:
    def damage(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index(column)
        values = t.column(column).to_pylist()
        values[0] = None
        return t.set_column(i, column, pa.array(values, t.schema.field(i).type))

    return damage


def _copy_row(columns: list[str]) -> Damage:
    """Row 1's ``columns`` made those of row 0."""

    def damage(t: pa.Table) -> pa.Table:
        assert t.num_rows >= 2
        for c in columns:
            i = t.schema.get_field_index(c)
            a = t.column(c).to_pylist()
            a[1] = a[0]
            t = t.set_column(i, c, pa.array(a, t.schema.field(i).type))
        return t

    return damage


def _drop_last_key(t: pa.Table) -> pa.Table:
    """The key index without its highest id: the state still refers to it."""
    ids = t.column("__vstream_key_id__").to_numpy()
    return t.filter(pa.array(ids != ids.max()))


I64_MAX = np.iinfo(np.int64).max
ID = "__vstream_key_id__"

# (window kind, string keys, table, damage, what the refusal says)
CASES: dict[str, tuple[str, bool, str, Damage | str, str]] = {
    # pane state (tumbling)
    "slot-key-past-the-index": (
        "tumbling",
        False,
        "slots",
        _set("key", _first(lambda a: 13)),
        r"table 'slots', column 'key': 13 is above 12 \(ids of the 13 keys",
    ),
    "slot-key-negative": (
        "tumbling",
        False,
        "slots",
        _set("key", _first(-1)),
        r"table 'slots', column 'key': -1 is below 0",
    ),
    "slot-key-far-past-the-index": (
        "tumbling",
        True,
        "slots",
        _set("key", _first(2**31 - 1)),
        r"table 'slots', column 'key': 2147483647 is above 12",
    ),
    "pane-beyond-the-times": (
        "tumbling",
        False,
        "slots",
        _set("pane", _first(I64_MAX - 3)),
        r"table 'slots', column 'pane': 9223372036854775804 is above \d+ \(panes of the event",
    ),
    "pane-below-the-times": (
        "tumbling",
        False,
        "slots",
        _set("pane", _first(-I64_MAX)),
        r"table 'slots', column 'pane': -9223372036854775807 is below",
    ),
    "two-slots-one-pane-and-key": (
        "tumbling",
        False,
        "slots",
        _copy_row(["pane", "key"]),
        r"table 'slots', column 'pane, key': two rows hold",
    ),
    "store-position-past-the-store": (
        "tumbling",
        False,
        "slots",
        "store-ref",
        r"table 'slots', column 'fx\.first\.value': \d+ is above \d+ \(positions in the",
    ),
    "null-aggregate-field": (
        "tumbling",
        False,
        "slots",
        _null("v.sum.sum"),
        r"table 'slots', column 'v\.sum\.sum': 1 null value",
    ),
    "revision-key-past-the-index": (
        "tumbling",
        False,
        "revisions",
        _set("key", _first(99)),
        r"table 'revisions', column 'key': 99 is above 12",
    ),
    "revision-twice": (
        "tumbling",
        False,
        "revisions",
        _copy_row(["window", "key"]),
        r"table 'revisions', column 'window, key': two rows hold",
    ),
    "distinct-key-past-the-index": (
        "tumbling",
        False,
        "distinct",
        _set("__k", _first(-7)),
        r"table 'distinct', column '__k': -7 is below 0",
    ),
    "max-pane-below-the-slots": (
        "tumbling",
        False,
        "counters",
        _set("max_pane", _first(-5)),
        r"table 'counters', column 'max_pane': -5 is below the slots' pane",
    ),
    "negative-row-count": (
        "tumbling",
        False,
        "counters",
        _set("seq", _first(-1)),
        r"table 'counters', column 'seq': -1 is below 0",
    ),
    # the key index
    "key-ids-twice": (
        "tumbling",
        False,
        "keys.keys",
        _set(ID, _first(lambda a: a[1])),
        r"table 'keys', column '__vstream_key_id__': id \d+ is given 2 times",
    ),
    "key-id-past-the-keys": (
        "tumbling",
        True,
        "keys.keys",
        _set(ID, _first(1_000_000)),
        r"table 'keys', column '__vstream_key_id__': 1000000 is above 12",
    ),
    "int-key-given-two-ids": (
        "tumbling",
        False,
        "keys.keys",
        _set("k", _first(lambda a: a[1])),
        r"table 'keys', column 'k': the key \d+ is given two ids",
    ),
    "string-key-given-two-ids": (
        "tumbling",
        True,
        "keys.keys",
        _set("k", _first(lambda a: a[1])),
        r"table 'keys', column 'k': the key \{'k': '\d+'\} is given two ids",
    ),
    "key-index-shorter-than-the-state": (
        "tumbling",
        False,
        "keys.keys",
        _drop_last_key,
        r"table 'slots', column 'key': 12 is above 11 \(ids of the 12 keys",
    ),
    # sessions
    "session-key-past-the-index": (
        "session",
        False,
        "sessions",
        _set("key", _first(13)),
        r"table 'sessions', column 'key': 13 is above 12",
    ),
    "session-key-negative": (
        "session",
        True,
        "sessions",
        _set("key", _first(-2)),
        r"table 'sessions', column 'key': -2 is below 0",
    ),
    "session-shorter-than-the-gap": (
        "session",
        False,
        "sessions",
        _set("end", _first(lambda a: a[0] - 10_000)),
        r"table 'sessions', column 'end': session 0 is \[-?\d+, -?\d+\), shorter than the gap",
    ),
    "session-start-beyond-the-times": (
        "session",
        False,
        "sessions",
        _set("start", _first(I64_MAX)),
        r"table 'sessions', column 'start': 9223372036854775807 is above",
    ),
    "session-emissions-negative": (
        "session",
        False,
        "sessions",
        _set("emitted", _first(-9)),
        r"table 'sessions', column 'emitted': -9 is below -1",
    ),
    "session-distinct-past-the-sessions": (
        "session",
        False,
        "distinct",
        _set("__s", _first(10**9)),
        r"table 'distinct', column '__s': 1000000000 is above",
    ),
    "session-key-index-shorter-than-the-state": (
        "session",
        True,
        "keys.keys",
        _drop_last_key,
        r"table 'sessions', column 'key': 12 is above 11",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_window_state_is_refused(tmp_path: Path, case: str) -> None:
    kind, string, table, damage, reason = CASES[case]
    _interrupted(tmp_path, kind, string)
    if damage == "store-ref":
        damage = _set(_stored_ref_field(kind, string), _first(10**6))
    assert callable(damage)
    _damage_all(tmp_path, table, damage)
    with pytest.raises(vs.CheckpointError, match=reason) as info:
        _run(tmp_path, kind, string)
    assert "window step" in str(info.value)


@pytest.mark.parametrize("kind", ["tumbling", "session"])
@pytest.mark.parametrize("string", [False, True], ids=["int", "string"])
def test_undamaged_state_restores_to_the_same_rows(
    tmp_path: Path, kind: str, string: bool
) -> None:
    """The checks refuse nothing a run writes: the interrupted run, restarted, gives
    the rows of an uninterrupted one."""
    _interrupted(tmp_path, kind, string)
    _run(tmp_path, kind, string)
    got = pl.read_parquet(tmp_path / "out")
    want = _pipeline(kind, string).collect()
    cols = want.columns[:3]
    assert got.sort(cols).equals(want.sort(cols))


@pytest.mark.parametrize("kind", ["tumbling", "hopping"])
def test_a_watermark_past_the_event_times_restores(kind: str) -> None:
    """The last window fired follows the watermark, which may pass the event times the
    step takes (another input's, or the wall clock's): such a state is not damaged."""
    spec = vs.tumbling(500) if kind == "tumbling" else vs.hopping(1_000, slide=500)
    w = (
        vs.from_polars(pl.DataFrame(schema={"k": pl.Int64, "ts": pl.Int64, "v": pl.Float64}))
        .with_watermark("ts", 0)
        .window(spec, by="k", allowed_lateness=10**15)
        .agg(pl.len(), pl.col("v").sum())
    )
    op = build_op(w._node)
    assert isinstance(op, WindowOp)
    assert op.times is not None
    wm = I64_MAX - 10  # far past every event time the step takes, below +inf
    assert wm > op.times[1] + 10**14
    df = pl.DataFrame({"k": [1, 2, 1], "ts": [10, 20, 700], "v": [1.0, 2.0, 3.0]})
    fired = [c.df for c in op.process(0, Chunk(df), 0)[0]]
    fired += [c.df for c in op.process(0, None, wm)[0]]
    fired_k = op.state.fired_k  # type: ignore[union-attr]
    assert fired_k is not None
    assert fired_k > op.times[1] // 500 + 1  # a window past every event time's
    again = build_op(w._node)
    again.restore(op.snapshot())
    assert again.snapshot()["counters"].equals(op.snapshot()["counters"])
    assert pl.concat(fired).height == (3 if kind == "tumbling" else 5)
