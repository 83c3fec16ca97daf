"""A task's headline metric over training, from the rows' evaluation curves.

The ablation table gives each variant's final value; this table gives its mean and 95% interval over
seeds at every evaluated step (at most :data:`MAX_STEPS` columns, evenly spread, the last step always
shown), so a reader sees whether a difference opens early and closes (a faster-converging model) or
only appears late. It is drawn for a task when at least two variants have curves and there are at
least :data:`MIN_POINTS` steps; a variant trained for another budget has its own steps ("—" where it
did not evaluate).
"""

from __future__ import annotations

from harness.analysis.report.doc import Block, Para, Table
from harness.analysis.report.fmt import fmt_mean, natural_key
from harness.analysis.report.load import latest
from harness.analysis.report.text import t
from harness.analysis.stats import mean_ci
from harness.results.rows import ResultRow

__all__ = ["MAX_STEPS", "MIN_POINTS", "curve_section", "curve_steps"]

MAX_STEPS = 8
MIN_POINTS = 3


def _curves(rows: list[ResultRow], suite: str, task: str, metric: str) -> dict[str, list[dict[int, float]]]:
    """variant -> one {step: value} per seed (the newest ok training row of each seed)."""
    trained = [r for r in rows if r.suite == suite and str(r.task) == task and not r.is_profile]
    newest, _ = latest(trained, ("variant", "seed"))
    out: dict[str, list[dict[int, float]]] = {}
    for r in newest:
        points = {int(p["step"]): float(p[metric]) for p in r.curve or []
                  if isinstance(p, dict) and "step" in p and isinstance(p.get(metric), int | float)}
        if r.status == "ok" and points:
            out.setdefault(str(r.variant), []).append(points)
    return out


def curve_steps(curves: dict[str, list[dict[int, float]]]) -> list[int]:
    """The steps at which every seed of some variant evaluated (variants trained for different budgets
    each bring their own), thinned to MAX_STEPS: each variant's last step is kept, the rest evenly."""
    per_variant = [set.intersection(*(set(p) for p in seeds)) for seeds in curves.values() if seeds]
    steps = sorted(set().union(*per_variant))
    if len(steps) <= MAX_STEPS:
        return steps
    keep = {max(s) for s in per_variant if s}
    rest = [s for s in steps if s not in keep]
    room = max(0, MAX_STEPS - len(keep))
    picks = {rest[round(i * (len(rest) - 1) / (room - 1))] for i in range(room)} if room > 1 else set()
    return sorted(keep | picks)


def curve_section(rows: list[ResultRow], suite: str, task: str, metric: str | None, order: list[str],
                  lang: str) -> list[Block]:
    """The over-training table of one task (variants in ``order`` first), or nothing."""
    if not metric:
        return []
    curves = _curves(rows, suite, task, metric)
    steps = curve_steps(curves)
    if len(curves) < 2 or len(steps) < MIN_POINTS:
        return []
    names = [v for v in order if v in curves] + sorted(set(curves) - set(order), key=natural_key)
    body = []
    for v in names:
        cells = [fmt_mean(*mean_ci(points[s] for points in curves[v] if s in points)) for s in steps]
        body.append([v, *cells])
    return [Para(t(lang, "over_training", metric=metric)),
            Table.of(["variant", *(f"step {s}" for s in steps)], body, keys=names)]
