"""What a checkpoint remembers of the plan, to refuse restoring it into another one.

Every step is described by its kind, its inputs and its output schema; a stateful step
(watermark, window, join, head) also by everything that shapes its state (keys, window,
aggregations, join predicate). A source is described by its splits (their positions are
per split). Stateless steps' expressions are left out, as Spark Structured Streaming
does: a fixed filter threshold keeps the checkpoint usable as long as the schemas stay.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vstream.plan.joins import JoinNode
from vstream.plan.nodes import HeadNode, Node, SourceNode, StepNode, WatermarkNode
from vstream.plan.windows import LateEventsNode, WindowNode

__all__ = ["describe_plan", "fingerprint", "plan_difference"]


def _node(node: Node, index: dict[int, int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": type(node).__name__,
        "inputs": [index[p.id] for p in node.inputs],
        "schema": [f"{k}: {v}" for k, v in node.schema.items()],
    }
    if isinstance(node, LateEventsNode):
        out["port"] = node.port  # its label names node ids, which differ between builds
    elif not isinstance(node, StepNode):
        out["label"] = node.label
    if isinstance(node, SourceNode):
        out["splits"] = list(node.source.splits())
    elif isinstance(node, WatermarkNode):
        et = node.event_time
        assert et is not None
        out["event_time"] = [et.column, str(et.dtype), et.unit, et.delay]
    elif isinstance(node, HeadNode):
        out["n"] = node.n
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
    return out


def describe_plan(nodes: list[Node]) -> list[dict[str, Any]]:
    """One JSON-able description per node, in the executor's (topological) order."""
    index = {n.id: i for i, n in enumerate(nodes)}
    return [_node(n, index) for n in nodes]


def fingerprint(description: list[dict[str, Any]]) -> str:
    """A SHA-256 of the description."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def plan_difference(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    """A sentence saying how the plan changed, for the refusal message."""
    # the most telling difference first: a step's state settings before its schema
    order = ["kind", "inputs", "splits", "event_time", "n", "window", "join", "schema", "label"]
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a == b:
            continue
        name = b.get("label", b["kind"])
        keys = [k for k in order if k in a or k in b] + sorted((set(a) | set(b)) - set(order))
        for key in keys:
            va, vb = a.get(key), b.get(key)
            if va == vb:
                continue
            what = key
            if isinstance(va, dict) and isinstance(vb, dict):
                sub = next(k for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k))
                what, va, vb = f"{key} {sub}", va.get(sub), vb.get(sub)
            return (
                f"step {i} ({name}) changed its {what}: it was {_short(va)}, "
                f"it is now {_short(vb)}"
            )
    if len(old) != len(new):
        return f"the plan had {len(old)} steps, it now has {len(new)}"
    return "the plans differ"


def _short(value: object, limit: int = 300) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
