"""Text rendering of a plan graph, with the columns each source reads."""

from __future__ import annotations

from vstream.plan.nodes import Node, source_columns

__all__ = ["explain"]


def _schema_text(node: Node) -> str:
    cols = ", ".join(f"{k}: {v}" for k, v in node.schema.items())
    et = node.event_time
    time = ""
    if et is not None:

        def term(col: str, shift: int) -> str:
            if not shift:
                return repr(col)
            return f"{col!r} {'+' if shift > 0 else '-'} {abs(shift)}"

        text = term(et.column, et.shift)
        if et.other is not None:
            text = f"max({text}, {term(et.other, et.other_shift)})"
        time = f"  event time {text}"
    return f"{{{cols}}}{time}"


def explain(roots: list[Node]) -> str:
    """One line per node, children indented under their consumer; a node feeding several
    branches is printed once and referred to by its number afterwards. A source that the
    plan reads in part lists the columns it reads, e.g. ``columns=[ts, cpu] (2 of 9)``."""
    lines: list[str] = []
    shown: set[int] = set()
    projected = source_columns(roots)

    def visit(node: Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        if node.id in shown:
            lines.append(f"{prefix}{branch}[{node.id}] {node.label} (shared, see above)")
            return
        shown.add(node.id)
        bounded = "" if node.bounded else "  (unbounded)"
        read = projected.get(node.id)
        if read is not None:
            of = len(node.schema)
            bounded = f"  columns=[{', '.join(read)}] ({len(read)} of {of}){bounded}"
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
