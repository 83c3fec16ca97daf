"""Verdicts computed from result rows, one function per kind of test.

- ``not measured``: the rows the test needs are not there (no such suite, variant, size or field).
- ``uninformative``: every compared value sits at the metric's floor (zero or chance for the task) or
  every one at its ceiling (perfect); the comparison compares nothing (``harness.analysis.floors``).
- ``supported`` / ``contradicted``: the paired difference is beyond seed noise (Holm-corrected p < 0.05
  over the suite table's comparisons against the same reference) in the claimed / the opposite
  direction; for ``same`` and the non-inferiority forms, the 95% interval against the margin; for cost,
  count and exponent tests, the number against the claim's bound.
- ``not separable``: the interval contains zero (or straddles the margin); the evidence says how small an
  effect the seeds could have detected at 80% power and how many seeds the observed effect would need.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from harness.analysis.claims.arms import claim_confounds
from harness.analysis.claims.durability import durability
from harness.analysis.claims.evidence import (
    CONTRADICTED,
    NOT_MEASURED,
    NOT_SEPARABLE,
    SUPPORTED,
    UNINFORMATIVE,
    Comparison,
    Verdict,
    compare,
    holm_family,
    latest_train,
    metric_bounds,
    scale_of,
    seed_values,
)
from harness.analysis.claims.schema import Claim, LayoutTest, MetricTest
from harness.analysis.claims.sweeps import cost_ratio_verdict, count_verdict, exponent_verdict
from harness.analysis.floors import at_bound
from harness.analysis.stats import holm, mode
from harness.results.rows import ResultRow

__all__ = ["decide", "evaluate", "evaluate_claims"]


def _headline(rows: Sequence[ResultRow], task: str) -> str | None:
    """The task's headline metric, chosen as the report's ablation table chooses it."""
    on_task = [r for r in rows if r.task == task]
    return mode(r.metric for r in on_task if r.status == "ok") or mode(r.metric for r in on_task)


def decide(expect: str, c: Comparison, margin: float = 0.0) -> str:
    """The verdict of a paired comparison ``c`` (variant minus reference) for the expected direction."""
    if c.n < 2:
        return NOT_SEPARABLE
    if expect in ("higher", "lower"):
        if not c.significant:
            return NOT_SEPARABLE
        return SUPPORTED if (c.diff > 0) == (expect == "higher") else CONTRADICTED
    if expect == "same":
        if margin > 0 and -margin < c.lo and c.hi < margin:
            return SUPPORTED
        if c.significant and (margin == 0 or c.lo > margin or c.hi < -margin):
            return CONTRADICTED
        return NOT_SEPARABLE
    sign = 1.0 if expect == "not_higher" else -1.0  # not_higher: diff < margin; not_lower: diff > -margin
    lo, hi = (c.lo, c.hi) if sign > 0 else (-c.hi, -c.lo)
    if hi < margin:
        return SUPPORTED
    if lo > margin:
        return CONTRADICTED
    return NOT_SEPARABLE


def _bound_fields(v: Verdict, where: str, b: Any) -> None:
    v.verdict, v.reason, v.bound = UNINFORMATIVE, where, where
    v.bound_value = b.worst if where == "floor" else b.best
    v.bound_chance = bool(b.chance) and where == "floor"


def metric_verdict(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    spec: MetricTest = claim.test
    ref_task = spec.reference_task or spec.task
    train = latest_train(rows, spec.suite)
    metric = spec.metric or _headline(train, spec.task) or ""
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task, metric=metric)
    mine = seed_values(train, spec.variant, spec.task, metric)
    ref = seed_values(train, spec.reference, ref_task, metric)
    if not mine or not ref:
        return v
    pairs = {(spec.variant, spec.task), (spec.reference, ref_task)}
    used = [r for r in train if (str(r.variant), r.task) in pairs]
    v.scale = scale_of(used)
    names = (spec.task, ref_task) if spec.reference_task else (spec.variant, spec.reference)
    v.means = {names[0]: sum(mine.values()) / len(mine), names[1]: sum(ref.values()) / len(ref)}
    b = metric_bounds(train, spec.task, metric)
    where = at_bound(b, [*mine.values(), *ref.values()])
    if where:
        _bound_fields(v, where, b)
        return v
    label = f"{spec.variant} − {spec.reference}"
    if spec.reference_task:
        label = f"{spec.variant}: {spec.task} − {ref_task}"
        v.comparison = compare(label, mine, ref)
    else:
        on_task = {str(r.variant) for r in train if r.task == spec.task}
        family = {n: seed_values(train, n, spec.task, metric) for n in on_task}
        adjusted = holm_family({n: vals for n, vals in family.items() if vals}, spec.reference)
        size = sum(1 for p in adjusted.values() if math.isfinite(p))
        v.comparison = compare(label, mine, ref, p_holm=adjusted.get(spec.variant, math.nan), family=size)
    v.verdict, v.reason = decide(spec.expect, v.comparison, spec.margin), ""
    if not spec.reference_task:
        v.durability = durability(train, spec.variant, spec.reference, spec.task, metric)
    return v


def _drops(train: Sequence[ResultRow], variant: str, spec: LayoutTest) -> dict[Any, float]:
    high = seed_values(train, variant, spec.task, f"{spec.metric}@{spec.high}")
    low = seed_values(train, variant, spec.task, f"{spec.metric}@{spec.low}")
    return {s: high[s] - low[s] for s in high if s in low}


def layout_verdict(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    """Reformer's Table 2 shape: the fragile models drop more from ``high`` to ``low`` than the robust."""
    spec: LayoutTest = claim.test
    train = latest_train(rows, spec.suite, spec.task)
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task, metric=spec.metric)
    drops = {n: _drops(train, n, spec) for n in [*spec.fragile, *spec.robust]}
    if not all(drops.values()):
        return v
    v.scale = scale_of(r for r in train if str(r.variant) in drops)
    v.means = {n: sum(d.values()) / len(d) for n, d in drops.items()}
    b = metric_bounds(train, spec.task, spec.metric)
    values = [x for n in drops for mode in (spec.high, spec.low)
              for x in seed_values(train, n, spec.task, f"{spec.metric}@{mode}").values()]
    where = at_bound(b, values)
    if where:
        _bound_fields(v, where, b)
        return v
    pairs = [(f, r) for f in spec.fragile for r in spec.robust]
    raw = [compare(f"drop {f} − drop {r}", drops[f], drops[r]) for f, r in pairs]
    comps = [dataclasses.replace(c, p_holm=adj if len(pairs) > 1 else c.p, family=len(pairs))
             for c, adj in zip(raw, holm([c.p for c in raw]))]  # the same tests, Holm-adjusted
    verdicts = [decide("higher", c) for c in comps]
    if CONTRADICTED in verdicts:
        v.verdict = CONTRADICTED
    elif all(x == SUPPORTED for x in verdicts):
        v.verdict = SUPPORTED
    else:
        v.verdict = NOT_SEPARABLE
    weakest = max(comps, key=lambda c: (c.p_holm if math.isfinite(c.p_holm) else 2.0))
    v.comparison, v.reason = weakest, ""
    return v


def evaluate(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    """The verdict of one claim on ``rows``."""
    kind = claim.test.kind
    if kind == "none":
        return Verdict(claim, NOT_MEASURED, reason="no_test")
    handler = {"metric": metric_verdict, "layout": layout_verdict, "cost_ratio": cost_ratio_verdict,
               "exponent": exponent_verdict, "count": count_verdict}[kind]
    v = handler(claim, rows)
    if v.verdict != NOT_MEASURED:
        v.confounds = claim_confounds(claim, rows)
    return v


def evaluate_claims(claims: Sequence[Claim], rows: Sequence[ResultRow]) -> list[Verdict]:
    """Every claim's verdict, in the claims' order."""
    rows = list(rows)
    return [evaluate(c, rows) for c in claims]
