"""Pixels: density estimation of small grey-level images, scored in bits per dimension.

Data (nothing is downloaded):

- ``source: digits``: scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16, see
  harness/tasks/digits.py), split with that task's fixed stratified split (``test_fraction``,
  ``split_seed``), scaled to [0, 1] (v / 16), resized to ``image_size`` by bilinear interpolation when
  it is not 8 (16: the upsampled digits), then quantised to ``levels`` values: q = round(v (levels - 1)).
  Training batches draw train images uniformly with replacement from the job's generator; evaluation
  covers the whole test split once (359 images with the defaults).
- ``source: shapes``: the generated scenes of harness/tasks/shapes.py (segment mode: 1-4 discs, squares,
  triangles, crosses on a dark background) at ``image_size`` 16..32, turned grey (luma 0.299 R + 0.587 G
  + 0.114 B) and quantised the same way. Training batches come from the job's generator; the held-out
  set is ``train.eval_batches`` batches from a generator seeded apart from training (as the shapes task
  does), fixed per seed.

Layout: ``Batch({"images": float [B, 1, S, S] holding the integers 0..levels-1}, labels long [B, S, S])``
(the same values): an autoregressive model (``image_transformer``) predicts each pixel from the pixels
before it in raster order and returns logits [B, S, S, levels]. Only models with a ``levels`` key are
accepted: a per-pixel classifier would see the pixel it is asked to predict.

Metric: ``bpd`` (bits per dimension) = summed cross-entropy in nats / (scored pixels x ln 2), lower is
better; a model that spreads its probability evenly scores exactly log2(levels) (the floor). Its chance
is the mean over pixel positions of the entropy of that position's levels in the held-out images (the
whole test split for digits, a fixed draw of 1024 scenes for shapes): what a model that knows each
position's level frequencies, and not the pixels before it, scores; ceiling 0. The sum is taken in
float64. ``samples()`` draws 16 images from the trained model (``model.sample`` at temperature 1) for
the report, next to 16 held-out images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F

from harness.core.config import bounded
from harness.core.registry import register_task
from harness.tasks.base import BOUNDS_SEED, MAX_SAMPLES, Batch, MetricBound, TaskBase, entropy_bits
from harness.tasks.digits import SOURCE_SIZE, raw_digits, stratified_split
from harness.tasks.shapes import Shapes, ShapesConfig

LUMA = (0.299, 0.587, 0.114)


@dataclass
class PixelsConfig:
    source: Literal["digits", "shapes"] = "digits"
    image_size: int = bounded(8, lo=4, hi=128)  # digits: resized from 8x8; shapes: 16..32
    levels: int = bounded(16, lo=2, hi=256)  # intensity values after quantisation
    test_fraction: float = bounded(0.2, lo=0.01, hi=0.99)  # digits: per class, as the digits task
    split_seed: int = bounded(0, lo=0)  # digits: the fixed split

    def check(self) -> list[tuple[str, str]]:
        if self.source == "shapes" and not 16 <= self.image_size <= 32:
            return [("image_size", f"shapes images are 16 to 32 px here, got {self.image_size}")]
        return []


def quantise(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Values in [0, 1] -> the integers 0..levels-1 (as float), round(v (levels - 1))."""
    return (x.clamp(0.0, 1.0) * (levels - 1)).round()


