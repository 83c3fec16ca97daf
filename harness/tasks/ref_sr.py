"""Reference-based super-resolution on generated textured scenes: PSNR and SSIM of the SR output.

Scenes. Each example draws one grey-level *canvas* of ``canvas`` x ``canvas`` pixels: a smooth layout
(white noise blurred with a Gaussian of sigma ``smooth_sigma``, scaled to unit spread) plus a fine
texture (white noise blurred with sigma 0.7, amplitude ``texture_amp``), squashed into [0, 1] by a
logistic. The HR target is an ``image_size`` crop of the canvas at a random offset; the reference is
another crop (side ``ref_size``, default ``image_size``) of the *same* canvas at its own random
offset (``reference: related``), so the two share content where they overlap and texture statistics
everywhere. Offsets are multiples of ``scale``, so
a matched LR position transfers an aligned HR patch (sub-pixel misalignment is left out).
``rotate: true`` turns the reference by a random quarter turn. ``reference: unrelated`` crops the
reference from an independent canvas: it shares nothing with the target but its statistics.

LR input. ``lr = F.interpolate(hr, scale_factor=1/scale, mode="bicubic", align_corners=False,
antialias=True)`` (:func:`downsample`), an ``image_size/scale`` square. The fine texture sits above
the LR Nyquist frequency, so it is lost in ``lr`` and can only come back from the reference.

Batches: ``Batch({"ref", "lr"}, hr)``, all float [B, 1, ., .]; rows record the reference's side as
their size (``seq_len``), which is ``image_size`` unless ``ref_size`` says otherwise. Training draws
from the job's generator; evaluation is a fixed set of ``eval_images`` scenes drawn from
``eval_seed`` (the same for every job and seed), with references as the task's ``reference`` says
(metrics ``psnr``, ``ssim``), and the same scenes again with unrelated references (``psnr_unrel``,
``ssim_unrel``): does the transfer help only when the reference is relevant?

Scoring: the output is clamped to [0, 1] and compared with the HR target per image by scikit-image
(``peak_signal_noise_ratio`` and ``structural_similarity`` with ``data_range=1``, default 7x7
window); ``score`` returns (sum of PSNR, sum of SSIM, images), which add up over batches. PSNR is in
dB on the [0, 1] grey level (identical images give inf). These scenes are a CPU-sized stand-in: the
numbers compare variants with each other, never with CUFED5.

Bounds: none for PSNR (no floor: the simplest reconstruction, bicubic upsampling, is a model to compare
with, not a bound; no finite ceiling: a perfect output is inf dB); SSIM ceiling 1 and no floor. Neither
has a chance level. The ``_unrel`` metrics have the same bounds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from harness.core.config import bounded, positive
from harness.core.registry import register_task
from harness.models.base import model_io
from harness.tasks.base import Batch, MetricBound, TaskBase

TEXTURE_SIGMA = 0.7


@dataclass
class RefSRConfig:
    image_size: int = positive(32)  # HR side
    scale: int = positive(4)  # LR side is image_size / scale
    canvas: int = positive(48)  # side of the scene both crops come from
    ref_size: int | None = None  # the reference's side; None: image_size. A multiple of scale
    reference: Literal["related", "unrelated"] = "related"
    rotate: bool = False  # turn the reference by a random quarter turn
    smooth_sigma: float = bounded(2.0, lo=0.3, hi=20.0)
    texture_amp: float = bounded(0.6, lo=0.0, hi=10.0)
    eval_images: int = positive(256)
    eval_seed: int = bounded(1234, lo=0)

    def check(self) -> list[tuple[str, str]]:
        if self.image_size % self.scale:
            return [("scale", f"must divide image_size ({self.image_size}), got {self.scale}")]
        if self.canvas < self.image_size:
            return [("canvas", f"must be at least image_size ({self.image_size}), got {self.canvas}")]
        if self.ref_size is not None and not self.scale <= self.ref_size <= self.canvas:
            return [("ref_size", f"must be between scale ({self.scale}) and canvas ({self.canvas}), "
                                 f"got {self.ref_size}")]
        if self.ref_size is not None and self.ref_size % self.scale:
            return [("ref_size", f"must be a multiple of scale ({self.scale}), got {self.ref_size}")]
        return []

    @property
    def ref_side(self) -> int:
        return self.image_size if self.ref_size is None else self.ref_size


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR degradation: antialiased bicubic downsampling by ``scale``."""
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", align_corners=False, antialias=True)


@functools.lru_cache(maxsize=8)
def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, 1, H, W] with circular padding."""
    k = gaussian_kernel(sigma)
    r = (len(k) - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="circular"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="circular"), k.view(1, 1, -1, 1))


def sr_batch(ref: torch.Tensor, lr: torch.Tensor, hr: torch.Tensor, ref_side: int, lr_side: int) -> Batch:
    """Inputs ``ref`` (side ``ref_side``) and ``lr`` (side ``lr_side``), labels ``hr``: the pixels of
    both inputs per example; the size a row records is the reference's side."""
    return Batch({"ref": ref, "lr": lr}, hr, n_tokens=ref_side**2 + lr_side**2, seq_len=ref_side)


