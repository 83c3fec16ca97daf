"""What every image task shares: the batch layout, classification and segmentation scoring.

An image batch is ``Batch({"images": float [B, C, S, S]}, labels)`` with labels ``[B]`` (one class per
image) or ``[B, S, S]`` (one class per pixel; ``IGNORE`` pixels are not scored). Image models declare
``io = "image"`` and return logits ``[B, K]`` or ``[B, S, S, K]`` (classes last, so the token loss of
``harness.tasks.base`` applies unchanged).

A task tells the suite loader which model keys it fixes through :meth:`ImageTask.model_keys`
(``n_classes``, ``in_channels``, ``image_size``, ``head``) and refuses a model that cannot run on it in
:meth:`ImageTask.check_model` (wrong image size, a classifier on a segmentation task, ...).

For cost against resolution, ``profile_batch(seq_len, ...)`` reads ``seq_len`` as the image side.

Bounds (harness/tasks/base.py): ``acc`` floor 1/K, chance the most frequent class's share of
:meth:`ImageTask.bound_labels`; ``pixel_acc`` floor 1/K, chance the share of each pixel position's most
frequent class; ``miou`` floor 0 (no class segmented), chance the mIoU of that per-position majority
map predicted for every image; ceilings 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from harness.models.base import model_io
from harness.tasks.base import IGNORE, Batch, MetricBound, TaskBase, majority_chance


class ImageTask(TaskBase):
    """Base for image tasks; subclasses set ``n_classes``, ``in_channels``, ``head`` and implement
    :meth:`train_batch` and :meth:`eval_sets`."""

    head = "classify"  # or "segment"
    n_classes = 10
    in_channels = 3
    higher_is_better = True
    ios = ("image",)

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.image_size = int(cfg.image_size)

    @property
    def metric(self) -> str:
        return "miou" if self.head == "segment" else "acc"

    # -- suite loader hooks ----------------------------------------------------------------------
    def model_keys(self) -> dict[str, Any]:
        return {"n_classes": self.n_classes, "in_channels": self.in_channels, "image_size": self.image_size,
                "head": self.head}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if model_io(model_cls, cfg) not in self.ios:
            return "it is not an image model"
        size = getattr(cfg, "image_size", None)
        if size is not None and size != self.image_size:
            return f"image_size {size} differs from the task's {self.image_size}"
        head = getattr(cfg, "head", None)
        if head is not None and head != self.head:
            return f"its head is '{head}' but the task needs '{self.head}'"
        return None

    # -- batches ------------------------------------------------------------------------------------
    def batch(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        """Images [B, C, S, S] at the task's ``image_size`` S: S x S pixels per example, of side S."""
        s = self.image_size
        return Batch({"images": images}, labels, n_tokens=s * s, seq_len=s)

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        raise NotImplementedError

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        raise NotImplementedError

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random images of side ``seq_len`` with random labels (cost only: nothing is learned)."""
        images = torch.randn(batch_size, self.in_channels, seq_len, seq_len, generator=gen)
        shape = (batch_size, seq_len, seq_len) if self.head == "segment" else (batch_size,)
        labels = torch.randint(0, self.n_classes, shape, generator=gen)
        return Batch({"images": images}, labels, n_tokens=seq_len * seq_len, seq_len=seq_len)

    # -- scoring ------------------------------------------------------------------------------------
    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, ...]:
        """Classification: (right, scored). Segmentation: per-class intersections, per-class unions,
        then the number of scored pixels."""
        pred = logits.argmax(-1)
        mask = labels != IGNORE
        if self.head == "classify":
            return int(((pred == labels) & mask).sum()), int(mask.sum())
        k = self.n_classes
        p, t = pred[mask], labels[mask]
        inter = torch.bincount(t[p == t], minlength=k)[:k]
        area_p = torch.bincount(p, minlength=k)[:k]
        area_t = torch.bincount(t, minlength=k)[:k]
        union = area_p + area_t - inter
        return (*(int(v) for v in inter), *(int(v) for v in union), int(mask.sum()))

    def metrics(self, counts: tuple[int, ...], suffix: str) -> dict[str, float]:
        if self.head == "classify":
            right, n = counts
            return {f"acc{suffix}": right / max(n, 1)}
        k = self.n_classes
        inter, union, scored = counts[:k], counts[k : 2 * k], counts[2 * k]
        ious = [i / u for i, u in zip(inter, union) if u > 0]  # classes absent from both are skipped
        return {f"miou{suffix}": sum(ious) / max(len(ious), 1),
                f"pixel_acc{suffix}": sum(inter) / max(scored, 1)}

    # -- bounds -------------------------------------------------------------------------------------
    def bound_labels(self) -> torch.Tensor:
        """The labels the chance levels are read from: the evaluated ones, or a fixed draw."""
        raise NotImplementedError

    def metric_bounds(self) -> dict[str, MetricBound]:
        k, labels = self.n_classes, self.bound_labels()
        if self.head == "classify":
            return {"acc": MetricBound(1 / k, majority_chance(labels[:, None])[0], 1.0)}
        flat = labels.reshape(len(labels), -1)
        guess = torch.stack([torch.bincount(col, minlength=k).argmax() for col in flat.T])
        constant = F.one_hot(guess.view(labels.shape[1:]), k).float().expand(*labels.shape, k)  # every image
        m = self.metrics(self.score(constant, labels), "")
        return {"miou": MetricBound(0.0, m["miou"], 1.0),
                "pixel_acc": MetricBound(1 / k, m["pixel_acc"], 1.0)}
