"""Verdicts of the cost claims: a ratio at one size against each reference, a fitted exponent, and exact
counts (parameters, applied parameters, forward FLOPs).

A cost ratio is held against every reference the claim names; the first is the paper's own baseline
and decides the verdict, the others say where else it holds ("holds against materialised attention,
not against fused SDPA"). A reference that ran out of memory or was skipped at the size counts as
costing more, as in the report's overtake table.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from harness.analysis.claims.evidence import (
    CONTRADICTED,
    NOT_MEASURED,
    SUPPORTED,
    CountResult,
    RatioCheck,
    Verdict,
    profile_rows,
    scale_of,
)
from harness.analysis.claims.schema import Claim, CostRatioTest, CountTest, ExponentTest
from harness.analysis.stats import fit_power_law
from harness.results.rows import ResultRow, device_label

__all__ = ["cost_ratio_verdict", "count_verdict", "exponent_verdict"]


def _median(values: Iterable[Any]) -> float | None:
    xs = sorted(float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
    return statistics.median(xs) if xs else None


def _at(rows: Sequence[ResultRow], variant: str, quantity: str, size: float) -> tuple[float | None, bool]:
    """The median ``quantity`` of ``variant`` at ``size``, and whether a cell there did not end ok."""
    cells = [r for r in rows
             if str(r.variant) == variant and r.seq_len is not None and float(r.seq_len) == size]
    value = _median(r.field_value(quantity) for r in cells if r.status == "ok")
    return value, any(r.status != "ok" for r in cells)


def cost_ratio_verdict(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    spec: CostRatioTest = claim.test
    prof = profile_rows(rows, spec.suite, spec.task)
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task,
                quantity=spec.quantity, at=float(spec.at))
    mine, _ = _at(prof, spec.variant, spec.quantity, float(spec.at))
    if mine is None:
        return v
    for ref in spec.references:
        theirs, failed = _at(prof, ref.variant, spec.quantity, float(spec.at))
        ratio = mine / theirs if theirs else None
        holds = (ratio < spec.below) if ratio is not None else (True if failed else None)
        v.ratios.append(RatioCheck(ref.variant, ref.what, mine, theirs, ratio, holds, ref_failed=failed))
    names = {spec.variant, *(r.variant for r in spec.references)}
    v.scale = scale_of(r for r in prof if str(r.variant) in names)
    v.scale.update(seq_len=[spec.at], steps=[])
    first = v.ratios[0].holds
    if first is not None:
        v.verdict, v.reason = (SUPPORTED if first else CONTRADICTED), ""
    return v


def _x(r: ResultRow, key: str) -> float | None:
    if key == "seq_len":
        value: Any = r.seq_len
    else:
        value = r.config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def exponent_verdict(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    spec: ExponentTest = claim.test
    prof = [r for r in profile_rows(rows, spec.suite, spec.task)
            if str(r.variant) == spec.variant and r.status == "ok"]
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task,
                quantity=spec.quantity)
    lo, hi = spec.range
    by_x: dict[float, list[Any]] = {}
    for r in prof:
        x = _x(r, spec.x)
        if x is not None and lo <= x <= hi:
            by_x.setdefault(x, []).append(r.field_value(spec.quantity))
    points = sorted((x, m) for x, vs in by_x.items() if (m := _median(vs)) is not None and m > 0)
    if len(points) < 2:
        return v
    k, _ = fit_power_law([x for x, _ in points], [y for _, y in points])
    v.exponent, v.fit_points = k, len(points)
    v.scale = scale_of(prof)
    v.scale.update(seq_len=[x for x, _ in points], steps=[])
    ok = (spec.max is None or k <= spec.max) and (spec.min is None or k >= spec.min)
    v.verdict, v.reason = (SUPPORTED if ok else CONTRADICTED), ""
    return v


def _count_holds(expect: str, value: float, ref: float | None, bound: float | None,
                 tol: float) -> bool | None:
    if expect == "about":
        return abs(value / bound - 1.0) <= tol if bound else None
    if ref is None or ref == 0:
        return None
    ratio = value / ref
    if expect == "equal":
        return abs(ratio - 1.0) <= tol
    if expect == "less":
        return ratio < (bound if bound is not None else 1.0)
    return ratio > (bound if bound is not None else 1.0)


def count_verdict(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    spec: CountTest = claim.test
    here = [r for r in rows if r.suite == spec.suite and (spec.task is None or r.task == spec.task)]
    mine_rows = [r for r in here if str(r.variant) == spec.variant]
    ref_rows = [r for r in here if str(r.variant) == str(spec.reference)]
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task)
    for c in spec.checks:
        value = _median(r.field_value(c.quantity) for r in mine_rows)
        ref = _median(r.field_value(c.quantity) for r in ref_rows) if spec.reference else None
        bound = c.value if c.expect == "about" else c.ratio
        holds = None if value is None else _count_holds(c.expect, value, ref, bound, c.tolerance)
        v.counts.append(CountResult(c.quantity, c.expect, value, ref, bound, holds))
    if any(c.holds is None for c in v.counts):
        return v
    v.scale = {"device_name": sorted({str(device_label(r.device_name)) for r in mine_rows if r.device_name})}
    v.verdict, v.reason = (SUPPORTED if all(c.holds for c in v.counts) else CONTRADICTED), ""
    return v
