"""Two-step lane detection baseline: segment lane pixels per lane slot, then fit each lane's curve.

The kind of method LSTR replaces (SCNN-style instance segmentation followed by curve fitting, Liu et al.
2021, Sec. 1-2): step 1 is a network, the harness's bottleneck ResNet (harness/models/resnet.py, the
same backbone as harness/models/lstr.py) with a 1x1 conv to K + 1 classes (background and K lane
slots, ordered left to right) bilinearly upsampled to the image. Step 2 is post-processing: at every
label row, each slot's most probable column gives a point when its probability is >= 0.5, placed at
the probability-weighted mean column within ``WINDOW`` pixels of it (sub-pixel); a
quadratic x(y) is fitted to the slot's points by least squares (normal equations solved by Cramer's
rule, in torch) and evaluated between the first and the last point; a slot with fewer than 3 points
predicts no lane.

Training output: per-pixel logits at the label rows [B, R, W, K + 1] (classes last; the task's
cross-entropy, harness/tasks/lane_set.py). Evaluation output (eval mode, so FLOPs and timing include
step 2): the decoded lanes [B, K, 4 + R] of io ``lanes`` (harness/models/base.py), class logits
(0, +-10) for a lane or none.

Shapes: B batch, K lane slots (``n_lanes``), R label rows, H x W image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput
from harness.models.lstr import backbone, backbone_problems

WINDOW = 2  # pixels either side of a row's most probable column that the sub-pixel mean takes


@dataclass
class LaneSegConfig(ImageSizeAtLength):
    image_size: int = positive(64)  # image width W (the task sets it)
    image_height: int = positive(32)
    in_channels: int = positive(1)
    row_start: int = bounded(12, lo=0)
    row_step: int = positive(1)
    stem: int = positive(16)
    widths: list[int] = field(default_factory=lambda: [8, 16, 32])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    expansion: int = positive(4)
    n_lanes: int = positive(4)  # lane slots K

    def check(self) -> list[tuple[str, str]]:
        return backbone_problems(self)


def quadratic_fit(y: torch.Tensor, x: torch.Tensor, wgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares x = a0 + a1 t + a2 t^2 (t = 4 (y - 0.7)) with weights wgt (..., R) -> fitted x at
    every row (..., R) and whether the system is solvable (..., ) (at least 3 points)."""
    t = 4 * (y - 0.7)
    p = [(wgt * t**i).sum(-1) for i in range(5)]  # moments
    q = [(wgt * t**i * x).sum(-1) for i in range(3)]
    m = [[p[0], p[1], p[2]], [p[1], p[2], p[3]], [p[2], p[3], p[4]]]

    def det3(a: list[list[torch.Tensor]]) -> torch.Tensor:
        return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))

    det = det3(m)
    ok = (wgt.sum(-1) >= 3) & (det.abs() > 1e-6)
    safe = torch.where(ok, det, torch.ones_like(det))
    coef = []
    for j in range(3):
        mj = [[q[i] if col == j else m[i][col] for col in range(3)] for i in range(3)]
        coef.append(det3(mj) / safe)
    fit = coef[0][..., None] + coef[1][..., None] * t + coef[2][..., None] * t**2
    return fit, ok


@register_model("lane_seg", config=LaneSegConfig)
class LaneSeg(nn.Module):
    """Two-step baseline: segment each lane slot's pixels (ResNet), then fit a curve per slot."""

    io: IOFormat = "lanes"
    rows: torch.Tensor  # buffers: the label rows and their normalised heights
    y: torch.Tensor

    def __init__(self, c: LaneSegConfig) -> None:
        super().__init__()
        self.config = c
        self.body = backbone(c)
        self.head = nn.Conv2d(self.body.out_channels, c.n_lanes + 1, 1)
        rows = torch.arange(c.row_start, c.image_height, c.row_step)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("y", (rows.float() + 0.5) / c.image_height, persistent=False)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        size = images.shape[-2:]
        seg = F.interpolate(self.head(self.body(images)), size=size, mode="bilinear", align_corners=False)
        seg = seg[:, :, self.rows].permute(0, 2, 3, 1)  # (B, R, W, K + 1)
        return ModelOutput(seg if self.training else self.fit(seg))

    def fit(self, seg: torch.Tensor) -> torch.Tensor:
        """Step 2: per-slot points from the segmentation, a quadratic per slot -> (B, K, 4 + R)."""
        w = seg.shape[2]
        prob = seg.softmax(-1)[..., 1:].permute(0, 3, 1, 2)  # (B, K, R, W)
        best, col = prob.max(-1)  # (B, K, R)
        pts = (best >= 0.5).float()
        centres = torch.arange(w, dtype=prob.dtype, device=prob.device) + 0.5
        near = ((centres - 0.5) - col[..., None].to(prob.dtype)).abs() <= WINDOW  # (B, K, R, W)
        mass = prob * near
        x = (mass * centres).sum(-1) / mass.sum(-1).clamp(min=1e-6) / w  # sub-pixel: mean over the window
        fit, ok = quadratic_fit(self.y, x, pts)
        ys = self.y.expand_as(pts)
        lower = torch.where(pts > 0, ys, torch.full_like(ys, 2.0)).amin(-1)
        upper = torch.where(pts > 0, ys, torch.full_like(ys, -1.0)).amax(-1)
        lane = torch.where(ok, 10.0, -10.0)
        cls = torch.stack([-lane, lane], -1)
        return torch.cat([cls, lower[..., None], upper[..., None], fit], -1)
