"""A training step's numerics: the learning-rate schedule and the precision forward passes run in."""

from __future__ import annotations

import contextlib
import math

import torch


def lr_at(step: int, *, lr: float, steps: int, warmup: int, min_ratio: float) -> float:
    """Learning rate for 0-based ``step``: linear warm-up to ``lr``, then cosine to ``lr * min_ratio``."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context forward passes and losses run in: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in AMP_DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[precision])
