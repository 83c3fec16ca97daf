"""The shapes task: pixels and labels agree with an independent per-pixel drawing of the shape list."""

from __future__ import annotations

import pytest
import torch

from harness.core.config import build
from harness.core.errors import InputError
from harness.core.registry import TASKS
from harness.tasks.shapes import PALETTE, Scene, Shapes, ShapesConfig, same_type_rule


def task(**cfg: object) -> Shapes:
    return TASKS.get("shapes").obj(build(ShapesConfig, dict(cfg), "", lambda _k: ""))


def covers(kind: int, x: float, y: float, cx: float, cy: float, r: float) -> bool:
    """The four shapes of the module docstring, written out for one pixel centre (x, y)."""
    dx, dy = x - cx, y - cy
    if kind == 0:
        return dx * dx + dy * dy <= r * r
    if kind == 1:
        return max(abs(dx), abs(dy)) <= 0.8 * r
    if kind == 2:
        h = dy + r
        return 0 <= h <= 1.8 * r and abs(dx) <= 0.55 * h
    return (abs(dx) <= r / 3 and abs(dy) <= r) or (abs(dy) <= r / 3 and abs(dx) <= r)


def reference(scene: Scene, b: int, size: int, only: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Image b painted shape after shape (painter's order), and its labels, one pixel at a time;
    ``only``: draw that slot alone."""
    image = scene.background[b].item() * torch.ones(3, size, size)
    labels = torch.zeros(size, size, dtype=torch.long)
    for n in range(scene.types.shape[1]):
        if not scene.present[b, n] or (only is not None and n != only):
            continue
        kind = int(scene.types[b, n])
        cx, cy = (float(v) for v in scene.centres[b, n])
        r = float(scene.radii[b, n])
        for i in range(size):
            for j in range(size):
                if covers(kind, j + 0.5, i + 0.5, cx, cy, r):
                    image[:, i, j] = scene.colours[b, n]
                    labels[i, j] = kind + 1
    return image, labels


def test_segment_pixels_and_labels_match_the_shape_list() -> None:
    t = task(image_size=16, min_shapes=3, max_shapes=5)
    scene, batch = t.make(6, torch.Generator().manual_seed(4))
    images, labels = batch.inputs["images"], batch.labels
    assert images.shape == (6, 3, 16, 16) and labels.shape == (6, 16, 16) and labels.dtype == torch.long
    overlapped = 0
    for b in range(6):
        ref_image, ref_labels = reference(scene, b, 16)
        assert torch.equal(labels[b], ref_labels)
        assert torch.equal(images[b], ref_image)
        # background pixels have the background colour, every other pixel a palette colour
        bg = labels[b] == 0
        assert (images[b][:, bg] == scene.background[b]).all()
        fg = images[b][:, ~bg].T  # (pixels, 3)
        assert ((fg[:, None, :] == PALETTE[None]).all(-1).any(-1)).all()
        # each drawn shape's pixels carry its type, except where a later shape covers them
        alone = [reference(scene, b, 16, only=n)[1] > 0 for n in range(scene.types.shape[1])]
        for n, own in enumerate(alone):
            later = torch.zeros(16, 16, dtype=torch.bool)
            for m in alone[n + 1 :]:
                later |= m
            assert (labels[b][own & ~later] == scene.types[b, n] + 1).all()
        overlapped += int((labels[b] > 0).sum() < sum(int(a.sum()) for a in alone))  # a shape hides another
    assert overlapped > 0
    assert set(labels.unique().tolist()) == {0, 1, 2, 3, 4}


def test_shapes_lie_inside_the_image_and_counts_respect_the_config() -> None:
    t = task(image_size=24, min_shapes=2, max_shapes=3)
    scene, _ = t.make(200, torch.Generator().manual_seed(1))
    counts = scene.present.sum(1)
    assert counts.min() == 2 and counts.max() == 3
    lo, hi = scene.centres - scene.radii[..., None], scene.centres + scene.radii[..., None]
    assert (lo >= 0).all() and (hi <= 24).all()
    assert (scene.radii >= 24 / 10).all() and (scene.radii <= 24 / 6).all()


def test_classify_label_is_the_rule_recomputed_from_the_shape_list() -> None:
    t = task(image_size=24, mode="classify", noise=0.1)
    assert (t.head, t.n_classes, t.metric) == ("classify", 2, "acc")
    scene, batch = t.make(400, torch.Generator().manual_seed(2))
    expected = torch.tensor([int(scene.types[b, 0] == scene.types[b, 3]) for b in range(400)])
    assert torch.equal(batch.labels, expected) and torch.equal(same_type_rule(scene), expected)
    assert 0.4 < batch.labels.float().mean() < 0.6  # balanced
    # one shape in each corner cell of a 3x3 grid: TL and BR more than half the image apart per axis
    cell = 24 / 3
    lo, hi = scene.centres - scene.radii[..., None], scene.centres + scene.radii[..., None]
    origin = torch.tensor([[0.0, 0.0], [2 * cell, 0.0], [0.0, 2 * cell], [2 * cell, 2 * cell]])
    assert (lo >= origin - 1e-4).all() and (hi <= origin + cell + 1e-4).all()
    assert ((scene.centres[:, 3] - scene.centres[:, 0]) >= 24 / 2).all()
    # noise is added on top of the same drawing and labels
    clean_scene, clean = task(image_size=24, mode="classify").make(400, torch.Generator().manual_seed(2))
    assert torch.equal(clean_scene.types, scene.types) and torch.equal(clean.labels, batch.labels)
    noise = batch.inputs["images"] - clean.inputs["images"]
    assert 0.09 < float(noise.std()) < 0.11


def test_segment_mode_keys_metric_and_model_checks() -> None:
    t = task(image_size=32)
    assert t.model_keys() == {"n_classes": 5, "in_channels": 3, "image_size": 32, "head": "segment"}
    assert t.metric == "miou"
    import harness

    classifier = harness.build_model("fpn", image_size=32, n_classes=5, head="classify")
    assert "segment" in t.check_model(classifier.config, type(classifier))
    small = harness.build_model("fpn", image_size=16, n_classes=5, head="segment")
    assert "image_size" in t.check_model(small.config, type(small))


def test_determinism_and_eval_sets_apart_from_training() -> None:
    t = task(image_size=16)
    a = t.train_batch(4, "image", torch.Generator().manual_seed(0))
    b = t.train_batch(4, "image", torch.Generator().manual_seed(0))
    assert torch.equal(a.inputs["images"], b.inputs["images"]) and torch.equal(a.labels, b.labels)
    ev = t.eval_sets(2, 4, "image", seed=0)
    assert list(ev) == [""] and len(ev[""]) == 2
    again = t.eval_sets(2, 4, "image", seed=0)
    assert all(torch.equal(x.inputs["images"], y.inputs["images"]) for x, y in zip(ev[""], again[""]))
    assert not torch.equal(ev[""][0].inputs["images"], a.inputs["images"])
    other_seed = t.eval_sets(1, 4, "image", seed=1)[""][0]
    assert not torch.equal(other_seed.inputs["images"], ev[""][0].inputs["images"])


def test_perfect_and_all_background_predictions_score_as_expected() -> None:
    t = task(image_size=16)
    batch = t.train_batch(8, "image", torch.Generator().manual_seed(3))
    perfect = torch.nn.functional.one_hot(batch.labels, 5).float()
    assert t.metrics(t.score(perfect, batch.labels), "")["miou"] == 1.0
    background = torch.zeros(8, 16, 16, 5)
    background[..., 0] = 1
    m = t.metrics(t.score(background, batch.labels), "")
    frac = float((batch.labels == 0).float().mean())
    assert m["miou"] == pytest.approx(frac / 5)  # all four shape types occur in the batch


@pytest.mark.parametrize(
    "cfg,key", [({"min_shapes": 3, "max_shapes": 2}, "max_shapes"), ({"image_size": 8}, "image_size"),
                ({"mode": "count"}, "mode"), ({"noise": -0.1}, "noise")],
)
def test_bad_config_names_key(cfg: dict, key: str) -> None:
    with pytest.raises(InputError) as e:
        build(ShapesConfig, cfg, "", lambda _k: "")
    assert e.value.key == key
