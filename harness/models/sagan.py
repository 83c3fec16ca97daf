"""SAGAN: a self-attention GAN for small images, with its no-attention baseline.

Zhang, Goodfellow, Metaxas, Odena. "Self-Attention Generative Adversarial Networks". ICML 2019,
arXiv 1805.08318.

What is the paper's:

- the self-attention block (Sec. 3): f = W_f x, g = W_g x with C/8 channels (1x1 convs), energies
  s_ij = f(x_i)^T g(x_j), attention beta = softmax over the positions i attended to, values
  h = W_h x, output o = W_v (sum_i beta_ji h_i) (1x1 conv back to C channels), y = gamma * o + x with a
  learnable scalar gamma initialised at 0 (so the block starts as the identity);
- the block in BOTH networks; spectral normalisation of every conv and linear layer of both networks
  and of D's class embedding (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration
  per training forward, as in the official code; the conditional-BN gains and biases are plain
  embeddings there too). SN normalises each weight reshaped to (out, in * k * k), so a conv's operator
  norm is bounded by, not equal to, 1;
- hinge loss: L_D = E[relu(1 - D(x, y))] + E[relu(1 + D(G(z, y), y))], L_G = -E[D(G(z, y), y)];
- two time-scale update rule with Adam betas (0, 0.9) and a 1:1 D:G step ratio (``n_critic``);
  the learning rates are the train config's ``lr`` for G and ``lr`` x ``d_lr_mult`` for D (the paper's
  1e-4 / 4e-4 is ``lr: 1e-4``, ``d_lr_mult: 4``; see harness/measure/step.py, ``TrainStep``);
- class-conditional generation (``conditional: true``, the default, as the paper's ImageNet model):
  conditional batch norm in G (per-class gain and bias embeddings), projection discriminator
  (D(x, y) = psi(phi(x)) + <embed(y), phi(x)>); ``conditional: false`` gives plain BN and no projection.
- residual up-blocks in G (BN, ReLU, 2x nearest upsampling, 3x3 conv, BN, ReLU, 3x3 conv; 1x1 conv on
  the upsampled shortcut) and down-blocks in D (ReLU, 3x3 conv, ReLU, 3x3 conv, 2x2 average pool;
  1x1 conv then pool on the shortcut), global sum pooling in D, tanh output in G.

Simplified for 8x8 (or 16x16) digits, and said here: G starts from a 4x4 map of ``4 * ch`` (8x8: 2*ch)
channels and has log2(S/4) up-blocks; D's first block keeps the full resolution and the rest halve it
down to 4x4. The attention block sits at the full S x S map in both networks (the paper's best
placement is a mid-to-high resolution feature map, 32x32 of 128x128; at 8x8 the last map is the only
one with more than 16 positions). Value channels are C/2 with a 1x1 output conv C/2 -> C, as in the
official code; the official 2x2 max-pooling of keys and values is left out (the maps are tiny).
``attention: false`` is the same GAN with the block removed (the baseline). Image values are in
[-1, 1].

Interface. Training goes through :meth:`SAGAN.optim_phases` (discriminator, then generator). ``forward``
has two uses: with ``images`` (a training batch; profiling and the registry tests) it runs one GAN
step's forwards - G on noise, D on the real and the generated images - and returns D's scores of the
real images as logits [B, 1] and the sum of both hinge losses as ``aux_loss`` (a cost stand-in: the
real training never backpropagates that sum); with ``seeds`` (evaluation) it returns one generated
image per seed [B, C, S, S], the noise of example i drawn from a generator seeded with ``seeds[i]``.
:meth:`SAGAN.sample` draws ``n`` images from a generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from harness.core.config import bounded, positive
from harness.core.registry import register_model
from harness.models.base import Batch, ImageSizeAtLength, IOFormat, ModelOutput, OptimPhase


@dataclass
class SAGANConfig(ImageSizeAtLength):
    image_size: int = positive(8)  # side; a power of two >= 8 (the task fills it in)
    in_channels: int = positive(1)
    n_classes: int = positive(10)
    z_dim: int = positive(32)
    ch: int = positive(32)  # base width; a multiple of 8 (query/key have ch/8 channels)
    attention: bool = True  # the self-attention block in G and D; false: the baseline
    conditional: bool = True  # conditional BN in G and a projection D; false: unconditional
    d_lr_mult: float = bounded(4.0, lo=1e-6)  # D's lr = train lr x this (TTUR: 4e-4 / 1e-4)
    n_critic: int = positive(1)  # D steps per G step

    def check(self) -> list[tuple[str, str]]:
        out = []
        s = self.image_size
        if s < 8 or s & (s - 1):
            out.append(("image_size", f"must be a power of two >= 8, got {s}"))
        if self.ch % 8:
            out.append(("ch", f"must be a multiple of 8 (query/key width ch/8), got {self.ch}"))
        return out


M = TypeVar("M", bound=nn.Module)


def sn(module: M) -> M:
    """Spectral normalisation with one power iteration per training forward (``module`` itself,
    parametrized in place: torch types the result as a plain Module)."""
    return cast(M, spectral_norm(module, n_power_iterations=1))


class SelfAttention2d(nn.Module):
    """The SAGAN block: y = gamma * W_v(softmax(f^T g) h) + x, f, g: C -> C/8, h: C -> C/2, gamma = 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c8, c2 = channels // 8, channels // 2
        self.f = sn(nn.Conv2d(channels, c8, 1, bias=False))  # query
        self.g = sn(nn.Conv2d(channels, c8, 1, bias=False))  # key
        self.h = sn(nn.Conv2d(channels, c2, 1, bias=False))  # value
        self.v = sn(nn.Conv2d(c2, channels, 1, bias=False))  # output
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q = self.f(x).flatten(2)  # (B, C/8, N)
        k = self.g(x).flatten(2)  # (B, C/8, N)
        val = self.h(x).flatten(2)  # (B, C/2, N)
        beta = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N query, N key)
        o = torch.bmm(val, beta.transpose(1, 2)).reshape(b, -1, hh, ww)  # (B, C/2, H, W)
        return x + self.gamma * self.v(o)


