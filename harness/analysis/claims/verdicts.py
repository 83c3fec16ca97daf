"""Verdicts computed from result rows, one function per kind of test.

- ``not measured``: the rows the test needs are not there (no such suite, variant, size or field).
- ``uninformative``: either arm sits wholly at the metric's floor (zero or chance for the task), or both
  at its ceiling (perfect); the comparison compares nothing (``harness.analysis.floors``).
- ``supported`` / ``contradicted``: for ``higher`` / ``lower``, the paired difference is beyond seed
  noise in the claimed / the opposite direction by both the paired t-test and the exact sign-flip
  permutation test, each Holm-adjusted over the ledger's family; for ``same`` and the non-inferiority
  forms, the interval at the ledger's simultaneous level against the margin, and the one-sided sign-flip
  test against the margin at the matching level; for cost, count and exponent tests, the number against
  the claim's bound.
- ``not separable``: neither; the evidence says how small an effect the seeds could have detected at 80%
  power at the ledger's level and how many seeds the observed effect would need.

The ledger's family (:func:`evaluate_claims`) is every distinct seed comparison that a metric or layout
claim reads: a comparison read by two claims is one test. With ``m`` comparisons of which ``d`` are
directional, alpha is split by Bonferroni's inequality: the directional ones are Holm-adjusted among
themselves at level alpha * d / m (reported as Holm p values scaled by m / d, so that "p_Holm < 0.05"
is the rule), and each ``same`` or non-inferiority comparison is judged at alpha / m (its interval at
level 1 - alpha / m). Whatever the true effects, the chance of any false verdict over the ledger stays
at most alpha. Holm rather than Benjamini-Hochberg because each verdict is read on its own, as a
statement about one paper: a reader needs every "supported" to hold, not a rate of false ones among
them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.claims.arms import claim_confounds
from harness.analysis.claims.durability import durability
from harness.analysis.claims.evidence import (
    ALPHA,
    CONTRADICTED,
    NOT_MEASURED,
    NOT_SEPARABLE,
    SUPPORTED,
    UNINFORMATIVE,
    Comparison,
    Verdict,
    compare,
    latest_train,
    metric_bounds,
    scale_of,
    seed_values,
)
from harness.analysis.claims.schema import Claim, LayoutTest, MetricTest
from harness.analysis.claims.sweeps import cost_ratio_verdict, count_verdict, exponent_verdict
from harness.analysis.floors import arms_at_bound
from harness.analysis.stats import holm, mode, sign_flip_p
from harness.results.rows import ResultRow

__all__ = ["Family", "adjusted", "decide", "evaluate", "evaluate_claims", "family_of", "ledger_family"]

DIRECTIONAL = ("higher", "lower")


@dataclass
class Family:
    """The ledger's multiplicity family: its size, each directional comparison's adjusted p values, and
    which claims read each comparison. The default is a family of one (a claim judged alone)."""

    size: int = 1
    directional: int = 1
    p_holm: dict[tuple[Any, ...], float] = field(default_factory=dict)
    p_perm_holm: dict[tuple[Any, ...], float] = field(default_factory=dict)
    readers: dict[tuple[Any, ...], list[str]] = field(default_factory=dict)

    @property
    def alpha(self) -> float:
        """The level of each ``same`` and non-inferiority comparison (and of every interval shown)."""
        return ALPHA / self.size


# one comparison a claim reads: its key in the family, the comparison, and how the claim reads it
Test = tuple[tuple[Any, ...], Comparison, str]


def _headline(rows: Sequence[ResultRow], task: str) -> str | None:
    """The task's headline metric, chosen as the report's ablation table chooses it."""
    on_task = [r for r in rows if r.task == task]
    return mode(r.metric for r in on_task if r.status == "ok") or mode(r.metric for r in on_task)


def _two_sided(expect: str, margin: float) -> bool:
    """Whether a claim reads the two-sided test of no difference: ``higher`` and ``lower`` do, and so
    does ``same`` without a margin (it can only be contradicted, never supported: equality is not a
    finding a finite number of seeds can establish)."""
    return expect in DIRECTIONAL or (expect == "same" and margin <= 0)


def decide(expect: str, c: Comparison, margin: float = 0.0,
           one_sided: Callable[[float, str], float] | None = None, alpha: float = ALPHA) -> str:
    """The verdict of a paired comparison ``c`` (variant minus reference) for the expected direction.

    ``higher`` / ``lower`` read :attr:`Comparison.significant` (both tests, adjusted). The interval forms
    read ``c``'s interval (at level 1 - ``alpha``) against ``margin`` and, where ``one_sided`` is given
    (``one_sided(shift, alternative)``: the sign-flip p of the differences minus ``shift``), need the
    distribution-free test to agree at the matching one-sided level ``alpha / 2``.
    """
    if c.n < 2:
        return NOT_SEPARABLE
    if _two_sided(expect, margin):
        if not c.significant:
            return NOT_SEPARABLE
        if expect == "same":
            return CONTRADICTED
        return SUPPORTED if (c.diff > 0) == (expect == "higher") else CONTRADICTED

    def agrees(shift: float, alternative: str) -> bool:
        return one_sided is None or one_sided(shift, alternative) < alpha / 2.0

    if expect == "same":
        if -margin < c.lo and c.hi < margin and agrees(margin, "less") \
                and agrees(-margin, "greater"):
            return SUPPORTED
        if c.lo > margin and agrees(margin, "greater"):
            return CONTRADICTED
        if c.hi < -margin and agrees(-margin, "less"):
            return CONTRADICTED
        return NOT_SEPARABLE
    if expect == "not_higher":  # diff < margin
        if c.hi < margin and agrees(margin, "less"):
            return SUPPORTED
        if c.lo > margin and agrees(margin, "greater"):
            return CONTRADICTED
        return NOT_SEPARABLE
    # not_lower: diff > -margin
    if c.lo > -margin and agrees(-margin, "greater"):
        return SUPPORTED
    if c.hi < -margin and agrees(-margin, "less"):
        return CONTRADICTED
    return NOT_SEPARABLE


def _bound_fields(v: Verdict, where: str, b: Any) -> None:
    v.verdict, v.reason, v.bound = UNINFORMATIVE, where, where
    v.bound_value = b.worst if where == "floor" else b.best
    v.bound_chance = bool(b.chance) and where == "floor"


def adjusted(c: Comparison, key: tuple[Any, ...], family: Family, claim_id: str) -> Comparison:
    """``c`` with the family's adjusted p values and the other claims that read the same comparison."""
    others = [i for i in family.readers.get(key, []) if i != claim_id]
    return dataclasses.replace(c, p_holm=family.p_holm.get(key, math.nan),
                               p_perm_holm=family.p_perm_holm.get(key, math.nan), shared_with=others)


