"""Feature Pyramid Network over a small CNN backbone, with image-level and per-pixel heads.

Lin, Dollar, Girshick, He, Hariharan, Belongie. "Feature Pyramid Networks for Object Detection".
CVPR 2017, arXiv 1612.03144.

This module also holds what ``fpt`` (harness.models.fpt) shares with it: the config keys, the
backbone, the lateral 1x1 convolutions and both heads; FPT replaces only the top-down pathway.

Backbone (ours, small, for 8-64 px inputs): a stem (3x3 conv, stride 1, ``widths[0]`` channels),
then one stage per level l = 1, 2, ...: a 3x3 conv with stride 2 and a 3x3 conv with stride 1, each
followed by GroupNorm and ReLU. Level l is stage l's output: stride 2^l, ``widths[l-1]`` channels,
side ceil(S / 2^l) (the ResNet names would be C_{l+1}: level 1 ~ C2 at stride 2 here instead of 4,
since our images are 8-64 px instead of 800). Only the stages up to the deepest level in ``levels``
are built, so every parameter is used.

FPN, faithful to Sec. 3 of the paper: a 1x1 lateral conv maps each chosen level to ``d_model``
channels; top-down, the coarser merged map is upsampled by nearest neighbour (to the finer map's
size, which also covers odd sides) and added to the lateral; a 3x3 conv smooths each merged map.
``levels`` picks the backbone levels that form the pyramid (contiguous or not; top-down runs
between consecutive chosen levels).

Heads (the same for fpn and fpt):
- ``classify``: global average pool of every pyramid level, concatenated -> Linear -> [B, K].
- ``segment``: every level bilinearly upsampled to the finest level's size and summed (as the
  semantic-segmentation branch of Panoptic FPN, with one conv per level instead of a stack), a 3x3
  conv + GroupNorm + ReLU, a 1x1 conv to K classes, bilinear upsampling to S x S -> [B, S, S, K]
  (classes last).

Simplifications, all deliberate: the backbone is a plain 2-conv-per-stage CNN, not a ResNet; GroupNorm
instead of (frozen) BatchNorm, so a batch of one and evaluation behave as training does; no extra
P6/P7 levels, no detection heads.

Shapes: B batch, C in_channels, S image_size, D d_model, K n_classes, L pyramid levels.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput


@dataclass
class FPNConfig(ImageSizeAtLength):
    image_size: int = positive(16)  # the task sets these three; the network itself runs at any size
    in_channels: int = positive(1)
    n_classes: int = positive(10)
    head: Literal["classify", "segment"] = "classify"
    # backbone levels that form the pyramid; level l has stride 2^l and widths[l-1] channels
    levels: list[int] = field(default_factory=lambda: [1, 2, 3])
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # channels per backbone stage
    d_model: int = positive(64)  # pyramid channels

    def check(self) -> list[tuple[str, str]]:
        if not self.widths:
            return [("widths", "must list at least one stage width")]
        for i, w in enumerate(self.widths):
            if w < 1:
                return [(f"widths[{i}]", f"must be >= 1, got {w}")]
        if not self.levels:
            return [("levels", "must list at least one pyramid level")]
        if len(set(self.levels)) != len(self.levels):
            return [("levels", f"lists a level twice: {self.levels}")]
        depth = len(self.widths)
        for i, lv in enumerate(self.levels):
            if not 1 <= lv <= depth:
                msg = f"level {lv} does not exist: the backbone has levels 1..{depth} (one per widths entry)"
                return [("levels", msg)]
            if 2**lv > self.image_size:
                deepest = int(math.log2(self.image_size))
                msg = (f"level {lv} (stride {2**lv}) would be smaller than 1x1 at image_size "
                       f"{self.image_size}; the deepest level there is {deepest}")
                return [("levels", msg)]
        return []


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (the largest count <= 8 that divides ``channels``)."""
    groups = max(g for g in range(1, 9) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def conv_norm_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, norm(c_out), nn.ReLU())