class CondBatchNorm(nn.Module):
    """BN without its own affine, then a per-class gain and bias (unconditional: one learned pair)."""

    def __init__(self, channels: int, n_classes: int, conditional: bool) -> None:
        super().__init__()
        self.conditional = conditional
        self.bn = nn.BatchNorm2d(channels, affine=not conditional)
        if conditional:
            self.gain = nn.Embedding(n_classes, channels)
            self.bias = nn.Embedding(n_classes, channels)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.bn(x)
        if not self.conditional:
            return x
        return x * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, n_classes: int, conditional: bool) -> None:
        super().__init__()
        self.bn1 = CondBatchNorm(cin, n_classes, conditional)
        self.conv1 = sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.bn2 = CondBatchNorm(cout, n_classes, conditional)
        self.conv2 = sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = sn(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = sn(nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)  # no ReLU on the raw image
        h = self.conv2(F.relu(self.conv1(h)))
        s = self.skip(x)
        if self.down:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class Generator(nn.Module):
    def __init__(self, cfg: SAGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_up = int(math.log2(cfg.image_size // 4))
        widths = [cfg.ch * 2 ** (n_up - i) for i in range(n_up + 1)]  # 4x4 ... S x S
        self.fc = sn(nn.Linear(cfg.z_dim, widths[0] * 16))
        self.blocks = nn.ModuleList(
            UpBlock(widths[i], widths[i + 1], cfg.n_classes, cfg.conditional) for i in range(n_up)
        )
        self.attn = SelfAttention2d(cfg.ch) if cfg.attention else None
        self.bn = nn.BatchNorm2d(cfg.ch)
        self.out = sn(nn.Conv2d(cfg.ch, cfg.in_channels, 3, padding=1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).reshape(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        if self.attn is not None:
            h = self.attn(h)
        return torch.tanh(self.out(F.relu(self.bn(h))))

    def out_bias(self) -> torch.Tensor:
        """The output conv's bias (built with one; torch types it optional): G's device and dtype."""
        bias = self.out.bias
        assert bias is not None
        return bias


class Discriminator(nn.Module):
    def __init__(self, cfg: SAGANConfig) -> None:
        super().__init__()
        n_down = int(math.log2(cfg.image_size // 4))
        widths = [cfg.ch * 2**i for i in range(n_down + 1)]
        self.first = DownBlock(cfg.in_channels, widths[0], down=False, first=True)  # full resolution
        self.attn = SelfAttention2d(cfg.ch) if cfg.attention else None
        self.blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1], True, False) for i in range(n_down))
        self.psi = sn(nn.Linear(widths[-1], 1))
        self.embed = sn(nn.Embedding(cfg.n_classes, widths[-1])) if cfg.conditional else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        if self.attn is not None:
            h = self.attn(h)
        for block in self.blocks:
            h = block(h)
        phi = F.relu(h).sum(dim=(2, 3))  # global sum pooling
        out = self.psi(phi).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * phi).sum(1)  # projection
        return out


@register_model("sagan", config=SAGANConfig)
class SAGAN(nn.Module):
    """Self-attention GAN (Zhang et al. 2019): SN in G and D, hinge loss, TTUR; no attention: baseline."""

    io: IOFormat = "gan"

    def __init__(self, cfg: SAGANConfig) -> None:
        super().__init__()
        self.config = cfg
        self.gen = Generator(cfg)
        self.disc = Discriminator(cfg)

    # -- training ---------------------------------------------------------------------------------
    def noise(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, generator=gen).to(self.gen.out_bias())

    def d_loss(self, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        real, y = batch.inputs["images"], batch.inputs["labels"]
        with torch.no_grad():
            fake = self.gen(self.noise(len(y), gen), y)
        return F.relu(1 - self.disc(real, y)).mean() + F.relu(1 + self.disc(fake, y)).mean()

    def g_loss(self, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        y = batch.inputs["labels"]
        return -self.disc(self.gen(self.noise(len(y), gen), y), y).mean()

    def optim_phases(self) -> list[OptimPhase]:
        """Discriminator (``n_critic`` steps, lr x ``d_lr_mult``), then generator."""
        return [
            OptimPhase("d", list(self.disc.parameters()), self.d_loss, self.config.d_lr_mult,
                       self.config.n_critic),
            OptimPhase("g", list(self.gen.parameters()), self.g_loss),
        ]

    # -- forward, sampling ------------------------------------------------------------------------
    def forward(
        self, labels: torch.Tensor, images: torch.Tensor | None = None, seeds: torch.Tensor | None = None
    ) -> ModelOutput:
        if images is None:
            if seeds is None:
                raise ValueError("sagan needs images (a training batch) or seeds (generation)")
            z = torch.stack([torch.randn(self.config.z_dim, generator=torch.Generator().manual_seed(int(s)))
                             for s in seeds.tolist()])
            return ModelOutput(self.gen(z.to(labels.device), labels))
        z = torch.randn(len(labels), self.config.z_dim, device=images.device)
        fake = self.gen(z, labels)
        d_real, d_fake = self.disc(images, labels), self.disc(fake, labels)
        hinge = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean() - d_fake.mean()
        return ModelOutput(d_real.unsqueeze(1), aux_loss=hinge)

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` generated images [n, C, S, S] in [-1, 1] of classes ``labels`` (default 0, 1, 2, ...)."""
        if labels is None:
            labels = torch.arange(n) % self.config.n_classes
        return self.gen(self.noise(n, gen), labels.to(self.gen.out_bias().device))