@functools.lru_cache(maxsize=4)
def digit_pixels(image_size: int, levels: int, test_fraction: float, split_seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) quantised digit images (N, 1, S, S), float holding 0..levels-1."""
    images, labels = raw_digits()
    tr, te = stratified_split(labels, test_fraction, split_seed)
    x = (images / 16.0).unsqueeze(1)
    if image_size != SOURCE_SIZE:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    q = quantise(x, levels).contiguous()
    return q[tr], q[te]


@register_task("pixels", config=PixelsConfig)
class Pixels(TaskBase):
    """Grey-level digits (8x8, 16x16) or generated shapes (16-32 px), quantised; bits per dimension."""

    metric = "bpd"
    higher_is_better = False
    ios = ("image",)

    def __init__(self, cfg: PixelsConfig) -> None:
        self.cfg = cfg
        self.image_size, self.levels = int(cfg.image_size), int(cfg.levels)
        self.shapes = Shapes(ShapesConfig(image_size=self.image_size)) if cfg.source == "shapes" else None

    # -- suite loader hooks ----------------------------------------------------------------------
    def model_keys(self) -> dict[str, Any]:
        s = self.image_size
        return {"levels": self.levels, "n_classes": self.levels, "height": s, "width": s}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if cfg is None:
            return None
        if getattr(cfg, "levels", None) is None:
            return "it is not an autoregressive pixel model (no levels key)"
        for key, need in (("levels", self.levels), ("height", self.image_size), ("width", self.image_size)):
            have = getattr(cfg, key, None)
            if have is not None and have != need:
                return f"{key} {have} differs from the task's {need}"
        return super().check_model(cfg, model_cls)

    # -- batches ------------------------------------------------------------------------------------
    def split(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        return digit_pixels(self.image_size, self.levels, float(c.test_fraction), c.split_seed)

    def draw(self, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """``batch_size`` training images (B, 1, S, S)."""
        if self.shapes is None:
            train = self.split()[0]
            return train[torch.randint(0, len(train), (batch_size,), generator=gen)]
        rgb = self.shapes.make(batch_size, gen)[1].inputs["images"]  # (B, 3, S, S) in [0, 1]
        grey = cast(torch.Tensor, sum(w * rgb[:, i : i + 1] for i, w in enumerate(LUMA)))  # LUMA: 3 terms
        return quantise(grey, self.levels)

    @staticmethod
    def batch(images: torch.Tensor, side: int) -> Batch:
        """Images [B, 1, S, S] (S = ``side``) as inputs and as labels: S x S pixels per example."""
        return Batch({"images": images}, images[:, 0].long(), n_tokens=side * side, seq_len=side)

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.batch(self.draw(batch_size, gen), self.image_size)

    def held_out(self, n_batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
        if self.shapes is None:
            test = self.split()[1]
            return [test[i : i + batch_size] for i in range(0, len(test), batch_size)]
        gen = torch.Generator().manual_seed(1_000_003 * (seed + 1) + 7_919)
        return [self.draw(batch_size, gen) for _ in range(n_batches)]

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """Digits: the whole test split once (``n_batches`` ignored); shapes: fixed generated batches."""
        return {"": [self.batch(x, self.image_size) for x in self.held_out(n_batches, batch_size, seed)]}

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random images of side ``seq_len`` (cost only)."""
        x = torch.randint(0, self.levels, (batch_size, 1, seq_len, seq_len), generator=gen).float()
        return self.batch(x, seq_len)

    # -- scoring ------------------------------------------------------------------------------------
    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        """(summed nats in float64, scored pixels)."""
        nll = F.cross_entropy(logits.double().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                              reduction="sum")
        return float(nll), int(labels.numel())

    def metrics(self, counts: tuple[float, int], suffix: str) -> dict[str, float]:
        nats, n = counts
        return {f"bpd{suffix}": nats / (max(n, 1) * math.log(2))}

    def metric_bounds(self) -> dict[str, MetricBound]:
        images = torch.cat(self.held_out(4, 256, BOUNDS_SEED))[:, 0].long()  # digits: the test split
        per_position = images.reshape(len(images), -1).T
        chance = sum(entropy_bits(torch.bincount(p, minlength=self.levels)) for p in per_position)
        return {"bpd": MetricBound(math.log2(self.levels), chance / len(per_position), 0.0,
                                   higher_is_better=False)}

    def samples(self, model: Any, device: torch.device, seed: int) -> dict[str, list]:
        """16 images drawn from the model at temperature 1, and the first 16 held-out images."""
        if not callable(getattr(model, "sample", None)):
            return {}
        gen = torch.Generator().manual_seed(seed)
        drawn = model.sample(MAX_SAMPLES, gen, 1.0).cpu()  # (16, S, S) levels
        real = self.held_out(1, MAX_SAMPLES, seed)[0][:MAX_SAMPLES, 0]
        return {"generated": self.to_bytes(drawn), "held-out": self.to_bytes(real)}

    def to_bytes(self, images: torch.Tensor) -> list:
        """Levels 0..L-1 -> nested lists of ints 0..255."""
        return (images.double() * 255 / (self.levels - 1)).round().long().tolist()
