"""Set prediction for detection: box geometry, Hungarian matching and the DETR / Deformable DETR losses.

Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020 (arXiv 2005.12872), Sec. 3.1
and App. A.1; Zhu et al., "Deformable DETR", ICLR 2021 (arXiv 2010.04159), Sec. 4.1 and App. A.

Layout (the ``detect`` io, harness/models/base.py): a model returns logits ``[B, D, Q, C + 4]``, one
slice per decoder layer (the last is the prediction; the others feed the auxiliary losses), ``Q``
queries, ``C`` class scores and a normalised box ``(cx, cy, w, h)`` in [0, 1]. ``C = K + 1`` means
softmax classes with the last one "no object" (DETR); ``C = K`` means independent sigmoid scores
(Deformable DETR's focal loss). Labels are ``[B, M, 6]``: image id, class (0..K-1; -1 pads a missing
object), then the normalised ``(cx, cy, w, h)``.

Losses, for each decoder layer separately (each re-matched), averaged over nothing but summed:

- matching cost ``w_cls * cost_cls + w_l1 * L1 + w_giou * (-GIoU)``. Softmax: ``cost_cls = -p(class)``,
  weights 1 / 5 / 2 (DETR). Focal: ``cost_cls = alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma
  (-log(1-p))`` at the target class, weights 2 / 5 / 2 (Deformable DETR).
- classification: softmax cross-entropy over all queries with the no-object class weighted 0.1
  (a weighted mean, as the official code); or sigmoid focal loss (alpha 0.25, gamma 2) summed over
  queries and classes and divided by the number of objects, times 2.
- boxes: L1 (x5) and 1 - GIoU (x2) over matched pairs, divided by the number of objects.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

NO_OBJECT_WEIGHT = 0.1  # DETR's eos_coef
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
SOFTMAX_WEIGHTS = (1.0, 5.0, 2.0)  # (class, L1, GIoU): loss and matcher weights of DETR
FOCAL_WEIGHTS = (2.0, 5.0, 2.0)  # Deformable DETR


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    """Area of (x0, y0, x1, y1) boxes."""
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU (Rezatofighi et al. 2019) of every (x0, y0, x1, y1) box of ``a`` [N, 4]
    with every box of ``b`` [M, 4]: two [N, M] tensors. GIoU = IoU - |C \\ (A u B)| / |C|, C the
    smallest box enclosing both; it lies in (-1, 1] and is negative for far-apart boxes."""
    area_a, area_b = box_area(a), box_area(b)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / union.clamp(min=1e-9)
    lt_c = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb_c = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    hull = (rb_c - lt_c).clamp(min=0).prod(-1)
    return iou, iou - (hull - union) / hull.clamp(min=1e-9)


def hungarian(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a [Q, M] cost matrix (Q >= M): (query indices, target indices)."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return rows, cols


def focal_terms(prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal cost of calling a class present (pos) and absent (neg) at probability ``prob``."""
    pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * -(prob + 1e-8).log()
    neg = (1 - FOCAL_ALPHA) * prob**FOCAL_GAMMA * -(1 - prob + 1e-8).log()
    return pos, neg


def match_cost(cls_logits: torch.Tensor, boxes: torch.Tensor, tgt_cls: torch.Tensor, tgt_boxes: torch.Tensor,
               focal: bool) -> torch.Tensor:
    """[Q, M] matching cost of one image's Q predictions against its M objects."""
    w_cls, w_l1, w_giou = FOCAL_WEIGHTS if focal else SOFTMAX_WEIGHTS
    if focal:
        pos, neg = focal_terms(cls_logits.sigmoid()[:, tgt_cls])
        c_cls = pos - neg
    else:
        c_cls = -cls_logits.softmax(-1)[:, tgt_cls]
    c_l1 = torch.cdist(boxes, tgt_boxes, p=1)
    c_giou = -pairwise_giou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tgt_boxes))[1]
    return w_cls * c_cls + w_l1 * c_l1 + w_giou * c_giou


def sigmoid_focal(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Summed sigmoid focal loss (Lin et al. 2017), alpha 0.25, gamma 2."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    p_t = p * onehot + (1 - p) * (1 - onehot)
    alpha_t = FOCAL_ALPHA * onehot + (1 - FOCAL_ALPHA) * (1 - onehot)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).sum()


def layer_loss(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The set loss of one decoder layer's predictions ``pred`` [B, Q, C + 4] (see the module doc)."""
    focal = pred.shape[-1] - 4 == n_classes
    cls_logits, boxes = pred[..., :-4], pred[..., -4:]
    b, q = pred.shape[:2]
    target = torch.full((b, q), n_classes, dtype=torch.long)  # "no object" everywhere, then matches
    src, dst = [], []
    with torch.no_grad():
        for i in range(b):
            keep = labels[i, :, 1] >= 0
            t_cls, t_box = labels[i, keep, 1].long(), labels[i, keep, 2:]
            rows, cols = hungarian(match_cost(cls_logits[i], boxes[i], t_cls, t_box, focal))
            target[i, rows] = t_cls[cols]
            src.append(boxes.new_tensor(i * q + rows, dtype=torch.long))
            dst.append(t_box[cols])
    n_obj = max(float((labels[..., 1] >= 0).sum()), 1.0)
    w_cls, w_l1, w_giou = FOCAL_WEIGHTS if focal else SOFTMAX_WEIGHTS
    if focal:
        onehot = F.one_hot(target, n_classes + 1)[..., :n_classes].to(cls_logits.dtype)
        l_cls = sigmoid_focal(cls_logits, onehot) / n_obj
    else:
        weight = torch.ones(n_classes + 1, dtype=cls_logits.dtype)
        weight[-1] = NO_OBJECT_WEIGHT
        l_cls = F.cross_entropy(cls_logits.flatten(0, 1), target.flatten(), weight=weight)
    matched = boxes.flatten(0, 1)[torch.cat(src)]
    tgt = torch.cat(dst).to(matched.dtype)
    l_l1 = F.l1_loss(matched, tgt, reduction="sum") / n_obj
    giou = pairwise_giou(cxcywh_to_xyxy(matched), cxcywh_to_xyxy(tgt))[1].diagonal()
    l_giou = (1 - giou).sum() / n_obj
    return w_cls * l_cls + w_l1 * l_l1 + w_giou * l_giou


def set_loss(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Sum of :func:`layer_loss` over the decoder layers of ``logits`` [B, D, Q, C + 4] (the last is
    the main loss, the others DETR's auxiliary decoding losses)."""
    return sum(layer_loss(logits[:, d], labels, n_classes) for d in range(logits.shape[1]))  # type: ignore[return-value]
