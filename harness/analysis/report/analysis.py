"""What the report computes from rows: per-task ablations, cost-sweep fits, overtake lengths.

An ablation compares every variant of a suite's task with the suite's baseline, paired by seed, with
Holm-corrected p values over the table's comparisons (harness.analysis.stats); a comparison within noise whose
values all sit at the metric's floor (zero or chance) or all at its ceiling is marked as such
(harness.analysis.floors). A cost sweep fits
``cost ∝ seq_len^k`` per variant and quantity and finds the length from which a variant stays cheaper
than a reference. Nothing here formats text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.floors import Bounds, at_bound, row_bounds
from harness.analysis.report.fmt import finite, in_order, median, natural_key, scalar_key, uniq
from harness.analysis.report.load import as_rows, latest, row_order
from harness.analysis.stats import fit_power_law, holm, mean_ci, mode, paired_diff
from harness.results.rows import ResultRow, device_label
from harness.suite.spec import ReportSpec

__all__ = [
    "ALPHA", "PROFILE_QUANTITIES", "ProfileSeries", "TaskSummary", "VariantSummary", "ablation",
    "cost_references", "overtake_length", "profile_series",
]

ALPHA = 0.05  # family-wise level of the verdict column (Holm-corrected)
PROFILE_QUANTITIES = ("step_ms", "act_bytes", "mem_bytes")
STATIC_COST = ("params", "params_applied", "flops_fwd")  # the same for every run of a variant
DYNAMIC_COST = ("mem_bytes", "act_bytes", "step_ms", "tokens_per_s", "mfu")  # from runs that ended ok


@dataclass
class VariantSummary:
    """One line of an ablation table: a variant's seeds, its comparison with the baseline, its cost."""

    variant: str
    is_baseline: bool
    status: dict[str, int]
    values: dict[Any, float]
    mean: float
    half_width: float
    n: int
    diff: float = math.nan
    diff_half_width: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    n_pairs: int = 0
    verdict: str = "na"  # better | worse | same | floor | ceiling | baseline | na
    bound: Bounds | None = None  # floor, ceiling: the metric's bounds on this task
    cost: dict[str, float | None] = field(default_factory=dict)
    mem_kinds: tuple[str, ...] = ()


@dataclass
class TaskSummary:
    """The ablation of one (suite, task): one :class:`VariantSummary` per variant, baseline first."""

    suite: str
    task: str
    metric: str | None
    higher_is_better: bool
    baseline: str | None
    variants: list[VariantSummary]
    failures: list[ResultRow]
    superseded: int
    scale: dict[str, list[Any]]
    # ``floor`` or ``ceiling`` when every value of every variant sits there: the table compares nothing
    all_at: str | None = None
    bound: Bounds | None = None

    def get(self, variant: str) -> VariantSummary | None:
        return next((v for v in self.variants if v.variant == variant), None)


def _seed_values(rows: list[ResultRow], metric: str | None) -> dict[Any, float]:
    return {r.seed: float(r.metric_value(metric)) for r in rows
            if r.status == "ok" and finite(r.metric_value(metric))}


def _summarise(name: str, rows: list[ResultRow], metric: str | None, baseline: str | None) -> VariantSummary:
    ok = [r for r in rows if r.status == "ok"]
    vals = _seed_values(rows, metric)
    mean, hw, n = mean_ci(vals.values())
    cost: dict[str, float | None] = {k: median(r.field_value(k) for r in rows) for k in STATIC_COST}
    cost.update({k: median(r.field_value(k) for r in ok) for k in DYNAMIC_COST})
    return VariantSummary(variant=name, is_baseline=name == baseline,
                          status=dict(sorted(Counter(str(r.status or "unknown") for r in rows).items())),
                          values=dict(sorted(vals.items(), key=lambda kv: scalar_key(kv[0]))),
                          mean=mean, half_width=hw, n=n, cost=cost,
                          mem_kinds=tuple(uniq(r.mem_kind for r in ok)))


def _judge(summaries: list[VariantSummary], higher_is_better: bool) -> None:
    """Holm-correct the comparisons of one table and give each its verdict."""
    comparisons = [s for s in summaries if not s.is_baseline]
    for s, adj in zip(comparisons, holm([s.p for s in comparisons])):
        s.p_holm = adj
        if finite(adj):
            if adj < ALPHA and s.diff != 0:
                s.verdict = "better" if (s.diff > 0) == higher_is_better else "worse"
            else:
                s.verdict = "same"


def _mark_bounds(summaries: list[VariantSummary], base_vals: dict[Any, float], b: Bounds | None) -> None:
    """A comparison within seed noise whose values (variant and baseline) all sit at the metric's floor
    or all at its ceiling compared nothing: its verdict becomes ``floor`` or ``ceiling``."""
    for s in summaries:
        if s.verdict == "same" and (where := at_bound(b, [*s.values.values(), *base_vals.values()])):
            s.verdict, s.bound = where, b


def _task_bounds(rows: list[ResultRow], metric: str | None) -> Bounds | None:
    """The metric's bounds as the task declared them in the rows (None in rows without bounds)."""
    return row_bounds(rows, metric)


def _scale(rows: list[ResultRow]) -> dict[str, list[Any]]:
    """The sizes the rows ran at, for the table's *Scale* line."""
    return {"seq_len": uniq(r.task_len for r in rows), "tokens": uniq(r.seq_len for r in rows),
            "steps": uniq(r.steps for r in rows), "batch_size": uniq(r.batch_size for r in rows),
            "device": uniq(r.device for r in rows),
            "device_name": uniq(device_label(r.device_name) for r in rows),
            "mem_kind": uniq(r.mem_kind for r in rows)}


