"""Handwritten digits: classify scikit-learn's 1,797 real 8x8 grey-level images into 10 classes.

Data. ``sklearn.datasets.load_digits`` (the UCI "Optical Recognition of Handwritten Digits" test set,
shipped inside scikit-learn, nothing downloaded): 1,797 images of 8x8 pixels with values 0..16, about
180 per digit. The task is a CPU-sized stand-in for image classification; its numbers compare variants
with each other, never with ImageNet or CIFAR results.

Split. A fixed stratified split, the same for every job and seed: within each class the images are
shuffled with ``split_seed`` (independent of the job's seed) and ``round(n_c * test_fraction)`` go to
test, the rest to train; the two are disjoint and together are the whole set. With the defaults:
1,438 train and 359 test images.

Preprocessing. Pixel values are standardised with the mean and standard deviation of all training
pixels (one scalar pair), then the images are resized from 8x8 to ``image_size`` by bilinear
interpolation (``image_size`` 8: unchanged). ``shift`` > 0 augments training batches with a random
translation of each image by up to ``shift`` pixels (at ``image_size``) in each direction, filling with
the background value; evaluation images are never shifted.

Batches. Training batches draw ``batch_size`` images uniformly with replacement from the train split,
from the job's generator. Evaluation (``eval_sets``) covers the WHOLE test split exactly once, cut
into consecutive batches of ``eval_batch_size`` (the last one shorter); ``train.eval_batches`` does
not apply, so ``acc`` is the accuracy over all test images. Metric: ``acc`` (top-1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from harness.core.config import bounded, positive
from harness.core.registry import register_task
from harness.tasks.base import Batch
from harness.tasks.image import ImageTask

N_CLASSES = 10
SOURCE_SIZE = 8


@dataclass
class DigitsConfig:
    image_size: int = positive(16)  # side after bilinear resizing from 8x8
    test_fraction: float = bounded(0.2, lo=0.01, hi=0.99)  # per class, rounded to whole images
    split_seed: int = bounded(0, lo=0)  # the fixed split; independent of the job's seed
    shift: int = bounded(1, lo=0)  # training augmentation: random translation by up to this many pixels

    def check(self) -> list[tuple[str, str]]:
        if self.shift >= self.image_size:
            return [("shift", f"must be smaller than image_size ({self.image_size}), got {self.shift}")]
        return []


class Split(NamedTuple):
    train_images: torch.Tensor  # (N_train, 1, S, S), standardised
    train_labels: torch.Tensor  # (N_train,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_index: torch.Tensor  # positions in load_digits() order
    test_index: torch.Tensor
    background: float  # the standardised value of a 0 pixel


@functools.lru_cache(maxsize=1)
def raw_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images (N, 8, 8) as float32 0..16 and their labels (N,), in scikit-learn's order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)


def stratified_split(
    labels: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices), sorted: ``round(n_c * test_fraction)`` of each class go to test."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


@functools.lru_cache(maxsize=4)
def load_split(image_size: int, test_fraction: float, split_seed: int) -> Split:
    images, labels = raw_digits()
    tr, te = stratified_split(labels, test_fraction, split_seed)
    mean, std = images[tr].mean(), images[tr].std()

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = ((x - mean) / std).unsqueeze(1)  # (N, 1, 8, 8)
        if image_size != SOURCE_SIZE:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return x.contiguous()

    return Split(prep(images[tr]), labels[tr], prep(images[te]), labels[te], tr, te, float(-mean / std))


def random_shift(images: torch.Tensor, shift: int, fill: float, gen: torch.Generator) -> torch.Tensor:
    """Translate each image (B, C, S, S) by its own random (dy, dx) in [-shift, shift]^2."""
    b, _, s, _ = images.shape
    padded = F.pad(images, (shift, shift, shift, shift), value=fill)  # (B, C, S+2p, S+2p)
    offs = torch.randint(0, 2 * shift + 1, (2, b), generator=gen)
    rows = (offs[0][:, None] + torch.arange(s))[:, None, :, None]  # (B, 1, S, 1)
    cols = (offs[1][:, None] + torch.arange(s))[:, None, None, :]  # (B, 1, 1, S)
    batch = torch.arange(b)[:, None, None, None]
    chans = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


@register_task("digits", config=DigitsConfig)
class Digits(ImageTask):
    """scikit-learn's 8x8 handwritten digits (1,797 real images, 10 classes), resized; accuracy."""

    head = "classify"
    n_classes = N_CLASSES
    in_channels = 1
    profile_ios = ("image",)  # harness profile's task for image models (image_transformer names pixels)

    def __init__(self, cfg: DigitsConfig) -> None:
        super().__init__(cfg)
        self.cfg: DigitsConfig = cfg

    needs = "an image model"

    def split(self) -> Split:
        """The fixed split, read and preprocessed on first use (suite loading never touches it)."""
        return load_split(self.cfg.image_size, float(self.cfg.test_fraction), self.cfg.split_seed)

    def bound_labels(self) -> torch.Tensor:
        """The test split's labels (``acc`` is over all of them): chance is its largest class's share."""
        return self.split().test_labels

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        self.need_io(io)
        sp = self.split()
        idx = torch.randint(0, len(sp.train_labels), (batch_size,), generator=gen)
        images = sp.train_images[idx]
        if self.cfg.shift > 0:
            images = random_shift(images, self.cfg.shift, sp.background, gen)
        return self.batch(images, sp.train_labels[idx].clone())

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """The whole test split once, in order, in batches of ``batch_size``; ``n_batches`` is ignored."""
        self.need_io(io)
        sp = self.split()
        n = len(sp.test_labels)
        return {"": [self.batch(sp.test_images[i : i + batch_size], sp.test_labels[i : i + batch_size])
                     for i in range(0, n, batch_size)]}
