"""TTSR and the ref_sr task: the texture transformer's parts against hand-computed cases, PSNR/SSIM on
known pairs, the task's determinism and degradation, refusals and the FLOP count."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import harness
from harness.core.registry import TASKS
from harness.measure.flops import count_flops
from harness.models.ttsr import hard_soft, relevance, transfer
from harness.tasks.ref_sr import downsample, psnr_ssim


def make_task(**keys):  # noqa: ANN201
    entry = TASKS.get("ref_sr")
    return entry.obj(entry.config(**keys))


# --- relevance embedding, hard and soft attention -----------------------------------------------------


def test_relevance_hard_soft_hand_case() -> None:
    """q = [[2, -5]] and k = [[3, -1]], one channel, 3x3 patches with zero padding 1.

    Each patch is zero outside its middle row. q's patches: (0, 2, -5) and (2, -5, 0), both of norm
    sqrt(29); k's: (0, 3, -1) and (3, -1, 0), both of norm sqrt(10). Inner products over sqrt(290):
    r(k0, q0) = 6 + 5 = 11, r(k1, q0) = -2, r(k0, q1) = -15, r(k1, q1) = 6 + 5 = 11.
    So q0 picks k0, q1 picks k1, each with relevance 11 / sqrt(290).
    """
    q = torch.tensor([[[[2.0, -5.0]]]])
    k = torch.tensor([[[[3.0, -1.0]]]])
    r = relevance(q, k)
    want = torch.tensor([[[11.0, -15.0], [-2.0, 11.0]]]) / math.sqrt(290)  # [B, Nk, Nq]
    assert r.shape == (1, 2, 2)
    assert torch.allclose(r, want, atol=1e-6)
    h, s = hard_soft(r)
    assert h.tolist() == [[0, 1]]
    assert torch.allclose(s, torch.full((1, 2), 11 / math.sqrt(290)), atol=1e-6)


def test_relevance_of_a_patch_with_itself_is_one_and_finds_the_shift() -> None:
    """K is Q shifted by one position: each query's argmax is its own patch in K, relevance 1."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 5, 5, generator=g)
    k = torch.roll(q, shifts=1, dims=-1)  # k[..., j] = q[..., j - 1]
    h, s = hard_soft(relevance(q, k))
    # the centre query (2, 2) has patch q[1:4, 1:4], which k holds whole around (2, 3)
    assert int(h[0, 2 * 5 + 2]) == 2 * 5 + 3
    assert abs(float(s[0, 2 * 5 + 2]) - 1.0) < 1e-5


def test_transfer_folds_the_picked_patches_hand_case() -> None:
    """v = [[1, 10]], both queries pick key 1, whose 3x3 patch has middle row (1, 10, 0). Folded at the
    two query positions: position 0 receives 10 (from query 0) + 1 (from query 1), position 1 receives
    0 + 10; divided by 9."""
    v = torch.tensor([[[[1.0, 10.0]]]])
    t = transfer(v, torch.tensor([[1, 1]]), k_grid=2, q_grid=(1, 2))
    assert torch.allclose(t, torch.tensor([[[[11 / 9, 10 / 9]]]]))


def test_transfer_at_a_finer_level_copies_aligned_blocks() -> None:
    """With identity indices and a 2x finer level, the interior of the folded texture is v itself
    (every interior pixel is covered by 9 patches, each carrying it once)."""
    v = torch.arange(64.0).view(1, 1, 8, 8)
    t = transfer(v, torch.arange(16).view(1, 16), k_grid=4, q_grid=(4, 4))
    assert t.shape == v.shape
    assert torch.allclose(t[..., 2:-2, 2:-2], v[..., 2:-2, 2:-2])


def test_texture_follows_the_reference() -> None:
    """The texture network's output depends on the reference; the no-transformer network's does not."""
    torch.manual_seed(0)
    task = make_task(image_size=16, canvas=24)
    batch = task.train_batch(2, "sr", torch.Generator().manual_seed(1))
    other = batch.inputs["ref"].flip(-1)
    for texture, depends in ((True, True), (False, False)):
        torch.manual_seed(0)
        m = harness.build_model("ttsr", image_size=16, texture=texture).eval()
        a = m(**batch.inputs).logits
        b = m(lr=batch.inputs["lr"], ref=other).logits
        assert (not torch.equal(a, b)) == depends


