"""Text rendering of a plan graph."""

from __future__ import annotations

from vstream.plan.nodes import Node

__all__ = ["explain"]


def _schema_text(node: Node) -> str:
    cols = ", ".join(f"{k}: {v}" for k, v in node.schema.items())
    et = node.event_time
    time = ""
    if et is not None:
        shift = f" {'+' if et.shift > 0 else '-'} {abs(et.shift)}" if et.shift else ""
        time = f"  event time {et.column!r}{shift}"
    return f"{{{cols}}}{time}"


def explain(roots: list[Node]) -> str:
    """One line per node, children indented under their consumer; a node feeding several
    branches is printed once and referred to by its number afterwards."""
    lines: list[str] = []
    shown: set[int] = set()

    def visit(node: Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        if node.id in shown:
            lines.append(f"{prefix}{branch}[{node.id}] {node.label} (shared, see above)")
            return
        shown.add(node.id)
        bounded = "" if node.bounded else "  (unbounded)"
        lines.append(f"{prefix}{branch}[{node.id}] {node.label}{bounded}")
        child_prefix = prefix + ("" if top else ("   " if last else "│  "))
        lines.append(f"{child_prefix}{'│  ' if node.inputs else '   '}{_schema_text(node)}")
        for k, parent in enumerate(node.inputs):
            visit(parent, child_prefix, k == len(node.inputs) - 1, False)

    for i, root in enumerate(roots):
        if i:
            lines.append("")
        visit(root, "", True, True)
    return "\n".join(lines)
