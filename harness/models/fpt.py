"""Feature Pyramid Transformer: self-, grounding and rendering transformers across a feature pyramid.

Zhang, Zhang, Tang, Wang, Hua, Sun. "Feature Pyramid Transformer". ECCV 2020, pp. 323-339,
arXiv 2007.09451.

FPT maps a feature pyramid to a new pyramid of the same levels, channels and sizes. It runs over the
backbone, lateral 1x1 convs and heads of ``fpn`` (harness.models.fpn), in place of FPN's top-down
pathway: as in the official code, its input pyramid is the lateral 1x1 maps of the backbone levels.
With X_i the input map of level i (finest i = 0), each output level is
``Y_i = Fuse_i(cat[ST(X_i), GT(X_i, X_j) for every coarser j, RT(X_i, X_j) for every finer j, X_i])``
where Fuse_i is a 3x3 conv from (L+1)*D to D channels + norm. So GT and RT connect **every pair** of
levels (as the paper and the official code do, not only adjacent ones); the coarsest level has no GT
term (nothing is coarser) and the finest level has no RT term (nothing is finer). (shared/literature.md
quotes the README as "the top level has no RT and the bottom level has no GT"; in the code, and by the
definitions below, the RT output lives at the coarser level and the GT output at the finer one, which
is what is built here.)

- Self-Transformer (ST), within a level: q, k, v are 1x1 convs of X to ``d_inner`` channels; q and k
  are split along channels into N = ``mos_parts`` parts, s^n = q^n . k^n / sqrt(d_inner) (the code's
  temperature: the full key width), and the Mixture-of-Softmaxes normalisation
  F_mos = sum_n pi_n softmax_j(s^n), with pi = softmax(W_pi mean_positions(q)) a learned projection of
  the pooled query (N x d_inner, no bias), so pi differs per image and sums to one. The output is
  F_mos v, a 1x1 conv back to D channels and a norm.
- Grounding Transformer (GT), top-down: queries from the finer map, keys and values from the coarser
  map (1x1 convs to ``d_inner``); similarity s_ij = -||q_i - k_j||^2 (the paper's negative squared
  Euclidean distance, no temperature), softmax over the keys, weighted sum of values, a 1x1 conv back to
  D + norm. ``gt_window`` > 0 is the paper's locality-constrained GT (used for segmentation): query
  (y, x) of the finer map sees only the keys within ``gt_window`` rows and columns of its projected
  position floor(y * h_c / h_f), floor(x * w_c / w_f) in the coarser map (a square of side
  2*gt_window + 1); 0 (default) is the global GT.
- Rendering Transformer (RT), bottom-up: Q is the coarser map, K = V the finer map.
  w = ReLU(W_w GAP(K)) (GAP, then a 1x1 projection and ReLU as in the official code), the channel
  attention Q_att = Q * w, and the output F_conv(Q_att) + V_dow with F_conv a 3x3 conv + norm and V_dow
  the finer map down-sampled by stride-2 3x3 convs + norm (one per factor of two between the levels,
  ReLU between them), which land exactly on the coarser map's size.

Attention is computed exactly (the full score matrices are materialised; at 32-64 px the finest level
has 256-1024 positions).

Simplifications, all deliberate: one FPT layer with one head per transformer, as the paper; GroupNorm
(harness.models.fpn.norm) where the code uses BatchNorm; no attention dropout, no key pooling in ST (a
variant in the code pools keys and values by 2); the RT output has no ReLU (the code's has one; the
paper writes a plain sum); the backbone is fpn's small CNN rather than a ResNet, and D is
``d_model`` (the paper: 256).

Shapes: B batch, D d_model, Di d_inner, N mos_parts, T query positions, U key positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.fpn import FPNConfig, PyramidModel, conv_norm_relu, norm


@dataclass
class FPTConfig(FPNConfig):
    mos_parts: int = positive(2)  # N: parts of q and k in the Self-Transformer's mixture of softmaxes
    d_inner: int | None = None  # q/k/v width inside the transformers; default d_model // 2 (the code's)
    gt_window: int = bounded(0, lo=0)  # 0: global GT; > 0: locality-constrained GT, this many cells each way

    def inner(self) -> int:
        return self.d_inner if self.d_inner is not None else max(1, self.d_model // 2)

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        if problems:
            return problems
        if self.d_inner is not None and self.d_inner < 1:
            return [("d_inner", f"must be >= 1, got {self.d_inner}")]
        if self.inner() % self.mos_parts:
            return [("mos_parts", f"must divide d_inner ({self.inner()}), got {self.mos_parts}")]
        return []


def flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C)."""
    return x.flatten(2).transpose(1, 2)


