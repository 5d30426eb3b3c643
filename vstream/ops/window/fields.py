"""The names of a window step's aggregate fields, as its state snapshots call them.

A field is named ``output.aggregate.field``: ``cpu.mean.sum`` is the running sum of the
mean that the output column ``cpu`` reads. A leaf no output reads (the slot's rows, an
input's nulls, shared by the aggregates that count from them) is named after its input:
``len.rows``, ``x.nulls.count``. A new aggregate names its fields here and needs no new
snapshot format.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from vstream.plan import aggregates as A
from vstream.plan.aggregates import AggLeaf, AggPlan
from vstream.state.window import WindowFields

__all__ = ["window_fields"]

#: kind -> (aggregate, its float fields, its int fields), as kernels.aggregate keeps them
_FIELD_NAMES: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    A.LEN: ("len", (), ("rows",)),
    A.COUNT: ("count", (), ()),
    A.SUM_F: ("sum", ("sum",), ()),
    A.SUM_I: ("sum", (), ("sum",)),
    A.MEAN: ("mean", ("sum",), ()),
    A.MIN_F: ("min", ("value",), ()),
    A.MAX_F: ("max", ("value",), ()),
    A.MIN_I: ("min", (), ("value",)),
    A.MAX_I: ("max", (), ("value",)),
    A.FIRST_F: ("first", ("value",), ("seq", "null")),
    A.FIRST_I: ("first", (), ("value", "seq", "null")),
    A.LAST_F: ("last", ("value",), ("seq", "null")),
    A.LAST_I: ("last", (), ("value", "seq", "null")),
    A.VAR: ("var", ("mean", "m2"), ("count",)),
    A.NUNIQUE: ("n_unique", (), ("distinct",)),
    A.NULLS: ("nulls", (), ("count",)),
}


def _input_name(plan: AggPlan, lf: AggLeaf) -> str:
    if lf.input is None:
        return ""
    base = plan.inputs[lf.input].meta.undo_aliases()
    try:
        return base.meta.output_name()
    except pl.exceptions.PolarsError:  # an input without one (a literal): its temp name
        return lf.input


def window_fields(plan: AggPlan, init_f: np.ndarray, init_i: np.ndarray) -> WindowFields:
    """The fields of ``plan`` named (``init_f`` / ``init_i``: their initial values).

    Examples
    --------
    >>> from vstream.ops.window.fields import window_fields
    >>> import numpy as np, polars as pl
    >>> from vstream.plan.aggregates import plan_aggregations
    >>> aggs = [pl.col("cpu").mean().alias("cpu"), pl.len().alias("n")]
    >>> plan = plan_aggregations(aggs, pl.Schema({"cpu": pl.Float64}), "agg", [])
    >>> f = window_fields(plan, np.zeros(plan.n_float), np.zeros(plan.n_int, np.int64))
    >>> f.floats, f.ints
    (('cpu.mean.sum',), ('n.len.rows', 'cpu.nulls.count'))
    """
    readers: dict[str, str] = {}  # leaf column -> the first output that reads it
    for name, e in zip(plan.schema, plan.final, strict=True):
        for root in e.meta.root_names():
            readers.setdefault(root, name)
    floats = [""] * plan.n_float
    ints = [""] * plan.n_int
    for lf in plan.leaves:
        agg, fnames, inames = _FIELD_NAMES[lf.kind]
        if lf.kind == A.VAR and lf.std:
            agg = "std"
        label = readers.get(lf.name) or _input_name(plan, lf)
        prefix = f"{label}.{agg}" if label else agg
        for j, field in enumerate(fnames):
            floats[lf.f0 + j] = f"{prefix}.{field}"
        for j, field in enumerate(inames):
            ints[lf.i0 + j] = f"{prefix}.{field}"
    seen: set[str] = set()
    for names, kind in ((floats, "f"), (ints, "i")):
        for a, name in enumerate(names):
            name = name or f"{kind}{a}"
            n, unique = 2, name
            while unique in seen:  # two aggregates of one output and kind
                unique, n = f"{name}#{n}", n + 1
            seen.add(unique)
            names[a] = unique
    return WindowFields(
        tuple(floats),
        tuple(ints),
        init_f,
        init_i,
        stored={lf.i0: lf.input for lf in plan.leaves if lf.stored and lf.input is not None},
        stores={name: plan.leaves_by_input[name] for name in plan.stored_columns},
    )
