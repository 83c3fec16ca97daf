"""TTSR: the texture transformer for reference-based super-resolution, and its two baselines.

Yang, Yang, Fu, Lu, Guo. "Learning Texture Transformer Network for Image Super-Resolution". CVPR 2020,
arXiv 2006.04139 (official code researchmm/TTSR).

Inputs (io ``"sr"``): ``lr`` [B, C, S/r, S/r] and ``ref`` [B, C, R, R] (R a multiple of r, any size);
output [B, C, S, S] (in the ``logits`` slot of :class:`ModelOutput`), r = ``scale``, a power of two.

Faithful (Sec. 3.1, official ``model/``):

- *Learnable texture extractor* (LTE): a CNN whose levels sit at 1x, 1/2x, ... 1/rx of the HR size;
  it is trained with the rest (the paper initialises it from VGG19 and trains it at a lower rate).
- *Relevance embedding*: Q = LTE(LR up) and K = LTE(Ref down-up) at the coarsest level (the LR grid);
  both are unfolded into 3x3 patches (padding 1), each patch L2-normalised, r_ij = <q_i, k_j> (one
  ``bmm``). LR up is the bicubic x r upsampling of ``lr``; Ref down-up is ``ref`` bicubic-downsampled
  (antialiased, as the task makes ``lr``) and upsampled again, so Q and K see the same degradation.
- *Hard attention*: h_i = argmax_j r_ij; at each level l, V = LTE(Ref) at that level is unfolded into
  patches of 3f x 3f (stride f, padding f, f = 2^(levels-1-l), the paper's 3x3 / 6x6 / 12x12), the
  columns h_i gathered and folded back; overlaps are summed and divided by 9 (the official code).
- *Soft attention*: s_i = max_j r_ij, upsampled bicubically to each level, weights the fusion:
  F <- F + Conv3x3(Concat(F, T)) * S (official ``MainNet``).
- *Main network*: head conv and residual blocks at the LR size, then per x2 step a conv, pixel shuffle
  and residual blocks; the texture of the matching level is fused at each scale (1/r up to 1x).
- Loss: L1 reconstruction only (the paper's "TTSR-rec"); the task supplies it.

Simplified, and said here: the LTE is a small 3-level CNN trained from scratch at the network's rate
(no VGG19, no ImageNet weights); there is no cross-scale feature integration (CSFI): every scale
stage runs its own residual blocks once, not the exchanged 1x/2x/4x streams (left out for CPU budget
and time); the output adds the bicubic upsampling of ``lr`` (a global residual, in every variant,
which the official network does not have) so small budgets train; the perceptual, adversarial and
texture losses are left out; no output clamp in training (the task clamps when scoring).

Variants: ``texture: false`` is the same network without LTE and texture fusion (the "no transformer"
baseline). :class:`Bicubic` (registered ``bicubic``) outputs the bicubic upsampling of ``lr``; it has
one parameter, an additive offset held at exactly zero (its gradient is zero, so AdamW never moves
it), only because the harness's training loop needs something to optimise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import positive
from harness.core.registry import register_model
from harness.models.base import ImageSizeAtLength, IOFormat, ModelOutput


def _power_of_two(n: int) -> bool:
    return n >= 2 and n & (n - 1) == 0


@dataclass
class TTSRConfig(ImageSizeAtLength):
    image_size: int = positive(32)  # HR side S
    scale: int = positive(4)  # r: LR side is S / r; a power of two
    in_channels: int = positive(1)
    n_feats: int = positive(32)  # main network width (the paper's 64)
    n_res: int = positive(2)  # residual blocks per scale stage
    lte_feats: int = positive(16)  # texture extractor width per level
    texture: bool = True  # false: the same network without the texture transformer

    def check(self) -> list[tuple[str, str]]:
        if not _power_of_two(self.scale):
            return [("scale", f"must be a power of two (2, 4, 8, ...), got {self.scale}")]
        if self.image_size % self.scale:
            return [("scale", f"must divide image_size ({self.image_size}), got {self.scale}")]
        return []


@dataclass
class BicubicConfig(ImageSizeAtLength):
    image_size: int = positive(32)
    scale: int = positive(4)
    in_channels: int = positive(1)

    def check(self) -> list[tuple[str, str]]:
        if self.image_size % self.scale:
            return [("scale", f"must divide image_size ({self.image_size}), got {self.scale}")]
        return []


def bicubic(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bicubic resizing by ``factor``; antialiased when shrinking (the task's LR degradation)."""
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False, antialias=factor < 1)


