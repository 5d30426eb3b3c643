"""Lowering: the logical plan (pure data) to the physical graph the executor runs.

The one module that knows the concrete node types. Per step it builds the operator and
records the positions of its inputs and children; for the graph it works out what the
executor needs to know (which steps are sources, watermark assigners and dead-letter
collectors; where dead letters and late events go; the sources of lookup-join tables;
whether a branch may end before its sources; which column of a source bounds the
event time of each watermark assigner below it, and the one its reader aligns its splits
on; the columns each source converts).
The executor reads these facts and the operators' declared capabilities, never a
node's or an operator's type.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from vstream._duration import unit_to_ns
from vstream.errors import PipelineError
from vstream.io.base import Source
from vstream.ops.base import Operator
from vstream.ops.join import AsofJoinOp, LookupJoinOp, SymmetricJoinOp
from vstream.ops.stateless import ConcatOp, DeadLetterOp, HeadOp, RowIndexOp, build_stateless
from vstream.ops.watermark import WatermarkOp
from vstream.ops.window import WindowOp
from vstream.plan.joins import JoinNode
from vstream.plan.nodes import (
    ConcatNode,
    DeadLettersNode,
    HeadNode,
    Node,
    RowIndexNode,
    SourceNode,
    StepNode,
    WatermarkNode,
    ancestors,
    source_columns,
)
from vstream.plan.windows import LateEventsNode, WindowNode

__all__ = ["PhysicalGraph", "build_op", "lower"]


def build_op(node: Node) -> Operator:
    """The physical operator of one logical node (a fresh one: no state)."""
    if isinstance(node, StepNode):
        return build_stateless(node)
    if isinstance(node, SourceNode):
        return Operator(node.label)  # the runtime feeds source batches itself
    if isinstance(node, WatermarkNode):
        et = node.event_time
        assert et is not None
        return WatermarkOp(
            node.label,
            et.column,
            et.delay,
            et.idle_timeout,
            unit_to_ns(et.unit) if et.unit is not None else None,
        )
    if isinstance(node, WindowNode):
        return WindowOp(node.label, node.setup)
    if isinstance(node, JoinNode):
        st = node.setup
        if st.kind == "lookup":
            return LookupJoinOp(node.label, st, updates=len(node.inputs) == 2)
        if st.kind == "asof":
            return AsofJoinOp(node.label, st)
        return SymmetricJoinOp(node.label, st)
    if isinstance(node, HeadNode):
        return HeadOp(node.label, node.n)
    if isinstance(node, RowIndexNode):
        return RowIndexOp(node.label, node.column, node.offset, node.split_column)
    if isinstance(node, ConcatNode):
        return ConcatOp(node.label, len(node.inputs))
    if isinstance(node, DeadLettersNode | LateEventsNode):
        return DeadLetterOp(node.label)
    msg = (
        f"{node.label}: the runtime has no operator for a {type(node).__name__} step; "
        "add one to vstream.runtime.lower.build_op"
    )
    raise PipelineError(msg)


@dataclass(frozen=True, eq=False)
class PhysicalGraph:
    """The steps of a run and what the executor needs to know about them.

    Steps are numbered by their position in ``nodes`` (topological order: a step comes
    after its inputs); every other field refers to steps by that position.
    """

    #: the logical nodes, topologically ordered, and each one's operator
    nodes: list[Node]
    ops: list[Operator]
    #: logical node id -> position
    index: dict[int, int]
    #: per step, the positions of its inputs (by input port) and of its consumers
    parents: list[list[int]]
    children: list[list[int]]
    #: per step, itself and every step below it, in topological order
    down: list[list[int]]
    #: per target (in the order given), the position of its step
    targets: list[int]
    #: the source steps and their sources
    sources: list[int]
    source_of: dict[int, Source]
    #: per source step, the watermark assigners below it
    watermarks: dict[int, list[int]]
    #: per (source, watermark assigner below it), the source column and dtype whose
    #: per-split lower bounds (file statistics) bound the event time, when every step
    #: between passes that column through unchanged (renames followed); else None
    bound_columns: dict[tuple[int, int], tuple[str, pl.DataType] | None]
    #: per source step whose reader may hand its splits' batches out in event-time
    #: order (``Reader.align``): the source column and the drift (see :func:`_align_on`)
    align: dict[int, tuple[str, int]]
    #: steps that collect the side output of others (dead letters, late events)
    collectors: frozenset[int]
    #: dead_letters() steps: their rows are refused records, not events out
    dead_letter_outputs: frozenset[int]
    #: step -> the dead_letters() branches that collect its refused records
    dead_routes: dict[int, list[int]]
    #: (window or join, input port) -> its late_events() branches
    late_routes: dict[tuple[int, int], list[int]]
    #: steps driven by the wall clock too, and the source whose branch each is on
    ticking: list[int]
    tick_origin: dict[int, int]
    #: the sources of lookup joins' update streams (read ahead of the events)
    table_sources: frozenset[int]
    #: whether a branch can end before its sources: a head(), or a lookup join whose
    #: events end before its (perhaps endless) update stream
    may_end_early: bool
    #: per source step, the columns it converts when fewer than all (projection
    #: pushdown; None: all), and the columns the run reads of it (None: all), which the
    #: executor passes to ``Source.open(columns=...)``
    source_columns: dict[int, list[str] | None]
    read_columns: dict[int, frozenset[str] | None]


def lower(targets: list[Node]) -> PhysicalGraph:
    """The physical graph of the branches ending at ``targets`` (each node once).

    Examples
    --------
    >>> from vstream.runtime.lower import lower
    >>> import polars as pl
    >>> import vstream as vs
    >>> s = vs.from_polars(pl.DataFrame({"ts": [1, 2], "x": [3, 4]}))
    >>> g = lower([s.with_watermark("ts", 0).select("ts")._node])
    >>> [type(op).__name__ for op in g.ops], g.parents
    (['Operator', 'WatermarkOp', 'StatelessOp'], [[], [0], [1]])
    >>> g.sources, g.watermarks, g.source_columns
    ([0], {0: [1]}, {0: ['ts']})
    """
    nodes = ancestors(targets)
    index = {nd.id: i for i, nd in enumerate(nodes)}
    ops = [build_op(nd) for nd in nodes]
    parents = [[index[p.id] for p in nd.inputs] for nd in nodes]
    children: list[list[int]] = [[] for _ in nodes]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    down = [_downstream(i, children) for i in range(len(nodes))]
    sources = [i for i, nd in enumerate(nodes) if isinstance(nd, SourceNode)]
    source_of = {s: _source(nodes[s]) for s in sources}
    watermarks = {s: [j for j in down[s] if ops[j].assigns_watermark] for s in sources}
    bound_columns = {
        (s, w): _bound_column(nodes[s], nodes[w]) for s in sources for w in watermarks[s]
    }
    align = {s: on for s in sources if (on := _align_on(nodes, s, watermarks, bound_columns))}
    ticking = [j for j, op in enumerate(ops) if op.ticking]
    table_sources = _table_sources(nodes, index)
    source_columns, read_columns = _projection(nodes, targets, sources)
    return PhysicalGraph(
        nodes=nodes,
        ops=ops,
        index=index,
        parents=parents,
        children=children,
        down=down,
        targets=[index[t.id] for t in targets],
        sources=sources,
        source_of=source_of,
        watermarks=watermarks,
        bound_columns=bound_columns,
        align=align,
        collectors=frozenset(j for j, op in enumerate(ops) if op.collects_side),
        dead_letter_outputs=frozenset(
            i for i, nd in enumerate(nodes) if isinstance(nd, DeadLettersNode)
        ),
        dead_routes=_dead_routes(nodes, index),
        late_routes=_late_routes(nodes, index),
        ticking=ticking,
        tick_origin={j: next(s for s in sources if j in down[s]) for j in ticking},
        table_sources=table_sources,
        may_end_early=bool(table_sources) or any(isinstance(nd, HeadNode) for nd in nodes),
        source_columns=source_columns,
        read_columns=read_columns,
    )


def _source(node: Node) -> Source:
    assert isinstance(node, SourceNode)
    return node.source


def _downstream(i: int, children: list[list[int]]) -> list[int]:
    seen = {i}
    stack = [i]
    while stack:
        for c in children[stack.pop()]:
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return sorted(seen)  # node order is topological


def _bound_column(source: Node, assigner: Node) -> tuple[str, pl.DataType] | None:
    """The column of ``source`` that the event time of ``assigner`` is, unchanged (its
    per-split statistics then bound the event time of each split), or None."""
    et = assigner.event_time
    assert et is not None
    column = et.column
    cur: Node = assigner.inputs[0]
    while cur is not source:
        if isinstance(cur, StepNode):
            if cur.assigns is None or column in cur.assigns:
                return None
            column = cur.renames.get(column, column)
        elif not isinstance(cur, HeadNode | RowIndexNode):  # these pass columns unchanged
            return None
        cur = cur.inputs[0]
    return column, et.dtype


def _align_on(
    nodes: list[Node],
    source: int,
    watermarks: dict[int, list[int]],
    bound_columns: dict[tuple[int, int], tuple[str, pl.DataType] | None],
) -> tuple[str, int] | None:
    """The source column and drift a source's reader aligns its splits on: those of the
    one ``with_watermark`` that reads the source directly, i.e. through stateless steps
    none of which computes the column (:func:`_bound_column`: no ``map_batches`` either),
    with its out-of-orderness as the drift (how far release may run ahead of a split
    behind: within the disorder the watermark allows anyway). None when no such step
    reads the source, or several do (whose bound to take is not clear); assigners below
    a window or a join read its results, not the source, and do not count."""
    direct = [
        (w, bound) for w in watermarks[source] if (bound := bound_columns[source, w]) is not None
    ]
    if len(direct) != 1:
        return None
    w, (column, _) = direct[0]
    et = nodes[w].event_time
    assert et is not None
    if et.other is not None:
        return None  # the later of two columns: not a source column alone
    return column, et.delay


def _dead_routes(nodes: list[Node], index: dict[int, int]) -> dict[int, list[int]]:
    routes: dict[int, list[int]] = {}
    for k, nd in enumerate(nodes):
        if isinstance(nd, DeadLettersNode):
            for a in ancestors([nd.of]):
                if a.can_dead_letter():
                    routes.setdefault(index[a.id], []).append(k)
    return routes


def _late_routes(nodes: list[Node], index: dict[int, int]) -> dict[tuple[int, int], list[int]]:
    routes: dict[tuple[int, int], list[int]] = {}
    for k, nd in enumerate(nodes):
        if isinstance(nd, LateEventsNode):
            routes.setdefault((index[nd.of.id], nd.port), []).append(k)
    return routes


def _table_sources(nodes: list[Node], index: dict[int, int]) -> frozenset[int]:
    """The sources that feed only the update stream of a lookup join."""
    out: set[int] = set()
    for nd in nodes:
        if isinstance(nd, JoinNode) and nd.setup.kind == "lookup" and len(nd.inputs) == 2:
            events = {a.id for a in ancestors([nd.inputs[0]])}
            out |= {
                index[a.id]
                for a in ancestors([nd.inputs[1]])
                if isinstance(a, SourceNode) and a.id not in events
            }
    return frozenset(out)


def _projection(
    nodes: list[Node], targets: list[Node], sources: list[int]
) -> tuple[dict[int, list[str] | None], dict[int, frozenset[str] | None]]:
    """Projection pushdown: per source, the columns to convert and the columns the run
    reads (None: all), as explain() shows them (:func:`vstream.plan.nodes.source_columns`).
    The second is what the source is opened with (``Source.open(columns=...)``): a
    Parquet source reads only those from its files, a UTF-8 check checks only those."""
    projected = source_columns(targets)
    convert: dict[int, list[str] | None] = {}
    reads: dict[int, frozenset[str] | None] = {}
    for s in sources:
        keep = projected.get(nodes[s].id)
        convert[s] = keep
        reads[s] = None if keep is None else frozenset(keep)
    return convert, reads


def event_time_clocks(graph: PhysicalGraph, steps: list[int]) -> dict[int, tuple[list[int], bool]]:
    """Per step, what its event-time lag is measured against: the watermark assigners
    above it (whose newest event time is the replay clock) and whether a live source
    (``Source.live``: a broker, a watched directory) feeds it (then the wall clock is).

    Examples
    --------
    >>> import polars as pl
    >>> import vstream as vs
    >>> from vstream.runtime.lower import event_time_clocks, lower
    >>> s = vs.from_polars(pl.DataFrame({"ts": [1, 2]})).with_watermark("ts", 0)
    >>> g = lower([s.select("ts")._node])
    >>> event_time_clocks(g, [2])
    {2: ([1], False)}
    """
    out = {}
    for j in steps:
        feeding = [s for s in graph.sources if j in graph.down[s]]
        assigners = sorted({w for s in feeding for w in graph.watermarks[s] if j in graph.down[w]})
        out[j] = (assigners, any(graph.source_of[s].live for s in feeding))
    return out
