"""The house rules of docs/architecture.md, checked on the source: module and function sizes, no private
name imported across modules, and imports that go one way (models and tasks know nothing of suites,
rows or reports; the report never imports torch)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# layers below the pipeline: what they may import from harness (besides themselves)
BASE = {"harness.config", "harness.errors", "harness.registry"}
ALLOWED = {
    "models": BASE | {"harness.models", "harness.tasks.base"},
    "tasks": BASE | {"harness.models.base", "harness.tasks"},
    "rows": set(),
    "stats": set(),
}


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _harness_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_and_functions_are_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(_tree(path))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{_name(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_private_name_crosses_a_module(path: Path) -> None:
    imports = [(m, names) for m, names in _harness_imports(_tree(path)) if m.startswith("harness")]
    private = [(module, name) for module, names in imports
               for name in names if name.startswith("_") and not name.startswith("__")]
    assert not private, f"{_name(path)} imports private names: {private}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_only_downwards(layer: str) -> None:
    folder = PACKAGE / layer
    paths = sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{layer}.py"]
    for path in paths:
        for module, _ in _harness_imports(_tree(path)):
            if module == "harness" or not module.startswith("harness."):
                continue
            ok = any(module == a or module.startswith(a + ".") for a in ALLOWED[layer])
            assert ok, f"{_name(path)} imports {module}, above its layer"


def test_the_report_does_not_import_torch() -> None:
    for path in sorted((PACKAGE / "report").glob("*.py")):
        mods = [m for m, _ in _harness_imports(_tree(path))]
        assert not [m for m in mods if m == "torch" or m.startswith("torch.")], _name(path)
