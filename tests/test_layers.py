"""Every import points down a layer: common/ (shared) < engine/, backend/ (services, which
never import each other) < playground/ (the CLI and `up`). Read from the source with ast, so a
lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "common": set(),
    "engine": {"common"},
    "backend": {"common"},
    "playground": {"common", "engine", "backend"},
}
PROJECT = set(ALLOWED)


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    upward = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            upward[str(path.relative_to(ROOT))] = sorted(bad)
    assert not upward, f"imports from a layer above or beside {package}/: {upward}"


def test_deploy_module_reads_only_the_shared_layer_at_import() -> None:
    """modal_deploy.py is imported by `modal deploy` without the services' dependencies."""
    tree = ast.parse((ROOT / "modal_deploy.py").read_text())
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
    assert top_level & PROJECT <= {"common"}
