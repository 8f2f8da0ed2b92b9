"""The library's import graph: no circle, and nothing imports a layer above its own (lazy imports inside functions
count). The layers, bottom to top, are the pipeline's order; a new module must find its place in LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1] / "musetalk_core"
# top-level names under musetalk_core, lowest layer first; "" is the package itself
LAYERS = [
    {"", "errors", "hooks", "environment", "passes", "cpu_pool", "warp_ops", "types", "frame_mapping",
     "out_of_memory", "options"},
    {"models", "io"},
    {"weights"},
    {"faces", "audio", "blend"},
    {"generators", "speakers"},
    {"pipeline"},
    {"batch", "realtime", "cli", "lipsync_args", "startup", "__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> Dict[str, Set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next(k for k, names in enumerate(LAYERS) if top in names)


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    unplaced = [m for m in import_graph() if not any((m.split(".")[1] if "." in m else "") in names
                                                     for names in LAYERS)]
    assert unplaced == []


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_nothing_imports_upward():
    upward = [f"{m} -> {o}" for m, deps in sorted(import_graph().items()) for o in sorted(deps)
              if layer_of(o) > layer_of(m)]
    assert upward == []


def test_the_checks_see_a_circle_and_an_upward_import():
    """The checks can fail: a made-up graph with a circle and an upward import is caught."""
    graph = {"musetalk_core.faces.a": {"musetalk_core.faces.b"}, "musetalk_core.faces.b": {"musetalk_core.faces.a"},
             "musetalk_core.io.c": {"musetalk_core.pipeline"}, "musetalk_core.pipeline": set()}
    assert cycles(graph) == [["musetalk_core.faces.a", "musetalk_core.faces.b"]]
    assert layer_of("musetalk_core.pipeline") > layer_of("musetalk_core.io.c")
