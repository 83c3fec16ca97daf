"""Digit generation: train a GAN on real 8x8 digits, score its samples with FID-digits and IS-digits.

Data. The real images and the fixed stratified split of ``harness.tasks.digits`` (scikit-learn's
1,797 handwritten digits, nothing downloaded; 1,438 train, 359 test with the defaults), pixel values
0..16 mapped to [-1, 1] (x / 8 - 1), resized by bilinear interpolation to ``image_size`` (8: as they
are). Training batches (io ``gan``) hold ``images`` and class ``labels`` drawn uniformly with
replacement from the train split.

Evaluation. The held-out real test images are the reference: one evaluation batch series covers the
whole test split once (``train.eval_batches`` does not apply); each batch asks the model for one
generated image per test image, of the same class (a conditional model; an unconditional one ignores
the class), from the noise seeds ``1_000_000 * (seed + 1) + i`` (i: the test image's position), so the
noise is fixed across the curve's points and differs between job seeds. :meth:`GanDigits.score` returns
sums that add up over batches: the count, the classifier features' sum and sum of outer products for
the generated and for the real images, the generated images' summed class probabilities and summed
sum p log p. Metrics:

- ``fid_digits`` (headline, lower is better): Frechet distance between Gaussians fitted to the
  penultimate features (64) of generated and real test images;
- ``is_digits``: Inception Score of the generated images (one split), at most 10.

Bounds: ``fid_digits`` ceiling 0 (the real images' own statistics), no floor and no chance (a distance
with no value for "learned nothing"); ``is_digits`` floor 1 (samples the classifier cannot tell
apart), ceiling 10 (one certain class per sample, every class equally often), no chance level.

The feature network is a small convnet trained by the harness on the training split, deterministically
and once, then cached (``harness.tasks.digit_features``). These are NOT ImageNet FID or Inception Score:
they are comparable only within the harness (same classifier recipe, image size and split), never with
published numbers. FID from a few hundred images is biased upwards; all variants share that bias.

Samples (:meth:`GanDigits.samples`): a ``generated`` panel of 16 images, classes 0..9 then 0..5.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.core.config import bounded, positive
from harness.core.registry import register_task
from harness.models.base import model_io
from harness.tasks.base import Batch, MetricBound, TaskBase
from harness.tasks.digit_features import (
    DigitClassifier,
    frechet_distance,
    gaussian,
    inception_score,
    load_classifier,
    recipe_key,
)
from harness.tasks.digits import N_CLASSES, SOURCE_SIZE, raw_digits, stratified_split

N_SAMPLES = 16


@dataclass
class GanDigitsConfig:
    image_size: int = positive(8)  # side after bilinear resizing from 8x8
    test_fraction: float = bounded(0.2, lo=0.01, hi=0.99)  # the digits task's split
    split_seed: int = bounded(0, lo=0)


@functools.lru_cache(maxsize=4)
def gan_split(image_size: int, test_fraction: float, split_seed: int) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, test images, test labels), images (N, 1, S, S) in [-1, 1]."""
    images, labels = raw_digits()
    tr, te = stratified_split(labels, test_fraction, split_seed)
    x = (images / 8.0 - 1.0).unsqueeze(1)
    if image_size != SOURCE_SIZE:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.contiguous()
    return x[tr], labels[tr], x[te], labels[te]


@functools.lru_cache(maxsize=4)
def feature_net(image_size: int, test_fraction: float, split_seed: int) -> DigitClassifier:
    train_x, train_y, _, _ = gan_split(image_size, test_fraction, split_seed)
    return load_classifier(recipe_key(image_size, test_fraction, split_seed), train_x, train_y)


