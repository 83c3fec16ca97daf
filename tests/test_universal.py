"""Universal Transformer (Dehghani et al. 2019): shared layer over depth, coordinate embedding, ACT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_suites import write_suite

import harness
from harness.measure.costs import count_params, count_params_applied
from harness.measure.flops import count_flops
from harness.models.universal import HALT_BIAS_INIT, coordinate_embedding
from harness.tasks.base import Batch

V, D, FF, H = 12, 32, 64, 4
TINY = {"vocab_size": V, "d_model": D, "n_heads": H, "d_ff": FF, "dropout": 0.0}


def build(**cfg: object) -> torch.nn.Module:
    return harness.build_model("universal", **{**TINY, **cfg})


def lm_batch(b: int = 3, n: int = 7, seed: int = 0) -> Batch:
    x = torch.randint(0, V, (b, n), generator=torch.Generator().manual_seed(seed))
    return Batch.of_tokens({"x": x}, x)


def force_halting(model: torch.nn.Module, p: float) -> None:
    """Make every position's halting probability exactly ``p`` at every step (zero weights, bias logit(p))."""
    halt = model.stack.halt
    with torch.no_grad():
        halt.weight.zero_()
        halt.bias.fill_(50.0 if p == 1.0 else -50.0 if p == 0.0 else math.log(p / (1 - p)))


# --- coordinate embedding and the fixed-step recurrence --------------------------------------------


@pytest.mark.parametrize("i,t,j", [(0, 1, 0), (3, 2, 1), (5, 4, 6), (17, 9, 15)])
def test_coordinate_embedding_matches_the_formula(i: int, t: int, j: int) -> None:
    d = 32
    pe = coordinate_embedding(20, t, d)
    angle = 10000 ** (2 * j / d)
    assert pe[i, 2 * j].item() == pytest.approx(math.sin(i / angle) + math.sin(t / angle), abs=1e-5)
    assert pe[i, 2 * j + 1].item() == pytest.approx(math.cos(i / angle) + math.cos(t / angle), abs=1e-5)


def test_one_shared_layer_and_no_act_parameters_when_fixed() -> None:
    m = build(n_layers=6)
    layer = sum(p.numel() for p in m.stack.layer.parameters())
    assert count_params(m) == V * D + layer
    assert m.stack.halt is None and m.dec_stack is None
    # the paper's layer: attention 4(D^2 + D), FFN 2 D FF + FF + D, two LayerNorms 4 D
    assert layer == 4 * (D * D + D) + 2 * D * FF + FF + D + 4 * D


def test_fixed_steps_equal_the_shared_layer_applied_by_hand() -> None:
    m = build(n_layers=3).eval()
    x = lm_batch().inputs["x"]
    h = m.embed(x)
    for t in (1, 2, 3):
        h = m.stack.layer(h + coordinate_embedding(x.shape[1], t, D))
    torch.testing.assert_close(m(x=x).logits, m.head(h))


def test_fixed_step_model_is_deterministic() -> None:
    x = lm_batch().inputs["x"]
    torch.manual_seed(3)
    a = build(n_layers=3)
    torch.manual_seed(3)
    b = build(n_layers=3)
    a.eval(), b.eval()
    out_a, out_b = a(x=x), b(x=x)
    assert torch.equal(out_a.logits, out_b.logits) and torch.equal(out_a.logits, a(x=x).logits)
    assert out_a.aux_loss is None and out_a.extras == {}


@pytest.mark.parametrize("act", [False, True])
def test_decoder_is_causal(act: bool) -> None:
    m = build(n_layers=2, act=act).eval()
    x = lm_batch(b=1, n=9).inputs["x"]
    y = x.clone()
    y[0, -1] = (int(x[0, -1]) + 1) % V
    torch.testing.assert_close(m(x=x).logits[0, :-1], m(x=y).logits[0, :-1], atol=1e-6, rtol=1e-6)


# --- ACT ----------------------------------------------------------------------------------------------