def ablation(rows: Iterable[Any], suite: str, task: str, metric: str | None = None,
             baseline: str | None = None, order: Sequence[str] = ()) -> TaskSummary:
    """Summarise the training rows of one suite and task.

    Per (variant, seed) the most recently finished row counts. ``metric`` defaults to the rows' headline
    metric and ``baseline`` to the suite's declared baseline. p values are Holm-corrected over the
    non-baseline variants of this table. Variants: the baseline first, then in ``order`` (the suite
    file's), then any others in natural order. ``rows``: ResultRows, row dicts or a DataFrame.
    """
    picked = [r for r in as_rows(rows) if r.suite == suite and r.task == task and not r.is_profile]
    rows_, superseded = latest(picked, ("variant", "seed"))
    metric = metric or mode(r.metric for r in rows_ if r.status == "ok") or mode(r.metric for r in rows_)
    hib = mode(r.higher_is_better for r in rows_ if r.status == "ok")
    hib = True if hib is None else bool(hib)
    baseline = baseline or mode(r.baseline for r in rows_)

    by_variant: dict[str, list[ResultRow]] = {}
    for r in rows_:
        by_variant.setdefault(str(r.variant), []).append(r)
    names = sorted(in_order(by_variant, order), key=lambda v: v != baseline)  # stable: order kept
    base_vals = _seed_values(by_variant.get(baseline, []), metric) if baseline else {}
    summaries = []
    for name in names:
        s = _summarise(name, by_variant[name], metric, baseline)
        if s.is_baseline:
            s.verdict = "baseline"
        elif base_vals:
            s.diff, s.diff_half_width, s.p, s.n_pairs = paired_diff(s.values, base_vals)
        summaries.append(s)
    _judge(summaries, hib)
    b = _task_bounds(rows_, metric)
    _mark_bounds(summaries, base_vals, b)
    return TaskSummary(suite=suite, task=task, metric=metric, higher_is_better=hib,
                       baseline=baseline if baseline in by_variant else None, variants=summaries,
                       failures=sorted((r for r in rows_ if r.status != "ok"), key=row_order),
                       superseded=superseded, scale=_scale(rows_),
                       all_at=at_bound(b, [v for s in summaries for v in s.values.values()]), bound=b)


# --------------------------------------------------------------------------------------- cost sweeps
@dataclass
class ProfileSeries:
    """One variant's cost sweep: per quantity the sorted (seq_len, median value) points and the fitted
    exponent, and the cells that did not end ok."""

    variant: str
    points: dict[str, list[tuple[float, float]]]
    exponents: dict[str, float]
    failures: list[ResultRow]


def _series(variant: str, rows: list[ResultRow], fit_range: Sequence[int]) -> ProfileSeries:
    ok = [r for r in rows if r.status == "ok" and finite(r.seq_len)]
    points: dict[str, list[tuple[float, float]]] = {}
    exps: dict[str, float] = {}
    for q in PROFILE_QUANTITIES:
        by_len: dict[float, list[Any]] = {}
        for r in ok:
            by_len.setdefault(float(r.seq_len or 0), []).append(r.field_value(q))
        pts = [(x, m) for x, vs in sorted(by_len.items()) if (m := median(vs)) is not None and m > 0]
        points[q] = pts
        fit = [(x, y) for x, y in pts if not fit_range or fit_range[0] <= x <= fit_range[1]]
        exps[q] = fit_power_law([x for x, _ in fit], [y for _, y in fit])[0]
    return ProfileSeries(variant, points, exps, sorted((r for r in rows if r.status != "ok"), key=row_order))


def profile_series(rows: Iterable[ResultRow], suite: str, task: str,
                   fit_range: Sequence[int] = (), order: Sequence[str] = ()) -> list[ProfileSeries]:
    """The cost sweep of one suite and task, one series per variant (in ``order``, then natural order)."""
    picked = [r for r in rows if r.suite == suite and r.task == task and r.is_profile]
    rows_, _ = latest(picked, ("variant", "seq_len", "seed"))
    variants = in_order((str(r.variant) for r in rows_), order)
    return [_series(v, [r for r in rows_ if str(r.variant) == v], fit_range) for v in variants]


def cost_references(spec: ReportSpec | None, models: Mapping[str, str]) -> list[str]:
    """The variants a cost sweep is compared against: the report layout's ``references``, else every
    ``vanilla`` variant (natural order); only those among ``models`` (variant -> registered model)."""
    named = list(spec.references) if spec is not None else []
    refs = named or sorted((v for v, m in models.items() if m == "vanilla"), key=natural_key)
    return [v for v in refs if v in models]


def overtake_length(mine: Mapping[float, float], ref: Mapping[float, float], failed_ref: Iterable[float],
                    lengths: Sequence[float]) -> float | None:
    """The shortest measured length from which ``mine`` < ``ref`` at every longer length where ``mine``
    was measured. A length where the reference failed (oom, skipped) counts as a win; a length where
    ``mine`` was not measured is passed over. None: never."""
    failed = set(failed_ref)
    start: float | None = None
    for n in sorted(lengths):
        if n not in mine:
            continue
        win = n in failed or (n in ref and mine[n] < ref[n])
        lost = n in ref and not win
        if win and start is None:
            start = n
        elif lost:
            start = None
    return start
