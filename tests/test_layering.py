"""The layering DESIGN.md promises, read from the source with `ast` (nothing imported): `run` imports
nothing from `profile`; `sim` and `run` import nothing from `report`. Every import counts, the
ones inside functions too. A package's `cli.py` is the command-line layer on top of everything
(it draws the timelines with atomsim.report) and is not checked. (That `atomsim.sim` never
imports torch is checked at run time by tests/test_sim.py::test_import_and_simulate_without_torch.)"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atomsim"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (for `from M import x`, both M and M.x)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def offenders(layer: str, forbidden: str) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        if path.name == "cli.py":
            continue
        hits = sorted(m for m in imported(path) if m == forbidden or m.startswith(forbidden + "."))
        bad += [f"{path.relative_to(PACKAGE.parent)} imports {m}" for m in hits]
    return bad


def test_resolves_relative_imports():
    path = PACKAGE / "run" / "limit.py"
    names = imported(path)
    assert "atomsim.errors" in names and "atomsim.io" in names   # `from ..errors import`, `from ..io import`


@pytest.mark.parametrize("layer, forbidden", [
    ("run", "atomsim.profile"),
    ("sim", "atomsim.report"),
    ("run", "atomsim.report"),
    ("sim", "atomsim.profile"),
    ("sim", "atomsim.run"),
])
def test_layer_does_not_import(layer, forbidden):
    assert offenders(layer, forbidden) == []