def _effect(expect: str, diff: float, margin: float) -> float | None:
    """What the power figure should resolve: the distance from the margin on the claimed side for the
    non-inferiority forms and for a ``same`` claim with a margin, the difference itself otherwise."""
    if expect == "not_higher":
        return margin - diff
    if expect == "not_lower":
        return diff + margin
    if expect == "same" and margin > 0:
        return margin - abs(diff)
    return None


def metric_verdict(claim: Claim, rows: Sequence[ResultRow], family: Family | None = None
                   ) -> tuple[Verdict, list[Test]]:
    """A metric claim's verdict within ``family`` and the test it reads. Without a family only the test
    is gathered (for :func:`ledger_family`): no power figures, no durability, and the verdict is that of
    a family of one."""
    gather = family is None
    family = family or Family()
    spec: MetricTest = claim.test
    ref_task = spec.reference_task or spec.task
    train = latest_train(rows, spec.suite)
    metric = spec.metric or _headline(train, spec.task) or ""
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task, metric=metric)
    mine = seed_values(train, spec.variant, spec.task, metric)
    ref = seed_values(train, spec.reference, ref_task, metric)
    if not mine or not ref:
        return v, []
    pairs = {(spec.variant, spec.task), (spec.reference, ref_task)}
    used = [r for r in train if (str(r.variant), r.task) in pairs]
    v.scale = scale_of(used)
    names = (spec.task, ref_task) if spec.reference_task else (spec.variant, spec.reference)
    v.means = {names[0]: sum(mine.values()) / len(mine), names[1]: sum(ref.values()) / len(ref)}
    b = metric_bounds(train, spec.task, metric)
    where = arms_at_bound(b, [mine.values(), ref.values()])
    if where:
        _bound_fields(v, where, b)
        return v, []
    label = f"{spec.variant} − {spec.reference}"
    if spec.reference_task:
        label = f"{spec.variant}: {spec.task} − {ref_task}"
    # the comparison's identity: its data and the hypothesis read (every two-sided reading is one test)
    form: tuple[Any, ...] = ("two-sided",) if _two_sided(spec.expect, spec.margin) else (spec.expect,
                                                                                        spec.margin)
    key = ("metric", spec.suite, metric, spec.variant, spec.task, spec.reference, ref_task, *form)
    raw = compare(label, mine, ref, family=family.size, power=not gather,
                  effect=lambda diff: _effect(spec.expect, diff, spec.margin))
    v.comparison = adjusted(raw, key, family, claim.id)

    def one_sided(shift: float, alternative: str) -> float:
        return sign_flip_p(mine, ref, shift=shift, alternative=alternative)

    v.verdict, v.reason = decide(spec.expect, v.comparison, spec.margin, one_sided, family.alpha), ""
    if not spec.reference_task and not gather:
        v.durability = durability(train, spec.variant, spec.reference, spec.task, metric)
    return v, [(key, raw, "higher" if form == ("two-sided",) else spec.expect)]