def to_pixels(images: torch.Tensor) -> list:
    """[n, 1, S, S] in [-1, 1] -> n nested lists S x S of ints 0..255."""
    x = ((images.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.int64)
    return [img[0].tolist() for img in x]


@register_task("gan_digits", config=GanDigitsConfig)
class GanDigits(TaskBase):
    """Generate scikit-learn's digits (GAN io); FID-digits and IS-digits against the held-out real images."""

    metric = "fid_digits"
    higher_is_better = False
    ios = ("gan",)
    profile_ios = ("gan",)
    profile_size = 32
    needs = "a GAN"

    def __init__(self, cfg: GanDigitsConfig) -> None:
        self.cfg = cfg
        self.image_size = int(cfg.image_size)

    def split(self) -> tuple[torch.Tensor, ...]:
        return gan_split(self.image_size, float(self.cfg.test_fraction), self.cfg.split_seed)

    def classifier(self) -> DigitClassifier:
        return feature_net(self.image_size, float(self.cfg.test_fraction), self.cfg.split_seed)

    # -- suite loader hooks ------------------------------------------------------------------------
    def model_keys(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "in_channels": 1, "n_classes": N_CLASSES}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if model_io(model_cls, cfg) != "gan":
            return "it is not a GAN (io 'gan')"
        size = getattr(cfg, "image_size", None)
        if size is not None and size != self.image_size:
            return f"image_size {size} differs from the task's {self.image_size}"
        return None

    # -- batches -----------------------------------------------------------------------------------
    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        self.need_io(io)
        x, y, _, _ = self.split()
        idx = torch.randint(0, len(y), (batch_size,), generator=gen)
        s = self.image_size
        return Batch({"images": x[idx], "labels": y[idx]}, y[idx].clone(), n_tokens=s * s, seq_len=s)

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """The whole test split once: inputs are classes and noise seeds, labels the real images."""
        self.need_io(io)
        _, _, x, y = self.split()
        seeds = 1_000_000 * (seed + 1) + torch.arange(len(y))
        # no image and no token goes in (classes and noise seeds): no tokens, and no size to record
        return {"": [Batch({"labels": y[i : i + batch_size], "seeds": seeds[i : i + batch_size]},
                           x[i : i + batch_size], n_tokens=0, seq_len=0)
                     for i in range(0, len(y), batch_size)]}

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random images of side ``seq_len`` in [-1, 1] with random classes (cost only)."""
        images = torch.rand(batch_size, 1, seq_len, seq_len, generator=gen) * 2 - 1
        y = torch.randint(0, N_CLASSES, (batch_size,), generator=gen)
        return Batch({"images": images, "labels": y}, y.clone(), n_tokens=seq_len * seq_len, seq_len=seq_len)

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        """A GAN trains through its optimiser phases; this is the model's one-step stand-in (profiling)."""
        if out.aux_loss is None:
            raise ValueError("gan_digits trains GANs through their optimiser phases")
        return out.aux_loss

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple:
        """``logits``: generated images, ``labels``: the real images of the batch (same shape)."""
        net = self.classifier()
        with torch.no_grad():
            fg = net.features(logits.float().cpu()).double()
            fr = net.features(labels.float().cpu()).double()
            p = torch.softmax(net.head(fg.float()), dim=-1).double()
        plogp = (p * torch.log(p.clamp_min(1e-30))).sum()
        return (len(fg), fg.sum(0), fg.T @ fg, fr.sum(0), fr.T @ fr, p.sum(0), plogp)

    def metrics(self, counts: tuple, suffix: str) -> dict[str, float]:
        n, fg, fgg, fr, frr, p, plogp = counts
        mu_g, cov_g = gaussian(fg, fgg, n)
        mu_r, cov_r = gaussian(fr, frr, n)
        return {f"fid_digits{suffix}": frechet_distance(mu_g, cov_g, mu_r, cov_r),
                f"is_digits{suffix}": inception_score(p, plogp, n)}

    def metric_bounds(self) -> dict[str, MetricBound]:
        return {"fid_digits": MetricBound(None, None, 0.0, higher_is_better=False),
                "is_digits": MetricBound(1.0, None, float(N_CLASSES))}

    # -- figures -----------------------------------------------------------------------------------
    def samples(self, model: Any, device: torch.device, seed: int) -> dict[str, list]:
        """16 generated images (classes 0..9, 0..5), from a generator seeded with ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        labels = torch.arange(N_SAMPLES) % N_CLASSES
        return {"generated": to_pixels(model.sample(N_SAMPLES, gen, labels))}
