"""DETR, Deformable DETR, the scenes task, the set loss and the COCO AP evaluator."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import harness
from harness.measure.flops import count_flops
from harness.models.base import ModelOutput
from harness.models.deformable_detr import MSDeformAttn
from harness.models.detr import Attention
from harness.tasks.base import Batch
from harness.tasks.coco_ap import coco_ap
from harness.tasks.scenes import Scenes, ScenesConfig
from harness.tasks.set_loss import hungarian, pairwise_giou, set_loss


# -- matching and geometry ------------------------------------------------------------------------
@pytest.mark.parametrize("q,m", [(3, 3), (4, 2), (5, 3), (6, 4)])
def test_hungarian_equals_brute_force(q: int, m: int) -> None:
    gen = torch.Generator().manual_seed(q * 10 + m)
    for _ in range(5):
        cost = torch.rand(q, m, generator=gen, dtype=torch.float64)
        rows, cols = hungarian(cost)
        got = float(cost[rows, cols].sum())
        best = min(sum(float(cost[p[j], j]) for j in range(m)) for p in itertools.permutations(range(q), m))
        assert got == pytest.approx(best, abs=1e-12)
        assert len(set(rows.tolist())) == m and sorted(cols.tolist()) == list(range(m))


def test_giou_hand_values() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([
        [0.0, 0.0, 2.0, 2.0],  # same box: IoU 1, GIoU 1
        [1.0, 0.0, 3.0, 2.0],  # half overlap: inter 2, union 6, hull 6 -> 1/3, 1/3
        [3.0, 0.0, 5.0, 2.0],  # apart: IoU 0, hull 10, union 8 -> GIoU -0.2
        [4.0, 4.0, 6.0, 6.0],  # far apart diagonally: hull 36, union 8 -> GIoU -28/36
        [0.5, 0.5, 1.5, 1.5],  # inside: inter 1, union 4, hull 4 -> 0.25, 0.25
    ])
    iou, giou = pairwise_giou(a, b)
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0, 0.25])
    assert giou[0].tolist() == pytest.approx([1.0, 1 / 3, -0.2, -28 / 36, 0.25])


def test_set_loss_is_zero_for_a_perfect_focal_free_match() -> None:
    """Softmax head: boxes exactly on the targets and confident classes give only the tiny CE."""
    labels = torch.tensor([[[0, 1, 0.5, 0.5, 0.2, 0.2], [0, -1, 0, 0, 0, 0]]], dtype=torch.float32)
    pred = torch.full((1, 1, 3, 5 + 4), -20.0)
    pred[0, 0, :, 4] = 20.0  # every query says "no object"...
    pred[0, 0, 1, 1], pred[0, 0, 1, 4] = 20.0, -20.0  # ...but query 1 says class 1
    pred[0, 0, :, 5:] = torch.tensor([0.5, 0.5, 0.2, 0.2])
    assert float(set_loss(pred, labels, 4)) < 1e-6


# -- deformable attention -------------------------------------------------------------------------
def bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Hand bilinear sampling of (C, H, W) at normalised (x, y), pixel centres at (i + 0.5) / W, zeros
    outside (grid_sample's align_corners=False, padding zeros)."""
    _, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = int(torch.floor(torch.tensor(px))), int(torch.floor(torch.tensor(py)))
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
        wgt = (1 - abs(px - xx)) * (1 - abs(py - yy))
        if 0 <= xx < w and 0 <= yy < h:
            out += wgt * img[:, yy, xx]
    return out


def test_deformable_attention_zero_offsets_is_bilinear_sampling() -> None:
    torch.manual_seed(0)
    d, h, w = 8, 5, 7
    attn = MSDeformAttn(d, n_levels=1, n_heads=2, n_points=1).double()
    nn.init.zeros_(attn.offsets.bias)  # zero offsets (weights are already zero at init)
    inp = torch.randn(1, h * w, d, dtype=torch.float64)
    pts = [(0.5, 0.5), (0.13, 0.71), (0.02, 0.97), (0.9, 0.05)]
    ref = torch.tensor(pts, dtype=torch.float64)[None, :, None]  # (1, 4, 1, 2)
    query = torch.randn(1, len(pts), d, dtype=torch.float64)
    got = attn(query, ref, inp, [(h, w)])
    value = attn.value(inp)[0].T.reshape(d, h, w)
    want = torch.stack([attn.out(bilinear(value, x, y)) for x, y in pts])
    torch.testing.assert_close(got[0], want)


def test_deformable_init_offsets_point_in_head_directions() -> None:
    attn = MSDeformAttn(16, n_levels=2, n_heads=4, n_points=3)
    b = attn.offsets.bias.view(4, 2, 3, 2)
    assert b[0, 0, 0].tolist() == pytest.approx([1.0, 0.0])  # head 0: +x
    assert b[1, 1, 2].tolist() == pytest.approx([0.0, 3.0], abs=1e-6)  # head 1: +y, point 3 at distance 3
    assert b[2, 0, 1].tolist() == pytest.approx([-2.0, 0.0], abs=1e-6)


