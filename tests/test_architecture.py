"""The package's shape: no import cycles between pet's modules, and the layers import only downward.

Every ``import pet.x`` / ``from pet.x import y`` counts, including imports inside functions (a cycle
hidden in a function is still a cycle: it only fails later, at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "pet"
# A layer may import from itself and from the layers before it, never from a later one.
LAYERS = ["pet.errors", "pet.io", "pet.core", "pet.stages", "pet.evaluation", "pet.report", "pet.tools", "pet.pipeline", "pet.results", "pet.api", "pet.cli"]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in modules and c != name and c != "pet")
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int | None:
    for rank, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_detector_finds_a_cycle():
    """The check above can fail: a two-module and a three-module cycle are both reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_layers_import_only_downward():
    upward = [f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
              if layer(module) is not None and layer(target) is not None and layer(target) > layer(module)]
    assert upward == []


def test_stages_do_not_reach_into_later_stages():
    """Stage A knows nothing of B or C, and B nothing of C: they talk through artifacts on disk."""
    order = ["pet.stages.teachers", "pet.stages.labelling", "pet.stages.distillation"]
    backward = [f"{module} -> {target}" for module, targets in import_graph().items() for target in targets
                for i, stage in enumerate(order) if module.startswith(stage)
                for later in order[i + 1:] if target.startswith(later)]
    assert backward == []
