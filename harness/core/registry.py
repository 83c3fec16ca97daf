"""Name -> model / task / preset registry.

Models and tasks register themselves with a decorator in their own file; nothing else needs editing
to add one. Two views of the registry exist:

- the *static* view (:func:`static_names`) reads the decorator calls from the source files with
  ``ast``, so ``harness list`` and ``harness --help`` answer without importing torch;
- the *live* view imports every module under ``harness.models`` and ``harness.tasks`` and is what
  ``build_model`` uses. A test checks that both views agree.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # harness/


@dataclass
class Entry:
    """A registered model or task: the object to call, its config dataclass, a one-line summary."""

    name: str
    obj: Any
    config: Any  # the config dataclass (a type)
    summary: str
    module: str


@dataclass
class Preset:
    """A named configuration of a registered model: data merged under the caller's keys."""

    name: str
    model: str
    config: dict[str, Any]
    summary: str


@dataclass
class Registry:
    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        if entry.name in self.entries and self.entries[entry.name].module != entry.module:
            raise HarnessError(
                f"duplicate {self.kind} name '{entry.name}' in {entry.module} "
                f"(already registered by {self.entries[entry.name].module})"
            )
        self.entries[entry.name] = entry

    def get(self, name: str) -> Entry:
        _discover()
        if name not in self.entries:
            raise HarnessError(unknown_message(self.kind, name, self.names()))
        return self.entries[name]

    def names(self) -> list[str]:
        _discover()
        return sorted(self.entries)


MODELS = Registry("model")
TASKS = Registry("task")
PRESETS: dict[str, Preset] = {}


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def register_model(name: str, config: type) -> Callable[[Any], Any]:
    """Class decorator: ``@register_model("vanilla", config=VanillaConfig)``.

    The class is built as ``cls(cfg)`` with an instance of ``config``.
    """

    def deco(cls: Any) -> Any:
        MODELS.add(Entry(name, cls, config, _summary(cls), cls.__module__))
        return cls

    return deco


def register_task(name: str, config: type) -> Callable[[Any], Any]:
    """Class decorator for tasks; the class is built as ``cls(cfg)``."""

    def deco(cls: Any) -> Any:
        TASKS.add(Entry(name, cls, config, _summary(cls), cls.__module__))
        return cls

    return deco


def register_preset(name: str, model: str, summary: str = "", **config: Any) -> None:
    """A preset is a registered name for (model, config); suite keys override its values."""
    if name in PRESETS or name in MODELS.entries:
        raise HarnessError(f"duplicate model or preset name '{name}'")
    PRESETS[name] = Preset(name, model, dict(config), summary)


_DISCOVERED = False


def _discover() -> None:
    """Import every module of harness.models and harness.tasks once, so their decorators run."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for pkg in ("harness.models", "harness.tasks"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.iter_modules(mod.__path__):
            importlib.import_module(f"{pkg}.{info.name}")


def resolve_model(name: str) -> tuple[Entry, dict[str, Any]]:
    """A model or preset name -> (model entry, preset config to merge under the caller's keys)."""
    _discover()
    if name in PRESETS:
        p = PRESETS[name]
        return MODELS.get(p.model), dict(p.config)
    if name in MODELS.entries:
        return MODELS.entries[name], {}
    raise HarnessError(unknown_message("model", name, sorted([*MODELS.entries, *PRESETS])))


def unknown_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else f" Known: {', '.join(known)}."
    return f"unknown {kind} '{name}'.{hint}"


# --------------------------------------------------------------------------------------------------
# Static view: the same names, read from the source without importing torch.


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def static_names() -> dict[str, list[tuple[str, str]]]:
    """{'models': [(name, summary)], 'presets': [...], 'tasks': [...]} read from decorator calls."""
    out: dict[str, list[tuple[str, str]]] = {"models": [], "presets": [], "tasks": []}
    for sub, kind in (("models", "models"), ("tasks", "tasks")):
        for path in sorted((PACKAGE_DIR / sub).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    for dec in node.decorator_list:
                        if (
                            isinstance(dec, ast.Call)
                            and isinstance(dec.func, ast.Name)
                            and dec.func.id in ("register_model", "register_task")
                            and dec.args
                        ):
                            doc = (ast.get_docstring(node) or "").strip().splitlines()
                            out[kind].append((_literal(dec.args[0]), doc[0] if doc else ""))
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "register_preset"
                    and node.args
                ):
                    summary = next((_literal(k.value) for k in node.keywords if k.arg == "summary"), "")
                    model = _literal(node.args[1]) if len(node.args) > 1 else ""
                    out["presets"].append((_literal(node.args[0]), f"{model}: {summary or ''}".strip()))
    for v in out.values():
        v.sort()
    return out


def static_suites(root: Path) -> list[tuple[str, str]]:
    """Suites under root/suites with their description line (YAML parsed safely; no torch)."""
    import yaml

    rows = []
    for path in sorted((root / "suites").glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            desc = str(data.get("description", "")) if isinstance(data, dict) else ""
        except yaml.YAMLError:
            desc = "(unreadable YAML)"
        rows.append((path.name, desc))
    return rows
