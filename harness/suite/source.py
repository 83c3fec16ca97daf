"""Reading a suite file: includes merged (the including file's keys win), ``KEY=VALUE`` overrides
applied, and for every key path the ``file:line`` (or ``override '...'``) it came from, so that any
later refusal can name where to look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core import yamlio
from harness.core.errors import InputError

KeyPath = tuple[Any, ...]


class Source:
    """Where each key path of the merged suite data came from."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.locs: dict[KeyPath, str] = {}

    def locate(self, dotted: str) -> str:
        """``file:line`` of the key, or of its nearest enclosing key that has one."""
        kp = split_key(dotted)
        while kp:
            if kp in self.locs:
                return self.locs[kp]
            kp = kp[:-1]
        return self.locs.get((), self.display)


def split_key(dotted: str) -> KeyPath:
    """``variants[1].sweep.k`` or ``variants.1.sweep.k`` -> ``('variants', 1, 'sweep', 'k')``."""
    out: list[Any] = []
    for part in dotted.replace("[", ".").replace("]", "").split("."):
        if part == "":
            continue
        out.append(int(part) if part.isdigit() else part)
    return tuple(out)


def dotted_key(kp: KeyPath) -> str:
    """The inverse of :func:`split_key`: ``('variants', 1, 'k')`` -> ``variants[1].k``."""
    s = ""
    for p in kp:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, mappings merged key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_with_includes(path: Path, display: str, src: Source, seen: tuple[Path, ...]) -> dict:
    """The suite at ``path`` with its ``include:`` files merged under it (recording locations in ``src``)."""
    data, locs = yamlio.load(path, display)
    if data is None:
        raise InputError(f"{display}:1", "", "suite file is empty")
    if not isinstance(data, dict):
        raise InputError(locs.get((), display), "", f"a suite must be a mapping, got {type(data).__name__}")
    merged: dict = {}
    inc = data.get("include")
    if inc is not None:
        names = inc if isinstance(inc, list) else [inc]
        for i, name in enumerate(names):
            kp = ("include", i) if isinstance(inc, list) else ("include",)
            target = _include_target(path, name, locs[kp], dotted_key(kp), seen)
            shown = str(Path(display).parent / name)
            merged = deep_merge(merged, load_with_includes(target, shown, src, (*seen, target)))
    # this file's keys win, and so do their locations
    src.locs.update(locs)
    return deep_merge(merged, {k: v for k, v in data.items() if k != "include"})


def _include_target(path: Path, name: Any, where: str, key: str, seen: tuple[Path, ...]) -> Path:
    if not isinstance(name, str):
        raise InputError(where, key, f"expected a file name, got {name!r}")
    target = (path.parent / name).resolve()
    if target in seen:
        raise InputError(where, key, f"include cycle through {name}")
    if not target.exists():
        raise InputError(where, key, f"included file not found: {name}")
    return target


def apply_override(data: dict, text: str, src: Source) -> None:
    """``a.b.c=VALUE`` sets a nested key (creating mappings); integers index lists."""
    where = f"override '{text}'"
    if "=" not in text:
        raise InputError(where, "", "expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise InputError(where, key, "malformed key")
    value = yamlio.parse_scalar(raw, where, key)
    kp = split_key(key)
    node: Any = data
    for i, part in enumerate(kp[:-1]):
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise InputError(where, key, f"no list item {part} under {dotted_key(kp[:i]) or 'top level'}")
            node = node[part]
        elif isinstance(node, dict):
            if part not in node:
                node[part] = [] if isinstance(kp[i + 1], int) else {}
            node = node[part]
        else:
            raise InputError(where, key, f"{dotted_key(kp[:i])} is not a mapping or list")
    last = kp[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise InputError(where, key, "list index out of range")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError(where, key, f"{dotted_key(kp[:-1])} is not a mapping or list")
    for k in [k for k in src.locs if k[: len(kp)] == kp]:
        del src.locs[k]
    src.locs[kp] = where


OVERRIDE = "override '"


def typed_key(error: InputError) -> InputError:
    """An error located at a ``KEY=VALUE`` override, its key written as the override typed it
    (``variants.0.n_layers`` rather than the suite's ``variants[0].n_layers``); other errors as they are."""
    if not error.where.startswith(OVERRIDE) or not error.key:
        return error
    typed = error.where[len(OVERRIDE):].split("=", 1)[0].strip()
    typed_path, path = split_key(typed), split_key(error.key)
    if path[:len(typed_path)] != typed_path:
        return error
    dots = "[" not in typed
    rest = "".join(f".{p}" if dots or not isinstance(p, int) else f"[{p}]" for p in path[len(typed_path):])
    return InputError(error.where, typed + rest, error.message)
