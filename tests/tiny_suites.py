"""The one tiny suite of the tests, and the one writer of suite files.

``TINY`` is a two-variant suite (vanilla post-norm ``a`` against pre-norm ``b`` on copy, two seeds, one
cost cell) that trains in a second. A test that needs a suite asks for it with its changes:

    tiny_suite(seeds=[0], train={"steps": 2}, profile=None)  # the conftest fixture: under tmp_path
    tiny_suite(MINE, variants=[...], file="x.yaml")          # a module's own changes, then the test's
    write_tiny_suite(folder, name="x")                       # the same, in a folder of one's own

Each change is a JSON merge patch (RFC 7386) of ``TINY``: a mapping is merged key by key into the
section it names (``train={"steps": 2}`` keeps the other train keys; :func:`section_only` drops them),
``None`` deletes a key or a whole section, anything else (a list of tasks or variants, a scalar)
replaces it. Mappings given before the
keywords (a test module's changes) apply first, in order. The file is written one
line per top-level key and per task or variant, so a line number names one entry.

A test that checks the text of a suite file (an error's ``file:line``) keeps its literal text and
writes it with :func:`write_suite`, as :func:`write_tiny_suite` and the ``refused_suite`` fixture do.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TINY_YAML = """\
name: tiny
seeds: [0, 1]
baseline: a
train: {steps: 6, batch_size: 4, lr: 3.0e-3, warmup_steps: 1, eval_every: 3, eval_batches: 1,
        eval_batch_size: 8, profile_steps: 1, profile_warmup: 0}
model: {d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1}
tasks:
  - {task: copy, seq_len: 4, vocab: 4}
variants:
  - {name: a, model: vanilla}
  - {name: b, model: vanilla, norm: pre}
profile: {seq_lens: [8], batch_size: 2}
"""
TINY: dict[str, Any] = yaml.safe_load(TINY_YAML)


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied as a JSON merge patch (RFC 7386); neither is modified."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def tiny_spec(*patches: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """The tiny suite as data, with ``patches`` then ``changes`` merged in (see the module's docstring)."""
    spec = TINY
    for patch in (*patches, changes):
        spec = merge_patch(spec, patch)
    return spec


def section_only(section: str, **keys: Any) -> dict[str, Any]:
    """A change that replaces a section of ``TINY`` by ``keys`` alone (its other keys deleted), e.g.
    ``train=section_only("train", steps=1, batch_size=8)`` leaves every other train key at its default."""
    return {key: None for key in TINY[section]} | keys


def _flow(value: Any) -> str:
    """``value`` as one line of flow-style YAML."""
    text = yaml.safe_dump([value], default_flow_style=True, width=float("inf"), sort_keys=False,
                          allow_unicode=True)
    return text.strip()[1:-1]  # the one-element list's brackets off


def suite_yaml(spec: Mapping[str, Any]) -> str:
    """A suite's data as the text of its file: one line per top-level key, and under ``tasks:`` and
    ``variants:`` (any list of mappings) one line per entry."""
    lines = []
    for key, value in spec.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{key}:")
            lines.extend(f"  - {_flow(v)}" for v in value)
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def write_suite(path: Path, suite: str | Mapping[str, Any]) -> Path:
    """Write a suite file: literal text as it is, data (a spec such as :func:`tiny_spec`'s) as
    :func:`suite_yaml` lays it out. Makes the folder if need be; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(suite if isinstance(suite, str) else suite_yaml(suite), encoding="utf-8")
    return path


def write_tiny_suite(
    folder: Path, *patches: Mapping[str, Any], file: str | None = None, **changes: Any,
) -> Path:
    """The tiny suite with ``patches`` and ``changes``, as ``folder/file`` (default: ``<its name>.yaml``)."""
    spec = tiny_spec(*patches, **changes)
    return write_suite(folder / (file or f"{spec['name']}.yaml"), spec)
