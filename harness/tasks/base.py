"""Task contract: a task makes batches from a seeded generator and scores model outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from harness.models.base import ModelOutput

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
        """Input tokens per example; for images (float [B, C, H, W] inputs), pixels per example."""
        return sum(
            int(t.shape[-2] * t.shape[-1]) if t.is_floating_point() and t.dim() == 4 else int(t.shape[1])
            for t in self.inputs.values()
            if t.dim() >= 2
        )

    @property
    def seq_len(self) -> int:
        """The size a result row records: tokens per example, or an image's side in pixels."""
        images = [t for t in self.inputs.values() if t.is_floating_point() and t.dim() == 4]
        return int(images[0].shape[-1]) if images else self.n_tokens

    def to(self, device: torch.device | str) -> "Batch":
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))


def token_loss(out: "ModelOutput", batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the scored label positions, plus the model's auxiliary loss if any."""
    logits = out.logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), ignore_index=IGNORE)
    return loss if out.aux_loss is None else loss + out.aux_loss
