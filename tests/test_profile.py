"""Parameters, activation bytes, the one training step and the cost fields on tiny models with
hand-countable costs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import harness
from harness.measure import step as step_module
from harness.measure.costs import count_params, count_params_applied, measure_act_bytes
from harness.measure.meter import count_costs, profile_model
from harness.measure.step import StepSpec, TrainStep
from harness.measure.timing import matmul_peak_flops
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


# --- the one step and the whole profile --------------------------------------------------------------


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.drop = nn.Dropout(0.5)  # draws from the global RNG in training mode
        self.proj = nn.Linear(D, V)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.proj(self.drop(self.emb(x))))


class CE:
    """A task stand-in: just the loss."""

    @staticmethod
    def loss(out: ModelOutput, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(out.logits.flatten(0, -2), batch.labels.flatten())


def make_step(**spec: object) -> Callable[[nn.Module], TrainStep]:
    return lambda m: TrainStep(m, CE(), StepSpec(**spec), "cpu")  # type: ignore[arg-type]


def test_profile_model_fields_and_no_side_effects() -> None:
    model, batch = TinyLM(), token_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    row = profile_model(model, batch, make_step(), device="cpu", n_warmup=1, n_timed=2)

    assert set(row) == {
        "params", "params_applied", "flops_fwd", "flops_unsupported", "mem_bytes", "mem_kind",
        "act_bytes", "step_ms", "tokens_per_s", "mfu", "cost_basis",
    }  # fmt: skip
    for key in ("params", "params_applied", "flops_fwd", "mem_bytes", "act_bytes"):
        assert type(row[key]) is int, key
    n_params = V * D + D * V + V
    assert row["params"] == row["params_applied"] == n_params
    assert row["flops_fwd"] == 2 * L * D * V
    assert row["flops_unsupported"] == []
    assert row["mem_kind"] == "cpu_estimate"
    # weights + gradients + AdamW's exp_avg and exp_avg_sq + one 0-d float32 step per tensor + activations
    n_tensors = 3
    assert row["mem_bytes"] == 4 * n_params * FLOAT + n_tensors * FLOAT + row["act_bytes"]
    assert row["act_bytes"] > 0
    assert row["cost_basis"] == {"steps": "profile", "timed": 2, "warmup": 1, "mfu": "exact"}
    # MFU is 3 x forward FLOPs x steps over the timed time, over the peak: consistent with step_ms
    assert row["tokens_per_s"] == pytest.approx(B * L / (row["step_ms"] / 1e3), rel=0.5)

    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


class FakeClock:
    """perf_counter for harness.measure.step: a step's compute takes 3 ms, each draw 5 ms (which the
    step must leave out of its time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1e3


def test_the_step_times_its_compute_not_its_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(step_module.time, "perf_counter", clock)
    step = make_step()(TinyLM())
    batch = token_batch()

    def draw() -> Batch:
        clock.advance(5.0)
        return batch

    real_update = step._update

    def update(phase: object, b: Batch) -> float:
        clock.advance(3.0)
        return real_update(phase, b)  # type: ignore[arg-type]

    monkeypatch.setattr(step, "_update", update)
    res = step(0, draw)
    assert res.ms == pytest.approx(3.0) and res.tokens == B * L and res.failed is None


