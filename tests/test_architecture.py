"""The package's shape: layers import downward only, and no module grows past 800 lines.

The layer order is :data:`vstream._layers.LAYERS` (README, "Architecture"). An import
counts wherever it is written (module top, inside a function); only imports under
``if TYPE_CHECKING:`` are exempt, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vstream._layers import LAYERS, rank

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vstream"
MAX_LINES = 800


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str | None:
    """The top-level unit of a module of the package (``vstream.io.parquet`` -> ``io``;
    the package itself -> ``vstream``); None outside the package."""
    parts = module.split(".")
    if parts[0] != "vstream":
        return None
    return parts[1] if len(parts) > 1 else "vstream"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``source`` that runs, relative imports
    resolved against ``module``."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                if node.module:
                    found.append((node.lineno, ".".join([*base, node.module])))
                else:
                    found.extend((node.lineno, ".".join([*base, a.name])) for a in node.names)
            elif node.module == "vstream":  # ``from vstream import io, Stream``
                found.extend(
                    (node.lineno, f"vstream.{a.name}" if a.name in LAYERS else "vstream")
                    for a in node.names
                )
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of ``source`` (the text of ``module``) that go against the layer order."""
    unit = _unit(module)
    assert unit is not None
    if unit not in LAYERS:
        return [f"{module} is in no layer of vstream/_layers.py"]
    out = []
    for line, target in imports_of(source, module, is_package):
        other = _unit(target)
        if other is None or other == unit:
            continue
        if other not in LAYERS:
            out.append(f"{module}:{line} imports {target}, in no layer of vstream/_layers.py")
        elif rank(other) > rank(unit):
            out.append(f"{module}:{line} imports {target} ({other} is above {unit})")
    return out


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in _modules()}
    missing = sorted(u for u in units if u is not None and u not in LAYERS)
    assert not missing, f"units without a layer in vstream/_layers.py: {missing}"


def test_imports_go_downward_only() -> None:
    bad: list[str] = []
    for path in _modules():
        bad += violations(path.read_text(), _module_name(path), path.name == "__init__.py")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from vstream.plan.nodes import Node\n", "vstream.io.base", 1),  # io below plan
        ("def f():\n    from vstream.api import Stream\n", "vstream.runtime.x", 1),  # deferred
        ("from ..ops import base\n", "vstream.plan.nodes", 1),  # relative, upward
        ("import vstream\n", "vstream.runtime.job", 1),  # the public package is the top
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vstream.api import S\n",
            "vstream.runtime.x",
            0,
        ),
        ("from vstream.kernels.window import panes\n", "vstream.ops.window", 0),  # downward
        ("from . import panes\n", "vstream.ops.window", 0),  # same unit
    ],
)
def test_the_layer_check_catches_upward_imports(source: str, module: str, expected: int) -> None:
    is_package = module == "vstream.ops.window"
    assert len(violations(source, module, is_package)) == expected


def test_no_module_over_800_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"