def relevance(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """r [B, Nk, Nq]: inner products of L2-normalised 3x3 patches (padding 1) of k and q [B, C, h, w]."""
    qp = F.normalize(F.unfold(q, 3, padding=1), dim=1)  # [B, 9C, Nq]
    kp = F.normalize(F.unfold(k, 3, padding=1), dim=1)  # [B, 9C, Nk]
    return torch.bmm(kp.transpose(1, 2), qp)


def hard_soft(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard attention h_i = argmax_j r_ij (index [B, Nq]) and soft attention s_i = max_j r_ij."""
    s, h = r.max(dim=1)
    return h, s


def transfer(v: torch.Tensor, h: torch.Tensor, k_grid: int, q_grid: tuple[int, int]) -> torch.Tensor:
    """Texture T [B, C, f*qh, f*qw] from v [B, C, f*k_grid, .] (f = v's side over the key grid's): v's
    3f x 3f patches (stride f, padding f) gathered at the indices h [B, qh*qw] and folded back at the
    query grid; overlaps summed and divided by 9 (the official code)."""
    f = int(v.shape[-1]) // int(k_grid)  # ints, also under tracing
    patches = F.unfold(v, 3 * f, padding=f, stride=f)  # [B, C*9f^2, Nk]
    picked = patches.gather(2, h.unsqueeze(1).expand(-1, patches.shape[1], -1))  # [B, C*9f^2, Nq]
    return F.fold(picked, (f * int(q_grid[0]), f * int(q_grid[1])), 3 * f, padding=f, stride=f) / 9.0


class ResBlock(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n, n, 3, padding=1)
        self.conv2 = nn.Conv2d(n, n, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class TextureExtractor(nn.Module):
    """Learnable texture extractor: level 0 at full size, each further level halves it (max-pool)."""

    def __init__(self, c_in: int, width: int, levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in if i == 0 else width, width, 3, padding=1)
                                   for i in range(levels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(F.max_pool2d(x, 2) if i else x))
            out.append(x)
        return out  # finest first


@register_model("ttsr", config=TTSRConfig)
class TTSR(nn.Module):
    """Yang et al. 2020: texture transformer (LTE, relevance, hard/soft attention) for reference SR."""

    io: IOFormat = "sr"

    def __init__(self, c: TTSRConfig) -> None:
        super().__init__()
        self.config = c
        self.levels = c.scale.bit_length()  # log2(r) + 1 scales: 1/r ... 1
        n = c.n_feats
        self.head = nn.Conv2d(c.in_channels, n, 3, padding=1)
        self.stages = nn.ModuleList(nn.Sequential(*(ResBlock(n) for _ in range(c.n_res)))
                                    for _ in range(self.levels))
        self.ups = nn.ModuleList(nn.Conv2d(n, 4 * n, 3, padding=1) for _ in range(self.levels - 1))
        self.tail = nn.Conv2d(n, c.in_channels, 3, padding=1)
        if c.texture:
            self.lte = TextureExtractor(c.in_channels, c.lte_feats, self.levels)
            self.fuse = nn.ModuleList(nn.Conv2d(n + c.lte_feats, n, 3, padding=1) for _ in range(self.levels))

    def attend(self, lr: torch.Tensor, ref: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Transferred textures per stage (coarsest first) and the soft attention map [B, 1, h, w]."""
        r = self.config.scale
        q = self.lte(bicubic(lr, r))[-1]
        k = self.lte(bicubic(bicubic(ref, 1 / r), r))[-1]
        values = self.lte(ref)
        h, s = hard_soft(relevance(q, k))
        grid = (lr.shape[-2], lr.shape[-1])
        textures = [transfer(v, h, k.shape[-1], grid) for v in reversed(values)]
        return textures, s.view(lr.shape[0], 1, *grid)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> ModelOutput:
        x = self.head(lr)
        textures, soft = self.attend(lr, ref) if self.config.texture else ([], None)
        for i, stage in enumerate(self.stages):
            if i:
                x = F.pixel_shuffle(self.ups[i - 1](x), 2)
            x = stage(x)
            if soft is not None:
                s = soft if i == 0 else bicubic(soft, 2**i)
                x = x + self.fuse[i](torch.cat([x, textures[i]], dim=1)) * s
        return ModelOutput(self.tail(x) + bicubic(lr, self.config.scale))


@register_model("bicubic", config=BicubicConfig)
class Bicubic(nn.Module):
    """Bicubic upsampling of the LR input: the reference-free, parameter-free SR baseline."""

    io: IOFormat = "sr"

    def __init__(self, c: BicubicConfig) -> None:
        super().__init__()
        self.config = c
        # Held at zero: its gradient is zero (multiplied by 0), so AdamW's update and decay keep it 0.
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> ModelOutput:
        return ModelOutput(bicubic(lr, self.config.scale) + 0.0 * self.offset)
