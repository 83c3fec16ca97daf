"""harness: a benchmark and ablation harness for Transformer variants.

The Python API imports torch only when a function that needs it is called, so that ``harness --help``
and ``harness list`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import torch


def build_model(name: str, **config: Any) -> torch.nn.Module:
    """Build a registered model or preset: ``build_model("vanilla", d_model=64, n_layers=2)``."""
    from harness.models import build_model as _build

    return _build(name, **config)


def list_models() -> list[str]:
    """Registered model and preset names."""
    from harness.core.registry import MODELS, PRESETS

    return sorted([*MODELS.names(), *PRESETS])


def list_tasks() -> list[str]:
    from harness.core.registry import TASKS

    return TASKS.names()


def load_results(path_or_dir: str) -> pandas.DataFrame:
    """All result rows of one ``.jsonl`` file or of every ``*.jsonl`` in a directory, as a DataFrame."""
    from harness.results.store import load_results as _load

    return _load(path_or_dir)


__all__ = ["__version__", "build_model", "list_models", "list_tasks", "load_results"]
