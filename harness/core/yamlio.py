"""Safe YAML loading that remembers where every key came from.

``load(path)`` returns the data and a map from key path (a tuple of keys and list indices) to
``"file:line"``. Only YAML's safe tags are accepted: a ``!!python/...`` tag is an error at its line.
Duplicate keys, which PyYAML would silently let the last one win, are errors too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import InputError

KeyPath = tuple[Any, ...]


def _tag_message(node: Any) -> str:
    return f"tag {node.tag} is not allowed (safe YAML only)"


def _where(path: str, mark: Any) -> str:
    return f"{path}:{mark.line + 1}" if mark is not None else path


def _walk(loader: yaml.SafeLoader, node: yaml.Node, src: str, kp: KeyPath, locs: dict[KeyPath, str]) -> Any:
    locs[kp] = _where(src, node.start_mark)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in (
        "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:omap",
    ):
        dotted = ".".join(map(str, kp))
        raise InputError(_where(src, node.start_mark), dotted, _tag_message(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _walk(loader, key_node, src, (*kp, "<key>"), {})
            if not isinstance(key, (str, int)):
                where = _where(src, key_node.start_mark)
                raise InputError(where, ".".join(map(str, kp)), "keys must be plain names")
            if key in out:
                dotted = ".".join(map(str, (*kp, key)))
                raise InputError(_where(src, key_node.start_mark), dotted, "duplicate key")
            out[key] = _walk(loader, value_node, src, (*kp, key), locs)
            locs[(*kp, key)] = _where(src, key_node.start_mark)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, v, src, (*kp, i), locs) for i, v in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError:
        dotted = ".".join(map(str, kp))
        raise InputError(_where(src, node.start_mark), dotted, _tag_message(node)) from None


def loads(text: str, src: str) -> tuple[Any, dict[KeyPath, str]]:
    """Parse YAML text; ``src`` names the file in errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {(): f"{src}:1"}
        locs: dict[KeyPath, str] = {}
        return _walk(loader, node, src, (), locs), locs
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise InputError(_where(src, mark), "", f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        raise InputError(src, "", f"YAML error: {str(e).splitlines()[0]}") from None
    finally:
        loader.dispose()


def load(path: Path, display: str | None = None) -> tuple[Any, dict[KeyPath, str]]:
    src = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(src, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(src, "", f"cannot read file: {e}") from None
    return loads(text, src)


def parse_scalar(text: str, where: str, key: str) -> Any:
    """Parse an override's VALUE as YAML (``200``, ``[0,1]``, ``true``, ``abc``)."""
    try:
        data, _ = loads(text, where)
    except InputError as e:
        raise InputError(where, key, e.message) from None
    return data