def test_act_defaults_follow_tensor2tensor() -> None:
    m = build(n_layers=3, act=True)
    assert m.config.step_cap == 6  # act_max_steps = 2 x num_hidden_layers
    assert m.config.halt_threshold == 0.99 and m.config.ponder_weight == 0.01
    assert torch.all(m.stack.halt.bias == HALT_BIAS_INIT) and HALT_BIAS_INIT == 1.0
    assert build(n_layers=3, act=True, max_steps=5).config.step_cap == 5


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encdec"])
def test_halting_weights_sum_to_one_and_ponder_steps_in_range(arch: str) -> None:
    m = build(n_layers=2, act=True, max_steps=5, arch=arch)
    with torch.no_grad():  # spread the halting probabilities so that positions halt at different steps
        for rec in (m.stack, m.dec_stack):
            if rec is not None:
                rec.halt.weight.normal_(0, 0.5)
                rec.halt.bias.fill_(-1.0)
    b = lm_batch(b=4, n=9)
    inputs = {**b.inputs, "y": b.inputs["x"][:, :6]} if arch == "encdec" else b.inputs
    out = m(**inputs)
    weights = m.halting_weights()
    assert len(weights) == (2 if arch == "encdec" else 1)
    for w in weights:
        assert 1 <= w.shape[0] <= 5
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(0), torch.ones(w.shape[1:]))
    steps = out.extras["ponder_steps"]
    assert isinstance(steps, float) and 1.0 <= steps <= 5.0
    assert torch.isfinite(out.aux_loss)


def test_halt_bias_large_positive_stops_after_one_step() -> None:
    m = build(n_layers=2, act=True, max_steps=6).eval()
    force_halting(m, 1.0)
    b = lm_batch()
    out = m(**b.inputs)
    (w,) = m.halting_weights()
    assert w.shape == (1, 3, 7) and torch.equal(w, torch.ones_like(w))
    assert out.extras["ponder_steps"] == 1.0
    # N + R = 1 + 1 per position (R = 1 - 0 at the first step)
    torch.testing.assert_close(out.aux_loss, torch.tensor(0.01 * 2.0))
    # one step of ACT with weight 1 is one step of the fixed model with the same layer
    fixed = build(n_layers=1).eval()
    fixed.load_state_dict({k: v for k, v in m.state_dict().items() if ".halt." not in k})
    torch.testing.assert_close(out.logits, fixed(**b.inputs).logits)


def test_halt_bias_large_negative_runs_max_steps() -> None:
    m = build(n_layers=2, act=True, max_steps=6).eval()
    force_halting(m, 0.0)
    out = m(**lm_batch().inputs)
    (w,) = m.halting_weights()
    assert w.shape == (6, 3, 7)
    assert out.extras["ponder_steps"] == 6.0
    torch.testing.assert_close(w[-1], torch.ones(3, 7))  # forced to halt at the cap with R = 1 - sum p
    torch.testing.assert_close(out.aux_loss, torch.tensor(0.01 * 7.0))


def test_constant_halting_probability_gives_the_remainder_by_hand() -> None:
    """p = 0.3 at every step: cumulative 0.3, 0.6, 0.9, then 1.2 > 0.99 halts at step 4 with R = 0.1."""
    m = build(n_layers=4, act=True, ponder_weight=0.5).eval()
    force_halting(m, 0.3)
    out = m(**lm_batch().inputs)
    (w,) = m.halting_weights()
    expected = torch.tensor([0.3, 0.3, 0.3, 0.1])[:, None, None].expand(4, 3, 7)
    torch.testing.assert_close(w, expected)
    assert out.extras["ponder_steps"] == 4.0
    torch.testing.assert_close(out.aux_loss, torch.tensor(0.5 * 4.1))


def test_state_mixing_follows_the_paper_listing() -> None:
    """S^t = w H^t + (1 - w) S^{t-1} with S^0 = 0, the recurrence running on H^t."""
    m = build(n_layers=4, act=True).eval()
    force_halting(m, 0.3)
    x = lm_batch().inputs["x"]
    h, s = m.embed(x), torch.zeros(3, 7, D)
    for t, w in zip((1, 2, 3, 4), (0.3, 0.3, 0.3, 0.1)):
        h = m.stack.layer(h + coordinate_embedding(7, t, D))
        s = w * h + (1 - w) * s
    torch.testing.assert_close(m(x=x).logits, m.head(s), atol=1e-5, rtol=1e-5)


def test_act_forward_backward_finite_and_ponder_cost_has_gradient() -> None:
    m = build(n_layers=2, act=True, dropout=0.1)
    b = lm_batch()
    out = m(**b.inputs)
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, V), b.labels.reshape(-1)) + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m.zero_grad()
    m(
        **b.inputs
    ).aux_loss.backward()  # the remainder R carries the ponder cost's gradient to the halting unit
    assert m.stack.halt.bias.grad.abs().item() > 0


