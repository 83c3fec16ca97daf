"""A convolutional detector without a Transformer: DETR's backbone with a dense one-to-one head.

The non-Transformer comparison of the detection suite. Every location of the backbone's last feature map
is one prediction (the role of a query): a class-score tower and a box tower (``n_convs`` 3x3 convs with
GroupNorm and ReLU each, as FCOS's heads; Tian et al., ICCV 2019, arXiv 1904.01355) end in a 3x3 conv
giving K sigmoid class scores and a 3x3 conv giving the box; the box centre is predicted relative to the
location's centre (``sigmoid(delta + logit(centre))``, as Deformable DETR's reference points) and its
width and height through a sigmoid (bias -2 at init, class bias at a 0.01 prior). Trained with the same
set loss as Deformable DETR (harness/tasks/set_loss.py: Hungarian one-to-one matching on focal class,
L1 and GIoU costs, focal loss): the one-to-one-matched dense detector of OneNet (Sun et al., ICML 2021,
arXiv 2012.05780) or DeFCN (Wang et al., CVPR 2021), which needs no anchors and no NMS, so AP is computed
on its raw scores exactly as for DETR. It is not Faster R-CNN (no region proposals, no RoI pooling, no
NMS); it stands in for "a CNN detector at the same parameter count" (the ``match`` key ``d_model``).

Shapes: B batch, S image side, H x W feature map, Q = H*W predictions, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from harness.core.config import positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput
from harness.models.deformable_detr import PRIOR_PROB, inverse_sigmoid
from harness.models.resnet import ResNetBody, ResNetConfig, backbone_config, downsampled


@dataclass
class DenseDetectorConfig(ImageSizeAtLength):
    image_size: int = positive(32)
    in_channels: int = positive(3)
    n_classes: int = positive(4)
    stem: int = positive(16)
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    expansion: int = positive(4)
    d_model: int = positive(64)  # channels of the head towers
    n_convs: int = positive(2)  # 3x3 convs per tower
    gn_groups: int = positive(8)

    def backbone_config(self) -> ResNetConfig:
        return backbone_config(self)

    @property
    def num_queries(self) -> int:
        """Predictions per image: the locations of the last feature map."""
        side = self.image_size
        for _ in self.widths[1:]:
            side = downsampled(side, 2)
        return side * side

    def check(self) -> list[tuple[str, str]]:
        problems = self.backbone_config().check()
        if problems:
            return problems
        if self.d_model % self.gn_groups:
            return [("gn_groups", f"must divide d_model ({self.d_model}), got {self.gn_groups}")]
        return []


def tower(c_in: int, d: int, n: int, groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(c_in if i == 0 else d, d, 3, padding=1), nn.GroupNorm(groups, d), nn.ReLU()]
    return nn.Sequential(*layers)


@register_model("dense_detector", config=DenseDetectorConfig)
class DenseDetector(nn.Module):
    """ResNet features, FCOS-style conv towers, one prediction per location, one-to-one set loss."""

    io: IOFormat = "detect"

    def __init__(self, c: DenseDetectorConfig) -> None:
        super().__init__()
        self.config = c
        self.backbone = ResNetBody(c.backbone_config())
        ch = self.backbone.out_channels
        self.cls_tower = tower(ch, c.d_model, c.n_convs, c.gn_groups)
        self.box_tower = tower(ch, c.d_model, c.n_convs, c.gn_groups)
        self.cls_out = nn.Conv2d(c.d_model, c.n_classes, 3, padding=1)
        self.box_out = nn.Conv2d(c.d_model, 4, 3, padding=1)
        for m in [*self.cls_tower, *self.box_tower, self.cls_out, self.box_out]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                assert m.bias is not None  # every conv here has one (torch types it optional)
                nn.init.zeros_(m.bias)
        cls_bias, box_bias = self.cls_out.bias, self.box_out.bias
        assert cls_bias is not None and box_bias is not None
        nn.init.constant_(cls_bias, -torch.log(torch.tensor((1 - PRIOR_PROB) / PRIOR_PROB)).item())
        nn.init.constant_(box_bias[2:], -2.0)

    def forward(self, images: torch.Tensor) -> ModelOutput:  # (B, C, S, S) -> logits (B, 1, Q, K + 4)
        f = self.backbone(images)
        b, _, h, w = f.shape
        cls = self.cls_out(self.cls_tower(f)).flatten(2).transpose(1, 2)  # (B, Q, K)
        delta = self.box_out(self.box_tower(f)).flatten(2).transpose(1, 2)  # (B, Q, 4)
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        centre = torch.stack([xs, ys], -1).reshape(1, h * w, 2).to(delta)
        box = torch.cat([delta[..., :2] + inverse_sigmoid(centre), delta[..., 2:]], -1).sigmoid()
        return ModelOutput(torch.cat([cls, box], -1)[:, None])
