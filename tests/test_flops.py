"""count_flops against hand-derived formulas and torch.utils.flop_counter, exactly (no tolerance)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from harness.measure.flops import HANDLES, count_flops, register_flop_handle, zero_macs
from harness.models.base import ModelOutput
from harness.tasks.base import Batch

B, L, D, H, D_FF, V, N_LAYERS = 2, 8, 16, 2, 32, 11, 2


class Block(nn.Module):
    """Pre-LN encoder block with separate q/k/v/o projections (4 D^2 weights) and a D -> D_FF -> D FFN."""

    def __init__(self, attention: str, causal: bool) -> None:
        super().__init__()
        self.attention, self.causal = attention, causal
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(D, D_FF), nn.Linear(D_FF, D)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.ln1(x)
        # q, k, v: (B, H, L, Dh)
        q, k, v = (p(h).view(b, t, H, D // H).transpose(1, 2) for p in (self.q, self.k, self.v))
        if self.attention == "sdpa":
            a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(D // H)  # (B, H, L, L)
            if self.causal:
                mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
                scores = scores.masked_fill(mask, float("-inf"))
            a = self.drop(F.softmax(scores, dim=-1)) @ v
        x = x + self.drop(self.o(a.transpose(1, 2).reshape(b, t, D)))
        return x + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(x)))))


class Encoder(nn.Module):
    """Embedding + sinusoidal positions + N_LAYERS blocks + LayerNorm + vocabulary head."""

    def __init__(self, attention: str = "sdpa", causal: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(Block(attention, causal) for _ in range(N_LAYERS))
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, V)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        pos = torch.arange(x.shape[1], device=x.device).float()[:, None]
        freq = torch.exp(torch.arange(0, D, 2, device=x.device).float() * (-math.log(1e4) / D))
        h = self.emb(x) + torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)
        for block in self.blocks:
            h = block(h)
        return ModelOutput(self.head(self.ln(h)))


def analytic_encoder_flops() -> int:
    """Per layer: q, k, v, o projections 4 D^2 and the FFN 2 D D_FF MACs per token; q k^T and a v
    L D MACs per token each (summed over heads); head D V per token. Biases cost nothing: both counters
    charge addmm/linear M N K MACs. x2 for FLOPs. Causal masking is not discounted."""
    per_layer = 2 * B * L * (4 * D * D + 2 * D * D_FF) + 2 * 2 * B * L * L * D
    return N_LAYERS * per_layer + 2 * B * L * D * V


def token_batch() -> Batch:
    x = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(0))
    return Batch.of_tokens({"x": x}, x)


def torch_count(model: nn.Module, batch: Batch, math_sdpa: bool = False) -> int:
    """torch.utils.flop_counter's total in eval mode, optionally forcing sdpa onto its math backend."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if math_sdpa:
            with sdpa_kernel(SDPBackend.MATH):
                model(**batch.inputs)
        else:
            model(**batch.inputs)
    return counter.get_total_flops()


def attention_flops() -> int:
    return N_LAYERS * 2 * 2 * B * L * L * D


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_encoder_matches_formula_and_torch(causal: bool) -> None:
    model, batch = Encoder("sdpa", causal), token_batch()
    flops, unsupported = count_flops(model, batch)
    assert flops == analytic_encoder_flops()
    assert unsupported == []
    # Forced onto sdpa's math backend, torch's counter sees the two bmm's and agrees exactly.
    assert torch_count(model, batch, math_sdpa=True) == flops
    # On CPU, sdpa dispatches to _scaled_dot_product_flash_attention_for_cpu, which torch's counter
    # has no formula for (and cannot decompose), so it misses attention entirely.
    assert torch_count(model, batch) == flops - attention_flops()