# --- costs --------------------------------------------------------------------------------------------


def test_params_applied_counts_the_layer_once_per_step() -> None:
    b = lm_batch()
    fixed = build(n_layers=5)
    layer = sum(p.numel() for p in fixed.stack.layer.parameters())
    emb = V * D  # looked up once, applied again by the tied head
    assert count_params_applied(fixed, b) == 2 * emb + 5 * layer
    act = build(n_layers=2, act=True, max_steps=5).eval()
    halt = D + 1
    assert count_params(act) == emb + layer + halt
    for p, steps in ((1.0, 1), (0.0, 5), (0.3, 4)):
        force_halting(act, p)
        assert count_params_applied(act, b) == 2 * emb + steps * (layer + halt)


def test_flops_follow_the_steps_actually_run() -> None:
    """Per step on n tokens: 2n(4D^2 + 2 D FF) + 4 n^2 D, plus 2 n D for the halting unit; head 2 n D V."""
    b = lm_batch(b=3, n=7)
    n, batch = 7, 3
    layer = 2 * n * (4 * D * D + 2 * D * FF) + 4 * n * n * D
    halt, head = 2 * n * D, 2 * n * D * V
    fixed_t = 4
    fixed, unsupported = count_flops(build(n_layers=fixed_t), b)
    assert unsupported == [] and fixed == batch * (fixed_t * layer + head)
    act = build(n_layers=fixed_t, act=True, max_steps=6)
    for p, k in ((1.0, 1), (0.3, 4), (0.0, 6)):
        force_halting(act, p)
        flops, unsupported = count_flops(act, b)
        assert unsupported == []
        assert flops == batch * (k * (layer + halt) + head)
        assert flops - batch * (k * halt + head) == k * (fixed - batch * head) // fixed_t


# --- harness integration ----------------------------------------------------------------------------


SUITE = (
    "name: ut\n"
    "seeds: [0]\n"
    "train: {{steps: 2, batch_size: 2, eval_every: 2, eval_batches: 1, eval_batch_size: 2, "
    "profile_warmup: 0, profile_steps: 1}}\n"
    "model: {{d_model: 16, n_heads: 2, d_ff: 32, n_layers: 2}}\n"
    "tasks:\n"
    "  - {{name: copy, task: copy, seq_len: 3, vocab: 4}}\n"
    "variants:\n"
    "  - {{name: ut-act, model: universal, act: true{extra}}}\n"
)


@pytest.mark.parametrize(
    "extra,key,message",
    [
        (", max_steps: 0", "variants[0].max_steps", "must be >= 1"),
        (", halt_threshold: 1.5", "variants[0].halt_threshold", "must be <= 1.0"),
        (", halt_threshold: 0", "variants[0].halt_threshold", "must be in (0, 1]"),
        (", ponder_weight: -1", "variants[0].ponder_weight", "must be >= 0.0"),
        (", arch: encoder, causal: true", "variants[0].causal", "bidirectional"),
    ],
)
def test_bad_act_keys_refused_at_load(
    extra: str, key: str, message: str, refused_suite  # noqa: ANN001
) -> None:
    line = refused_suite(SUITE.format(extra=extra))
    assert "bad.yaml:8:" in line and key in line and message in line, line


def test_runner_row_carries_ponder_steps(tmp_path: Path) -> None:
    from harness.run.execute import execute
    from harness.suite.load import load_suite

    path = write_suite(tmp_path / "ut.yaml", SUITE.format(extra=", max_steps: 3"))
    row = execute(load_suite(path).jobs[0])
    assert row["status"] == "ok", row["error"]
    assert 1.0 <= row["ponder_steps"] <= 3.0
    assert row["params_applied"] > row["params"] and row["flops_unsupported"] == []


def test_profile_cli_act(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.main import main

    args = [
        "profile",
        "universal",
        "act=true",
        "d_model=32",
        "n_heads=2",
        "d_ff=64",
        "seq_len=16",
        "batch_size=2",
    ]
    assert main([*args, "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["status"] == "ok" and fields["config"]["act"] is True
    assert fields["params_applied"] > fields["params"] > 0 and fields["flops_fwd"] > 0
