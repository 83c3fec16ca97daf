"""SAGAN (harness/models/sagan.py), the optimiser-phase training loop and the gan_digits task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

import harness
from harness.core.registry import TASKS
from harness.run.train import train
from harness.tasks.digit_features import frechet_distance, gaussian, inception_score

ROOT = Path(__file__).resolve().parent.parent
CFG = {"steps": 2, "batch_size": 8, "lr": 1e-3, "betas": [0.0, 0.9], "weight_decay": 0.0, "warmup_steps": 0,
       "min_lr_ratio": 1.0, "grad_clip": 1.0, "eval_every": 1, "eval_batches": 1, "eval_batch_size": 128}


def task(**keys):  # noqa: ANN003, ANN201
    entry = TASKS.get("gan_digits")
    return entry.obj(entry.config(**keys))


def small(**keys) -> torch.nn.Module:  # noqa: ANN003
    return harness.build_model("sagan", ch=16, z_dim=8, **keys)


def test_spectral_norm_keeps_each_layers_largest_singular_value_near_one() -> None:
    model = small()
    t = task()
    batch = t.train_batch(16, "gan", torch.Generator().manual_seed(0))
    model.train()
    with torch.no_grad():
        for _ in range(60):  # one power iteration per training forward
            model(**batch.inputs)
    layers = [m for m in model.modules() if parametrize.is_parametrized(m, "weight")]
    assert len(layers) >= 20  # every conv, linear and class embedding of G and D
    raw, normed = [], []
    for m in layers:
        w = m.weight.detach()
        normed.append(float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)))
        w0 = m.parametrizations.weight.original.detach()
        raw.append(float(torch.linalg.matrix_norm(w0.reshape(w0.shape[0], -1), ord=2)))
    assert all(abs(s - 1) < 0.05 for s in normed), normed
    assert max(abs(s - 1) for s in raw) > 0.3  # the unnormalised weights are not already there


def test_attention_block_is_the_identity_at_gamma_zero_and_matches_the_formula() -> None:
    from harness.models.sagan import SelfAttention2d

    block = SelfAttention2d(16).eval()
    x = torch.randn(2, 16, 4, 4)
    assert float(block.gamma.detach()) == 0.0
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    f, g, h, v = (block.f.weight[:, :, 0, 0], block.g.weight[:, :, 0, 0], block.h.weight[:, :, 0, 0],
                  block.v.weight[:, :, 0, 0])
    xs = x.flatten(2)  # (B, C, N)
    out = []
    for b in range(2):
        s = (f @ xs[b]).T @ (g @ xs[b])  # s[j, i] = f(x_j)^T g(x_i)
        beta = torch.softmax(s, dim=1)  # over the attended positions i
        o = v @ ((h @ xs[b]) @ beta.T)  # o_j = W_v sum_i beta_ji h(x_i)
        out.append(xs[b] + 0.7 * o)
    torch.testing.assert_close(block(x), torch.stack(out).reshape(x.shape), rtol=1e-5, atol=1e-5)
    model = small()
    assert float(model.gen.attn.gamma.detach()) == 0.0 and float(model.disc.attn.gamma.detach()) == 0.0
    assert small(attention=False).gen.attn is None and small(attention=False).disc.attn is None


def _fid_against_real(t, noise: float) -> float:  # noqa: ANN001
    """FID-digits of the real test images plus Gaussian noise (fixed generator) against themselves."""
    gen = torch.Generator().manual_seed(1)
    totals = None
    for b in t.eval_sets(1, 100, "gan", 0)[""]:
        fake = b.labels + noise * torch.randn(b.labels.shape, generator=gen)
        counts = t.score(fake, b.labels)
        totals = list(counts) if totals is None else [a + c for a, c in zip(totals, counts)]
    return t.metrics(tuple(totals), "")["fid_digits"]


def test_fid_digits_is_zero_for_the_real_test_set_and_grows_with_noise() -> None:
    t = task()
    fids = [_fid_against_real(t, s) for s in (0.0, 0.1, 0.3, 1.0)]
    assert abs(fids[0]) < 1e-3 and fids[1] > 1000 * abs(fids[0])  # 0 up to float32 features' rounding
    assert fids[0] < fids[1] < fids[2] < fids[3]


def test_frechet_distance_matches_scipy_sqrtm_and_inception_score_hand_cases() -> None:
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 6)), rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))
    mu1, c1 = a.mean(0), np.cov(a.T)
    mu2, c2 = b.mean(0), np.cov(b.T)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)
    t = torch.tensor(a)
    mu, cov = gaussian(t.sum(0), t.T @ t, len(t))
    np.testing.assert_allclose(cov, c1, rtol=1e-10)
    np.testing.assert_allclose(mu, mu1, rtol=1e-10)
    one_hot = torch.eye(10)  # each class once, fully confident: IS = 10
    assert inception_score(one_hot.sum(0), torch.tensor(0.0), 10) == pytest.approx(10.0)
    same = torch.full((4, 10), 0.1)  # uniform predictions: IS = 1
    assert inception_score(same.sum(0), (same * same.log()).sum(), 4) == pytest.approx(1.0)


def test_phases_alternate_each_optimiser_touches_only_its_network() -> None:
    """One TrainStep of the GAN: its D updates move only the discriminator, its G update only the
    generator (the step draws a batch before each update: the weights are read there)."""
    from harness.measure.step import StepSpec, TrainStep

    model = small()
    t = task()
    gen = torch.Generator().manual_seed(0)
    d, g = model.optim_phases()
    assert (d.name, g.name, d.lr_mult, g.lr_mult) == ("d", "g", 4.0, 1.0)
    step = TrainStep(model, t, StepSpec.from_train(CFG), "cpu", gen=gen)
    assert [p.name for p in step.phases] == ["d", "g"] and step.batches_per_step == d.repeats + 1

    def snap() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([p.detach().clone() for p in model.gen.parameters()],
                [p.detach().clone() for p in model.disc.parameters()])

    def same(a: list, b: list) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b))

    seen = []

    def draw():  # noqa: ANN202
        seen.append(snap())
        return t.train_batch(CFG["batch_size"], "gan", gen)

    model.train()
    res = step(0, draw)
    seen.append(snap())
    assert res.failed is None and set(res.losses) == {"d", "g"}
    for (g0, d0), (g1, d1) in zip(seen[: d.repeats], seen[1 : d.repeats + 1]):  # each D update
        assert same(g0, g1) and not same(d0, d1)
    (g0, d0), (g1, d1) = seen[d.repeats], seen[d.repeats + 1]  # the G update
    assert same(d0, d1) and not same(g0, g1)


def test_gan_training_curve_samples_and_determinism() -> None:
    t = task()
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small()
        outs.append(train(model, t, CFG, 0, torch.device("cpu")))
    a, b = outs
    assert a.status == "ok" and [c["step"] for c in a.curve] == [1, 2]
    assert {"loss", "loss_d", "loss_g", "fid_digits", "is_digits"} <= set(a.curve[0])
    assert a.curve == b.curve and a.metrics == b.metrics
    assert 1.0 <= a.metrics["is_digits"] <= 10.0 and a.metrics["fid_digits"] > 0
    model.eval()
    with torch.no_grad():
        panels = t.samples(model, torch.device("cpu"), 3)
        again = t.samples(model, torch.device("cpu"), 3)
    assert list(panels) == ["generated"] and len(panels["generated"]) == 16 and panels == again
    img = panels["generated"][0]
    assert len(img) == 8 and len(img[0]) == 8 and all(0 <= v <= 255 for row in img for v in row)


def test_nan_loss_in_a_phase_is_diverged() -> None:
    model = small()
    with torch.no_grad():
        model.disc.psi.parametrizations.weight.original.fill_(float("nan"))
    out = train(model, task(), CFG, 0, torch.device("cpu"))
    assert out.status == "diverged" and out.error == "d loss became nan at step 0"


def test_ordinary_training_reproduces_a_committed_quick_row() -> None:
    """The single-optimiser path is unchanged: vanilla-post on copy-longer, seed 0, bit for bit where
    this CPU dispatches to the instruction set the committed row was trained with (AVX2 and AVX512
    kernels round differently), and within harness verify's tolerance elsewhere."""
    from harness.cli.verify import close
    from harness.run.execute import execute
    from harness.suite.load import load_suite

    jobs = load_suite(ROOT / "suites" / "quick.yaml").train_jobs()
    job = next(j for j in jobs if (j.variant, j.task_name, j.seed) == ("vanilla-post", "copy-longer", 0))
    rows = [json.loads(line) for line in (ROOT / "results" / "quick.jsonl").read_text().splitlines()]
    committed = next(r for r in rows if r["run_id"] == job.run_id and r["status"] == "ok")
    row = execute(job)
    if (committed.get("machine") or {}).get("cpu_capability") == torch.backends.cpu.get_cpu_capability():
        assert row["metrics"] == committed["metrics"]
        assert row["curve"] == committed["curve"]
    else:
        assert set(row["metrics"]) == set(committed["metrics"])
        assert all(close(committed["metrics"][k], v) for k, v in row["metrics"].items())


