"""Accuracy against cost: which variants of a task no other beats on both the metric and a cost.

For each task of a suite the report plots the headline metric (mean and 95% CI over seeds) against
the median training step time and against the peak memory of one training step, and lists the
variants on the front of each plot. With seeds the metric is an interval, not a point, so a variant
is *dominated* on a cost axis only when another variant is better on the metric beyond the two
intervals (the intervals do not overlap) and costs no more on that axis; a variant that nothing
dominates is on the front. A variant with one seed has no interval: it neither dominates nor is
dominated, as nothing can be said beyond seed noise. A variant with no finite cost or metric is left
out of that axis. Nothing here formats text except :func:`pareto_section`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.report.analysis import TaskSummary, VariantSummary
from harness.analysis.report.doc import Block, Figure, Para, Table
from harness.analysis.report.figures import pareto_figure
from harness.analysis.report.fmt import DASH, finite, fmt_bytes, fmt_mean, fmt_ms, slug
from harness.analysis.report.text import ABL_HEADERS, t

__all__ = ["COST_AXES", "ParetoPoint", "beats", "pareto_points", "pareto_section"]

COST_AXES = ("step_ms", "mem_bytes")
MAX_NAMES = 3  # a table cell names at most this many dominating variants, then "+k"


@dataclass
class ParetoPoint:
    """One variant on one cost axis: its metric interval, its cost, and who beats it."""

    variant: str
    mean: float
    half_width: float
    n: int
    cost: float
    beaten_by: list[str] = field(default_factory=list)

    @property
    def on_front(self) -> bool:
        return not self.beaten_by


def beats(a: ParetoPoint, b: ParetoPoint, higher_is_better: bool) -> bool:
    """Whether ``a`` dominates ``b``: better on the metric beyond both intervals, and no more cost."""
    if not (finite(a.half_width) and finite(b.half_width)) or a.cost > b.cost:
        return False
    if higher_is_better:
        return a.mean - a.half_width > b.mean + b.half_width
    return a.mean + a.half_width < b.mean - b.half_width


def _point(s: VariantSummary, axis: str) -> ParetoPoint | None:
    cost = s.cost.get(axis)
    if s.n == 0 or not finite(s.mean) or not finite(cost):
        return None
    return ParetoPoint(s.variant, s.mean, s.half_width if s.n > 1 else math.nan, s.n, float(cost or 0.0))


def pareto_points(ts: TaskSummary, axis: str) -> list[ParetoPoint]:
    """Every variant of the ablation with a metric and a cost on ``axis``, each with its dominators."""
    points = [p for s in ts.variants if (p := _point(s, axis)) is not None]
    for b in points:
        b.beaten_by = [a.variant for a in points if a is not b and beats(a, b, ts.higher_is_better)]
    return points


def _front_cell(p: ParetoPoint | None, lang: str) -> str:
    if p is None:
        return DASH
    if p.on_front:
        return t(lang, "pareto_front")
    names = ", ".join(f"`{v}`" for v in p.beaten_by[:MAX_NAMES])
    more = len(p.beaten_by) - MAX_NAMES
    return t(lang, "pareto_beaten", names=names + (f" +{more}" if more > 0 else ""))


def pareto_section(ts: TaskSummary, lang: str, fig_dir: Path, figures: list[str]) -> list[Block]:
    """The figure (two panels) and the table of one task's accuracy against cost; [] without costs.
    The figure is drawn unless ``figures`` already names it (drawn for the other language)."""
    axes = {a: {p.variant: p for p in pareto_points(ts, a)} for a in COST_AXES}
    if not any(axes.values()):
        return []
    h = ABL_HEADERS[lang]
    headers = [h["variant"], h["metric"].format(metric=ts.metric), h["step_ms"], h["mem_bytes"],
               t(lang, "pareto_vs_step"), t(lang, "pareto_vs_mem")]
    body, keys = [], []
    for s in ts.variants:
        step, mem = axes["step_ms"].get(s.variant), axes["mem_bytes"].get(s.variant)
        if step is None and mem is None:
            continue
        body.append([f"`{s.variant}`", fmt_mean(s.mean, s.half_width, s.n),
                     fmt_ms(s.cost.get("step_ms")), fmt_bytes(s.cost.get("mem_bytes")),
                     _front_cell(step, lang), _front_cell(mem, lang)])
        keys.append(s.variant)
    name = slug(ts.suite, ts.task, "pareto") + ".png"
    if name not in figures:
        pareto_figure(ts, {a: list(pts.values()) for a, pts in axes.items()}, fig_dir / name)
        figures.append(name)
    return [Para(t(lang, "pareto", metric=ts.metric)), Table.of(headers, body, keys=keys),
            Figure(name, f"{ts.suite} {ts.task} accuracy against cost"),
            Para(t(lang, "fig_pareto", metric=ts.metric))]
