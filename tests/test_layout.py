"""DESIGN.md's module boundaries: vision and geo import nothing of ours; pipeline not api."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"vision", "geo", "pipeline", "api"}
ALLOWED = {
    "vision": {"vision"},
    "geo": {"geo"},
    "pipeline": {"pipeline", "vision", "geo"},
    "api": {"api", "pipeline", "vision", "geo"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        extra = _imports(path) - ALLOWED[package]
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: {bad}"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for pkg in OURS
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not big, f"split these modules (over 500 lines): {big}"
