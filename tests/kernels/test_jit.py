"""numba is imported when the first kernel runs, not with vstream (``kernels/_jit.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import sys
import polars as pl
import vstream as vs
from vstream.kernels import _jit, join
from vstream.kernels.window import panes
from vstream.ops.window import panes as op_panes

# Kernels held elsewhere than a module's globals
kept, kept_floordiv = panes.pane_slots, join._floordiv
assert not _jit.loaded() and "numba" not in sys.modules
assert isinstance(kept, _jit.Kernel) and kept.py_func.__name__ == "pane_slots"

stream = vs.from_polars(pl.DataFrame({"ts": [1, 2, 12], "k": ["a", "b", "a"]}))
out = stream.with_watermark("ts", 0).window(vs.tumbling(10), by="k").agg(pl.len()).collect()
assert sorted(out["len"].to_list()) == [1, 1, 1], out
assert _jit.loaded() and "numba" in sys.modules

import numba
from numba.core.registry import CPUDispatcher

# the modules' globals now hold the dispatchers: the ops call numba directly
assert isinstance(panes.pane_slots, CPUDispatcher)
assert isinstance(op_panes.pane_slots, CPUDispatcher)
assert kept.compiled is panes.pane_slots  # a kept Kernel forwards to the same
assert kept.signatures == panes.pane_slots.signatures
# compiled code that finds a Kernel, not its dispatcher, among its globals calls it too
space = {"floordiv": kept_floordiv}
exec("def caller(a, b):\n    return floordiv(a, b) + 1", space)
assert numba.njit(space["caller"])(-7, 2) == -3


@_jit.njit(cache=False)
def later(x):  # a kernel defined after the load is a dispatcher at once
    return x + 1


assert isinstance(later, CPUDispatcher) and later(1) == 2
print("ok")
"""


def test_numba_loads_at_the_first_kernel_call_and_replaces_the_kernels() -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
