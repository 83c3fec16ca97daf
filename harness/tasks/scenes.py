"""Generated detection scenes: shapes of four classes over a textured background; COCO box AP.

Each image (RGB, float, side ``image_size``) draws ``min_objects``..``max_objects`` shapes of the four
types of harness/tasks/shapes.py (disc, square, triangle, cross; their pixel formulas), in order, later
shapes occluding earlier ones. A shape's radius r is log-uniform in [``min_radius``, ``max_radius``]
times the image side (default S/16..S/4, so boxes span about 4 to 16 pixels at S = 32), its centre
uniform over the positions that keep it inside the image, its colour one of six saturated colours
scaled by a brightness in [0.75, 1] (so every shape has a channel >= 0.75). The background is a
texture: a smooth grey field (uniform noise on an S/4 grid, bilinearly upsampled) plus per-pixel noise
and a slight per-channel tint, all within [0, ``BACKGROUND_MAX``] = [0, 0.45], below every shape's
brightest channel.

Labels. An object's box is the tight bounding box of its *visible* pixels (those it covers that no later
shape covers), pixel (i, j) covering [j, j + 1) x [i, i + 1); an object left with no visible pixel is
not labelled (class -1), so every labelled box is exactly what the image shows. Labels are ``[B, M, 6]``
rows ``(image id, class 0..3, cx, cy, w, h)``, the box normalised by S, M = ``max_objects``, unused rows
class -1 (the layout harness/tasks/set_loss.py reads). Models use the ``detect`` io.

Metric: COCO AP by pycocotools (harness/tasks/coco_ap.py): ``ap`` (IoU .50:.95, the headline), ``ap50``,
``ap75``, ``ap_s``, ``ap_m``, ``ap_l``. COCO's size thresholds (areas 32^2 and 96^2 pixels) are made
for images of about 640 pixels; scaled to a 32-pixel image they would call a 2-pixel box "medium", so
here they are set relative to the side: small below (S/6)^2 and large from (S/3)^2 of box area (at
S = 32: boxes under about 5.3 x 5.3 pixels are small, over 10.7 x 10.7 large), which splits the objects
about 3 : 5 : 2 (measured on 256 scenes: 30% small, 19% large). Bounds: every AP has floor 0 (no
correct detection), ceiling 1 and no chance level. The evaluation set is ``eval_images``
scenes drawn from ``eval_seed``, the same for every job; detections come from the last decoder layer:
softmax models give one detection per query (the best real class and its probability), sigmoid (focal)
models the top 100 (query, class) scores.

Shapes: B batch, N shape slots, S image side, D decoder layers, Q queries, C class scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.core.config import bounded, positive
from harness.core.registry import register_task
from harness.models.base import model_io
from harness.tasks.base import Batch, MetricBound, TaskBase
from harness.tasks.coco_ap import AP_KEYS, coco_ap
from harness.tasks.set_loss import set_loss
from harness.tasks.shapes import PALETTE, SHAPE_TYPES, Scene, shape_masks

BACKGROUND_MAX = 0.45
SMALL_SIDE, LARGE_SIDE = 1 / 6, 1 / 3  # AP size ranges: box area below (S/6)^2 small, from (S/3)^2 large
MAX_DETECTIONS = 100


@dataclass
class ScenesConfig:
    image_size: int = bounded(32, lo=16, hi=256)
    min_objects: int = positive(1)
    max_objects: int = bounded(6, lo=1, hi=50)
    min_radius: float = bounded(1 / 16, lo=0.02, hi=0.5)  # fractions of the image side
    max_radius: float = bounded(1 / 4, lo=0.02, hi=0.5)
    eval_images: int = positive(256)
    eval_seed: int = bounded(4321, lo=0)

    def check(self) -> list[tuple[str, str]]:
        if self.max_objects < self.min_objects:
            return [("max_objects", f"must be >= min_objects ({self.min_objects}), got {self.max_objects}")]
        if self.max_radius < self.min_radius:
            return [("max_radius", f"must be >= min_radius ({self.min_radius}), got {self.max_radius}")]
        return []


def visible_masks(masks: torch.Tensor) -> torch.Tensor:
    """(B, N, S, S) bool: the pixels of each shape that no later shape covers."""
    later = masks.flip(1).long().cumsum(1).flip(1) - masks.long()  # later shapes covering each pixel
    return masks & (later == 0)


def tight_boxes(visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (B, N, 4) as (x0, y0, x1, y1) pixel edges of each mask's visible pixels, and (B, N) bool:
    which masks have any."""
    s = visible.shape[-1]
    cols, rows = visible.any(2), visible.any(3)  # (B, N, S) over x and over y
    x0, y0 = cols.float().argmax(-1), rows.float().argmax(-1)
    x1 = s - cols.flip(-1).float().argmax(-1)
    y1 = s - rows.flip(-1).float().argmax(-1)
    return torch.stack([x0, y0, x1, y1], -1).float(), cols.any(-1)


