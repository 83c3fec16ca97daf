"""LSTR, the two-step lane baseline, the lanes task and its TuSimple evaluator (issue 13)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch

import harness
from harness.core.registry import TASKS
from harness.measure.flops import count_flops
from harness.tasks.lane_set import gt_bounds, hungarian
from harness.tasks.lanes import FOCAL, Road, image_params, project, tusimple_image


def lanes(**kw):  # noqa: ANN201
    entry = TASKS.get("lanes")
    return entry.obj(entry.config(**kw))


@pytest.mark.parametrize("q,g", [(3, 3), (4, 2), (5, 3), (6, 4)])
def test_hungarian_equals_brute_force(q: int, g: int) -> None:
    rng = np.random.default_rng(q * 10 + g)
    for _ in range(20):
        cost = rng.normal(size=(q, g))
        rows, cols = hungarian(cost)
        best = min(itertools.permutations(range(q), g), key=lambda p: sum(cost[p[j], j] for j in range(g)))
        got = dict(zip(cols.tolist(), rows.tolist()))
        assert [got[j] for j in range(g)] == list(best)


def one_road(pitch: float, height: float, k: float, m: float, n: float, b: float) -> Road:
    t = torch.tensor
    return Road(t([pitch]), t([height]), t([[k, m, n]]), t([[b]]), t([[True]]), t([[1.0]]), t([[40.0]]),
                t([[False]]), t([[0.0]]), t([[1.0]]), torch.zeros(1, 5), t([0.4]))


def image_form(road: Road, v: float, w: int, h: int) -> float:
    """u at pixel row v from the normalised image-space form x = k/(y-f)^2 + m/(y-f) + n + b2 y - b3."""
    shared, lane = image_params(road, w, h)
    k, f, m, n = shared[0].tolist()
    b2, b3 = lane[0, 0].tolist()
    y = v / h
    return w * (k / (y - f) ** 2 + m / (y - f) + n + b2 * y - b3)


def test_projection_hand_values() -> None:
    # pitch 0, h 1.5 m, f = 0.6 * 64 = 38.4 px, a straight lane 1 m to the right, Z = 10 m:
    # u = 32 + 38.4 * 1 / 10 = 35.84, v = 16 + 38.4 * 1.5 / 10 = 21.76
    road = one_road(0.0, 1.5, 0.0, 0.0, 0.0, 1.0)
    u, v = project(torch.tensor(1.0), torch.tensor(10.0), road.pitch, road.height, 64, 32)
    assert u.item() == pytest.approx(35.84, abs=1e-4) and v.item() == pytest.approx(21.76, abs=1e-4)
    assert image_form(road, 21.76, 64, 32) == pytest.approx(35.84, abs=1e-3)
    # a pitched camera and a curved lane: the rotation written out by hand
    phi, hgt, k, m, n, b = 0.15, 1.4, 3e-5, -2e-3, 0.04, -1.75
    road = one_road(phi, hgt, k, m, n, b)
    f = FOCAL * 64
    for z in (3.0, 8.0, 20.0, 35.0):
        x = k * z**3 + m * z**2 + n * z + b
        zc = z * math.cos(phi) + hgt * math.sin(phi)  # depth along the optical axis
        yc = hgt * math.cos(phi) - z * math.sin(phi)  # downwards in the camera frame
        u, v = 32 + f * x / zc, 16 + f * yc / zc
        assert image_form(road, v, 64, 32) == pytest.approx(u, abs=1e-3)
    shared, _ = image_params(road, 64, 32)
    assert shared[0, 1].item() == pytest.approx((16 - f * math.tan(phi)) / 32, abs=1e-6)  # f'' = horizon


def depth_at_row(v: float, pitch: float, height: float, w: int, h: int) -> float:
    """Road distance whose projection lies at row v, by bisection on the pinhole formula."""
    lo, hi = 0.01, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        _, vm = project(torch.tensor(0.0), torch.tensor(mid), torch.tensor(pitch), torch.tensor(height), w, h)
        lo, hi = (mid, hi) if vm.item() > v else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.slow
def test_lanes_deterministic_and_labels_agree_with_an_independent_redraw() -> None:
    t = lanes(image_size=64, image_height=32)
    a = t.train_batch(4, "lanes", torch.Generator().manual_seed(3))
    b = t.train_batch(4, "lanes", torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs["images"], b.inputs["images"]) and torch.equal(a.labels, b.labels)
    ev1, ev2 = t.eval_sets(1, 4, "lanes", 0)[""][0], t.eval_sets(1, 4, "lanes", 5)[""][0]
    assert torch.equal(ev1.labels, ev2.labels)  # the fixed evaluation set
    road, batch = t.make(6, torch.Generator().manual_seed(11))
    road.dashed[:] = False
    masks = t.lane_masks(road)
    checked = 0
    for i in range(6):
        p, hh = road.pitch[i].item(), road.height[i].item()
        k, m, n = road.curve[i].tolist()
        for lane in range(t.cfg.max_lanes):
            for r, row in enumerate(t.rows.tolist()):
                lab = batch.labels[i, lane, r].item()
                z = depth_at_row(row + 0.5, p, hh, 64, 32)
                x = k * z**3 + m * z**2 + n * z + road.offset[i, lane].item()
                u, _ = project(torch.tensor(x), torch.tensor(z), road.pitch[i], road.height[i], 64, 32)
                inside = road.near[i, lane] <= z <= road.far[i, lane] and 0 <= u.item() < 64
                if not (road.present[i, lane] and inside):
                    assert lab == -2
                    continue
                assert lab == pytest.approx(u.item(), abs=2e-3)
                assert masks[i, lane, row, int(lab)]  # the labelled pixel is painted
                checked += 1
    assert checked > 50


def test_tusimple_hand_cases() -> None:
    rows = np.arange(10.0)
    gt = np.array([[5.0] * 10, [20.0] * 10])
    assert tusimple_image(gt.copy(), gt, rows, 1.0) == (1.0, 0.0, 0.0)
    shifted = gt.copy()
    shifted[1] += 1.5  # beyond a threshold of 1 px for a vertical lane
    acc, fp, fn = tusimple_image(shifted, gt, rows, 1.0)
    assert (acc, fp, fn) == (0.5, 0.5, 0.5)  # the shifted lane: 0 points right, one FN and one FP
    acc, fp, fn = tusimple_image(gt[:1], gt, rows, 1.0)  # a missing lane
    assert (acc, fp, fn) == (0.5, 0.0, 0.5)
    part = gt.copy()
    part[0, :2] = -2  # 8 of 10 points: 0.8 < 0.85, unmatched, but its accuracy counts
    acc, fp, fn = tusimple_image(part, gt, rows, 1.0)
    assert acc == pytest.approx(0.9) and fp == 0.5 and fn == 0.5
    # a slanted GT lane (x = y): threshold 1 / cos(45 deg) = 1.414 px, so a 1.3 px shift is still right
    slant = np.array([rows.copy()])
    assert tusimple_image(slant + 1.3, slant, rows, 1.0) == (1.0, 0.0, 0.0)
    assert tusimple_image(slant + 1.5, slant, rows, 1.0) == (0.0, 1.0, 1.0)


def test_task_scores_perfect_set_predictions_and_shifts() -> None:
    t = lanes()
    batch = t.train_batch(8, "lanes", torch.Generator().manual_seed(0))
    lab = batch.labels
    y = (t.rows.float() + 0.5) / t.h
    valid, lo, up = gt_bounds(lab, y)
    pred = torch.zeros(8, 5, 4 + len(t.rows))
    pred[:, :4, 1] = torch.where(valid.any(-1), 5.0, -5.0)
    pred[:, :4, 2], pred[:, :4, 3] = lo, up
    pred[:, :4, 4:] = torch.where(valid, lab / t.w, -1.0)
    pred[:, 4, 0] = 5.0  # an extra query that predicts no lane
    assert t.metrics(t.score(pred, lab), "") == {"acc": 1.0, "fp": 0.0, "fn": 0.0}
    pred[:, :4, 4:] += 20 / t.w  # every lane 20 px off (beyond 1 px / cos(angle) for these lanes)
    m = t.metrics(t.score(pred, lab), "")
    # TuSimple counts absent-vs-absent rows as right: a lane with <= 3 of the 20 rows stays >= 0.85
    n_valid = valid.sum(-1)
    missed = [((n_valid[i] > 3).sum() / (n_valid[i] > 0).sum()).item() for i in range(8)]
    assert m["fn"] == pytest.approx(sum(missed) / 8) and m["fp"] == pytest.approx(sum(missed) / 8)
    assert m["fn"] > 0.5


def test_lstr_flops_match_hand_count() -> None:
    cfg = {"image_size": 16, "image_height": 16, "row_start": 8, "stem": 8, "widths": [4], "blocks": [1],
           "d_model": 8, "n_heads": 2, "d_ff": 16, "enc_layers": 1, "dec_layers": 1, "n_queries": 4}
    model = harness.build_model("lstr", **cfg)
    t = lanes(image_size=16, image_height=16, row_start=8, max_lanes=4)
    batch = t.train_batch(2, "lanes", torch.Generator().manual_seed(0))
    flops, unsupported = count_flops(model, batch)
    hw, d, q, ff = 256, 8, 4, 16  # tokens (stride 1), width, queries, FFN
    backbone = hw * (1 * 8 * 9 + 8 * 4 + 4 * 4 * 9 + 4 * 16 + 8 * 16)  # stem, reduce, 3x3, expand, shortcut
    proj = hw * 16 * d
    enc = 4 * hw * d * d + 2 * hw * hw * d + 2 * hw * d * ff
    dec = (4 * q * d * d + 2 * q * q * d) + (2 * q * d * d + 2 * hw * d * d + 2 * q * hw * d) + 2 * q * d * ff
    heads = q * d * 2 + 2 * q * (2 * d * d + 4 * d)
    assert unsupported == []
    assert flops == 2 * 2 * (backbone + proj + enc + dec + heads)


def test_lane_seg_fits_a_quadratic_exactly() -> None:
    from harness.models.lane_seg import quadratic_fit

    y = torch.linspace(0.4, 1.0, 12)
    x = 0.3 + 0.2 * y - 0.5 * y**2
    wgt = torch.ones(12)
    wgt[:5] = 0  # points only on 7 rows; the fit extends to all
    fit, ok = quadratic_fit(y, x, wgt)
    assert bool(ok) and torch.allclose(fit, x, atol=1e-4)
    assert not bool(quadratic_fit(y, x, (torch.arange(12) < 2).float())[1])  # 2 points: no lane


BAD = """\
name: t
seeds: [0]
tasks:
  - {name: lanes, task: lanes, image_size: 64, image_height: 32}
