"""Typed, validated configs: plain dicts (from YAML) -> dataclasses, with located errors.

A config dataclass declares its keys with type hints; ``field(metadata=...)`` may add ``min``/``max``
bounds. A class may define ``check(self) -> list[tuple[str, str]]`` returning (key, message) pairs for
constraints between keys (e.g. heads dividing d_model). Every error is raised as :class:`InputError`
naming the file, line and dotted key, through a ``locate`` callback supplied by the caller.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from harness.core.errors import InputError

Locate = Callable[[str], str]  # dotted key -> "file:line"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str, locate: Locate) -> Any:
    """Check ``value`` against type ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    bad = InputError(locate(key), key, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise InputError(locate(key), key, f"must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key, locate)
            except InputError:
                continue
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise bad
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        return [coerce(v, inner, f"{key}[{i}]", locate) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def build(cls: type, data: Any, prefix: str, locate: Locate, what: str = "", check: bool = True) -> Any:
    """Build dataclass ``cls`` from mapping ``data``; unknown keys, wrong types, bounds and
    ``check()`` failures raise :class:`InputError` at ``prefix.key``. ``check=False`` skips ``check()``
    (for a reader that checks only what it can without the registry, which imports torch)."""
    if not isinstance(data, dict):
        raise InputError(locate(prefix), prefix, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(fields))}"
            raise InputError(locate(dotted), dotted, f"unknown key{f' for {what}' if what else ''}{hint}")
        v = coerce(value, hints[key], dotted, locate)
        meta = fields[key].metadata
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if "min" in meta and v < meta["min"]:
                raise InputError(locate(dotted), dotted, f"must be >= {meta['min']}, got {v!r}")
            if "max" in meta and v > meta["max"]:
                raise InputError(locate(dotted), dotted, f"must be <= {meta['max']}, got {v!r}")
        kwargs[key] = v
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        dotted = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise InputError(locate(prefix), dotted, "required key is missing")
    obj = cls(**kwargs)
    checker = getattr(obj, "check", None) if check else None
    if checker is not None:
        for key, message in checker():
            dotted = f"{prefix}.{key}" if prefix else key
            raise InputError(locate(dotted), dotted, message)
    return obj


def positive(default: Any) -> Any:
    """A field for a size or count that must be >= 1."""
    return dataclasses.field(default=default, metadata={"min": 1})


def bounded(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A numeric field with inclusive bounds."""
    meta: dict[str, Any] = {}
    if lo is not None:
        meta["min"] = lo
    if hi is not None:
        meta["max"] = hi
    return dataclasses.field(default=default, metadata=meta)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