# --- PSNR and SSIM ------------------------------------------------------------------------------------


def test_psnr_ssim_identical_and_offset() -> None:
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 1, 16, 16, generator=g) * 0.9
    psnr, ssim = psnr_ssim(hr, hr)
    assert psnr == [math.inf] * 3 and ssim == pytest.approx([1.0] * 3)
    psnr, _ = psnr_ssim(hr + 0.1, hr)  # MSE 0.01 on range 1: 10 log10(1 / 0.01) = 20 dB
    assert psnr == pytest.approx([20.0] * 3, abs=1e-4)
    task = make_task()
    counts = task.score(hr + 0.1, hr)
    assert counts[0] == pytest.approx(60.0, abs=1e-3) and counts[2] == 3
    assert task.metrics(counts, "_unrel")["psnr_unrel"] == pytest.approx(20.0, abs=1e-4)


def test_output_is_clamped_before_scoring() -> None:
    hr = torch.ones(1, 1, 16, 16)
    assert psnr_ssim(hr + 5.0, hr)[0] == [math.inf]


# --- the task -----------------------------------------------------------------------------------------


def test_task_is_deterministic_and_lr_is_the_documented_downsampling() -> None:
    task = make_task(image_size=16, scale=4, canvas=24)
    a = task.train_batch(4, "sr", torch.Generator().manual_seed(3))
    b = task.train_batch(4, "sr", torch.Generator().manual_seed(3))
    c = task.train_batch(4, "sr", torch.Generator().manual_seed(4))
    assert torch.equal(a.labels, b.labels) and torch.equal(a.inputs["ref"], b.inputs["ref"])
    assert not torch.equal(a.labels, c.labels)
    assert a.inputs["lr"].shape == (4, 1, 4, 4) and a.inputs["ref"].shape == (4, 1, 16, 16)
    want = F.interpolate(a.labels, scale_factor=0.25, mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(a.inputs["lr"], want) and torch.equal(downsample(a.labels, 4), want)
    assert torch.allclose(downsample(torch.full((1, 1, 8, 8), 0.3), 4), torch.full((1, 1, 2, 2), 0.3))
    assert 0 <= float(a.labels.min()) and float(a.labels.max()) <= 1


def test_related_reference_shares_content_and_unrelated_does_not() -> None:
    """A related reference is a crop of the target's canvas: some aligned shift of it matches a block of
    the target exactly (the offsets are multiples of scale, at most canvas - image_size apart)."""
    task = make_task(image_size=16, scale=4, canvas=20)
    batch = task.make(8, torch.Generator().manual_seed(0), "related")
    hr, ref = batch.labels, batch.inputs["ref"]
    for i in range(8):
        found = any(torch.equal(hr[i, :, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)],
                                ref[i, :, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)])
                    for dy in (-4, 0, 4) for dx in (-4, 0, 4))
        assert found
    unrel = task.make(8, torch.Generator().manual_seed(0), "unrelated")
    assert torch.equal(unrel.labels, hr)  # same targets, other references
    assert not torch.equal(unrel.inputs["ref"], ref)


def test_eval_sets_fixed_and_have_an_unrelated_copy() -> None:
    task = make_task(image_size=16, canvas=24, eval_images=10)
    sets = task.eval_sets(2, 4, "sr", seed=0)
    again = task.eval_sets(2, 4, "sr", seed=7)  # the job's seed does not change the evaluation scenes
    assert set(sets) == {"", "_unrel"} and [len(b.labels) for b in sets[""]] == [4, 4, 2]
    for x, y in zip(sets[""], again[""]):
        assert torch.equal(x.labels, y.labels) and torch.equal(x.inputs["ref"], y.inputs["ref"])
    for x, y in zip(sets[""], sets["_unrel"]):
        assert torch.equal(x.labels, y.labels) and not torch.equal(x.inputs["ref"], y.inputs["ref"])


