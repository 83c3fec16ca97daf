"""``harness list``: the registry and the suites, and one model, preset, task or suite in full.

``harness list [models|tasks|suites]`` answers from the source without importing torch (the registry's
static view). ``harness list model NAME`` (or ``models NAME``) and ``harness list task NAME`` build the
registry and print what a suite file may set: every key of the config with its type, default and
bounds and the comment beside it in the source, the first paragraph of the class's and the module's
docstrings, and for a preset the keys it sets over the model's defaults. ``harness list SUITE`` prints a
suite (:func:`harness.cli.listing.describe_suite`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

from harness.cli.listing import describe_suite, find_suite, suite_lines, terminal_width

__all__ = ["cmd_list", "describe_model", "describe_task", "first_paragraph", "key_table"]

EXIT_OK, EXIT_BAD_INPUT = 0, 2
SECTIONS = ("models", "tasks", "suites")
SINGULAR = {"model": "models", "models": "models", "preset": "models", "presets": "models", "task": "tasks",
            "tasks": "tasks"}


def _error(message: str) -> int:
    sys.stderr.write(f"harness: error: {message}\n")
    return EXIT_BAD_INPUT


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph, its lines joined."""
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n", 1)[0].split()) if text else ""


def _notes(cfg_cls: type) -> dict[str, str]:
    """The comment beside each field in the source of the config class and its bases."""
    out: dict[str, str] = {}
    for cls in reversed(cfg_cls.__mro__):
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def _type_text(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    args = typing.get_args(tp)
    if args and origin is not None and origin not in (list, tuple, dict):
        return " | ".join("null" if a is type(None) else _type_text(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type_text(args[0])}" if args else "list"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "(required)"


def key_table(cfg_cls: type, preset: dict[str, Any] | None = None) -> str:
    """Every key of a config class: type, default (a preset's value marked), bounds and source note."""
    from tabulate import tabulate

    from harness.suite.differ import show_value

    hints = typing.get_type_hints(cfg_cls)
    notes = _notes(cfg_cls)
    rows = []
    for f in dataclasses.fields(cfg_cls):
        if not f.init:
            continue
        default = show_value(_default(f))
        if preset and f.name in preset:
            default = f"{show_value(preset[f.name])} (preset; model default {default})"
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        bounds = " ".join(x for x in (f">= {lo:g}" if lo is not None else "",
                                      f"<= {hi:g}" if hi is not None else "") if x)
        rows.append([f.name, _type_text(hints.get(f.name, Any)), default, bounds, notes.get(f.name, "")])
    return tabulate(rows, headers=["key", "type", "default", "bounds", "note"], disable_numparse=True)


def _docs(obj: Any) -> list[str]:
    """The class's docstring's first paragraph and its module's, wrapped to the terminal."""
    import textwrap

    width = max(40, terminal_width())
    module = sys.modules.get(obj.__module__)
    paras = [first_paragraph(obj.__doc__), first_paragraph(getattr(module, "__doc__", None))]
    out = [textwrap.fill(p, width) for p in dict.fromkeys(p for p in paras if p)]
    path = Path(inspect.getfile(obj)).resolve()
    try:
        shown = path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = str(path)
    return [*out, f"(the whole story: the docstrings of {shown})"]


def describe_model(name: str) -> str:
    """``harness list model NAME``: a registered model or preset, its docstrings and its keys."""
    from harness.core.registry import PRESETS, resolve_model

    entry, preset = resolve_model(name)
    head = (f"preset {name}: model {entry.name} with {len(preset)} key(s) set ({PRESETS[name].summary})"
            if name in PRESETS else f"model {name}: config {entry.config.__name__}")
    tail = ("A suite's task fills the keys it fixes (vocab_size and max_len of token models, the image "
            "keys of image models) where the variant does not set them; a set value may be larger than "
            "the task needs, never smaller.")
    return "\n\n".join([head, *_docs(entry.obj), key_table(entry.config, preset), tail])


def describe_task(name: str) -> str:
    """``harness list task NAME``: a registered task, its docstrings, its keys and the models it takes."""
    from harness.core.registry import TASKS

    entry = TASKS.get(name)
    ios = ", ".join(getattr(entry.obj, "ios", ()))
    head = f"task {name}: config {entry.config.__name__}; models of io {ios}"
    return "\n\n".join([head, *_docs(entry.obj), key_table(entry.config)])


def _registry(what: str) -> None:
    from harness.core.registry import static_names, static_suites

    names = static_names()
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    if what in ("all", "models"):
        sections += [("models", names["models"]), ("presets", names["presets"])]
    if what in ("all", "tasks"):
        sections.append(("tasks", names["tasks"]))
    for title, rows in sections:
        print(f"{title}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, summary in rows:
            print(f"  {name:<{width}}  {summary}".rstrip())
    if what in ("all", "suites"):
        print("suites:", *suite_lines(static_suites(Path.cwd())), sep="\n")
    if what == "all":
        print("(harness list model NAME, harness list task NAME: a model's or task's keys and defaults)")


def cmd_list(args: argparse.Namespace) -> int:
    from harness.core.errors import HarnessError

    what, name = args.what or "all", args.name
    try:
        if what in SINGULAR and name:
            text = describe_model(name) if SINGULAR[what] == "models" else describe_task(name)
            print(text)
        elif name:
            return _error(f"list {what} {name}: expected 'model NAME' or 'task NAME'")
        elif what in ("all", *SECTIONS):
            _registry(what)
        else:
            return _list_suite(what)
    except HarnessError as e:
        return _error(str(e))
    return EXIT_OK


def _list_suite(name: str) -> int:
    """``harness list SUITE``: the whole description and the job grid (and a hint where a model or task
    has the same name)."""
    from harness.core.registry import static_names
    from harness.suite.load import load_suite

    path = find_suite(name, Path.cwd())
    registered = {kind: {n for n, _ in rows} for kind, rows in static_names().items()}
    also = [kind.rstrip("s") for kind in ("models", "presets", "tasks") if name in registered[kind]]
    if path is None:
        if also:
            return _error(f"list {name}: not a suite; it is a {also[0]}: harness list {also[0]} {name}")
        return _error(f"list {name}: not models, tasks, suites, a suite under suites/ or a suite file")
    print(describe_suite(load_suite(str(path), [])))
    for kind in also:
        print(f"\n({name} is also a {kind}: harness list {'model' if kind == 'preset' else kind} {name})")
    return EXIT_OK