def psnr_ssim(sr: torch.Tensor, hr: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of sr [B, 1, H, W] (clamped to [0, 1]) against hr, by scikit-image."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = sr.detach().float().clamp(0, 1).cpu().numpy()
    b = hr.detach().float().cpu().numpy()
    with np.errstate(divide="ignore"):  # identical images: MSE 0, PSNR inf (skimage divides by 0)
        psnr = [float(peak_signal_noise_ratio(y[0], x[0], data_range=1.0)) for x, y in zip(a, b)]
    ssim = [float(structural_similarity(y[0], x[0], data_range=1.0)) for x, y in zip(a, b)]
    return psnr, ssim


@register_task("ref_sr", config=RefSRConfig)
class RefSR(TaskBase):
    """Reference-based 4x SR of generated textured scenes (reference: a crop of the same scene); PSNR."""

    metric = "psnr"
    higher_is_better = True
    ios = ("sr",)
    profile_ios = ("sr",)
    profile_size = 64
    needs = "a reference super-resolution model"

    def __init__(self, cfg: RefSRConfig) -> None:
        self.cfg = cfg

    def model_keys(self) -> dict[str, Any]:
        return {"image_size": self.cfg.image_size, "scale": self.cfg.scale, "in_channels": 1}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if model_io(model_cls, cfg) not in self.ios:
            return "it is not a reference super-resolution model (io 'sr')"
        for key in ("image_size", "scale"):
            mine, theirs = getattr(self.cfg, key), getattr(cfg, key, None)
            if theirs is not None and theirs != mine:
                return f"{key} {theirs} differs from the task's {mine}"
        return None

    # -- scenes -------------------------------------------------------------------------------------
    def canvases(self, n: int, gen: torch.Generator) -> torch.Tensor:
        c = self.cfg
        smooth = blur(torch.randn(n, 1, c.canvas, c.canvas, generator=gen), c.smooth_sigma)
        smooth = smooth / smooth.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
        fine = blur(torch.randn(n, 1, c.canvas, c.canvas, generator=gen), TEXTURE_SIGMA)
        fine = fine / fine.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
        return torch.sigmoid(smooth + c.texture_amp * fine)

    def crops(self, canvases: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
        """One ``side`` crop per canvas at a random offset, a multiple of ``scale``."""
        c = self.cfg
        n_off = (c.canvas - side) // c.scale + 1
        offs = torch.randint(0, n_off, (2, len(canvases)), generator=gen) * c.scale
        return torch.stack([x[:, i : i + side, j : j + side]
                            for x, i, j in zip(canvases, offs[0].tolist(), offs[1].tolist())])

    def make(self, n: int, gen: torch.Generator, reference: str) -> Batch:
        scenes = self.canvases(n, gen)
        hr = self.crops(scenes, self.cfg.image_size, gen)
        other = self.canvases(n, gen) if reference == "unrelated" else scenes
        ref = self.crops(other, self.cfg.ref_side, gen)
        if self.cfg.rotate:
            turns = torch.randint(0, 4, (n,), generator=gen).tolist()
            ref = torch.stack([torch.rot90(x, k, dims=(1, 2)) for x, k in zip(ref, turns)])
        lr, lr_side = downsample(hr, self.cfg.scale), self.cfg.image_size // self.cfg.scale
        return sr_batch(ref.contiguous(), lr, hr.contiguous(), self.cfg.ref_side, lr_side)

    # -- the Task contract --------------------------------------------------------------------------
    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        self.need_io(io)
        return self.make(batch_size, gen, self.cfg.reference)

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """``eval_images`` fixed scenes (from ``eval_seed``, not the job's seed) in batches of
        ``batch_size``, with the task's references ('') and with unrelated ones ('_unrel')."""
        self.need_io(io)
        out = {}
        for suffix, reference in (("", self.cfg.reference), ("_unrel", "unrelated")):
            gen = torch.Generator().manual_seed(self.cfg.eval_seed)
            whole = self.make(self.cfg.eval_images, gen, reference)
            out[suffix] = [
                dataclasses.replace(whole, labels=whole.labels[i : i + batch_size],
                                    inputs={k: v[i : i + batch_size] for k, v in whole.inputs.items()})
                for i in range(0, self.cfg.eval_images, batch_size)]
        return out

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random images: ``ref`` of side ``seq_len`` (the batch's size) and ``lr`` of side
        ``seq_len / scale`` (cost only)."""
        lr_side = max(1, seq_len // self.cfg.scale)
        ref = torch.rand(batch_size, 1, seq_len, seq_len, generator=gen)
        lr = torch.rand(batch_size, 1, lr_side, lr_side, generator=gen)
        return sr_batch(ref, lr, torch.rand(batch_size, 1, seq_len, seq_len, generator=gen), seq_len, lr_side)

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        """L1 reconstruction (the paper's L_rec)."""
        return F.l1_loss(out.logits, batch.labels)

    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, int]:
        psnr, ssim = psnr_ssim(logits, labels)
        return sum(psnr), sum(ssim), len(psnr)

    def metrics(self, counts: tuple, suffix: str) -> dict[str, float]:
        psnr, ssim, n = counts
        return {f"psnr{suffix}": psnr / max(n, 1), f"ssim{suffix}": ssim / max(n, 1)}

    def metric_bounds(self) -> dict[str, MetricBound]:
        psnr, ssim = MetricBound(None, None, None), MetricBound(None, None, 1.0)
        return {"psnr": psnr, "ssim": ssim, "psnr_unrel": psnr, "ssim_unrel": ssim}

    def samples(self, model: Any, device: Any, seed: int) -> dict[str, list]:
        """Panels lr, ref, sr, hr of 4 evaluation-style scenes drawn from ``seed``, as 0..255 grey."""
        batch = self.make(4, torch.Generator().manual_seed(seed), self.cfg.reference)
        with torch.no_grad():
            sr = model(**batch.to(device).inputs).logits.cpu()
        images = {"lr": batch.inputs["lr"], "ref": batch.inputs["ref"], "sr": sr, "hr": batch.labels}
        return {k: [to_grey(x) for x in v] for k, v in images.items()}


def to_grey(image: torch.Tensor) -> list[list[int]]:
    """[1, H, W] in [0, 1] -> H x W nested lists of ints 0..255."""
    return (image[0].clamp(0, 1) * 255).round().to(torch.int64).tolist()
