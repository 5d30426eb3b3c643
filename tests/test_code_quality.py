"""The package stays typed (mypy --strict) and lint-clean (ruff), as STYLE.md asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict_is_clean() -> None:
    res = _run("mypy", "--cache-dir", str(ROOT / ".mypy_cache"), "vstream")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_is_clean() -> None:
    res = _run("ruff", "check", "vstream", "tests", "benchmarks", "notebooks")
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run("ruff", "format", "--check", "vstream", "tests", "benchmarks", "notebooks")
    assert res.returncode == 0, res.stdout + res.stderr
