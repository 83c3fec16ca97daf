"""Parameters, activation bytes, timing and profile_model on tiny models with hand-countable costs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.measure.costs import (
    count_params,
    count_params_applied,
    matmul_peak_flops,
    measure_act_bytes,
    measure_step_ms,
    profile_model,
)
from harness.models.base import ModelOutput
from harness.tasks.base import Batch

B, D, H, V, L = 8, 32, 16, 11, 6
FLOAT = 4  # bytes per float32 element


def sum_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(**batch.inputs).logits.sum()


def ce_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    logits = model(**batch.inputs).logits
    return F.cross_entropy(logits.flatten(0, -2), batch.labels.flatten())


def float_batch(rows: int = B, cols: int = D) -> Batch:
    return Batch({"x": torch.randn(rows, cols)}, torch.zeros(rows), n_tokens=cols, seq_len=cols)


def token_batch() -> Batch:
    x = torch.randint(0, V, (B, L))
    return Batch.of_tokens({"x": x}, x)


# --- parameters --------------------------------------------------------------------------------------


class TiedLM(nn.Module):
    """Embedding, one layer applied ``repeats`` times, and a head tied to the embedding matrix."""

    def __init__(self, repeats: int, declare_tied: bool = True) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.layer = nn.Linear(D, D)
        self.head = TiedHead(self.emb, declare_tied)
        self.frozen = nn.Parameter(torch.zeros(5), requires_grad=False)
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.emb(x)
        for _ in range(self.repeats):
            h = torch.relu(self.layer(h))
        return ModelOutput(self.head(h))


class TiedHead(nn.Module):
    """Output projection through the embedding's weight, plus its own bias."""

    def __init__(self, emb: nn.Embedding, declare_tied: bool) -> None:
        super().__init__()
        self.tied = [emb]  # a plain list, so the embedding is not registered as a second parent
        self.bias = nn.Parameter(torch.zeros(V))
        if declare_tied:
            self.extra_applied_params = lambda: [self.tied[0].weight]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.tied[0].weight, self.bias)


def test_count_params_by_hand() -> None:
    mlp = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    assert count_params(mlp) == 4 * 5 + 5 + 5 * 3 + 3
    # The embedding matrix counts once though the head uses it too; the frozen vector not at all.
    assert count_params(TiedLM(repeats=3)) == V * D + (D * D + D) + V


def test_count_params_shared_weight_object() -> None:
    """Two Linear modules holding one Parameter object (classic weight tying) count it once."""
    a, b = nn.Linear(D, V), nn.Linear(D, V, bias=False)
    b.weight = a.weight
    assert count_params(nn.ModuleList([a, b])) == V * D + V


def test_params_applied_counts_every_reuse() -> None:
    layer = D * D + D
    batch = token_batch()
    once, thrice = count_params_applied(TiedLM(1), batch), count_params_applied(TiedLM(3), batch)
    assert thrice - once == 2 * layer
    # embedding lookup + 3 layer calls + the tied head (declared matrix + own bias)
    assert thrice == V * D + 3 * layer + (V * D + V)
    # Without extra_applied_params the functional use of the embedding matrix is invisible.
    assert count_params_applied(TiedLM(3, declare_tied=False), batch) == V * D + 3 * layer + V


def test_params_applied_hooks_are_removed_and_mode_restored() -> None:
    model = TiedLM(2)
    count_params_applied(model, token_batch())
    assert model.training
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_params_applied_multihead_attention_counts_out_proj() -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(D, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            return ModelOutput(self.mha(x, x, x, need_weights=False)[0])

    model = Attention()
    batch = Batch({"x": torch.randn(2, L, D)}, torch.zeros(2), n_tokens=L, seq_len=L)
    assert count_params_applied(model, batch) == count_params(model) == 4 * D * D + 4 * D


# --- activation bytes --------------------------------------------------------------------------------


class MatmulRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(D, H))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = x @ self.w  # (B, H)
        return ModelOutput(torch.relu(h))


def test_act_bytes_exact_for_matmul_relu() -> None:
    """Forward allocates h = x @ w, r = relu(h) and the loss scalar.

    - mm saves x (the batch's, allocated before forward) and w (a parameter): nothing new.
    - relu saves its output r for threshold_backward: B x H floats stay alive.
    - h is referenced only by the local variable of forward; nobody saves it, so it is freed on return.
    - sum saves only the input's shape; the 0-d float32 loss itself is alive when backward starts.
    """
    act = measure_act_bytes(MatmulRelu(), float_batch(), sum_loss)
    assert act == B * H * FLOAT + 1 * FLOAT


