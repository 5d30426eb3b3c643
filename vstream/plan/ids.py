"""Stable step ids: what a checkpoint keys a step's state by.

A step's id is its user-given ``name`` where it has one; otherwise it is derived from
the step's kind, its configuration (:func:`describe`) and the ids of the stateful steps
upstream of it (sources, watermark assigners, windows, joins, heads, row indexes), never
from Polars' serialised expression bytes (Polars documents them as unstable across
versions): an expression is described by its display text, as a stateless step is by its
label. A stateless step added or changed anywhere does not change the id of a stateful
step (its upstream path counts stateful steps only), so a checkpoint keeps its state. Two steps
that are structurally identical (two equal branches) get ``-2``, ``-3``, ... suffixes in
the plan's topological order.

Examples
--------
>>> from vstream.plan.ids import step_identities
>>> import polars as pl
>>> import vstream as vs
>>> from vstream.plan.nodes import ancestors
>>> s = vs.from_polars(pl.DataFrame({"ts": [1, 2], "x": [1, 2]})).with_watermark("ts", 0)
>>> w = s.window(vs.tumbling(2), by="x").agg(pl.len())
>>> [i.id for i in step_identities(ancestors([w.node]))]  # doctest: +ELLIPSIS
['source-...', 'watermark-...', 'window-...']
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from vstream.errors import PipelineError
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
)
from vstream.plan.windows import LateEventsNode, WindowNode

__all__ = ["StepIdentity", "check_step_name", "describe", "step_identities"]

#: a user-given step name: it names the step's state files, so a plain name
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_step_name(name: object, where: str) -> str:
    """``name`` if it can be a step id (letters, digits, ``_`` and ``-``, at most 64)."""
    if not isinstance(name, str) or not _NAME.match(name):
        msg = (
            f"{where}: name={name!r} cannot name a step; use letters, digits, '_' and '-' "
            "(at most 64), e.g. name='cpu_per_host'"
        )
        raise PipelineError(msg)
    return name


@dataclass(frozen=True, slots=True)
class StepIdentity:
    """What a checkpoint knows a step by.

    ``id`` keys its entries; ``fingerprint`` (SHA-256 of ``description``) says whether
    its state still fits; ``anchor`` (kind and upstream path, no configuration) finds
    the step a changed one replaced, to say what changed.
    """

    id: str
    kind: str
    stateful: bool
    description: dict[str, Any]
    fingerprint: str
    anchor: str
    label: str


_KINDS: tuple[tuple[type[Node], str], ...] = (
    (SourceNode, "source"),
    (WatermarkNode, "watermark"),
    (WindowNode, "window"),
    (JoinNode, "join"),
    (HeadNode, "head"),
    (RowIndexNode, "row_index"),
    (LateEventsNode, "late_events"),
    (DeadLettersNode, "dead_letters"),
    (ConcatNode, "concat"),
    (StepNode, "step"),
)
_STATEFUL = frozenset({"source", "watermark", "window", "join", "head", "row_index"})


def kind_of(node: Node) -> str:
    for cls, kind in _KINDS:
        if isinstance(node, cls):
            return kind
    return type(node).__name__


def _schema(schema: Any) -> list[str]:
    return [f"{k}: {v}" for k, v in schema.items()]


def describe(node: Node) -> dict[str, Any]:
    """The configuration of ``node`` that shapes its state (JSON-able; no expression
    bytes, only display text). A source is described by its kind and schema, not by its
    splits: files may be added to its directory between two runs."""
    kind = kind_of(node)
    out: dict[str, Any] = {"kind": kind}
    if isinstance(node, SourceNode):
        out["source"] = type(node.source).__name__
        out["schema"] = _schema(node.schema)
    elif isinstance(node, WatermarkNode):
        et = node.event_time
        assert et is not None
        out["event_time"] = [et.column, str(et.dtype), et.unit, et.delay]
    elif isinstance(node, HeadNode):
        out["n"] = node.n
    elif isinstance(node, RowIndexNode):
        out["row_index"] = [node.column, node.offset]
        if node.split_column is not None:  # absent otherwise: earlier fingerprints hold
            out["row_index"].append(node.split_column)
    elif isinstance(node, WindowNode):
        st = node.setup
        out["window"] = {
            "kind": st.kind,
            "size": st.size,
            "slide": st.slide,
            "offset": st.offset,
            "gap": st.gap,
            "by": list(st.by),
            "time": st.time_column,
            "lateness": st.lateness,
            "late_side": st.late_side,
            "inputs": {k: str(v) for k, v in st.aggs.inputs.items()},
            "leaves": [repr(lf) for lf in st.aggs.leaves],
            "final": [str(e) for e in st.aggs.final],
        }
        out["schema"] = _schema(node.schema)
    elif isinstance(node, JoinNode):
        js = node.setup
        out["join"] = {
            "kind": js.kind,
            "how": js.how,
            "left_keys": js.left_keys,
            "right_keys": js.right_keys,
            "bounds": [js.lower, js.upper, js.size, js.slide, js.offset],
            "strategy": js.strategy,
            "tolerance": js.tolerance,
            "table_rows": None if js.table is None else js.table.height,
        }
        # the rows a join keeps are its inputs' rows
        out["inputs"] = [_schema(p.schema) for p in node.inputs]
        out["schema"] = _schema(node.schema)
    elif isinstance(node, LateEventsNode):
        out["port"] = node.port  # its label names node ids, which differ between builds
    elif isinstance(node, StepNode | ConcatNode | DeadLettersNode):
        out["label"] = node.label
    else:
        out["label"] = node.label
    return out


def _hash(value: object, n: int | None = None) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return digest if n is None else digest[:n]


def step_identities(nodes: list[Node]) -> list[StepIdentity]:
    """One identity per node of ``nodes`` (in topological order, as the executor holds
    them). Raises :class:`PipelineError` when two steps are given the same name."""
    index = {n.id: i for i, n in enumerate(nodes)}
    # per node: the ids of the nearest stateful steps upstream, per input port
    upstream: list[list[list[str]]] = []
    ids: list[str] = []
    out: list[StepIdentity] = []
    seen: dict[str, int] = {}
    named: dict[str, str] = {}
    for node in nodes:
        if node.name is not None:
            sid = check_step_name(node.name, node.label)
            if sid in named:
                msg = (
                    f"two steps are named {sid!r} ({named[sid]} and {node.label}); "
                    "step names must be unique in a run"
                )
                raise PipelineError(msg)
            named[sid] = node.label
    for node in nodes:
        kind = kind_of(node)
        path: list[list[str]] = []
        for p in node.inputs:
            j = index[p.id]
            if out[j].stateful:
                path.append([ids[j]])
            else:  # through a stateless step: its own upstream path, flattened
                path.append([x for port in upstream[j] for x in port])
        upstream.append(path)
        desc = describe(node)
        anchor = _hash([kind, path], 16)
        if node.name is not None:
            sid = node.name
        else:
            base = f"{kind}-{_hash([desc, path], 12)}"
            if base in named:  # a derived id equal to a user's name: the name keeps it
                base += "-d"
            k = seen.get(base, 0) + 1
            seen[base] = k
            sid = base if k == 1 else f"{base}-{k}"
        ids.append(sid)
        out.append(
            StepIdentity(
                id=sid,
                kind=kind,
                stateful=kind in _STATEFUL,
                description=desc,
                fingerprint=_hash(desc),
                anchor=anchor,
                label=node.label,
            )
        )
    return out
