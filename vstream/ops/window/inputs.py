"""A batch's aggregate inputs as the window kernels take them, the initial values of
the aggregate fields, and the scratch arrays reused from one batch to the next.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from vstream._dtypes import physical_int64
from vstream.plan import aggregates as A
from vstream.plan.aggregates import AggPlan

__all__: list[str] = []

_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min


def _init_values(plan: AggPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prog = np.zeros((len(plan.leaves), 5), np.int64)
    init_f = np.zeros(plan.n_float, np.float64)
    init_i = np.zeros(plan.n_int, np.int64)
    fcols = plan.float_columns
    icols = plan.int_columns
    vcols = sorted({lf.input for lf in plan.leaves if lf.input is not None})
    for a, lf in enumerate(plan.leaves):
        x = -1
        if lf.input is not None and lf.kind not in (A.COUNT, A.NUNIQUE, A.NULLS):
            x = fcols.index(lf.input) if A.reads_float(lf.kind) else icols.index(lf.input)
        v = vcols.index(lf.input) if lf.input is not None else -1
        prog[a] = (lf.kind, x, v, lf.f0, lf.i0)
        if lf.kind == A.FIRST_F:
            init_i[lf.i0] = _I64_MAX
        elif lf.kind == A.FIRST_I:
            init_i[lf.i0 + 1] = _I64_MAX
        elif lf.kind in (A.LAST_F,):
            init_i[lf.i0] = -1
        elif lf.kind == A.LAST_I:
            init_i[lf.i0 + 1] = -1
        elif lf.kind in (A.MIN_F, A.MAX_F):
            init_f[lf.f0] = np.nan  # no number seen yet (see kernels.aggregate)
        elif lf.kind == A.MIN_I:
            init_i[lf.i0] = _I64_MAX
        elif lf.kind == A.MAX_I:
            init_i[lf.i0] = _I64_MIN
    return prog, init_f, init_i


class _Scratch:
    """Arrays reused from one batch to the next for what does not outlive a batch (slots
    and late flags): fresh memory every batch cost more than filling it (Q1's slots:
    pane_slots ~142 -> ~118 ms of 10 M events)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = np.empty(shape, dtype)
            self._arrays[name] = a
        return a


class _Inputs:
    """A batch's aggregate inputs as the kernels take them: float and int columns, and
    the validity of the columns that have nulls in this batch."""

    def __init__(self, plan: AggPlan) -> None:
        self.plan = plan
        self.exprs = list(plan.inputs.values())
        # inputs that are plain columns are read directly: a Polars select costs ~0.4 ms
        self.direct: dict[str, str] = {}
        for name, e in plan.inputs.items():
            base = e.meta.undo_aliases()
            if base.meta.is_column():
                self.direct[name] = base.meta.output_name()
        if len(self.direct) == len(self.exprs):
            self.exprs = []
        self.fcols = plan.float_columns
        self.icols = plan.int_columns
        self.vcols = sorted({lf.input for lf in plan.leaves if lf.input is not None})

    def build(
        self, df: pl.DataFrame, stores: dict[str, pl.Series]
    ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """The float and int input columns (tuples of read-only 1-D arrays, the batch's
        own buffers where they already are float64 / int64 without nulls), the validity
        masks and which mask each input uses (-1: no nulls in this batch)."""
        n = df.height
        vals: pl.DataFrame | dict[str, pl.Series]
        if self.exprs:
            vals = df.select(self.exprs)
        else:  # the columns themselves (a frame of them cost ~45 µs a batch)
            vals = {name: df.get_column(col) for name, col in self.direct.items()}
        floats: list[np.ndarray] = []
        ints: list[np.ndarray] = []
        vmap = np.full(max(len(self.vcols), 1), -1, np.int64)
        masks: list[np.ndarray] = []
        if self.plan.inputs:
            for v, name in enumerate(self.vcols):
                s = vals[name]
                if s.null_count():
                    vmap[v] = len(masks)
                    masks.append(s.is_not_null().to_numpy())
            for name in self.fcols:
                s = vals[name]
                if s.null_count():
                    s = s.fill_null(0)
                floats.append(
                    s.to_numpy() if s.dtype == pl.Float64 else s.cast(pl.Float64).to_numpy()
                )
            for name in self.icols:
                s = vals[name]
                if name in stores:  # values kept in the store; the kernels see their ids
                    store = stores[name]
                    ints.append(np.arange(store.len(), store.len() + n, dtype=np.int64))
                    stores[name] = store.append(s)
                    continue
                if s.null_count():
                    s = s.fill_null(0) if s.dtype != pl.Boolean else s.fill_null(False)
                ints.append(physical_int64(s))
        M = np.stack(masks) if masks else np.ones((1, 1), np.bool_)
        return _columns(floats, np.float64), _columns(ints, np.int64), M, vmap


def _columns(cols: list[np.ndarray], dtype: type) -> tuple[np.ndarray, ...]:
    """Columns as the kernels take them: C-contiguous, read-only (a zero-copy view of a
    batch is; numba compiles one version for a tuple of one array type), at least one
    (an empty placeholder is never read). Against copying them into one matrix a batch,
    Q1 end to end in alternating processes: 366 -> 350 ms."""
    out = []
    for c in cols or [np.empty(0, dtype)]:
        a: np.ndarray = np.ascontiguousarray(c, dtype)
        if a.flags.writeable:
            a = a.view()
            a.flags.writeable = False
        out.append(a)
    return tuple(out)
