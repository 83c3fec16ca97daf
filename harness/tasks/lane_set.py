"""Lane losses: LSTR's Hungarian set loss, and row classification for the two-step baseline.

Set layout (LSTR): per image Q predicted lanes, each [no-lane logit, lane logit, lower, upper, x_1..x_R]
with lower/upper the lane's row range and x_r its x at label row r, all normalised (rows by H, x by W).
Ground truth: labels (B, L, R) in pixels, negative where absent (harness/tasks/lanes.py).

Matching (Liu et al. 2021, Sec. 3.3; official ``detr_loss.py``): per image, the cost of predicted lane
i for GT lane j is

    class_w * (-p_lane(i)) + point_w * w_j * sum_{r valid in j} |x_i,r - x_j,r|
    + bound_w * (|lower_i - lower_j| + |upper_i - upper_j|)

with w_j = sqrt(valid points of the batch's GT lanes / valid points of lane j), divided by the largest
w_j of the batch (short lanes weigh more); the assignment minimising the total cost is found with
``scipy.optimize.linear_sum_assignment`` (:func:`hungarian`). The loss is class_w x a two-class
cross-entropy over all queries (matched: lane, others: no lane; the no-lane class weighted by
``no_lane_weight``, 1 in the official code) plus, over matched pairs and divided by the number of GT
lanes, point_w x the weighted L1 over valid points and bound_w x the L1 of lower and upper. GT lower /
upper are the first and last valid rows. Simplified: no auxiliary decoder-layer losses (the model
returns the last layer's lanes only).

Segmentation (the two-step baseline's training output, per-pixel logits at the label rows
(B, R, W, K + 1)): a pixel within 1 px of slot k's x belongs to class k + 1, others to the background
(class 0), whose cross-entropy weight is ``SEG_BACKGROUND`` (lane pixels are rare).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

SEG_BACKGROUND = 0.4  # cross-entropy weight of the background class in the baseline's segmentation


@dataclass
class LossWeights:
    cls: float = 3.0
    point: float = 5.0
    bound: float = 2.0
    no_lane: float = 1.0


def hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the minimum-cost assignment of a (Q, G) cost matrix (min(Q, G) pairs)."""
    rows, cols = linear_sum_assignment(cost)
    return np.asarray(rows), np.asarray(cols)