def _drops(train: Sequence[ResultRow], variant: str, spec: LayoutTest) -> dict[Any, float]:
    high = seed_values(train, variant, spec.task, f"{spec.metric}@{spec.high}")
    low = seed_values(train, variant, spec.task, f"{spec.metric}@{spec.low}")
    return {s: high[s] - low[s] for s in high if s in low}


def layout_verdict(claim: Claim, rows: Sequence[ResultRow], family: Family | None = None
                   ) -> tuple[Verdict, list[Test]]:
    """Reformer's Table 2 shape: the fragile models drop more from ``high`` to ``low`` than the robust.
    Every (fragile, robust) pair is one directional comparison of the ledger's family; without a family
    only the tests are gathered, as in :func:`metric_verdict`."""
    gather = family is None
    family = family or Family()
    spec: LayoutTest = claim.test
    train = latest_train(rows, spec.suite, spec.task)
    v = Verdict(claim, NOT_MEASURED, reason="no_rows", suite=spec.suite, task=spec.task, metric=spec.metric)
    drops = {n: _drops(train, n, spec) for n in [*spec.fragile, *spec.robust]}
    if not all(drops.values()):
        return v, []
    v.scale = scale_of(r for r in train if str(r.variant) in drops)
    v.means = {n: sum(d.values()) / len(d) for n, d in drops.items()}
    b = metric_bounds(train, spec.task, spec.metric)
    arms = [[x for mode in (spec.high, spec.low)
             for x in seed_values(train, n, spec.task, f"{spec.metric}@{mode}").values()] for n in drops]
    where = arms_at_bound(b, arms)
    if where:
        _bound_fields(v, where, b)
        return v, []
    tests: list[Test] = []
    comps = []
    for f, r in [(f, r) for f in spec.fragile for r in spec.robust]:
        key = ("layout", spec.suite, spec.task, spec.metric, spec.high, spec.low, f, r)
        raw = compare(f"drop {f} − drop {r}", drops[f], drops[r], family=family.size, power=not gather)
        tests.append((key, raw, "higher"))
        comps.append(adjusted(raw, key, family, claim.id))
    verdicts = [decide("higher", c) for c in comps]
    if CONTRADICTED in verdicts:
        v.verdict = CONTRADICTED
    elif all(x == SUPPORTED for x in verdicts):
        v.verdict = SUPPORTED
    else:
        v.verdict = NOT_SEPARABLE

    def weakness(c: Comparison) -> float:
        ps = [p for p in (c.p_judged, c.p_perm_judged) if math.isfinite(p)]
        return max(ps) if ps else 2.0

    v.comparison, v.reason = max(comps, key=weakness), ""
    return v, tests