class StashOnCtx(torch.autograd.Function):
    """Keeps a tensor on ``ctx`` directly, as reversible-layer code does, bypassing save_for_backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, h: torch.Tensor) -> torch.Tensor:
        ctx.stash = h.exp()  # type: ignore[attr-defined]
        return h * 2

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad * ctx.stash  # type: ignore[attr-defined]


class Stasher(nn.Module):
    def __init__(self, stash: bool) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(D))
        self.stash = stash

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = x * self.scale  # saves x (pre-existing) and scale (a parameter): nothing new
        return ModelOutput(StashOnCtx.apply(h) if self.stash else h * 2)


def test_act_bytes_counts_tensors_kept_on_ctx() -> None:
    """Stashed: exp(h) (B x D floats) survives on ctx; h and the output 2h are freed (inside a Function's
    forward autograd records nothing). Plain: 2h is freed, but MulBackward0 keeps the other operand, the
    Python int 2 wrapped as a 0-d int64 tensor (8 bytes). Both keep the 0-d float32 loss."""
    batch = float_batch()
    assert measure_act_bytes(Stasher(stash=False), batch, sum_loss) == 8 + FLOAT
    assert measure_act_bytes(Stasher(stash=True), batch, sum_loss) == B * D * FLOAT + FLOAT


class Stack(nn.Module):
    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(D, D) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return ModelOutput(x)


def test_act_bytes_scale_with_depth() -> None:
    """Each layer keeps its relu output (the next layer's saved input is that same tensor)."""
    batch = float_batch()
    one = measure_act_bytes(Stack(1), batch, sum_loss)
    four = measure_act_bytes(Stack(4), batch, sum_loss)
    assert one == B * D * FLOAT + FLOAT
    assert abs(four - 4 * one) <= 4 * FLOAT  # four layers' activations, one loss scalar
    assert four == 4 * B * D * FLOAT + FLOAT


def test_act_bytes_leaves_no_gradients() -> None:
    model = Stack(2)
    measure_act_bytes(model, float_batch(), sum_loss)
    assert all(p.grad is None for p in model.parameters())


# --- timing and the whole profile --------------------------------------------------------------------


def test_measure_step_ms_returns_positive_times() -> None:
    model = Stack(2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = measure_step_ms(model, float_batch(), sum_loss, optimizer, n_warmup=1, n_timed=3, device="cpu")
    assert len(times) == 3
    assert all(isinstance(t, float) and t > 0 for t in times)


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.drop = nn.Dropout(0.5)  # draws from the global RNG in training mode
        self.proj = nn.Linear(D, V)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.proj(self.drop(self.emb(x))))


def test_profile_model_fields_and_no_side_effects() -> None:
    model, batch = TinyLM(), token_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    row = profile_model(model, batch, ce_loss, device="cpu", n_warmup=1, n_timed=2)

    assert list(row) == [
        "params", "params_applied", "flops_fwd", "flops_unsupported", "mem_bytes", "mem_kind",
        "act_bytes", "step_ms", "tokens_per_s", "mfu",
    ]  # fmt: skip
    fields: dict[str, object] = dict(row)
    for key in ("params", "params_applied", "flops_fwd", "mem_bytes", "act_bytes"):
        assert type(fields[key]) is int, key
    for key in ("step_ms", "tokens_per_s", "mfu"):
        value = fields[key]
        assert type(value) is float and value > 0, key
    n_params = V * D + D * V + V
    assert row["params"] == row["params_applied"] == n_params
    assert row["flops_fwd"] == 2 * L * D * V
    assert row["flops_unsupported"] == []
    assert row["mem_kind"] == "cpu_estimate"
    # weights + gradients + AdamW's exp_avg and exp_avg_sq + one 0-d float32 step per tensor + activations
    n_tensors = 3
    assert row["mem_bytes"] == 4 * n_params * FLOAT + n_tensors * FLOAT + row["act_bytes"]
    assert row["act_bytes"] > 0

    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_matmul_peak_is_cached_per_device() -> None:
    first = matmul_peak_flops("cpu")
    assert first > 0
    assert matmul_peak_flops(torch.device("cpu")) == first
