"""What every model returns, and the small contract the runner relies on.

Models know nothing of suites, stores or reports: they take tensors and return a
:class:`ModelOutput`. The runner reads ``model.io`` to know how a task must lay out its batch:

- ``"lm"``: one token stream ``x`` [B, T]; causal; logits [B, T, V] predict the next token's label.
- ``"masked"``: one token stream ``x`` [B, T] where target slots hold a blank token; bidirectional;
  logits [B, T, V] are read at the target slots.
- ``"seq2seq"``: source ``x`` [B, S] and shifted target ``y`` [B, T]; logits [B, T, V].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

IOFormat = Literal["lm", "masked", "seq2seq", "classify", "image"]


@dataclass
class ModelOutput:
    """Logits plus anything the loss or the result row needs.

    ``aux_loss`` is added to the task loss as it is (the model has already applied its weight, e.g. the
    ACT ponder cost times its coefficient). ``extras`` holds scalar diagnostics that become result fields
    (e.g. ``ponder_steps``); values must be Python floats or 0-d tensors.
    """

    logits: torch.Tensor
    aux_loss: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