class Backbone(nn.Module):
    """Stem + one stride-2 stage per level; returns {level: map [B, widths[l-1], ceil(S/2^l), ...]}."""

    def __init__(self, in_channels: int, widths: list[int], levels: list[int]) -> None:
        super().__init__()
        self.levels = sorted(levels)
        depth = self.levels[-1]
        self.stem = conv_norm_relu(in_channels, widths[0])
        chans = [widths[0], *widths[:depth]]
        self.stages = nn.ModuleList(
            nn.Sequential(conv_norm_relu(c_in, c_out, stride=2), conv_norm_relu(c_out, c_out))
            for c_in, c_out in itertools.pairwise(chans)
        )

    def forward(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        h = self.stem(images)  # (B, W0, S, S)
        out: dict[int, torch.Tensor] = {}
        for lv, stage in enumerate(self.stages, start=1):
            h = stage(h)  # (B, W_l, ceil(S / 2^l), ...)
            if lv in self.levels:
                out[lv] = h
        return out


class Laterals(nn.Module):
    """1x1 convs from each chosen backbone level to D channels (FPN Sec. 3, "lateral connections")."""

    def __init__(self, widths: list[int], levels: list[int], d_model: int) -> None:
        super().__init__()
        self.levels = sorted(levels)
        self.convs = nn.ModuleList(nn.Conv2d(widths[lv - 1], d_model, 1) for lv in self.levels)

    def forward(self, feats: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        """Finest first: [(B, D, h_1, w_1), ..., (B, D, h_L, w_L)]."""
        return [conv(feats[lv]) for lv, conv in zip(self.levels, self.convs)]


class TopDown(nn.Module):
    """FPN's top-down pathway: nearest upsampling + add, then a 3x3 smoothing conv per level."""

    def __init__(self, n_levels: int, d_model: int) -> None:
        super().__init__()
        self.smooth = nn.ModuleList(nn.Conv2d(d_model, d_model, 3, padding=1) for _ in range(n_levels))

    def forward(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        merged = [laterals[-1]]
        for lat in reversed(laterals[:-1]):
            merged.append(lat + F.interpolate(merged[-1], size=lat.shape[-2:], mode="nearest"))
        merged.reverse()  # finest first
        return [conv(m) for conv, m in zip(self.smooth, merged)]


class ClassifyHead(nn.Module):
    """GAP of each pyramid level, concatenated, then a Linear: [B, K]."""

    def __init__(self, n_levels: int, d_model: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_levels * d_model, n_classes)

    def forward(self, pyramid: list[torch.Tensor], image_size: int) -> torch.Tensor:
        pooled = torch.cat([p.mean(dim=(-2, -1)) for p in pyramid], dim=-1)  # (B, L*D)
        return self.fc(pooled)


class SegmentHead(nn.Module):
    """Levels upsampled to the finest and summed, 3x3 conv, 1x1 conv to K, upsampled: [B, S, S, K]."""

    def __init__(self, d_model: int, n_classes: int) -> None:
        super().__init__()
        self.fuse = conv_norm_relu(d_model, d_model)
        self.cls = nn.Conv2d(d_model, n_classes, 1)

    def forward(self, pyramid: list[torch.Tensor], image_size: int) -> torch.Tensor:
        size = pyramid[0].shape[-2:]
        h = pyramid[0]
        for p in pyramid[1:]:
            h = h + F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        logits = self.cls(self.fuse(h))  # (B, K, h_1, w_1)
        logits = F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return logits.permute(0, 2, 3, 1)  # (B, S, S, K)


class PyramidModel(nn.Module):
    """Backbone -> laterals -> ``neck`` (subclass) -> head; the part fpn and fpt share."""

    io: IOFormat = "image"

    def __init__(self, c: FPNConfig) -> None:
        super().__init__()
        self.config = c
        self.levels = sorted(c.levels)
        self.backbone = Backbone(c.in_channels, c.widths, self.levels)
        self.laterals = Laterals(c.widths, self.levels, c.d_model)
        n = len(self.levels)
        self.head: nn.Module = (
            ClassifyHead(n, c.d_model, c.n_classes) if c.head == "classify"
            else SegmentHead(c.d_model, c.n_classes)
        )

    def neck(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The output pyramid, finest first: [(B, D, ceil(S / 2^l), ...) for l in levels]."""
        return self.neck(self.laterals(self.backbone(images)))

    def forward(self, images: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.head(self.pyramid(images), images.shape[-1]))


@register_model("fpn", config=FPNConfig)
class FPN(PyramidModel):
    """Lin et al. 2017: CNN backbone + feature pyramid (lateral 1x1, top-down add, 3x3 smoothing)."""

    def __init__(self, c: FPNConfig) -> None:
        super().__init__(c)
        self.top_down = TopDown(len(self.levels), c.d_model)

    def neck(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.top_down(laterals)