def aten_ops(fn: Callable[[], object]) -> set[str]:
    """The aten operators ``fn`` runs (each once), read through a dispatch mode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: set[str] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return seen


def test_clipping_and_the_scaler_change_the_measured_step() -> None:
    """What the step runs follows the train config: clipping adds a gradient norm and a rescale,
    fp16 adds the scaler's unscale and overflow check; a profile job's timed steps are these steps."""
    batch = token_batch()

    def ops(**spec: object) -> set[str]:
        torch.manual_seed(0)
        step = make_step(**spec)(TinyLM())
        step(0, lambda: batch)  # AdamW's state exists from here on
        return aten_ops(lambda: step(1, lambda: batch))

    plain, clipped = ops(grad_clip=0.0), ops(grad_clip=1.0)
    assert not any("norm" in op for op in plain)
    assert {op for op in clipped - plain if "norm" in op}, clipped - plain
    scaled = ops(grad_clip=0.0, precision="fp16")
    assert "aten._amp_foreach_non_finite_check_and_unscale_" in scaled - plain
    assert "aten._amp_update_scale_" in scaled - plain


def test_training_profile_jobs_and_the_gate_call_the_same_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cost in the harness comes from TrainStep.__call__: count the calls each path makes."""
    from harness.cli.gate.subjects import Subject
    from harness.cli.gate.wallclock import measure_relative_time
    from harness.core.registry import TASKS
    from harness.run.train import train

    calls: list[int] = []
    real = TrainStep.__call__

    def counted(self: TrainStep, index: int, draw: Callable[[], Batch]) -> object:
        calls.append(index)
        return real(self, index, draw)

    monkeypatch.setattr(TrainStep, "__call__", counted)
    task = TASKS.get("copy").obj(TASKS.get("copy").config(seq_len=6, vocab=8))
    build = lambda: harness.build_model("vanilla", vocab_size=task.vocab_size, d_model=16, n_heads=2,  # noqa: E731
                                        d_ff=32, n_layers=1, max_len=16)
    model = build()
    batch = task.longest_batch(4, model.io, torch.Generator().manual_seed(0))
    cfg = {**TRAIN, "steps": 7, "profile_warmup": 2}
    make = lambda m: TrainStep(m, task, StepSpec.from_train(cfg), "cpu")  # noqa: E731
    counted_costs = count_costs(model, batch, make, "cpu")
    out = train(model, task, cfg, 0, torch.device("cpu"), counted=counted_costs)
    assert calls == list(range(7)) and out.costs["cost_basis"] == {
        "steps": "train", "timed": 5, "warmup": 2, "mfu": "exact"}
    calls.clear()
    profile_model(build(), batch, lambda m: TrainStep(m, task, StepSpec.from_train(cfg), "cpu"),
                  device="cpu", n_warmup=2, n_timed=3)
    assert calls == list(range(5))
    calls.clear()
    subject = Subject("a", build, batch, task, cfg, "shape")
    measure_relative_time([subject], "a", "cpu", rounds=2, steps=1)
    assert len(calls) == 2 + 2  # warm-up and one step per round


TRAIN = {"steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 0, "min_lr_ratio": 0.1,
         "weight_decay": 0.01, "betas": [0.9, 0.98], "grad_clip": 1.0, "eval_every": 100, "eval_batches": 1,
         "eval_batch_size": 4,
         "profile_warmup": 1, "profile_steps": 2}


def test_a_training_rows_costs_come_from_its_own_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """step_ms is the median of the training steps' own times (a fake clock makes them known)."""
    from harness.core.registry import TASKS
    from harness.run.train import train

    clock = FakeClock()
    monkeypatch.setattr(step_module.time, "perf_counter", clock)
    durations = iter([50.0, 40.0, 10.0, 30.0, 20.0, 99.0])
    real = TrainStep._update

    def update(self: TrainStep, phase: object, b: Batch) -> float:
        clock.advance(next(durations))
        return real(self, phase, b)  # type: ignore[arg-type]

    monkeypatch.setattr(TrainStep, "_update", update)
    task = TASKS.get("copy").obj(TASKS.get("copy").config(seq_len=6, vocab=8))
    model = harness.build_model("vanilla", vocab_size=task.vocab_size, d_model=16, n_heads=2, d_ff=32,
                                n_layers=1, max_len=16)
    batch = task.longest_batch(4, model.io, torch.Generator().manual_seed(0))
    cfg = {**TRAIN, "steps": 5, "profile_warmup": 2}
    make = lambda m: TrainStep(m, task, StepSpec.from_train(cfg), "cpu")  # noqa: E731
    out = train(model, task, cfg, 0, torch.device("cpu"), counted=count_costs(model, batch, make, "cpu"))
    assert out.costs["step_ms"] == pytest.approx(20.0)  # median of 10, 30, 20: steps 2..4
    assert out.costs["cost_basis"]["timed"] == 3


def test_matmul_peak_is_cached_per_device() -> None:
    first = matmul_peak_flops("cpu")
    assert first > 0
    assert matmul_peak_flops(torch.device("cpu")) == first
