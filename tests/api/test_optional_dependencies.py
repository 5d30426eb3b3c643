"""Optional and heavy dependencies: ``import vstream`` loads none of them (Altair,
prometheus_client; numba until a kernel runs), and a feature whose extra is missing says
which ``pip install`` brings it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import vstream as vs
from vstream.notebook.live import LiveView
from vstream.notebook.render import dashboard_html, plan_html, plot_html, plot_spec

ROOT = Path(__file__).resolve().parents[2]
RESULTS = pl.DataFrame({"window_start": [0, 10], "n": [1, 2]})


def _modules_after_import() -> set[str]:
    """The modules a fresh interpreter has loaded after ``import vstream`` (this checkout's)."""
    code = "import sys, vstream; print(vstream.__file__); print('\\n'.join(sorted(sys.modules)))"
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )
    first, *loaded = out.stdout.split("\n")
    assert Path(first).resolve() == ROOT / "vstream" / "__init__.py"
    return set(loaded)


def test_import_vstream_loads_no_optional_or_heavy_module() -> None:
    loaded = _modules_after_import()
    assert "polars" in loaded  # the subprocess did import vstream
    for heavy in ("altair", "prometheus_client", "IPython", "numba", "llvmlite"):
        assert heavy not in loaded, heavy


@pytest.fixture
def no_altair(monkeypatch: pytest.MonkeyPatch) -> None:
    """Altair as if not installed: ``import altair`` fails, ``find_spec`` finds nothing."""
    for name in [m for m in sys.modules if m == "altair" or m.startswith("altair.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "altair", None)


@pytest.mark.usefixtures("no_altair")
def test_a_plot_without_altair_names_the_notebook_extra() -> None:
    with pytest.raises(vs.MissingDependencyError, match=r'pip install "vstream\[notebook\]"'):
        plot_spec(RESULTS, y="n")
    with pytest.raises(ImportError, match="plot_html"):
        plot_html({"mark": "line"})


@pytest.mark.usefixtures("no_altair")
def test_without_altair_gauges_rows_and_plans_still_render() -> None:
    out = dashboard_html(vs.Metrics(events_in=3), RESULTS)
    assert "vstream-metrics" in out
    assert "vstream-table" in out
    assert "vstream plan" in plan_html(vs.from_polars(RESULTS))


@pytest.mark.usefixtures("no_altair")
def test_display_with_a_plot_without_altair_fails_in_the_callers_thread() -> None:
    job = vs.from_polars(RESULTS).start()
    job.join(timeout=60)
    shown: list[str] = []
    with pytest.raises(vs.MissingDependencyError, match=r"display: .*vstream\[notebook\]"):
        LiveView(job, y="n", html=True, sink=shown.append)
    assert not shown
    # without a plot it needs no Altair
    view = LiveView(job, html=True, sink=shown.append).start()
    view.join(timeout=60)
    assert "vstream-metrics" in shown[-1]