def _evaluate(claim: Claim, rows: Sequence[ResultRow], family: Family) -> tuple[Verdict, list[Test]]:
    kind = claim.test.kind
    if kind == "none":
        return Verdict(claim, NOT_MEASURED, reason="no_test"), []
    if kind == "metric":
        v, tests = metric_verdict(claim, rows, family)
    elif kind == "layout":
        v, tests = layout_verdict(claim, rows, family)
    else:
        handler = {"cost_ratio": cost_ratio_verdict, "exponent": exponent_verdict,
                   "count": count_verdict}[kind]
        v, tests = handler(claim, rows), []
    if v.verdict != NOT_MEASURED:
        v.confounds = claim_confounds(claim, rows)
    return v, tests


def evaluate(claim: Claim, rows: Sequence[ResultRow]) -> Verdict:
    """The verdict of one claim on ``rows``, judged alone (a family of one)."""
    return _evaluate(claim, list(rows), Family())[0]


def family_of(tests: Sequence[tuple[tuple[Any, ...], Comparison, str, str]]) -> Family:
    """The family of the distinct tests among ``tests`` (key, comparison, how it is read, which claim
    reads it): a key read twice is one test; the two-sided ones Holm-adjusted at their share of alpha."""
    readers: dict[tuple[Any, ...], list[str]] = {}
    seen: dict[tuple[Any, ...], tuple[Comparison, str]] = {}
    for key, comp, expect, reader in tests:
        readers.setdefault(key, []).append(reader)
        seen.setdefault(key, (comp, expect))
    keys = sorted(seen, key=str)
    directional = [k for k in keys if seen[k][1] in DIRECTIONAL]
    m, d = max(1, len(keys)), max(1, len(directional))
    scale = m / d  # Holm among the d at level alpha * d / m, reported on the 0.05 scale

    def scaled_holm(ps: list[float]) -> list[float]:
        return [min(1.0, p * scale) if math.isfinite(p) else p for p in holm(ps)]

    p_t = scaled_holm([seen[k][0].p for k in directional])
    p_perm = scaled_holm([seen[k][0].p_perm for k in directional])
    return Family(size=m, directional=d, p_holm=dict(zip(directional, p_t)),
                  p_perm_holm=dict(zip(directional, p_perm)), readers=readers)


def ledger_family(claims: Sequence[Claim], rows: Sequence[ResultRow]) -> Family:
    """The family of every distinct comparison the claims read, with the directional ones adjusted.
    Only the metric and layout claims read seed comparisons, and only their tests are gathered here."""
    gatherers = {"metric": metric_verdict, "layout": layout_verdict}
    return family_of([(key, comp, expect, c.id) for c in claims if c.test.kind in gatherers
                      for key, comp, expect in gatherers[c.test.kind](c, rows, None)[1]])


def evaluate_claims(claims: Sequence[Claim], rows: Sequence[ResultRow]) -> list[Verdict]:
    """Every claim's verdict, in the claims' order, judged within the ledger's family."""
    rows = list(rows)
    family = ledger_family(claims, rows)
    return [_evaluate(c, rows, family)[0] for c in claims]