variants:
  - {name: a, model: lstr, tasks: [lanes], train: {steps: 2, batch_size: 2}}
"""


@pytest.mark.parametrize("variant,fragments", [
    ("{name: a, model: lstr, n_queries: 3, tasks: [lanes], train: {steps: 2, batch_size: 2}}",
     ["bad.yaml:6:", "fewer than the task's max_lanes 4"]),
    ("{name: a, model: lane_seg, n_lanes: 2, tasks: [lanes], train: {steps: 2, batch_size: 2}}",
     ["bad.yaml:6:", "fewer than the task's max_lanes 4"]),
    ("{name: a, model: lstr, widths: [8, 16, 32, 64, 128, 256], blocks: [1, 1, 1, 1, 1, 1], tasks: [lanes],"
     " train: {steps: 2, batch_size: 2}}", ["bad.yaml:6:", "image_height", "backbone stride 32"]),
    ("{name: a, model: lstr, d_model: 30, tasks: [lanes], train: {steps: 2, batch_size: 2}}",
     ["bad.yaml:6:", "d_model", "multiple of 4"]),
])
def test_bad_lane_settings_exit_2(variant: str, fragments: list[str], refused_suite: Any) -> None:
    line = refused_suite(BAD.replace(BAD.splitlines()[-1], "  - " + variant))
    assert all(f in line for f in fragments), line


def test_bad_task_rows_exit_2(refused_suite: Any) -> None:
    line = refused_suite(BAD.replace("image_height: 32}", "image_height: 32, row_start: 2}"))
    assert "bad.yaml:4:" in line and "row_start" in line and "horizon" in line