# -- the scenes task ------------------------------------------------------------------------------
def naive_render(task: Scenes, seed: int, n: int) -> tuple[list, list]:
    """Redraw the scenes pixel by pixel from the shape formulas (same random draws) and return, per image,
    the list of (class, x0, y0, x1, y1) tight boxes of each shape's visible pixels."""
    scene = task.sample_scene(n, torch.Generator().manual_seed(seed))
    s, out = task.image_size, []
    for i in range(n):
        owner = [[-1] * s for _ in range(s)]
        for k in range(scene.types.shape[1]):
            if not scene.present[i, k]:
                continue
            cx, cy = scene.centres[i, k].tolist()
            r, t = float(scene.radii[i, k]), int(scene.types[i, k])
            for y in range(s):
                for x in range(s):
                    dx, dy = x + 0.5 - cx, y + 0.5 - cy
                    inside = [dx * dx + dy * dy <= r * r, max(abs(dx), abs(dy)) <= 0.8 * r,
                              0 <= dy + r <= 1.8 * r and abs(dx) <= 0.55 * (dy + r),
                              (abs(dx) <= r / 3 and abs(dy) <= r) or (abs(dy) <= r / 3 and abs(dx) <= r)][t]
                    if inside:
                        owner[y][x] = k
        boxes = []
        for k in range(scene.types.shape[1]):
            pix = [(x, y) for y in range(s) for x in range(s) if owner[y][x] == k]
            if pix:
                xs, ys = [p[0] for p in pix], [p[1] for p in pix]
                boxes.append((int(scene.types[i, k]), min(xs), min(ys), max(xs) + 1, max(ys) + 1))
        out.append(boxes)
    return out, scene


def test_scenes_deterministic_and_labels_match_a_redraw() -> None:
    task = Scenes(ScenesConfig(image_size=24, max_objects=5))
    a = task.make(6, torch.Generator().manual_seed(3))
    b = task.make(6, torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs["images"], b.inputs["images"]) and torch.equal(a.labels, b.labels)
    want, _ = naive_render(task, 3, 6)
    for i in range(6):
        got = [(int(r[1]), *(round(v) for v in (r[2] - r[4] / 2, r[3] - r[5] / 2, r[2] + r[4] / 2,
                                                 r[3] + r[5] / 2)))
               for r in (a.labels[i] * torch.tensor([1, 1, 24, 24, 24, 24])).tolist() if r[1] >= 0]
        assert got == want[i]
    assert (a.inputs["images"] >= 0).all() and (a.inputs["images"] <= 1).all()


def test_scenes_eval_set_fixed_and_ids_unique() -> None:
    task = Scenes(ScenesConfig(eval_images=10))
    s1, s2 = task.eval_sets(1, 4, "detect", 0)[""], task.eval_sets(1, 4, "detect", 5)[""]
    assert [len(b.labels) for b in s1] == [4, 4, 2]
    assert all(torch.equal(x.labels, y.labels) for x, y in zip(s1, s2))
    ids = torch.cat([b.labels[:, 0, 0] for b in s1]).tolist()
    assert ids == list(range(10))


# -- AP evaluator ---------------------------------------------------------------------------------
def test_ap_evaluator_hand_cases() -> None:
    gts = [(0, 0, 2.0, 2.0, 10.0, 10.0), (1, 0, 5.0, 5.0, 10.0, 10.0)]
    perfect = [(g[0], g[1], 0.9, *g[2:]) for g in gts]
    assert coco_ap(gts, perfect, 2, 16.0, 64.0)["ap"] == pytest.approx(1.0)
    # one of two found: precision 1 up to recall 0.5 -> 51 of the 101 recall points
    assert coco_ap(gts, perfect[:1], 2, 16.0, 64.0)["ap"] == pytest.approx(51 / 101)
    wrong = [(g[0], 1, 0.9, *g[2:]) for g in gts]
    assert coco_ap(gts, wrong, 2, 16.0, 64.0)["ap"] == 0.0
    # shifted by 4 px: IoU 60/140 < .5 -> 0 at every threshold
    shifted = [(g[0], g[1], 0.9, g[2] + 4, g[3], g[4], g[5]) for g in gts]
    assert coco_ap(gts, shifted, 2, 16.0, 64.0)["ap50"] == 0.0
    # x shifted 0.99 px: IoU 9.01 / 10.99 = 0.82, a match at thresholds .50..0.80, 7 of 10
    ok = [(g[0], g[1], 0.9, g[2] + 0.99, g[3], g[4], g[5]) for g in gts]
    assert coco_ap(gts, ok, 2, 16.0, 64.0)["ap"] == pytest.approx(0.7)


def test_scenes_metrics_from_model_layout() -> None:
    """Perfect predictions written in the detect layout score AP 1 through score + metrics, both heads."""
    task = Scenes(ScenesConfig(eval_images=8))
    (batch,) = task.eval_sets(1, 8, "detect", 0)[""]
    lab = batch.labels
    for extra in (1, 0):  # softmax with no-object, then sigmoid
        pred = torch.full((8, 1, 6, 4 + extra + 4), -10.0)
        pred[..., 4 + extra :] = 0.5
        if extra:
            pred[..., 4] = 10.0
        keep = lab[..., 1] >= 0
        for i in range(8):
            for j in range(int(keep[i].sum())):
                row = lab[i, keep[i]][j]
                pred[i, 0, j, int(row[1])] = 10.0
                if extra:
                    pred[i, 0, j, 4] = -10.0
                pred[i, 0, j, -4:] = row[2:]
        m = task.metrics(task.score(pred, lab), "")
        assert m["ap"] == pytest.approx(1.0) and m["ap50"] == pytest.approx(1.0)