SUITE = """\
name: g
seeds: [0]
baseline: a
train: {steps: 2, batch_size: 4, eval_every: 1, eval_batches: 1, eval_batch_size: 64}
tasks:
  - {name: gd, task: gan_digits}
variants:
  - {name: a, model: sagan}
  - {name: b, model: sagan, attention: false}
"""


@pytest.mark.parametrize("text,fragments", [
    (SUITE.replace("attention: false", "ch: 12"), ["bad.yaml:9:", "ch", "multiple of 8"]),
    (SUITE.replace("task: gan_digits", "task: gan_digits, image_size: 12"),
     ["bad.yaml:", "image_size", "power of two"]),
    (SUITE.replace("attention: false", "n_critic: 0"), ["bad.yaml:9:", "n_critic", ">= 1"]),
    (SUITE.replace("attention: false", "d_lr_mult: 0"), ["bad.yaml:9:", "d_lr_mult"]),
    (SUITE.replace("model: sagan, attention: false", "model: resnet"), ["bad.yaml:9:", "model", "not a GAN"]),
    (SUITE.replace("task: gan_digits", "task: digits, image_size: 8"), ["bad.yaml:8:", "not an image model"]),
])
def test_bad_settings_are_refused_at_load(refused_suite, text: str, fragments: list[str]) -> None:  # noqa: ANN001
    line = refused_suite(text)
    for frag in fragments:
        assert frag in line, line


