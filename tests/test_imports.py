"""The package's import graph: no circles, imports go downward, the core is plain PyTorch."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "prune"

#: Each package's level: a module may import its own package and lower levels only.
LEVELS = {
    "prune.registry": 0,
    "prune.errors": 0,
    "prune.rng": 0,
    "prune.checks": 1,
    "prune.lrp": 2,
    "prune.models": 2,
    "prune.data": 2,
    "prune.pruning": 3,  # criteria read prune.lrp's RelevanceStats
    "prune.module": 4,
    "prune.callbacks": 4,
    "prune.evaluation": 5,
    "prune.run": 6,
    "prune.tuning": 7,  # a search over runs
}
CORE = ("prune.lrp", "prune.pruning")
FRAMEWORKS = ("lightning", "pytorch_lightning", "hydra", "omegaconf")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """``{module: imported names}`` for every module of the package, any import statement
    (also inside functions and ``TYPE_CHECKING`` blocks)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = found
    return graph


def _level(module: str) -> int | None:
    for package, level in LEVELS.items():
        if module == package or module.startswith(package + "."):
            return level
    return None


def _package(module: str) -> str | None:
    return next((p for p in LEVELS if module == p or module.startswith(p + ".")), None)


def test_the_core_imports_no_framework() -> None:
    bad = [
        f"{module} imports {name}"
        for module, names in _imports().items()
        if module.startswith(CORE)
        for name in names
        if name.split(".")[0] in FRAMEWORKS
    ]
    assert not bad, bad


def test_imports_go_downward() -> None:
    bad = []
    for module, names in _imports().items():
        level, package = _level(module), _package(module)
        if level is None:
            continue
        for name in names:
            target = _level(name)
            if target is not None and _package(name) != package and target >= level:
                bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circles() -> None:
    graph = _imports()
    modules = set(graph)
    edges = {m: {n for n in names if n in modules and n != m} for m, names in graph.items()}
    # a package's __init__ importing its own submodules is not a circle of concepts
    for m in edges:
        edges[m] = {n for n in edges[m] if not n.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            raise AssertionError(" -> ".join(cycle))