def test_samples_panels() -> None:
    task = make_task(image_size=16, canvas=24)
    torch.manual_seed(0)
    model = harness.build_model("ttsr", image_size=16).eval()
    s = task.samples(model, torch.device("cpu"), seed=0)
    assert list(s) == ["lr", "ref", "sr", "hr"] and all(len(v) == 4 for v in s.values())
    assert len(s["lr"][0]) == 4 and len(s["hr"][0]) == 16 and len(s["hr"][0][0]) == 16
    assert all(0 <= p <= 255 and isinstance(p, int) for row in s["sr"][0] for p in row)
    assert s == task.samples(model, torch.device("cpu"), seed=0)


def test_bicubic_baseline_is_bicubic_and_stays_put() -> None:
    task = make_task(image_size=16, canvas=24)
    batch = task.train_batch(3, "sr", torch.Generator().manual_seed(0))
    m = harness.build_model("bicubic", image_size=16)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        loss = task.loss(m(**batch.inputs), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    want = F.interpolate(batch.inputs["lr"], scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.equal(m(**batch.inputs).logits, want)


# --- refusals -----------------------------------------------------------------------------------------

SUITE = """\
name: t
seeds: [0]
baseline: a
train: {steps: 2, batch_size: 2, eval_every: 1, eval_batches: 1, eval_batch_size: 2}
tasks:
  - {name: sr, task: ref_sr, image_size: 16, canvas: 24}
variants:
  - {name: a, model: ttsr, n_feats: 4}
  - {name: b, model: bicubic}
"""


@pytest.mark.parametrize(
    "old,new,fragments",
    [
        ("canvas: 24", "canvas: 24, scale: 3", ["bad.yaml:6:", "tasks[0].scale", "must divide image_size"]),
        ("canvas: 24", "canvas: 24, ref_size: 18", ["bad.yaml:6:", "ref_size", "multiple of scale"]),
        ("canvas: 24", "canvas: 24, ref_size: 28", ["bad.yaml:6:", "ref_size", "between scale (4)"]),
        ("canvas: 24", "canvas: 12", ["bad.yaml:6:", "canvas", "at least image_size"]),
        ("n_feats: 4", "n_feats: 4, scale: 8", ["bad.yaml:8:", "scale 8 differs from the task's 4"]),
        ("canvas: 24", "canvas: 24, reference: nearby", ["bad.yaml:6:", "reference"]),
    ],
)
def test_bad_settings_refused(refused_suite, old: str, new: str, fragments: list[str]) -> None:  # noqa: ANN001
    line = refused_suite(SUITE.replace(old, new))
    for f in fragments:
        assert f in line, line


def test_model_refuses_a_scale_that_is_not_a_power_of_two() -> None:
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="power of two"):
        harness.build_model("ttsr", image_size=12, scale=3)


# --- FLOPs --------------------------------------------------------------------------------------------


def conv(pixels: int, c_in: int, c_out: int) -> int:
    return pixels * 9 * c_in * c_out


@pytest.mark.parametrize("texture", [True, False])
def test_flops_hand_formula(texture: bool) -> None:
    """image 8, scale 2 (LR 4x4, two stages), n_feats 4, one residual block per stage, LTE width 2.
    Only convolutions and the relevance ``bmm`` cost; resizing, unfold/fold and gather are free."""
    n, w, b = 4, 2, 3
    keys = {"image_size": 8, "scale": 2, "n_feats": n, "n_res": 1, "lte_feats": w, "texture": texture}
    model = harness.build_model("ttsr", **keys)
    task = make_task(image_size=8, scale=2, canvas=12)
    batch = task.train_batch(b, "sr", torch.Generator().manual_seed(0))
    lo, hi = 16, 64  # pixels at LR and HR
    macs = conv(lo, 1, n) + 2 * conv(lo, n, n) + conv(lo, n, 4 * n) + 2 * conv(hi, n, n) + conv(hi, n, 1)
    if texture:
        lte = conv(hi, 1, w) + conv(hi // 4, w, w)  # one pass of the extractor on an 8x8 image
        macs += 3 * lte  # LR up, Ref down-up, Ref
        macs += lo * (9 * w) * lo  # relevance: Nk x 9C x Nq
        macs += conv(lo, n + w, n) + conv(hi, n + w, n)  # fusion at both scales
    flops, unsupported = count_flops(model, batch)
    assert unsupported == []
    assert flops == 2 * b * macs