# -- models ---------------------------------------------------------------------------------------
TRANSFORMER = {"d_ff": 16, "n_heads": 2, "num_queries": 4}


@pytest.mark.parametrize("name,extra,shape", [
    ("detr", TRANSFORMER, (2, 2, 4, 9)), ("deformable_detr", TRANSFORMER, (2, 2, 4, 8)),
    ("deformable_detr", {**TRANSFORMER, "refine": True, "n_levels": 2}, (2, 2, 4, 8)),
    ("dense_detector", {"n_convs": 1}, (2, 1, 64, 8)),  # one prediction per location of the 8x8 map
])
def test_models_train_step_and_layout(name: str, extra: dict, shape: tuple) -> None:
    torch.manual_seed(0)
    task = Scenes(ScenesConfig(image_size=16, max_objects=3))
    m = harness.build_model(name, image_size=16, d_model=16, widths=[4, 8], blocks=[1, 1], stem=4, **extra)
    batch = task.train_batch(2, "detect", torch.Generator().manual_seed(0))
    out = m(**batch.inputs)
    assert out.logits.shape == shape
    loss = task.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in m.parameters() if p.requires_grad)


class AttnWrap(nn.Module):
    def __init__(self, attn: MSDeformAttn, lq: int, shapes: list) -> None:
        super().__init__()
        self.attn, self.shapes = attn, shapes
        self.ref = torch.rand(1, lq, len(shapes), 2)
        self.query = torch.randn(1, lq, attn.d)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        b = images.shape[0]
        return ModelOutput(self.attn(self.query.expand(b, -1, -1), self.ref.expand(b, -1, -1, -1),
                                     images, self.shapes))


def test_flops_deformable_attention_hand_count() -> None:
    d, m, lv, k, lq, b = 16, 2, 2, 3, 5, 2
    shapes = [(4, 4), (2, 2)]
    lin = 16 + 4
    wrap = AttnWrap(MSDeformAttn(d, lv, m, k), lq, shapes)
    flops, unsupported = count_flops(
        wrap, Batch({"images": torch.randn(b, lin, d)}, torch.zeros(b), n_tokens=lin, seq_len=lin))
    macs = b * (lin * d * d + lq * d * (m * lv * k * 2) + lq * d * (m * lv * k)
                + m * lq * (d // m) * lv * k + lq * d * d)
    assert not unsupported and flops == 2 * macs


def test_flops_attention_hand_count() -> None:
    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = Attention(16, 4, 0.0)

        def forward(self, images: torch.Tensor) -> ModelOutput:
            return ModelOutput(self.attn(images[:, :3], images, images))

    flops, unsupported = count_flops(
        Wrap(), Batch({"images": torch.randn(2, 10, 16)}, torch.zeros(2), n_tokens=10, seq_len=10))
    # q on 3 tokens, k and v on 10, out on 3; scores 3 x 10 x 16 and weighted sum 3 x 10 x 16
    macs = 2 * (3 * 16 * 16 + 2 * 10 * 16 * 16 + 3 * 16 * 16 + 2 * 3 * 10 * 16)
    assert not unsupported and flops == 2 * macs


# -- refusals -------------------------------------------------------------------------------------
SUITE = """\
name: t
seeds: [0]
baseline: a
train: {steps: 1, batch_size: 2, eval_every: 1, eval_batches: 1, eval_batch_size: 2}
tasks:
  - {name: scenes, task: scenes, image_size: 16, max_objects: 3, eval_images: 4}
variants:
  - {name: a, model: detr, num_queries: 4}
  - {name: b, model: deformable_detr, num_queries: 4}
"""
DEF = "deformable_detr, num_queries: 4}"


@pytest.mark.parametrize("old,new,fragments", [
    ("detr, num_queries: 4", "detr, num_queries: 101", ["bad.yaml:8:", "num_queries", "<= 100"]),
    ("detr, num_queries: 4", "detr, num_queries: 2", ["bad.yaml:8:", "max_objects (3)"]),
    (DEF, DEF[:-1] + ", n_points: 0}", ["bad.yaml:9:", "n_points", ">= 1"]),
    (DEF, DEF[:-1] + ", n_levels: 5}", ["bad.yaml:9:", "n_levels", "at most 4"]),
    ("model: detr, num_queries: 4}", "model: resnet}", ["bad.yaml:8:", "not a detection model"]),
])
def test_impossible_settings_exit_2(old: str, new: str, fragments: list, refused_suite) -> None:  # noqa: ANN001
    line = refused_suite(SUITE.replace(old, new))
    for frag in fragments:
        assert frag in line, (frag, line)
