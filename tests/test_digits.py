"""digits task: scikit-learn's 8x8 handwritten digits, fixed stratified split, whole-test-split evaluation."""

from __future__ import annotations

import pytest
import torch

from harness.core.registry import TASKS
from harness.tasks.digits import Digits, DigitsConfig, load_split, random_shift, raw_digits, stratified_split


def test_dataset_is_the_real_one() -> None:
    images, labels = raw_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert float(images.min()) == 0.0 and float(images.max()) == 16.0
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_split_is_deterministic_stratified_disjoint_and_complete() -> None:
    _, labels = raw_digits()
    tr, te = stratified_split(labels, 0.2, 0)
    tr2, te2 = stratified_split(labels, 0.2, 0)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    assert len(set(tr.tolist()) & set(te.tolist())) == 0
    assert sorted(tr.tolist() + te.tolist()) == list(range(1797))
    per_class, test_per_class = torch.bincount(labels), torch.bincount(labels[te], minlength=10)
    assert ((test_per_class - 0.2 * per_class).abs() <= 1).all()
    assert len(te) == 359  # sum over classes of round(0.2 n_c)
    other = stratified_split(labels, 0.2, 1)[1]
    assert not torch.equal(te, other)  # split_seed picks another split


def test_task_split_does_not_depend_on_job_seed() -> None:
    t = Digits(DigitsConfig())
    a = t.eval_sets(1, 64, "image", seed=0)[""]
    b = t.eval_sets(1, 64, "image", seed=7)[""]
    assert all(torch.equal(x.inputs["images"], y.inputs["images"]) for x, y in zip(a, b))


@pytest.mark.parametrize("batch_size", [64, 100, 359])
def test_eval_covers_the_whole_test_split_once(batch_size: int) -> None:
    t = Digits(DigitsConfig(image_size=16))
    sets = t.eval_sets(1, batch_size, "image", seed=0)  # n_batches is ignored
    assert list(sets) == [""]
    images = torch.cat([b.inputs["images"] for b in sets[""]])
    labels = torch.cat([b.labels for b in sets[""]])
    sp = t.split()
    assert images.shape == (359, 1, 16, 16)
    assert torch.equal(images, sp.test_images) and torch.equal(labels, sp.test_labels)


def test_normalised_with_train_statistics_and_resized() -> None:
    sp8 = load_split(8, 0.2, 0)
    assert abs(float(sp8.train_images.mean())) < 1e-5
    assert abs(float(sp8.train_images.std()) - 1) < 1e-4
    assert sp8.background < 0  # blank pixels sit below the mean
    sp16 = load_split(16, 0.2, 0)
    assert sp16.train_images.shape[1:] == (1, 16, 16)
    # bilinear upsampling keeps the image's mean up to border effects
    assert torch.allclose(sp16.train_images.mean((1, 2, 3)), sp8.train_images.mean((1, 2, 3)), atol=0.1)


def test_train_batches_are_seeded_and_shifts_fill_with_background() -> None:
    t = Digits(DigitsConfig(image_size=8, shift=0))
    a = t.train_batch(16, "image", torch.Generator().manual_seed(3))
    b = t.train_batch(16, "image", torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs["images"], b.inputs["images"]) and torch.equal(a.labels, b.labels)
    assert a.inputs["images"].shape == (16, 1, 8, 8) and a.labels.dtype == torch.long
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(20, 1, 1, 1)
    y = random_shift(x, 1, -5.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for img in y[:, 0]:  # each output is the input translated by (dy, dx) in [-1, 1]^2, filled with -5
        found = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ref = torch.full((4, 4), -5.0)
                src = x[0, 0]
                ys, xs = slice(max(0, dy), 4 + min(0, dy)), slice(max(0, dx), 4 + min(0, dx))
                yd, xd = slice(max(0, -dy), 4 + min(0, -dy)), slice(max(0, -dx), 4 + min(0, -dx))
                ref[yd, xd] = src[ys, xs]
                found |= torch.equal(img, ref)
        assert found


def test_model_keys_and_refusals() -> None:
    from harness.core.registry import MODELS

    t = Digits(DigitsConfig(image_size=16))
    assert t.model_keys() == {"n_classes": 10, "in_channels": 1, "image_size": 16, "head": "classify"}
    assert t.metric == "acc"
    cfg = MODELS.get("resnet").config(image_size=8)
    assert "image_size 8 differs" in (t.check_model(cfg, MODELS.get("resnet").obj) or "")
    with pytest.raises(ValueError, match="image model"):
        t.train_batch(2, "lm", torch.Generator())
    assert "digits" in TASKS.names()


def test_suite_with_wrong_patch_size_is_refused(refused_suite) -> None:
    line = refused_suite(
        "name: bad\ntasks:\n  - {task: digits, image_size: 16}\n"
        "variants:\n  - {name: v, model: vit, patch_size: 5}\n"
    )
    assert "patch_size" in line and "must divide image_size (16)" in line


def test_scores_whole_split_with_a_model() -> None:
    import harness
    from harness.run.train import evaluate

    t = Digits(DigitsConfig(image_size=8))
    m = harness.build_model("resnet", image_size=8, widths=[4], blocks=[1], stem=4)
    metrics, _ = evaluate(m, t, t.eval_sets(1, 100, "image", 0), torch.device("cpu"))
    assert set(metrics) == {"acc"} and 0.0 <= metrics["acc"] <= 1.0