def gt_bounds(labels: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Valid mask (B, L, R), first and last valid normalised row (B, L) (0 for empty slots)."""
    valid = labels >= 0
    big = torch.where(valid, y, torch.full_like(labels, 2.0))
    small = torch.where(valid, y, torch.full_like(labels, -1.0))
    lower = big.amin(-1).where(valid.any(-1), torch.zeros(()))
    upper = small.amax(-1).where(valid.any(-1), torch.zeros(()))
    return valid, lower, upper


def match(pred: torch.Tensor, labels: torch.Tensor, y: torch.Tensor, w: int,
          wt: LossWeights) -> tuple[list[tuple[np.ndarray, np.ndarray]], torch.Tensor]:
    """Per image, matched (query indices, GT slot indices), and the GT lanes' point weights (B, L)."""
    valid, lower, upper = gt_bounds(labels, y)
    n_valid = valid.sum(-1).float()  # (B, L)
    present = n_valid > 0
    weights = torch.zeros_like(n_valid)
    if present.any():
        weights[present] = (n_valid[present].sum() / n_valid[present]).sqrt()
        weights = weights / weights.max()
    with torch.no_grad():
        prob = pred[..., :2].softmax(-1)[..., 1]  # (B, Q)
        tx = labels / w
        dist = ((pred[:, :, None, 4:] - tx[:, None]).abs() * valid[:, None]).sum(-1)  # (B, Q, L)
        bound = (pred[:, :, None, 2] - lower[:, None]).abs() + (pred[:, :, None, 3] - upper[:, None]).abs()
        cost = -wt.cls * prob[..., None] + wt.point * weights[:, None] * dist + wt.bound * bound
    out = []
    for i in range(pred.shape[0]):
        cols = torch.nonzero(present[i]).flatten().numpy()
        r, c = hungarian(cost[i][:, cols].numpy())
        out.append((r, cols[c]))
    return out, weights


def set_loss(pred: torch.Tensor, labels: torch.Tensor, y: torch.Tensor, w: int,
             wt: LossWeights) -> torch.Tensor:
    """LSTR's loss of set-layout predictions (B, Q, 4 + R) against labels (B, L, R)."""
    pairs, weights = match(pred, labels, y, w, wt)
    valid, lower, upper = gt_bounds(labels, y)
    b_idx = torch.cat([torch.full((len(r),), i, dtype=torch.long) for i, (r, _) in enumerate(pairs)])
    q_idx = torch.cat([torch.as_tensor(r, dtype=torch.long) for r, _ in pairs])
    g_idx = torch.cat([torch.as_tensor(c, dtype=torch.long) for _, c in pairs])
    target = torch.zeros(pred.shape[:2], dtype=torch.long)
    target[b_idx, q_idx] = 1
    ce = F.cross_entropy(pred[..., :2].reshape(-1, 2), target.reshape(-1),
                         weight=torch.tensor([wt.no_lane, 1.0], dtype=pred.dtype))
    n = max(len(g_idx), 1)
    mp, ml = pred[b_idx, q_idx], labels[b_idx, g_idx] / w  # (M, 4 + R), (M, R)
    mv = valid[b_idx, g_idx]
    pts = ((mp[:, 4:] - ml).abs() * mv).sum(-1) * weights[b_idx, g_idx]
    bnd = (mp[:, 2] - lower[b_idx, g_idx]).abs() + (mp[:, 3] - upper[b_idx, g_idx]).abs()
    return wt.cls * ce + (wt.point * pts.sum() + wt.bound * bnd.sum()) / n


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, w: int, background: float) -> torch.Tensor:
    """Per-pixel cross-entropy of segmentation logits at the label rows (B, R, W, K + 1) against labels
    (B, L, R): pixel (r, c) belongs to slot k when |c + 0.5 - x_k,r| <= 1 (the nearest lane if several),
    else to the background (class 0, weighted ``background``)."""
    b, r, cols, k1 = logits.shape
    lab = labels[:, : k1 - 1].transpose(1, 2)  # (B, R, L')
    c = torch.arange(cols, dtype=labels.dtype) + 0.5
    dist = (c[None, None, :, None] - lab[:, :, None, :]).abs()  # (B, R, W, L')
    dist = torch.where(lab[:, :, None, :] >= 0, dist, torch.full_like(dist, 1e9))
    near, slot = dist.min(-1)
    target = torch.where(near <= 1.0, slot + 1, torch.zeros_like(slot))
    weight = torch.ones(k1, dtype=logits.dtype)
    weight[0] = background
    return F.cross_entropy(logits.reshape(-1, k1), target.reshape(-1), weight=weight)


def lane_loss(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, h: int, w: int,
              wt: LossWeights) -> torch.Tensor:
    """The loss for either output layout (set: 3 dims, segmentation: 4 dims)."""
    if logits.dim() == 4:
        return seg_loss(logits, labels, w, SEG_BACKGROUND)
    y = (rows.float() + 0.5) / h
    return set_loss(logits, labels, y, w, wt)


def decode_points(pred: torch.Tensor, rows: torch.Tensor, h: int,
                  w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Set-layout predictions -> (x in pixels, -2 where invalid (B, Q, R); lanes predicted (B, Q) bool)."""
    y = (rows.float() + 0.5) / h
    x = pred[..., 4:] * w
    ok = (y >= pred[..., 2:3]) & (y <= pred[..., 3:4]) & (x >= 0) & (x < w)
    keep = pred[..., 1] > pred[..., 0]
    return torch.where(ok, x, torch.full_like(x, -2.0)), keep