def background(batch: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) texture in [0, BACKGROUND_MAX] (see the module doc)."""
    coarse = torch.rand(batch, 1, max(2, size // 4), max(2, size // 4), generator=gen)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    fine = torch.rand(batch, 1, size, size, generator=gen)
    tint = 0.8 + 0.2 * torch.rand(batch, 3, 1, 1, generator=gen)
    return (BACKGROUND_MAX * (0.7 * smooth + 0.3 * fine) * tint).clamp(0, BACKGROUND_MAX)


@register_task("scenes", config=ScenesConfig)
class Scenes(TaskBase):
    """Shapes over texture with boxes and classes: set-prediction detection, scored by COCO AP."""

    metric = "ap"
    higher_is_better = True
    ios = ("detect",)
    profile_ios = ("detect",)
    profile_size = 64
    n_classes = len(SHAPE_TYPES)

    def __init__(self, cfg: ScenesConfig) -> None:
        self.cfg = cfg
        self.image_size = cfg.image_size

    def model_keys(self) -> dict[str, Any]:
        return {"n_classes": self.n_classes, "in_channels": 3, "image_size": self.image_size}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        if model_io(model_cls, cfg) not in self.ios:
            return "it is not a detection model (io 'detect')"
        size = getattr(cfg, "image_size", None)
        if size is not None and size != self.image_size:
            return f"image_size {size} differs from the task's {self.image_size}"
        queries = getattr(cfg, "num_queries", None)
        if queries is not None and queries < self.cfg.max_objects:
            return f"num_queries {queries} is fewer than the task's max_objects ({self.cfg.max_objects})"
        return None

    # -- generation ---------------------------------------------------------------------------------
    def sample_scene(self, batch: int, gen: torch.Generator) -> Scene:
        c, s, n = self.cfg, self.image_size, self.cfg.max_objects
        count = torch.randint(c.min_objects, n + 1, (batch,), generator=gen)
        present = torch.arange(n)[None, :] < count[:, None]
        types = torch.randint(0, len(SHAPE_TYPES), (batch, n), generator=gen)
        lo, hi = math.log(c.min_radius * s), math.log(c.max_radius * s)
        radii = torch.exp(lo + (hi - lo) * torch.rand(batch, n, generator=gen))
        centres = radii[..., None] + torch.rand(batch, n, 2, generator=gen) * (s - 2 * radii[..., None])
        bright = 0.75 + 0.25 * torch.rand(batch, n, 1, generator=gen)
        colours = PALETTE[torch.randint(0, len(PALETTE), (batch, n), generator=gen)] * bright
        return Scene(types, colours, centres, radii, present, torch.zeros(batch))

    def make(self, batch: int, gen: torch.Generator, first_id: int = 0) -> Batch:
        s = self.image_size
        scene = self.sample_scene(batch, gen)
        images = background(batch, s, gen)
        masks = shape_masks(scene, s)  # (B, N, S, S)
        for k in range(masks.shape[1]):  # paint in drawing order: later shapes occlude
            m = masks[:, k, None]
            images = torch.where(m, scene.colours[:, k, :, None, None], images)
        boxes, seen = tight_boxes(visible_masks(masks))
        x0, y0, x1, y1 = (boxes / s).unbind(-1)
        cls = torch.where(seen, scene.types, -1).float()
        ids = (first_id + torch.arange(batch, dtype=torch.float32))[:, None].expand_as(cls)
        labels = torch.stack([ids, cls, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)
        return Batch({"images": images.contiguous()}, labels, n_tokens=s * s, seq_len=s)

    # -- harness API --------------------------------------------------------------------------------
    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.make(batch_size, gen)

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """``eval_images`` fixed scenes from ``eval_seed`` (not the job's seed), in batches of
        ``batch_size``; ``n_batches`` is not used."""
        gen = torch.Generator().manual_seed(self.cfg.eval_seed)
        n = self.cfg.eval_images
        return {"": [self.make(min(batch_size, n - i), gen, first_id=i) for i in range(0, n, batch_size)]}

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """Random images of side ``seq_len`` with one centred object each (cost only)."""
        images = torch.rand(batch_size, 3, seq_len, seq_len, generator=gen)
        labels = torch.full((batch_size, self.cfg.max_objects, 6), -1.0)
        labels[:, 0] = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
        return Batch({"images": images}, labels, n_tokens=seq_len * seq_len, seq_len=seq_len)

    def loss(self, out: Any, batch: Batch) -> torch.Tensor:
        loss = set_loss(out.logits, batch.labels, self.n_classes)
        return loss if out.aux_loss is None else loss + out.aux_loss

    # -- scoring ------------------------------------------------------------------------------------
    def detections(self, pred: torch.Tensor, image_ids: torch.Tensor) -> list[tuple]:
        """COCO detections ``(image id, class, score, x, y, w, h)`` (pixels) from one layer's
        predictions [B, Q, C + 4]."""
        k, s = self.n_classes, self.image_size
        cls_logits, boxes = pred[..., :-4].float(), pred[..., -4:].float()
        if cls_logits.shape[-1] == k + 1:  # softmax with "no object" last: one detection per query
            scores, classes = cls_logits.softmax(-1)[..., :k].max(-1)
            query = torch.arange(pred.shape[1]).expand_as(classes)
        else:  # sigmoid scores: the best (query, class) pairs
            flat = cls_logits.sigmoid().flatten(1)
            scores, idx = flat.topk(min(MAX_DETECTIONS, flat.shape[1]), dim=1)
            query, classes = idx // k, idx % k
        box = boxes.gather(1, query[..., None].expand(-1, -1, 4)) * s
        xywh = torch.stack([box[..., 0] - box[..., 2] / 2, box[..., 1] - box[..., 3] / 2,
                            box[..., 2], box[..., 3]], -1)
        out = []
        for i in range(pred.shape[0]):
            for c, p, b in zip(classes[i].tolist(), scores[i].tolist(), xywh[i].tolist()):
                out.append((int(image_ids[i]), c, p, *b))
        return out

    def ground_truths(self, labels: torch.Tensor) -> list[tuple]:
        """``(image id, class, x, y, w, h)`` in pixels of every labelled object."""
        s, out = self.image_size, []
        for row in labels.reshape(-1, 6).tolist():
            if row[1] >= 0:
                cx, cy, w, h = (v * s for v in row[2:])
                out.append((int(row[0]), int(row[1]), cx - w / 2, cy - h / 2, w, h))
        return out

    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
        """(ground truths, detections) of the batch: lists, which add up over batches by concatenation."""
        return self.ground_truths(labels), self.detections(logits[:, -1], labels[:, 0, 0])

    def metrics(self, counts: tuple, suffix: str) -> dict[str, float]:
        gts, dets = counts
        s = self.image_size
        ap = coco_ap(gts, dets, self.n_classes, (SMALL_SIDE * s) ** 2, (LARGE_SIDE * s) ** 2)
        return {f"{k}{suffix}": ap[k] for k in AP_KEYS}

    def metric_bounds(self) -> dict[str, MetricBound]:
        return {k: MetricBound(0.0, None, 1.0) for k in AP_KEYS}
