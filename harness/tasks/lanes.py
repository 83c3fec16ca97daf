"""Generated road images with 2..4 lane markings: regress each lane's x at fixed rows (TuSimple style).

Camera. A pinhole camera at height ``h`` (metres) above a flat road, pitched down by ``phi`` (radians),
focal length ``f`` = ``FOCAL`` x image width (pixels), principal point at the image centre (cx, cy).
A road point at lateral X and forward distance Z (camera at the origin, Y = -h) lies at camera depth
z_c = Z cos(phi) + h sin(phi) and projects to

    u = cx + f X / z_c,        v = cy + f (h cos(phi) - Z sin(phi)) / z_c.

Lane family (LSTR, Liu et al. WACV 2021, Sec. 3.2): on the ground a lane is the cubic
X = k Z^3 + m Z^2 + n Z + b, the curvature terms (k, m, n) shared by all lanes of an image and the
offset b per lane. With t = tan(phi), the horizon row v_h = cy - f t, d = v - v_h, A = h f (1 + t^2)
and B = h t, a road row v sees depth Z = A / d - B and z_c = cos(phi) A / d, so that (C = f / (A cos phi))

    u = cx + C [k A^3 / d^2 + (m A^2 - 3 k A^2 B) / d + (3 k A B^2 - 2 m A B + n A)
                + (b - n B + m B^2 - k B^3) d]

exactly; in coordinates normalised by the image (x = u / W, y = v / H) this is the paper's image-space
form x = k''/(y - f'')^2 + m''/(y - f'') + n' + b'' y - b''' (:func:`image_params`), with
k'', f'' (= v_h / H), m'' and n' shared across the lanes of an image and b'', b''' per lane.

Scenes. Per image: pitch, height, (k, m, n) drawn uniformly from the ranges below; 2..``max_lanes``
lane lines 3.5 m apart (with 0.2 m jitter) around the camera's lane; each lane visible from a near
distance (usually the image bottom) to a far one (its vertical start/end); half the lanes dashed
(6 m period, half painted, random phase); with probability ``p_occlude`` a car-like dark box with a
lighter roof stands on the road and hides what is behind it. Grey images (1 channel) in [0, 1]: sky
above the horizon, a road grey, marking brightness per lane, Gaussian noise ``noise``. A lane is drawn
at pixel (v, c) when |c + 0.5 - u(v + 0.5)| <= 0.5 + 0.05 d (markings widen towards the camera), so
the pixel holding a label's x is always painted (before dashes and occlusion).

Labels (TuSimple style). Rows ``row_start, row_start + row_step, ... < image_height`` (R rows); for
each of ``max_lanes`` slots, ordered left to right by offset, the lane's x in pixels at the row's centre
(u(v + 0.5)), or -2 where the lane is absent (outside its vertical range, outside the image, or an
empty slot). Occluded and unpainted (dash gap) points keep their labels, as in TuSimple.
Labels: float [B, max_lanes, R].

Metric (TuSimple's benchmark, implemented from its definition: :func:`tusimple_image`): a point is
correct when |x_pred - x_gt| < thr, with invalid points on either side set to -100 (so a missing point
on both sides counts as correct); thr = ``threshold`` x W / 1280 / cos(theta), the benchmark's 20 px at
width 1280 scaled plainly to this width, theta the angle of a least-squares line x(y) through the GT
lane's valid points. A GT lane's accuracy is its best over the predicted lanes, and it is matched when
that is >= 0.85. Per image: acc = sum of GT accuracies / max(min(#GT, 4), 1) (with more than 4 GT
lanes the worst is dropped), FP = (#pred - matched) / #pred (0 with no prediction), FN = unmatched
(less one with more than 4 GT lanes) / max(min(#GT, 4), 1); more than #GT + 2 predictions score
(0, 0, 1). ``acc``, ``fp`` and ``fn`` are the means over images. Evaluation images come from a fixed
generator (the same images for every seed). Bounds: ``acc`` floor 0 and ``fn`` floor 1 (a model that
finds no lane), ceilings 1 and 0; ``fp`` ceiling 0 and no floor (a model that learned nothing may
predict no lane, FP 0, or many, FP near 1); no chance levels.

Model outputs (io ``lanes``, harness/models/base.py): decoded lanes [B, Q, 4 + R] (two class logits
no-lane / lane, lower and upper row bound normalised by H, then x / W at every row); a query predicts a
lane when its lane logit beats its no-lane logit, and its point at a row is valid when the row lies in
[lower, upper] and 0 <= x < W. Training outputs of this layout take the LSTR set loss; per-pixel
segmentation logits at the label rows [B, R, W, K + 1] (background and K lane slots) take a
cross-entropy (harness/tasks/lane_set.py).

Shapes: B batch, L lane slots (``max_lanes``), R label rows, H x W image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.core.config import bounded, positive
from harness.core.registry import register_task
from harness.models.base import model_io
from harness.tasks.base import Batch, MetricBound, TaskBase
from harness.tasks.lane_set import LossWeights, decode_points, lane_loss

FOCAL = 0.6  # focal length / image width
LANE_GAP = 3.5  # metres between lane lines
PITCH = (0.12, 0.2)  # radians
HEIGHT = (1.3, 1.7)  # metres
CURVE_K, CURVE_M, CURVE_N = 4e-5, 2.5e-3, 0.05  # |k|, |m|, |n| bounds
NEAR, FAR = (1.0, 6.0), (12.0, 45.0)  # metres: where a lane's visible stretch starts and ends
EVAL_SEED = 20_210_105  # the fixed evaluation generator


@dataclass
class LanesConfig:
    image_size: int = bounded(64, lo=16)  # image width W
    image_height: int = bounded(32, lo=16)
    max_lanes: int = bounded(4, lo=2, hi=6)
    row_start: int = bounded(12, lo=0)
    row_step: int = positive(1)
    p_occlude: float = bounded(0.5, lo=0.0, hi=1.0)
    noise: float = bounded(0.03, lo=0.0, hi=1.0)
    threshold: float = bounded(20.0, lo=0.0)  # TuSimple's pixel threshold at width 1280
    class_weight: float = bounded(3.0, lo=0.0)  # LSTR set loss weights (official config)
    point_weight: float = bounded(5.0, lo=0.0)
    bound_weight: float = bounded(2.0, lo=0.0)
    no_lane_weight: float = bounded(1.0, lo=0.0, hi=1.0)  # CE weight of the no-lane class

    def check(self) -> list[tuple[str, str]]:
        if self.row_start >= self.image_height:
            return [("row_start", f"must be below image_height ({self.image_height}), got {self.row_start}")]
        horizon = self.image_height / 2 - FOCAL * self.image_size * math.tan(PITCH[1])
        if self.row_start < horizon:
            return [("row_start", f"must be >= {math.ceil(horizon)}, below the highest horizon")]
        return []


@dataclass
class Road:
    """The parameters of a batch of scenes (per image, per lane slot)."""

    pitch: torch.Tensor  # (B,)
    height: torch.Tensor  # (B,)
    curve: torch.Tensor  # (B, 3): k, m, n
    offset: torch.Tensor  # (B, L): b, metres
    present: torch.Tensor  # (B, L) bool
    near: torch.Tensor  # (B, L) metres
    far: torch.Tensor  # (B, L) metres
    dashed: torch.Tensor  # (B, L) bool
    phase: torch.Tensor  # (B, L) in [0, 1)
    brightness: torch.Tensor  # (B, L)
    car: torch.Tensor  # (B, 5): present, left, top, width, height (pixels)
    road: torch.Tensor  # (B,) road grey level


def camera_consts(pitch: torch.Tensor, height: torch.Tensor, w: int, h_img: int) -> dict[str, torch.Tensor]:
    """f, cx, cy, v_h, A, B of the derivation above (broadcast with pitch and height)."""
    f = FOCAL * w
    t = torch.tan(pitch)
    return {"f": torch.as_tensor(f), "cx": torch.as_tensor(w / 2), "cy": torch.as_tensor(h_img / 2),
            "vh": h_img / 2 - f * t, "A": height * f * (1 + t * t), "B": height * t, "cos": torch.cos(pitch)}


def project(x: torch.Tensor, z: torch.Tensor, pitch: torch.Tensor, height: torch.Tensor, w: int,
            h_img: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel (u, v) of road point (X, Z): the pinhole formulas of the module docstring."""
    f = FOCAL * w
    zc = z * torch.cos(pitch) + height * torch.sin(pitch)
    u = w / 2 + f * x / zc
    v = h_img / 2 + f * (height * torch.cos(pitch) - z * torch.sin(pitch)) / zc
    return u, v


