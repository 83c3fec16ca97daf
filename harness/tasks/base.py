"""Task contract: a task makes batches from a seeded generator and scores model outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # label value that the loss and the metrics skip


@dataclass
class Batch:
    """Model inputs (passed as keyword arguments: ``model(**batch.inputs)``) and labels.

    ``labels`` has the shape of the logits without their last axis; positions holding ``IGNORE``
    are not scored. ``n_tokens`` is the number of input tokens per example, for throughput.
    """

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_tokens(self) -> int:
        return sum(int(t.shape[1]) for t in self.inputs.values() if t.dim() >= 2 and not t.is_floating_point())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))
