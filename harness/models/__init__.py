"""Model files register themselves with ``@register_model``; every module here is imported on demand."""

from __future__ import annotations

from typing import Any


def build_model(name: str, **config: Any) -> Any:
    """Build a model or preset by name; keys override the preset's. Errors name the bad key."""
    from harness.core.config import build
    from harness.core.errors import HarnessError, InputError
    from harness.core.registry import resolve_model

    entry, preset = resolve_model(name)
    try:
        cfg = build(entry.config, {**preset, **config}, "", lambda _k: "", f"model {entry.name}")
    except InputError as e:
        raise HarnessError(f"{name}: {e.key}: {e.message}") from None
    return entry.obj(cfg)
