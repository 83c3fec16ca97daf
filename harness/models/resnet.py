"""A small bottleneck ResNet for small images: the CNN baseline and the backbone of LambdaResNet.

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition". CVPR 2016, arXiv 1512.03385.

Faithful: bottleneck blocks (Sec. 4.1, Fig. 5 right): 1x1 conv reducing to the stage ``width``, 3x3 conv,
1x1 conv expanding to ``expansion * width`` (4 in the paper), batch norm after every conv, ReLU after
each BN except the last, whose output is added to the shortcut before the final ReLU; identity
shortcuts, and a projection shortcut (1x1 conv + BN, option B of Sec. 3.3) where the shape changes;
stages double the width and halve the map, the stride sitting on the 3x3 conv (the "ResNet v1.5"
placement of torchvision, which the LambdaNetworks paper's ResNet baselines also use); global average
pooling and a linear classifier.

Simplified for 8x8..64x64 inputs: the stem is one 3x3 conv at stride 1 with BN and ReLU and no max pool
(as the CIFAR ResNets of Sec. 4.2), instead of the ImageNet 7x7/2 conv and 3x3/2 max pool; 3 stages by
default instead of 4, and the first stage does not downsample. Initialisation: He-normal convs
(fan_out), and the last BN of every block starts at zero (Goyal et al. 2017), so each block starts as
an identity; the paper initialises all BNs to one. Classification only (``head: classify``).

Extension point: the 3x3 conv of every bottleneck comes from a ``mixer`` factory
(:data:`MixerFactory`), so LambdaResNet (``harness.models.lambda_net``) swaps it for a lambda layer or a
self-attention layer in chosen stages while the rest of the network stays this one.

Shapes: B batch, C channels, S image side, H x W feature map, K classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput


@dataclass
class ResNetConfig(ImageSizeAtLength):
    image_size: int = positive(16)  # the task sets it; the network itself works at any size
    in_channels: int = positive(1)
    n_classes: int = positive(10)
    head: Literal["classify"] = "classify"
    stem: int = positive(32)  # channels of the stem conv
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # bottleneck (3x3) width per stage
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])  # bottleneck blocks per stage
    expansion: int = positive(4)  # block output = expansion x width (Sec. 4.1: 4)
    dropout: float = bounded(0.0, lo=0.0, hi=0.99)  # before the classifier

    def check(self) -> list[tuple[str, str]]:
        if not self.widths:
            return [("widths", "must name at least one stage")]
        if len(self.blocks) != len(self.widths):
            n = len(self.widths)
            return [("blocks", f"must have one entry per stage of widths ({n}), got {len(self.blocks)}")]
        if any(w < 1 for w in self.widths):
            return [("widths", f"every width must be >= 1, got {self.widths}")]
        if any(n < 1 for n in self.blocks):
            return [("blocks", f"every stage needs >= 1 block, got {self.blocks}")]
        return []


BACKBONE_KEYS = ("image_size", "in_channels", "stem", "widths", "blocks", "expansion")


def backbone_config(cfg: Any) -> ResNetConfig:
    """The ResNet body config of a model that uses this ResNet as its backbone (detr,
    deformable_detr, dense_detector, lstr, lane_seg): its config carries :data:`BACKBONE_KEYS` under
    the same names."""
    keys = {k: getattr(cfg, k) for k in BACKBONE_KEYS}
    fields: dict[str, Any] = {k: list(v) if isinstance(v, list) else v for k, v in keys.items()}
    return ResNetConfig(**fields)


class MixerFactory(Protocol):
    """Builds the module that takes the place of a bottleneck's 3x3 conv.

    ``stage`` is the 0-based stage index, ``channels`` the bottleneck width (input = output channels),
    ``stride`` 1 or 2, ``size`` the side of the feature map the module receives when the network is fed
    ``image_size`` images. The module maps (B, C, H, W) -> (B, C, ceil(H/stride), ceil(W/stride)).
    """

    def __call__(self, stage: int, channels: int, stride: int, size: int) -> nn.Module: ...


def conv3x3(stage: int, channels: int, stride: int, size: int) -> nn.Module:
    """The ResNet's own mixer: a 3x3 convolution (padding 1, no bias: BN follows)."""
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)


def downsampled(size: int, stride: int) -> int:
    """Side of the map after a stride-``stride`` 3x3 conv or pool with padding 1."""
    return (size - 1) // stride + 1


class Bottleneck(nn.Module):
    """1x1 reduce -> mixer (3x3 conv) -> 1x1 expand, BN after each, plus the shortcut (Fig. 5 right)."""

    def __init__(self, c_in: int, width: int, c_out: int, stride: int, mixer: nn.Module) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.mixer = mixer
        self.mix_norm = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:  # projection shortcut (option B)
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H', W')
        h = self.reduce(x)  # (B, width, H, W)
        h = self.mix_norm(self.mixer(h))  # (B, width, H', W')
        return self.relu(self.expand(h) + self.shortcut(x))


class ResNetBody(nn.Module):
    """Stem and bottleneck stages, without a head: (B, C_in, S, S) -> (B, C_last, S', S')."""

    def __init__(self, c: ResNetConfig, mixer: MixerFactory | Callable[..., nn.Module] = conv3x3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_channels, c.stem, 3, padding=1, bias=False), nn.BatchNorm2d(c.stem), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        c_in, size = c.stem, c.image_size
        for stage, (width, n) in enumerate(zip(c.widths, c.blocks)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                c_out = c.expansion * width
                blocks.append(Bottleneck(c_in, width, c_out, stride, mixer(stage, width, stride, size)))
                c_in, size = c_out, downsampled(size, stride)
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c_in
        init_resnet(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(images))


def init_resnet(module: nn.Module) -> None:
    """He-normal (fan_out) convs; BN weight one, bias zero; the last BN of each block zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Bottleneck):
            bn = m.expand[1]
            assert isinstance(bn, nn.BatchNorm2d)  # expand is (1x1 conv, BN)
            nn.init.zeros_(bn.weight)


class ClassifierHead(nn.Module):
    """Global average pooling, dropout, linear: (B, C, H, W) -> (B, K)."""

    def __init__(self, channels: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(h.mean(dim=(2, 3))))


@register_model("resnet", config=ResNetConfig)
class ResNet(nn.Module):
    """He et al. 2016: bottleneck ResNet for small images (3x3 stem, no max pool); the CNN baseline."""

    io: IOFormat = "image"

    def __init__(self, c: ResNetConfig, mixer: MixerFactory | Callable[..., nn.Module] = conv3x3) -> None:
        super().__init__()
        self.config = c
        self.body = ResNetBody(c, mixer)
        self.head = ClassifierHead(self.body.out_channels, c.n_classes, c.dropout)

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C_in, S, S) -> logits (B, K)
        return ModelOutput(self.head(self.body(images)))
