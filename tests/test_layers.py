"""Every import points down a layer: common/ (shared) < engine/, backend/ (services, which
never import each other) < playground/ (the CLI and `up`) < bench/. No module imports another
that imports it back (no circles), and inside backend/ the packages stand in levels too
(BACKEND_LEVELS). Read from the source with ast, so a lazy import inside a function counts too."""

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
    # Benchmarks and their seeders stand above the product, which never imports them.
    "bench": {"common", "engine", "backend", "playground"},
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


def _modules() -> dict[str, Path]:
    """Every project module, dotted name -> file (a package's name is its __init__.py's)."""
    out = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _module_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (``from a import b`` counts as a.b when b is a
    module, else as a); lazy imports inside functions count too."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:
                        edges.add(sub)
                    elif node.module in modules:
                        edges.add(node.module)
        edges.discard(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or round a longer loop."""
    assert not _cycles(_module_graph())


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Inside backend/, each level imports only the levels below it (and itself). The services:
# features/ reads runs (activations/ records, packing, views), so activations/ never imports
# features/. The HTTP routers (each package's api_router.py) stand above every service: the
# activations router serves GET /runs through the feature explorer.
BACKEND_LEVELS = [
    {"settings"},
    {"db", "upstreams", "deps"},
    {"metrics"},  # backend/metrics.py: read by the services, reads db/
    {"limits"},  # admission, slots and quotas: the runs' writes consult them
    {"activations", "health", "injection"},
    {"features", "page"},
    set(),  # the routers: every package's api_router.py
    {"app"},
    {"cli", "export_cli"},
]
ROUTERS_LEVEL = BACKEND_LEVELS.index(set())


def _backend_level(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 2 and parts[2] == "api_router":
        return ROUTERS_LEVEL
    return next(i for i, level in enumerate(BACKEND_LEVELS) if parts[1] in level)


def test_backend_imports_point_down_inside() -> None:
    graph = _module_graph()
    upward = {}
    for module, imported in graph.items():
        if not module.startswith("backend."):
            continue
        level = _backend_level(module)
        bad = [
            m
            for m in imported
            if m.startswith("backend.")
            and m.split(".")[1] != module.split(".")[1]
            and _backend_level(m) >= level
        ]
        if bad:
            upward[module] = sorted(bad)
    assert not upward, f"imports up or across a level inside backend/: {upward}"


def test_activations_never_imports_features() -> None:
    graph = _module_graph()
    bad = {
        m: sorted(i for i in imported if i.startswith("backend.features"))
        for m, imported in graph.items()
        if m.startswith("backend.activations.") and m != "backend.activations.api_router"
    }
    assert not {m: i for m, i in bad.items() if i}


MAX_MODULE_LINES = 300


def test_module_sizes() -> None:
    """No module of the product over MAX_MODULE_LINES lines unless its docstring says why it
    must stay "one piece" (a module that big usually holds a second job worth its own file)."""
    too_big = {}
    for package in ("common", "engine", "backend", "playground"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            lines = text.count("\n")
            if lines > MAX_MODULE_LINES and "one piece" not in (
                ast.get_docstring(ast.parse(text)) or ""
            ):
                too_big[str(path.relative_to(ROOT))] = lines
    assert not too_big, f"over {MAX_MODULE_LINES} lines, no 'one piece' reason: {too_big}"
