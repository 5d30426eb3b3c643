"""Issue 22: the notebooks run without warnings (a warning in a saved notebook is noise a
new user reads first), and the dashboard notebook keeps its last plot as a static image
(item 1). nbmake executes them too; this run also reads their outputs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
DASHBOARD = next(p for p in NOTEBOOKS if p.name == "02_dashboard.ipynb")


@functools.cache
def _executed(path: Path) -> nbformat.NotebookNode:
    """The notebook run headless, as a saved notebook would hold it (once per session)."""
    nb: nbformat.NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[Any]:
    return [out for cell in nb.cells for out in cell.get("outputs", [])]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_prints_no_warning(path: Path) -> None:
    nb = _executed(path)
    noisy = [
        (i, out.get("text", ""))
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stderr"
    ]
    assert not noisy, f"{path.name}: cells print to stderr (warnings): {noisy}"


@pytest.mark.slow
def test_dashboard_notebook_keeps_its_last_plot_as_an_image() -> None:
    """Offline, re-opened or untrusted, the saved dashboard shows its plot (an SVG beside
    the HTML, and inside it) and its text fallback is the dashboard, not an object repr."""
    shown = [
        out["data"]
        for out in _outputs(_executed(DASHBOARD))
        if out.get("output_type") == "display_data" and isinstance(out.get("data"), dict)
    ]
    dashboards = [data for data in shown if "vstream-dashboard" in data.get("text/html", "")]
    assert len(dashboards) == 1, [sorted(data) for data in shown]
    data = dashboards[0]
    svg = data.get("image/svg+xml")
    assert isinstance(svg, str)
    assert svg.startswith("<svg")
    assert "cpu per region (top 5)" in svg  # the chart's title, drawn
    assert svg in data["text/html"]  # also where HTML-first frontends look
    text = data["text/plain"]
    assert "IPython" not in text
    assert "state          stopped" in text
    assert "plot: line chart of cpu over window_start per region: 5 lines" in text
    assert "region" in text.split("plot:")[1]  # the newest rows, after the plot line
