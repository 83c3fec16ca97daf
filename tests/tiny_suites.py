"""A tiny two-variant suite (vanilla post-norm `a` against pre-norm `b` on copy, two seeds, one cost
cell) that trains in a second, for tests of the machinery around jobs (leases, tracking)."""

from __future__ import annotations

from pathlib import Path

TWO_VARIANTS = """\
name: {name}
description: {description}
seeds: [0, 1]
baseline: a
train: {{steps: 6, batch_size: 4, lr: 3.0e-3, warmup_steps: 1, eval_every: 3, eval_batches: 1,
        eval_batch_size: 8, profile_steps: 1, profile_warmup: 0}}
model: {{d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1}}
tasks:
  - {{task: copy, seq_len: 4, vocab: 4}}
variants:
  - {{name: a, model: vanilla}}
  - {{name: b, model: vanilla, norm: pre}}
profile: {{seq_lens: [8], batch_size: 2}}
"""


def write_two_variants(folder: Path, name: str, description: str) -> Path:
    """The suite as ``folder/<name>.yaml``."""
    path = folder / f"{name}.yaml"
    path.write_text(TWO_VARIANTS.format(name=name, description=description))
    return path
