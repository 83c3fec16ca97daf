"""Durability across budget: the same paired test at about half the training steps and at the end.

Many published gains are early-training effects: a variant that learns faster looks better at a small
budget and the gap closes with training. Each training row stores its evaluation history (``curve``);
for every seed the point nearest half the row's steps is taken (the "mid" point), and the end is the
row's final value. The per-seed change of the difference, end minus mid, signed so that positive means
"further from zero" (in the direction of the larger of the two differences), is tested against zero
with a t interval:

- ``growing``: the difference moves away from zero beyond noise; ``shrinking``: towards it;
  ``stable``: neither.
- ``early``: beyond seed noise at mid-training (unadjusted p < 0.05) but not at the end, the pattern of
  an early-training effect.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.analysis.claims.evidence import ALPHA, Durability, compare, row_value
from harness.analysis.stats import mean_ci
from harness.results.rows import ResultRow

__all__ = ["durability", "mid_point"]


def mid_point(r: ResultRow, metric: str) -> tuple[int, float] | None:
    """(step, value) of the curve point nearest half the row's steps that has ``metric``; None if none."""
    steps = r.steps
    points = [(int(p["step"]), float(p[metric])) for p in r.curve
              if isinstance(p, dict) and isinstance(p.get("step"), (int, float))
              and isinstance(p.get(metric), (int, float)) and math.isfinite(float(p[metric]))]
    if not points or not isinstance(steps, (int, float)):
        return None
    final = max(s for s, _ in points)
    points = [(s, x) for s, x in points if s < steps and s < final]  # the end is the row's final value
    if not points:
        return None
    return min(points, key=lambda p: (abs(p[0] - steps / 2), p[0]))


def _series(rows: Sequence[ResultRow], variant: str, task: str, metric: str
            ) -> tuple[dict[Any, float], dict[Any, float], list[int]]:
    mid: dict[Any, float] = {}
    end: dict[Any, float] = {}
    steps: list[int] = []
    for r in rows:
        if str(r.variant) != variant or r.task != task or r.status != "ok":
            continue
        point, final = mid_point(r, metric), row_value(r, metric)
        if point is None or final is None:
            continue
        steps.append(point[0])
        mid[r.seed], end[r.seed] = point[1], final
    return mid, end, steps


def durability(rows: Sequence[ResultRow], variant: str, reference: str, task: str,
               metric: str) -> Durability | None:
    """The paired test of ``variant`` − ``reference`` at mid-training and at the end; None without curves."""
    mid_v, end_v, steps_v = _series(rows, variant, task, metric)
    mid_r, end_r, steps_r = _series(rows, reference, task, metric)
    seeds = sorted(set(mid_v) & set(mid_r), key=str)
    if len(seeds) < 2:
        return None
    label = f"{variant} − {reference}"
    mid = compare(label, {s: mid_v[s] for s in seeds}, {s: mid_r[s] for s in seeds})
    end = compare(label, {s: end_v[s] for s in seeds}, {s: end_r[s] for s in seeds})
    sign = 1.0 if max(end.diff, mid.diff, key=abs) >= 0 else -1.0  # the larger difference's direction
    change = [sign * ((end_v[s] - end_r[s]) - (mid_v[s] - mid_r[s])) for s in seeds]
    mean, hw, _ = mean_ci(change)
    trend = "stable"
    if math.isfinite(hw) and mean - hw > 0:
        trend = "growing"
    elif math.isfinite(hw) and mean + hw < 0:
        trend = "shrinking"
    early = math.isfinite(mid.p) and mid.p < ALPHA and not (math.isfinite(end.p) and end.p < ALPHA)
    step = Counter(steps_v + steps_r).most_common(1)[0][0]
    return Durability(mid_step=step, mid=mid, end=end, trend=trend, early=early)
