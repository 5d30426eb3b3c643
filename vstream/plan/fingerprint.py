"""Per-step fingerprints: whether a checkpointed step's state fits the step it is
restored into, and what changed when it does not.

Each step has a stable id and a fingerprint (:mod:`vstream.plan.ids`): a SHA-256 of its
description (kind and whatever shapes its state: keys, window, aggregations, join
predicate, event time). A changed plan is judged step by step: stateless steps'
expressions are left out, as Spark Structured Streaming does, so a changed filter
threshold or a ``with_columns`` added elsewhere keeps the checkpoint; a stateful step
whose fingerprint changed is refused, naming it and what changed (:func:`step_difference`).
"""

from __future__ import annotations

import json
from typing import Any

from vstream.plan.ids import StepIdentity, describe, step_identities

__all__ = ["StepIdentity", "describe", "step_difference", "step_identities"]

#: the most telling difference first: a step's state settings before its schema
_ORDER = [
    "kind", "source", "event_time", "n", "row_index", "window", "join", "inputs", "schema", "port"
]  # fmt: skip


def step_difference(old: object, new: dict[str, Any]) -> str:
    """What changed between two descriptions of a step, as ``its <what>: it was <a>,
    it is now <b>``.

    Examples
    --------
    >>> from vstream.plan.fingerprint import step_difference
    >>> step_difference({"kind": "window", "window": {"size": 1000}},
    ...                 {"kind": "window", "window": {"size": 2000}})
    'its window size: it was 1000, it is now 2000'
    """
    if not isinstance(old, dict):
        return f"its description: it was {_short(old)}, it is now {_short(new)}"
    keys = [k for k in _ORDER if k in old or k in new]
    keys += sorted((set(old) | set(new)) - set(_ORDER), key=str)
    for key in keys:
        va, vb = old.get(key), new.get(key)
        if va == vb:
            continue
        what = key
        if isinstance(va, dict) and isinstance(vb, dict):
            sub = next(k for k in sorted(set(va) | set(vb), key=str) if va.get(k) != vb.get(k))
            what, va, vb = f"{key} {sub}", va.get(sub), vb.get(sub)
        return f"its {what}: it was {_short(va)}, it is now {_short(vb)}"
    return "its description differs"


def _short(value: object, limit: int = 300) -> str:
    try:
        text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