def unflat(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, h*w, C) -> (B, C, h, w) with the spatial size of ``like``."""
    return y.transpose(1, 2).reshape(y.shape[0], y.shape[2], *like.shape[-2:])


def gt_similarity(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """-||q_i - k_j||^2 for q (B, T, Di), k (B, U, Di) -> (B, T, U), via ||q||^2 + ||k||^2 - 2 q.k."""
    qq = q.pow(2).sum(-1, keepdim=True)  # (B, T, 1)
    kk = k.pow(2).sum(-1).unsqueeze(1)  # (B, 1, U)
    return 2.0 * (q @ k.transpose(1, 2)) - qq - kk


def mixture_of_softmaxes(scores: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """F_mos = sum_n pi_n softmax(s^n): scores (B, N, T, U), pi (B, N) -> (B, T, U); rows sum to one."""
    return (scores.softmax(dim=-1) * pi[:, :, None, None]).sum(dim=1)


class SelfTransformer(nn.Module):
    """Non-local attention within one level with the Mixture-of-Softmaxes normalisation."""

    def __init__(self, d_model: int, d_inner: int, parts: int) -> None:
        super().__init__()
        self.parts, self.d_inner = parts, d_inner
        self.q, self.k, self.v = (nn.Conv2d(d_model, d_inner, 1) for _ in range(3))
        self.pi = nn.Linear(d_inner, parts, bias=False) if parts > 1 else None
        self.out = nn.Conv2d(d_inner, d_model, 1, bias=False)
        self.norm = norm(d_model)

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pi (B, N), mixed attention (B, T, T)) for the map x (B, D, h, w)."""
        q, k = flat(self.q(x)), flat(self.k(x))  # (B, T, Di)
        b, t, _ = q.shape
        if self.pi is not None:
            pi = self.pi(q.mean(dim=1)).softmax(dim=-1)  # (B, N), from the pooled query
        else:
            pi = torch.ones(b, 1, dtype=q.dtype, device=q.device)
        qn = q.reshape(b, t, self.parts, -1).transpose(1, 2)  # (B, N, T, Di/N)
        kn = k.reshape(b, t, self.parts, -1).transpose(1, 2)
        scores = (qn @ kn.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_inner))  # (B, N, T, T)
        return pi, mixture_of_softmaxes(scores, pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, attn = self.weights(x)
        y = attn @ flat(self.v(x))  # (B, T, Di)
        return self.norm(self.out(unflat(y, x)))


def window_mask(
    fine: tuple[int, int], coarse: tuple[int, int], window: int, device: torch.device
) -> torch.Tensor:
    """(T, U) bool, True where coarse cell u lies within ``window`` of fine cell t's projected position."""
    (hf, wf), (hc, wc) = fine, coarse
    py = torch.arange(hf, device=device) * hc // hf  # projected row of each fine row
    px = torch.arange(wf, device=device) * wc // wf
    near_y = (py[:, None] - torch.arange(hc, device=device)[None, :]).abs() <= window  # (hf, hc)
    near_x = (px[:, None] - torch.arange(wc, device=device)[None, :]).abs() <= window  # (wf, wc)
    return (near_y[:, None, :, None] & near_x[None, :, None, :]).reshape(hf * wf, hc * wc)


class GroundingTransformer(nn.Module):
    """Top-down: finer-level queries attend to coarser-level keys/values by -||q - k||^2."""

    def __init__(self, d_model: int, d_inner: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.q, self.k, self.v = (nn.Conv2d(d_model, d_inner, 1) for _ in range(3))
        self.out = nn.Conv2d(d_inner, d_model, 1, bias=False)
        self.norm = norm(d_model)

    def weights(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Attention (B, T_fine, U_coarse): softmax over the keys of -||q - k||^2 (windowed if set)."""
        s = gt_similarity(flat(self.q(fine)), flat(self.k(coarse)))  # (B, T, U)
        if self.window > 0:
            (hf, wf), (hc, wc) = fine.shape[-2:], coarse.shape[-2:]
            keep = window_mask((hf, wf), (hc, wc), self.window, fine.device)
            s = s.masked_fill(~keep, float("-inf"))
        return s.softmax(dim=-1)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        y = self.weights(fine, coarse) @ flat(self.v(coarse))  # (B, T, Di)
        return self.norm(self.out(unflat(y, fine)))


class RenderingTransformer(nn.Module):
    """Bottom-up: the coarser map Q, channel-attended by GAP of the finer map, plus the finer map
    down-sampled by ``steps`` stride-2 3x3 convs."""

    def __init__(self, d_model: int, steps: int) -> None:
        super().__init__()
        self.w = nn.Conv2d(d_model, d_model, 1)
        self.conv = nn.Sequential(nn.Conv2d(d_model, d_model, 3, padding=1, bias=False), norm(d_model))
        down: list[nn.Module] = [conv_norm_relu(d_model, d_model, stride=2) for _ in range(steps - 1)]
        down += [nn.Conv2d(d_model, d_model, 3, stride=2, padding=1, bias=False), norm(d_model)]
        self.down = nn.Sequential(*down)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        w = F.relu(self.w(fine.mean(dim=(-2, -1), keepdim=True)))  # (B, D, 1, 1) = F(GAP(K))
        q_att = coarse * w  # (B, D, h_c, w_c)
        return self.conv(q_att) + self.down(fine)


class FeaturePyramidTransformer(nn.Module):
    """ST on every level, GT from every coarser level, RT from every finer level, concat + 3x3 fuse."""

    def __init__(self, levels: list[int], d_model: int, d_inner: int, parts: int, window: int) -> None:
        super().__init__()
        self.levels = sorted(levels)
        n = len(self.levels)
        self.st = nn.ModuleList(SelfTransformer(d_model, d_inner, parts) for _ in range(n))
        # gt["i_j"]: fine level index i (finest 0) queries coarse level j > i; rt["j_i"]: coarse j from fine i
        self.gt = nn.ModuleDict(
            {f"{i}_{j}": GroundingTransformer(d_model, d_inner, window)
             for i in range(n) for j in range(i + 1, n)}
        )
        self.rt = nn.ModuleDict(
            {f"{j}_{i}": RenderingTransformer(d_model, self.levels[j] - self.levels[i])
             for j in range(n) for i in range(j)}
        )
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.Conv2d((n + 1) * d_model, d_model, 3, padding=1, bias=False), norm(d_model))
            for _ in range(n)
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(xs)
        out = []
        for i, x in enumerate(xs):
            parts = [self.st[i](x)]
            parts += [self.gt[f"{i}_{j}"](x, xs[j]) for j in range(i + 1, n)]
            parts += [self.rt[f"{i}_{j}"](x, xs[j]) for j in range(i)]
            parts.append(x)
            out.append(self.fuse[i](torch.cat(parts, dim=1)))  # (B, D, h_i, w_i)
        return out


@register_model("fpt", config=FPTConfig)
class FPT(PyramidModel):
    """Zhang et al. 2020: fpn's backbone and heads; self/grounding/rendering transformers across levels."""

    def __init__(self, c: FPTConfig) -> None:
        super().__init__(c)
        self.fpt = FeaturePyramidTransformer(self.levels, c.d_model, c.inner(), c.mos_parts, c.gt_window)

    def neck(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fpt(laterals)
