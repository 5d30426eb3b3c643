"""The types a user sees (issue 22, item 6): a typed user script passes ``mypy --strict``,
and the terminal calls are typed by their arguments, not ``Any``: ``collect()`` is a
DataFrame (a pair with ``return_metrics=True``), ``sink_parquet()`` the run's metrics (a
lazy sink with ``lazy=True``), ``collect_all`` of Streams a list of DataFrames.

That an editable install (``pip install -e .``) is visible to mypy is checked in a fresh
virtual environment by ``.ci/run`` (too slow for the test suite): there mypy runs on the
script from outside the repository, where only the installed package can be found.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("typed_script.py")

#: what mypy must infer for each call (``reveal_type``), by the name printed beside it
REVEALS = {
    "collect": "polars.dataframe.frame.DataFrame",
    "collect_metrics": "tuple[polars.dataframe.frame.DataFrame, vstream.runtime.metrics.Metrics]",
    "sink_parquet": "vstream.runtime.metrics.Metrics",
    "sink_parquet_lazy": "vstream.api.sinks.LazySink",
    "sink_csv_lazy": "vstream.api.sinks.LazySink",
    "sink_batches": "vstream.runtime.metrics.Metrics",
    "collect_all": "list[polars.dataframe.frame.DataFrame]",
    "collect_all_sinks": "list[polars.dataframe.frame.DataFrame | None]",
    "window_collect": "polars.dataframe.frame.DataFrame",
    "pipe": "int",
}

_REVEALING = textwrap.dedent(
    """
    import polars as pl
    import vstream as vs

    s = vs.from_polars(pl.DataFrame({"ts": [1], "x": [1.0]})).with_watermark("ts", 0)
    w = s.window(vs.tumbling(10)).agg(pl.len())
    lazy = s.sink_parquet("out", lazy=True)
    reveal_type(("collect", s.collect()))
    reveal_type(("collect_metrics", s.collect(return_metrics=True)))
    reveal_type(("sink_parquet", s.sink_parquet("out")))
    reveal_type(("sink_parquet_lazy", lazy))
    reveal_type(("sink_csv_lazy", s.sink_csv("out", lazy=True)))
    reveal_type(("sink_batches", s.sink_batches(print)))
    reveal_type(("collect_all", vs.collect_all([s, w])))
    reveal_type(("collect_all_sinks", vs.collect_all([s, lazy])))
    reveal_type(("window_collect", w.collect()))
    reveal_type(("pipe", s.pipe(lambda t, k: len(t.columns) + k, 1)))
    """
)


def _mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``files``, from the repository root (its pyproject config;
    the package found there first), with the repository's mypy cache."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # ~15 s without mypy's cache
def test_a_typed_user_script_passes_mypy_strict(tmp_path: Path) -> None:
    reveals = tmp_path / "reveals.py"
    reveals.write_text(_REVEALING)
    out = _mypy(SCRIPT, reveals)
    lines = out.stdout.splitlines()
    errors = [ln for ln in lines if ": error:" in ln]
    assert not errors, "\n".join(errors)
    assert out.returncode == 0, out.stdout + out.stderr
    found = {}
    for ln in lines:
        m = re.search(r'Revealed type is "tuple\[Literal\[\'(\w+)\'\]\?, (.*)\]"$', ln)
        if m:
            # mypy versions differ in spelling builtins (``builtins.list`` or ``list``)
            found[m.group(1)] = m.group(2).replace("builtins.", "")
    assert found == REVEALS


def test_the_typed_script_runs(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("typed_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
