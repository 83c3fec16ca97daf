"""The house rules of docs/architecture.md, checked on the source.

- The package's subpackages form layers, and :data:`ALLOWED` is the whole graph of the imports allowed
  between them. Every import statement counts, at module level or inside a function (a lazy import
  is still a dependency), and so does ``TYPE_CHECKING``-only code. The graph is acyclic, so no
  subpackage reaches back up, directly or through another.
- Inside a subpackage, the modules' imports (function-local ones included) form no cycle either.
- Module and function sizes; no private name imported across modules; the analysis layer (the report
  and the claims ledger) never imports torch.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# subpackage -> the subpackages it may import (besides itself). "harness" is the package's own
# __init__ (the Python API), which may import anything and which nothing imports.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "tasks": {"core", "models"},
    "measure": {"core", "models", "tasks"},
    "suite": {"core", "models", "tasks", "measure"},
    "results": {"core"},
    "run": {"core", "models", "tasks", "measure", "suite", "results"},
    "analysis": {"core", "suite", "results"},
    "cli": {"core", "models", "tasks", "measure", "suite", "results", "run", "analysis"},
    "harness": {"core", "models", "tasks", "measure", "suite", "results", "run", "analysis", "cli"},
}
NO_TORCH = ("analysis", "results", "suite")  # no module of these imports torch at module level


def module_name(path: Path, package: Path = PACKAGE) -> str:
    return ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def harness_imports(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every import statement, wherever it sits."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return out


def layer_of(module: str) -> str:
    """The subpackage a module belongs to ("harness" for the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "harness"


def upward_imports(sources: Iterable[tuple[str, ast.Module]]) -> list[str]:
    """Every import from a subpackage that the graph does not allow, as 'module:line imports target'."""
    bad = []
    for name, tree in sources:
        here = layer_of(name)
        for target, names, line in harness_imports(tree):
            if target != "harness" and not target.startswith("harness."):
                continue
            targets = [target] if target != "harness" else [f"harness.{n}" for n in names]
            for t in targets:
                there = layer_of(t) if t != "harness" else "harness"
                if there != here and there not in ALLOWED.get(here, set()):
                    bad.append(f"{name}:{line} imports {t} ({here} may not import {there})")
    return bad


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _sources() -> list[tuple[str, ast.Module]]:
    return [(module_name(p), _tree(p)) for p in MODULES]


def test_the_allowed_graph_is_a_dag_and_names_every_subpackage() -> None:
    assert _cycle(ALLOWED) is None
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert found == set(ALLOWED) - {"harness"}, "a subpackage is missing from ALLOWED (or is gone)"
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the layers: {loose}"


def test_no_import_goes_up_a_layer() -> None:
    bad = upward_imports(_sources())
    assert not bad, "\n".join(bad)


def test_a_planted_upward_import_is_caught() -> None:
    """The check itself: a model importing the runner, lazily inside a function, fails it."""
    planted = ast.parse("def f():\n    from harness.run.execute import execute\n    return execute\n")
    assert upward_imports([("harness.models.planted", planted)]) == [
        "harness.models.planted:2 imports harness.run.execute (models may not import run)"]
    through_root = ast.parse("from harness import cli\n")
    assert upward_imports([("harness.core.planted", through_root)]) == [
        "harness.core.planted:1 imports harness.cli (core may not import cli)"]
    sideways = ast.parse("import harness.analysis.stats\n")
    assert upward_imports([("harness.results.planted", sideways)]) != []


@pytest.mark.parametrize("layer", sorted(set(ALLOWED) - {"harness"}))
def test_no_module_cycle_inside_a_subpackage(layer: str) -> None:
    sources = [(n, t) for n, t in _sources() if layer_of(n) == layer]
    names = {n for n, _ in sources}
    graph: dict[str, set[str]] = {}
    for name, tree in sources:
        deps = set()
        for target, imported, _ in harness_imports(tree):
            for t in [target, *(f"{target}.{i}" for i in imported)]:
                if t in names and t != name:
                    deps.add(t)
        graph[name] = deps
    # a package's __init__ re-exporting its modules is not a cycle through them
    for name in names:
        if name == f"harness.{layer}":
            continue
        graph[name] = {d for d in graph[name] if d != f"harness.{layer}"}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_a_planted_cycle_is_caught() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_module_and_functions_are_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module_name(path)} has {lines} lines"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(_tree(path))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module_name(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_private_name_crosses_a_module(path: Path) -> None:
    imports = [(m, names) for m, names, _ in harness_imports(_tree(path)) if m.startswith("harness")]
    private = [(module, name) for module, names in imports
               for name in names if name.startswith("_") and not name.startswith("__")]
    assert not private, f"{module_name(path)} imports private names: {private}"


@pytest.mark.parametrize("layer", NO_TORCH)
def test_torch_free_layers_do_not_import_torch(layer: str) -> None:
    """The report, the ledger, the stored rows and the suite loader work without torch; a suite with a
    budget match builds models through the measure layer, which is imported only then."""
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        top = [n for n in _tree(path).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        mods += [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        heavy = [m for m in mods if m.split(".")[0] == "torch" or m.startswith("harness.measure")
                 or m.startswith("harness.models") or m.startswith("harness.tasks")]
        assert not heavy, f"{module_name(path)} imports {heavy} at module level"