def image_params(road: Road, w: int, h_img: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The image-space form in normalised coordinates: shared (B, 4) = k'', f'', m'', n' and per lane
    (B, L, 2) = b'', b'''; x = k''/(y - f'')^2 + m''/(y - f'') + n' + b'' y - b'''."""
    c = camera_consts(road.pitch, road.height, w, h_img)
    a, bb, cc = c["A"], c["B"], c["f"] / (c["A"] * c["cos"])
    k, m, n = road.curve.unbind(-1)
    kk = cc * k * a**3 / (w * h_img**2)
    mm = cc * (m * a * a - 3 * k * a * a * bb) / (w * h_img)
    nn_ = (c["cx"] + cc * (3 * k * a * bb**2 - 2 * m * a * bb + n * a)) / w
    lin = cc[:, None] * (road.offset - (n * bb - m * bb**2 + k * bb**3)[:, None])  # pixels per row
    b2 = lin * h_img / w
    b3 = lin * c["vh"][:, None] / w
    return torch.stack([kk, c["vh"] / h_img, mm, nn_], -1), torch.stack([b2, b3], -1)


def curve_x(shared: torch.Tensor, lane: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x / W at normalised rows y (R,) of lanes (..., L) with shared (..., 4) and per-lane (..., L, 2)."""
    k, f, m, n = (shared[..., i, None, None] for i in range(4))
    d = y - f
    return k / d**2 + m / d + n + lane[..., 0, None] * y - lane[..., 1, None]


def row_depth(v: torch.Tensor, road: Road, w: int, h_img: int) -> torch.Tensor:
    """Road distance Z seen at (fractional) row v: A / (v - v_h) - B, per image (B, ...)."""
    c = camera_consts(road.pitch, road.height, w, h_img)
    shape = (-1,) + (1,) * (v.dim() - 1) if v.dim() > 1 else (-1, 1)
    d = (v - c["vh"].view(shape)).clamp(min=1e-3)
    return c["A"].view(shape) / d - c["B"].view(shape)


def tusimple_image(pred: np.ndarray, gt: np.ndarray, rows: np.ndarray, thr_px: float) -> tuple[float, float,
                                                                                            float]:
    """TuSimple's per-image (acc, fp, fn): pred (P, R), gt (G, R) x in pixels, negative = absent."""
    if len(pred) > len(gt) + 2:
        return 0.0, 0.0, 1.0
    pred = np.where(pred >= 0, pred, -100.0)
    accs, matched, fn = [], 0, 0
    for g in gt:
        ok = g >= 0
        theta = 0.0
        if ok.sum() > 1:
            slope = np.polyfit(rows[ok], g[ok], 1)[0]
            theta = math.atan(slope)
        thr = thr_px / math.cos(theta)
        gg = np.where(ok, g, -100.0)
        best = max((float(np.mean(np.abs(p - gg) < thr)) for p in pred), default=0.0)
        accs.append(best)
        matched, fn = (matched + 1, fn) if best >= 0.85 else (matched, fn + 1)
    denom = max(min(len(gt), 4), 1)
    s = sum(accs)
    if len(gt) > 4:
        s -= min(accs)
        fn = fn - 1 if fn > 0 else fn
    return s / denom, (len(pred) - matched) / len(pred) if len(pred) else 0.0, fn / denom


@register_task("lanes", config=LanesConfig)
class Lanes(TaskBase):
    """Generated road images, 2..4 lanes from LSTR's curve family; TuSimple accuracy, FP and FN."""

    ios = ("lanes",)
    profile_ios = ("lanes",)
    profile_size = 64  # the image width; the height keeps the task's aspect
    metric = "acc"
    higher_is_better = True
    in_channels = 1

    def __init__(self, cfg: LanesConfig) -> None:
        self.cfg = cfg
        self.w, self.h = cfg.image_size, cfg.image_height
        self.rows = torch.arange(cfg.row_start, cfg.image_height, cfg.row_step)
        self.weights = LossWeights(cfg.class_weight, cfg.point_weight, cfg.bound_weight, cfg.no_lane_weight)

    # -- suite loader hooks ----------------------------------------------------------------------
    def model_keys(self) -> dict[str, Any]:
        return {"in_channels": 1, "image_size": self.w, "image_height": self.h,
                "row_start": self.cfg.row_start, "row_step": self.cfg.row_step}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if model_io(model_cls, cfg) not in self.ios:
            return "it is not a lane model (io 'lanes')"
        for key, want in self.model_keys().items():
            if getattr(cfg, key, want) != want:
                return f"its {key} {getattr(cfg, key)} differs from the task's {want}"
        slots = getattr(cfg, "n_queries", None) or getattr(cfg, "n_lanes", None)
        if slots is not None and slots < self.cfg.max_lanes:
            return f"it predicts at most {slots} lanes, fewer than the task's max_lanes {self.cfg.max_lanes}"
        return None

    # -- generation ---------------------------------------------------------------------------------
    def sample_road(self, batch: int, gen: torch.Generator) -> Road:
        b, lmax = batch, self.cfg.max_lanes

        def uni(lo: float, hi: float, *shape: int) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(shape or (b,), generator=gen)

        n_lanes = torch.randint(2, lmax + 1, (b,), generator=gen)
        first = torch.randint(0, 1_000, (b,), generator=gen) % (n_lanes - 1).clamp(min=1)  # ego lane slot
        slot = torch.arange(lmax)[None]
        idx = slot - first[:, None]  # line index relative to the ego lane's left line
        offset = LANE_GAP * (idx.float() - 0.5) + uni(-0.2, 0.2, b, lmax)
        curve = torch.stack([uni(-CURVE_K, CURVE_K), uni(-CURVE_M, CURVE_M), uni(-CURVE_N, CURVE_N)], -1)
        near = torch.where(torch.rand(b, lmax, generator=gen) < 0.7, NEAR[0], uni(*NEAR, b, lmax))
        car = torch.stack([(torch.rand(b, generator=gen) < self.cfg.p_occlude).float(),
                           uni(0.15, 0.7) * self.w, uni(0.55, 0.75) * self.h,
                           uni(0.12, 0.25) * self.w, uni(0.15, 0.25) * self.h], -1)
        return Road(uni(*PITCH), uni(*HEIGHT), curve, offset, slot < n_lanes[:, None], near,
                    uni(*FAR, b, lmax), torch.rand(b, lmax, generator=gen) < 0.5, uni(0, 1, b, lmax),
                    uni(0.7, 1.0, b, lmax), car, uni(0.3, 0.45))

    def labels(self, road: Road) -> torch.Tensor:
        """(B, L, R) x in pixels at the label rows' centres, -2 where absent."""
        shared, lane = image_params(road, self.w, self.h)
        y = (self.rows.float() + 0.5) / self.h
        x = curve_x(shared, lane, y) * self.w  # (B, L, R)
        z = row_depth(self.rows.float()[None] + 0.5, road, self.w, self.h)[:, None]  # (B, 1, R)
        ok = road.present[..., None] & (z >= road.near[..., None]) & (z <= road.far[..., None])
        ok &= (x >= 0) & (x < self.w)
        return torch.where(ok, x, torch.full_like(x, -2.0))

    def lane_masks(self, road: Road) -> torch.Tensor:
        """(B, L, H, W) bool: painted marking pixels of each lane (dashes applied, before occlusion)."""
        shared, lane = image_params(road, self.w, self.h)
        v = torch.arange(self.h).float() + 0.5
        x = curve_x(shared, lane, v / self.h) * self.w  # (B, L, H)
        z = row_depth(v[None].expand(len(road.pitch), -1), road, self.w, self.h)[:, None]  # (B, 1, H)
        vh = camera_consts(road.pitch, road.height, self.w, self.h)["vh"]
        half = 0.5 + 0.05 * (v[None] - vh[:, None]).clamp(min=0)  # (B, H)
        col = torch.arange(self.w).float() + 0.5
        near = (col[None, None, None] - x[..., None]).abs() <= half[:, None, :, None]
        span = (z >= road.near[..., None]) & (z <= road.far[..., None]) & (v[None, None] > vh[:, None, None])
        gap = torch.frac(z / 6.0 + road.phase[..., None]) >= 0.5
        painted = span & road.present[..., None] & ~(road.dashed[..., None] & gap)
        return near & painted[..., None]

    def render(self, road: Road, gen: torch.Generator) -> torch.Tensor:
        """(B, 1, H, W) grey images."""
        b = len(road.pitch)
        vh = camera_consts(road.pitch, road.height, self.w, self.h)["vh"]
        v = torch.arange(self.h).float() + 0.5
        sky = v[None, :, None] < vh[:, None, None]  # (B, H, 1)
        img = torch.where(sky, torch.full((b, self.h, 1), 0.75), road.road[:, None, None])
        img = img.expand(b, self.h, self.w)
        masks = self.lane_masks(road)  # (B, L, H, W)
        paint = (masks.float() * road.brightness[..., None, None]).amax(1)
        img = torch.where(masks.any(1), paint, img)
        col = torch.arange(self.w).float() + 0.5
        on, left, top, cw, ch = road.car.unbind(-1)
        inside_x = (col[None] >= left[:, None]) & (col[None] < (left + cw)[:, None])  # (B, W)
        inside_y = (v[None] >= top[:, None]) & (v[None] < (top + ch)[:, None])  # (B, H)
        body = (on[:, None, None] > 0) & inside_y[..., None] & inside_x[:, None]
        roof = body & (v[None, :, None] < (top + 0.4 * ch)[:, None, None])
        img = torch.where(body, torch.where(roof, 0.2, 0.08), img)
        img = img + self.cfg.noise * torch.randn(img.shape, generator=gen)
        return img.clamp(0, 1)[:, None]

    def make(self, batch: int, gen: torch.Generator) -> tuple[Road, Batch]:
        road = self.sample_road(batch, gen)
        images = self.render(road, gen)  # H x W pixels; a row records the width
        return road, Batch({"images": images}, self.labels(road), n_tokens=self.h * self.w, seq_len=self.w)

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.make(batch_size, gen)[1]

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """Fixed evaluation images: one generator for every seed, apart from any training stream."""
        gen = torch.Generator().manual_seed(EVAL_SEED)
        return {"": [self.make(batch_size, gen)[1] for _ in range(n_batches)]}

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random images ``seq_len`` wide at the task's aspect ratio, with a training batch's labels (cost
        only)."""
        height = max(1, round(seq_len * self.h / self.w))
        images = torch.rand(batch_size, 1, height, seq_len, generator=gen)
        labels = self.make(batch_size, gen)[1].labels
        return Batch({"images": images}, labels, n_tokens=height * seq_len, seq_len=seq_len)

    # -- loss and scoring ---------------------------------------------------------------------------
    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        loss = lane_loss(out.logits, batch.labels, self.rows, self.h, self.w, self.weights)
        return loss if out.aux_loss is None else loss + out.aux_loss

    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float, int]:
        """(sum of image accuracies, of FP rates, of FN rates, images) over the batch."""
        xs, keep = decode_points(logits.detach().float(), self.rows, self.h, self.w)
        keep &= (xs >= 0).any(-1)  # a lane without a valid point is no lane
        rows = self.rows.numpy().astype(np.float64)
        thr = self.cfg.threshold * self.w / 1280
        tot = [0.0, 0.0, 0.0]
        for i in range(labels.shape[0]):
            gt = labels[i].numpy().astype(np.float64)
            gt = gt[(gt >= 0).any(1)]
            pred = xs[i][keep[i]].numpy().astype(np.float64)
            for j, v in enumerate(tusimple_image(pred, gt, rows, thr)):
                tot[j] += v
        return tot[0], tot[1], tot[2], int(labels.shape[0])

    def metrics(self, counts: tuple, suffix: str) -> dict[str, float]:
        acc, fp, fn, n = counts
        n = max(n, 1)
        return {f"acc{suffix}": acc / n, f"fp{suffix}": fp / n, f"fn{suffix}": fn / n}

    def metric_bounds(self) -> dict[str, MetricBound]:
        return {"acc": MetricBound(0.0, None, 1.0),
                "fp": MetricBound(None, None, 0.0, higher_is_better=False),
                "fn": MetricBound(1.0, None, 0.0, higher_is_better=False)}
