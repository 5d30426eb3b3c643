"""Lowering (vstream.runtime.lower): the physical graph of a few plans has the expected
steps, inputs and facts, and the executor relies on them instead of node or operator
types."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest

import vstream as vs
from vstream.errors import PipelineError
from vstream.ops.base import Operator
from vstream.ops.join import AsofJoinOp, LookupJoinOp, SymmetricJoinOp
from vstream.ops.stateless import DeadLetterOp, HeadOp, StatelessOp
from vstream.ops.watermark import WatermarkOp
from vstream.ops.window import WindowOp
from vstream.plan.nodes import Node
from vstream.runtime.lower import PhysicalGraph, build_op, lower


def _df() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [1, 5, 12, 30],
            "k": ["a", "b", "a", "b"],
            "v": [1.0, 2.0, 3.0, 4.0],
            "x": [0, 1, 2, 3],
        }
    )


def _graph(*streams: vs.Stream) -> PhysicalGraph:
    return lower([s._node for s in streams])


def _pos(g: PhysicalGraph, s: vs.Stream) -> int:
    return g.index[s._node.id]


def test_window_with_late_events_and_dead_letters() -> None:
    src = vs.from_polars(_df())
    s = src.with_watermark("ts", 10)
    w = s.window(vs.tumbling(10), by="k", late="side").agg(pl.len())
    late = w.late_events()
    dead = s.dead_letters()
    g = _graph(w, late, dead)

    i_src, i_wm, i_w, i_late, i_dead = (_pos(g, x) for x in (src, s, w, late, dead))
    assert sorted((i_src, i_wm, i_w, i_late, i_dead)) == list(range(5))
    assert g.targets == [i_w, i_late, i_dead]
    # operators and inputs
    assert type(g.ops[i_src]) is Operator
    assert isinstance(g.ops[i_wm], WatermarkOp)
    assert isinstance(g.ops[i_w], WindowOp)
    assert isinstance(g.ops[i_late], DeadLetterOp)
    assert isinstance(g.ops[i_dead], DeadLetterOp)
    assert g.parents[i_src] == []
    assert g.parents[i_wm] == [i_src]
    assert g.parents[i_w] == [i_wm]
    assert g.parents[i_late] == [i_w]
    assert g.parents[i_dead] == [i_wm]
    assert sorted(g.children[i_wm]) == sorted([i_w, i_dead])
    assert g.down[i_src] == list(range(5))
    assert g.down[i_w] == sorted([i_w, i_late])
    # facts
    assert g.sources == [i_src]
    assert g.source_of[i_src] is src._node.source  # type: ignore[attr-defined]
    assert g.watermarks == {i_src: [i_wm]}
    assert g.bound_columns == {(i_src, i_wm): ("ts", pl.Int64())}
    assert g.collectors == {i_late, i_dead}
    assert g.dead_letter_outputs == {i_dead}
    # refused records of the source and of event-time assignment (the window is not
    # upstream of the stream whose dead letters were asked for)
    assert g.dead_routes == {i_src: [i_dead], i_wm: [i_dead]}
    assert g.late_routes == {(i_w, 0): [i_late]}
    assert g.ticking == []
    assert g.tick_origin == {}
    assert g.table_sources == frozenset()
    assert not g.may_end_early
    # dead letters report whole rows: no projection
    assert g.source_columns == {i_src: None}
    assert g.read_columns == {i_src: None}


def test_projection_and_lower_bound_chain() -> None:
    src = vs.from_polars(_df())
    renamed = src.rename({"ts": "t"}).filter(pl.col("v") > 0).head(3)
    s = renamed.with_watermark("t", 10)
    w = s.window(vs.tumbling(10), by="k").agg(pl.len())
    g = _graph(w)
    i_src, i_wm = _pos(g, src), _pos(g, s)
    # the event time is the source's column "ts", renamed on the way
    assert g.bound_columns == {(i_src, i_wm): ("ts", pl.Int64())}
    assert g.source_columns == {i_src: ["ts", "k", "v"]}
    assert g.read_columns == {i_src: frozenset({"ts", "k", "v"})}
    assert isinstance(g.ops[_pos(g, renamed)], HeadOp)
    assert g.may_end_early  # head() can end its branch before the source ends
    assert g.source_of[i_src].split_lower_bounds("ts", pl.Int64()) is None  # no statistics

    # a step that computes the column breaks the chain: no bound from the source
    changed = src.with_columns(ts=pl.col("ts") + 1).with_watermark("ts", 10)
    g = _graph(changed)
    assert g.bound_columns == {(_pos(g, src), _pos(g, changed)): None}
    assert isinstance(g.ops[g.parents[_pos(g, changed)][0]], StatelessOp)


def test_the_column_and_drift_a_source_aligns_its_splits_on() -> None:
    src = vs.from_polars(_df())
    # the watermark reads the source's column, renamed and filtered on the way
    s = src.rename({"ts": "t"}).filter(pl.col("v") > 0).with_watermark("t", 7)
    w = s.window(vs.tumbling(10), by="k").agg(pl.len())
    # a watermark reading the source through map_batches does not count
    other = src.map_batches(lambda df: df).with_watermark("ts", 3)
    g = _graph(w, other)
    assert g.align == {_pos(g, src): ("ts", 7)}
    # a column computed on the way, or map_batches: no alignment
    g = _graph(src.with_columns(ts=pl.col("ts") + 1).with_watermark("ts", 7))
    assert g.align == {}
    g = _graph(src.map_batches(lambda df: df).with_watermark("ts", 7))
    assert g.align == {}
    # two watermarks on one source: which one's bound should hold is not clear
    g = _graph(src.with_watermark("ts", 7), src.with_watermark("x", 7))
    assert g.align == {}
    # a Datetime column: the drift in its unit
    dated = vs.from_polars(_df().with_columns(pl.col("ts").cast(pl.Datetime("ms"))))
    g = _graph(dated.with_watermark("ts", "2s"))
    assert g.align == {_pos(g, dated): ("ts", 2_000)}


def test_lower_bounds_from_parquet_statistics(tmp_path: Path) -> None:
    for i in range(2):
        _df().with_columns(pl.col("ts") + 100 * i).write_parquet(tmp_path / f"p{i}.parquet")
    src = vs.from_parquet([str(p) for p in sorted(tmp_path.glob("*.parquet"))])
    s = src.with_watermark("ts", 0)
    g = _graph(s)
    column = g.bound_columns[_pos(g, src), _pos(g, s)]
    assert column == ("ts", pl.Int64())
    assert g.source_of[_pos(g, src)].split_lower_bounds("ts", pl.Int64()) == [1, 101]


def test_joins() -> None:
    left_src, right_src = vs.from_polars(_df()), vs.from_polars(_df())
    left = left_src.with_watermark("ts", 5)
    right = right_src.with_watermark("ts", 5)
    j = left.join_interval(right, on="k", lower=0, upper=10)
    late_right = j.late_events("right")
    a = left.join_asof(right, by="k")
    g = _graph(j, late_right, a)
    i_j, i_a, i_l, i_r = _pos(g, j), _pos(g, a), _pos(g, left), _pos(g, right)
    assert isinstance(g.ops[i_j], SymmetricJoinOp)
    assert isinstance(g.ops[i_a], AsofJoinOp)
    assert g.parents[i_j] == [i_l, i_r]
    assert g.parents[i_a] == [i_l, i_r]
    assert g.late_routes == {(i_j, 1): [_pos(g, late_right)]}
    assert g.collectors == {_pos(g, late_right)}
    assert sorted(g.sources) == sorted([_pos(g, left_src), _pos(g, right_src)])
    assert g.watermarks == {_pos(g, left_src): [i_l], _pos(g, right_src): [i_r]}
    assert not g.may_end_early
    assert g.table_sources == frozenset()


def test_lookup_join_reads_its_table_source_ahead() -> None:
    events_src = vs.from_polars(_df())
    updates_src = vs.from_polars(pl.DataFrame({"k": ["a"], "name": ["A"]}))
    out = events_src.join(vs.table(updates_src), on="k", how="left")
    g = _graph(out)
    i = _pos(g, out)
    assert isinstance(g.ops[i], LookupJoinOp)
    assert g.parents[i] == [_pos(g, events_src), _pos(g, updates_src)]
    assert g.table_sources == {_pos(g, updates_src)}
    assert g.may_end_early  # the events may end before the update stream


def test_ticking_steps_and_their_source() -> None:
    src = vs.from_polars(_df())
    w = src.window(vs.tumbling("1s"), by="k", time="processing").agg(pl.len())
    g = _graph(w)
    assert g.ticking == [_pos(g, w)]
    assert g.tick_origin == {_pos(g, w): _pos(g, src)}
    assert g.watermarks == {_pos(g, src): []}


def test_a_shared_node_is_one_step() -> None:
    s = vs.from_polars(_df()).with_watermark("ts", 10)
    a = s.filter(pl.col("v") > 1)
    b = s.select("ts", "k")
    g = _graph(a, b)
    assert len(g.nodes) == 4  # source, watermark, and the two branches
    assert sorted(g.children[_pos(g, s)]) == sorted([_pos(g, a), _pos(g, b)])


def test_build_op_refuses_an_unknown_node() -> None:
    class Strange(Node):
        label = "strange"

    with pytest.raises(PipelineError, match="no operator for a Strange step"):
        build_op(Strange())


def test_build_op_gives_fresh_operators() -> None:
    w = vs.from_polars(_df()).with_watermark("ts", 10).window(vs.tumbling(10)).agg(pl.len())
    assert build_op(w._node) is not build_op(w._node)


def test_the_executor_asks_capabilities_not_types() -> None:
    """executor.py has no isinstance on a node or operator class and discovers no
    feature with getattr: what it needs is in the physical graph or declared by the
    operators (vstream.ops.base.Operator)."""
    path = Path(__file__).parents[2] / "vstream" / "runtime" / "executor.py"
    tree = ast.parse(path.read_text())
    plan_or_ops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            ("vstream.ops", "vstream.plan")
        ):
            plan_or_ops |= {a.asname or a.name for a in node.names}
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id in ("getattr", "hasattr"):
            bad.append(f"line {node.lineno}: {node.func.id}")
        if node.func.id == "isinstance" and len(node.args) == 2:
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if names & plan_or_ops:
                bad.append(f"line {node.lineno}: isinstance on {sorted(names & plan_or_ops)}")
    assert not bad, bad
    # what it may import of them: watermark bounds, the operator and node interfaces, and
    # the steps' stable ids (plain data a RunState is keyed by)
    allowed = {"MAX_WM", "MIN_WM", "Chunk", "Operator", "Node", "StepIdentity", "step_identities"}
    assert plan_or_ops <= allowed