def test_attention_flops_match_the_hand_count() -> None:
    """Per image, N positions, C channels: 1x1 convs f, g (N C C/8 each), h (N C C/2), v (N C/2 C),
    energies N N C/8, weighted values C/2 N N multiply-adds; 2 FLOPs each. Spectral norm adds, once per
    forward (not per image), sigma = u^T (W v) for each weight W (out x in): out*in + out."""
    from harness.measure.flops import count_flops
    from harness.models.base import ModelOutput
    from harness.models.sagan import SelfAttention2d
    from harness.tasks.base import Batch

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = SelfAttention2d(16)

        def forward(self, images: torch.Tensor) -> ModelOutput:
            return ModelOutput(self.block(images))

    b, c, n = 2, 16, 16
    images = torch.randn(b, c, 4, 4)
    flops, unsupported = count_flops(
        Probe(), Batch({"images": images}, torch.zeros(b), n_tokens=16, seq_len=4))
    macs = 2 * n * c * c // 8 + n * c * c // 2 + n * c // 2 * c + n * n * c // 8 + c // 2 * n * n
    sigma = sum(o * i + o for o, i in ((c // 8, c), (c // 8, c), (c // 2, c), (c, c // 2)))
    assert unsupported == [] and flops == 2 * (b * macs + sigma)


def test_unconditional_gan_has_plain_bn_and_no_projection() -> None:
    model = small(conditional=False)
    assert model.disc.embed is None and model.gen.blocks[0].bn1.bn.affine
    batch = task().train_batch(4, "gan", torch.Generator().manual_seed(0))
    d, g = model.optim_phases()
    gen = torch.Generator().manual_seed(0)
    assert torch.isfinite(d.loss(batch, gen)) and torch.isfinite(g.loss(batch, gen))