@pytest.mark.parametrize("causal", [False, True])
def test_math_attention_encoder_matches_formula_and_torch(causal: bool) -> None:
    model, batch = Encoder("math", causal), token_batch()
    flops, unsupported = count_flops(model, batch)
    assert flops == analytic_encoder_flops()
    assert flops == torch_count(model, batch)
    assert unsupported == []


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1, groups=2)
        self.conv1d = nn.Conv1d(16, 4, kernel_size=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, image: torch.Tensor) -> ModelOutput:
        h = F.max_pool2d(F.relu(self.bn(self.conv1(image))), 2)  # (B, 8, 4, 4)
        h = self.conv2(h)  # (B, 16, 2, 2)
        pooled = F.adaptive_avg_pool2d(h, 1).flatten(1)  # (B, 16)
        side = self.conv1d(h.flatten(2)).mean()  # (B, 4, 4) -> scalar
        return ModelOutput(self.fc(pooled) + side)


def test_conv_net_matches_formula_and_torch() -> None:
    image = torch.randn(B, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    batch = Batch({"image": image}, torch.zeros(B, dtype=torch.long), n_tokens=64, seq_len=8)
    model = ConvNet()
    flops, unsupported = count_flops(model, batch)
    conv1 = B * 8 * 3 * 3 * 3 * 8 * 8  # batch * C_out * C_in * k * k * output pixels
    conv2 = B * 16 * (8 // 2) * 3 * 3 * 2 * 2  # grouped: each output channel sees C_in / groups
    conv1d = B * 4 * 16 * 4
    fc = B * 16 * 10
    assert flops == 2 * (conv1 + conv2 + conv1d + fc)
    assert model.training  # count_flops restores the training flag
    assert flops == torch_count(model, batch)
    assert unsupported == []


def test_torch_transformer_layer_counts_matmuls_not_fast_path() -> None:
    """nn.TransformerEncoderLayer's eval/no_grad fast path is one opaque native op; we switch it off."""

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(D, H, D_FF, dropout=0.0, batch_first=True)

        def forward(self, h: torch.Tensor) -> ModelOutput:
            return ModelOutput(self.layer(h))

    batch = Batch({"h": torch.randn(B, L, D)}, torch.zeros(B, L, dtype=torch.long), n_tokens=L, seq_len=L)
    flops, unsupported = count_flops(Wrapped(), batch)
    assert flops == 2 * B * L * (4 * D * D + 2 * D * D_FF) + 2 * 2 * B * L * L * D
    assert unsupported == []
    assert torch.backends.mha.get_fastpath_enabled()  # restored


@pytest.mark.parametrize(
    ("equation", "shapes"),
    [
        ("bld,bmd->blm", [(2, 3, 4), (2, 5, 4)]),
        ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
        ("...ij,...jk->...ik", [(3, 2, 4), (4, 5)]),
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
        ("ij,jk", [(2, 3), (3, 4)]),
        ("bi,bi->b", [(3, 4), (3, 4)]),
        ("i,j->ij", [(3,), (4,)]),  # an outer product is a broadcast multiply: free
    ],
)
def test_einsum_matches_torch(equation: str, shapes: list[tuple[int, ...]]) -> None:
    class Einsum(nn.Module):
        def forward(self, **operands: torch.Tensor) -> ModelOutput:
            return ModelOutput(torch.einsum(equation, *operands.values()))

    operands = {f"a{i}": torch.randn(s) for i, s in enumerate(shapes)}
    batch = Batch(operands, torch.zeros(1), n_tokens=0, seq_len=0)
    flops, unsupported = count_flops(Einsum(), batch)
    assert flops == torch_count(Einsum(), batch)
    assert unsupported == []


def test_broadcast_matmul_counts_the_broadcast_batch() -> None:
    """[L, E] @ [B, E, S]: fvcore's stock handle would charge L E S; the real work is B L E S."""

    class Broadcast(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> ModelOutput:
            return ModelOutput(a @ b)

    batch = Batch({"a": torch.randn(3, 4), "b": torch.randn(5, 4, 6)}, torch.zeros(5), n_tokens=0, seq_len=0)
    flops, _ = count_flops(Broadcast(), batch)
    assert flops == 2 * 5 * 3 * 4 * 6 == torch_count(Broadcast(), batch)


class TwoMatmuls(torch.autograd.Function):
    """A custom Function, as reversible layers use: traced as one prim::PythonOp node."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ w) @ w

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class WithFunctionAndFft(nn.Module):
    def __init__(self, fft: bool) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, D))
        self.fft = fft

    def forward(self, h: torch.Tensor) -> ModelOutput:
        out = TwoMatmuls.apply(h, self.w)
        if self.fft:
            out = out + torch.fft.rfft(h, dim=-1).real.sum()
        return ModelOutput(out)


def test_custom_function_is_counted_through_its_subgraph() -> None:
    batch = Batch({"h": torch.randn(B, L, D)}, torch.zeros(B, L), n_tokens=L, seq_len=L)
    model = WithFunctionAndFft(fft=False)
    flops, unsupported = count_flops(model, batch)
    assert flops == 2 * 2 * B * L * D * D == torch_count(model, batch)
    assert unsupported == []


def test_op_without_handle_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = Batch({"h": torch.randn(B, L, D)}, torch.zeros(B, L), n_tokens=L, seq_len=L)
    model = WithFunctionAndFft(fft=True)
    flops, unsupported = count_flops(model, batch)
    assert unsupported == ["aten::fft_rfft"]
    assert flops == 2 * 2 * B * L * D * D  # the gap costs nothing and is named beside the number
    monkeypatch.setitem(HANDLES, "aten::fft_rfft", zero_macs)  # so that the key is removed afterwards
    register_flop_handle("aten::fft_rfft", lambda inputs, outputs: 7)
    assert count_flops(model, batch) == (flops + 2 * 7, [])


class ZeroCostOps(nn.Module):
    """Ops the variants use around their matmuls (ACT, LSH bucketing, shuffles, pyramids, norms)."""

    def __init__(self) -> None:
        super().__init__()
        self.gn, self.rms = nn.GroupNorm(2, D), nn.RMSNorm(D)
        self.acts = nn.Sequential(nn.ReLU(inplace=True), nn.SiLU(inplace=True), nn.Hardtanh(inplace=True))
        self.drop2d = nn.Dropout2d(0.1)
        self.proj = nn.Linear(D, D)

    def forward(self, h: torch.Tensor) -> ModelOutput:  # h (B, L, D)
        h = self.rms(h) + self.gn(h.transpose(1, 2)).transpose(1, 2) + F.normalize(h, dim=-1)
        h = h + h.pow(2).mean(-1, keepdim=True).rsqrt() * torch.tanh(h) * torch.sigmoid(h)
        halting = torch.sigmoid(h[..., 0]).cumsum(-1)  # ACT-style running halting probability
        h = torch.where((halting < 0.99)[..., None], h, torch.zeros_like(h))
        buckets = torch.argsort(h[..., :4].argmax(-1), dim=-1)  # LSH-style sort by bucket
        h = torch.gather(h, 1, buckets[..., None].expand_as(h))
        h = h + F.one_hot(buckets % D, D).float() + torch.topk(h, 2, dim=-1).values.sum(-1, keepdim=True)
        halves = torch.stack(h.chunk(2, dim=-1), 0).sum(0)  # (B, L, D / 2)
        h = torch.roll(h, 1, dims=1).flip(1) + halves.repeat_interleave(2, -1)
        mask = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
        h = h + h.clone().masked_fill_(mask[: h.shape[1], :1], 0.0)
        grid = torch.stack(torch.meshgrid(torch.arange(L), torch.arange(D), indexing="ij"), 0).float().sum(0)
        h = h + grid + torch.full_like(h, 0.5) + F.log_softmax(h, -1)
        image = self.drop2d(h.unsqueeze(1))  # (B, 1, L, D)
        image = F.interpolate(image, scale_factor=2, mode="nearest") + F.interpolate(image, scale_factor=2)
        image = F.avg_pool2d(image, 2) + F.adaptive_max_pool2d(image, (L, D)) + F.max_pool2d(image, 2)
        h = F.pad(image.squeeze(1), (1, 1))[..., 1:-1].unfold(1, 1, 1).squeeze(-1)
        return ModelOutput(self.proj(self.acts(h)))


def test_ops_around_the_matmuls_are_covered_and_free() -> None:
    batch = Batch({"h": torch.randn(B, L, D)}, torch.zeros(B, L), n_tokens=L, seq_len=L)
    model = ZeroCostOps()
    flops, unsupported = count_flops(model, batch)
    assert unsupported == []
    assert flops == 2 * B * L * D * D == torch_count(model, batch)
