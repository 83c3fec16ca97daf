"""What a verdict rests on, and the row look-ups that gather it.

A :class:`Verdict` carries its evidence as data: the paired comparison (effect, interval at the ledger's
simultaneous level, n, the t-test's and the exact sign-flip test's p values raw and Holm-adjusted over
the ledger's family, the share of seeds on which the variant wins, the smallest effect the seeds could
detect and the seeds the observed effect would need), the bound an arm sits at when the comparison is
uninformative, cost ratios against each reference, a fitted exponent, exact counts, the durability
across training, the suite and task it came from and the scale it ran at. The report and ``harness
claims`` turn it into words; nothing here does.

Rows: per (suite, variant, task, seed) the most recently finished training row counts, as in the
report's ablations; per (suite, variant, size) the most recent cost-sweep row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.analysis.claims.arms import Confound
from harness.analysis.claims.schema import Claim, Text
from harness.analysis.floors import Bounds, row_bounds
from harness.analysis.stats import (
    as_finite,
    detectable_effect,
    paired_diff,
    paired_sd,
    pairs_needed,
    sign_flip_p,
    superiority,
)
from harness.results.provenance import code_differences
from harness.results.rows import ResultRow, device_label
from harness.results.store import json_safe

__all__ = [
    "ALPHA", "CONTRADICTED", "NOT_MEASURED", "NOT_SEPARABLE", "SUPPORTED", "UNINFORMATIVE", "VERDICTS",
    "Comparison", "CountResult", "Durability", "RatioCheck", "Verdict", "compare", "latest_train",
    "metric_bounds", "profile_rows", "row_value", "scale_of", "seed_values",
]

ALPHA = 0.05
SUPPORTED, CONTRADICTED, NOT_SEPARABLE = "supported", "contradicted", "not separable"
UNINFORMATIVE, NOT_MEASURED = "uninformative", "not measured"
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_SEPARABLE, UNINFORMATIVE, NOT_MEASURED)


@dataclass
class Comparison:
    """A paired test of ``label`` (treatment minus reference, by seed).

    Beyond seed noise (:attr:`significant`) needs both tests: the paired t-test and the exact sign-flip
    permutation test, each Holm-adjusted over the ledger's family of directional comparisons
    (``p_holm``, ``p_perm_holm``; the raw value stands in for a family of one). ``half_width`` is the
    Student-t half width at level ``conf``, the ledger's simultaneous level 1 - alpha / family.
    """

    label: str
    diff: float
    half_width: float
    n: int
    p: float
    p_holm: float = math.nan
    family: int = 1  # comparisons in the ledger's family
    sd: float = math.nan  # of the paired differences
    detectable: float = math.nan  # smallest |diff| (or distance from a margin) found with 80% power
    seeds_needed: int | None = None  # pairs the observed effect would need for 80% power
    p_perm: float = math.nan  # exact paired sign-flip test, two-sided
    p_perm_holm: float = math.nan
    superiority: float = math.nan  # share of seeds with treatment > reference (ties one half)
    conf: float = 1.0 - ALPHA  # level of the interval
    shared_with: list[str] = field(default_factory=list)  # other claims reading this same comparison

    @property
    def p_judged(self) -> float:
        """The t-test's p value the verdict reads: Holm-adjusted where the family adjusted it."""
        return self.p_holm if math.isfinite(self.p_holm) else self.p

    @property
    def p_perm_judged(self) -> float:
        """The sign-flip test's p value the verdict reads, likewise."""
        return self.p_perm_holm if math.isfinite(self.p_perm_holm) else self.p_perm

    @property
    def significant(self) -> bool:
        p_t, p_perm = self.p_judged, self.p_perm_judged
        return (math.isfinite(p_t) and p_t < ALPHA and math.isfinite(p_perm) and p_perm < ALPHA
                and self.diff != 0)

    @property
    def lo(self) -> float:
        return self.diff - (self.half_width if math.isfinite(self.half_width) else math.inf)

    @property
    def hi(self) -> float:
        return self.diff + (self.half_width if math.isfinite(self.half_width) else math.inf)


@dataclass
class RatioCheck:
    reference: str
    what: Text
    value: float | None
    ref_value: float | None
    ratio: float | None
    holds: bool | None
    ref_failed: bool = False  # the reference ran out of memory or was skipped at this size


@dataclass
class CountResult:
    quantity: str
    expect: str
    value: float | None
    ref_value: float | None
    bound: float | None  # the ratio bound (less/greater) or the printed value (about)
    holds: bool | None


@dataclass
class Durability:
    """The same paired test at about half the training steps and at the end."""

    mid_step: int
    mid: Comparison
    end: Comparison
    trend: str  # growing | stable | shrinking
    early: bool  # beyond noise at mid-training, not at the end


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    reason: str = ""  # a text key for why (not measured, uninformative)
    suite: str | None = None
    task: str | None = None
    metric: str | None = None
    comparison: Comparison | None = None
    means: dict[str, float] = field(default_factory=dict)
    bound: str | None = None  # floor | ceiling
    bound_value: float | None = None
    bound_chance: bool = False
    ratios: list[RatioCheck] = field(default_factory=list)
    quantity: str | None = None
    at: float | None = None
    exponent: float | None = None
    fit_points: int = 0
    counts: list[CountResult] = field(default_factory=list)
    durability: Durability | None = None
    scale: dict[str, list[Any]] = field(default_factory=dict)
    # keys in which the compared arms differ besides what the claim is about (harness.analysis.claims.arms)
    confounds: list[Confound] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN and infinities as null)."""
        return json_safe(asdict(self))


def _newest(rows: Iterable[ResultRow], key: Any) -> list[ResultRow]:
    best: dict[Any, ResultRow] = {}
    for r in rows:
        k = key(r)
        old = best.get(k)
        if old is None or (str(old.finished_at), str(old.run_id)) <= (str(r.finished_at), str(r.run_id)):
            best[k] = r
    return [best[k] for k in sorted(best, key=str)]


def latest_train(rows: Iterable[ResultRow], suite: str, task: str | None = None) -> list[ResultRow]:
    """The newest training row per (variant, task, seed) of ``suite`` (one task, or every task)."""
    picked = (r for r in rows if r.suite == suite and not r.is_profile and (task is None or r.task == task))
    return _newest(picked, lambda r: (str(r.variant), str(r.task), str(r.seed)))


def profile_rows(rows: Iterable[ResultRow], suite: str, task: str | None = None) -> list[ResultRow]:
    """The newest cost-sweep row per (variant, task, size) of ``suite``."""
    picked = (r for r in rows if r.suite == suite and r.is_profile and (task is None or r.task == task))
    return _newest(picked, lambda r: (str(r.variant), str(r.task), str(r.seq_len), str(r.seed)))


def row_value(r: ResultRow, metric: str) -> float | None:
    """A row's final ``metric``: a metric, or else a row field or extra (``ponder_steps``)."""
    v = r.metric_value(metric) if (metric == r.metric or metric in r.metrics) else r.field_value(metric)
    return as_finite(v)


def seed_values(rows: Iterable[ResultRow], variant: str, task: str, metric: str) -> dict[Any, float]:
    """{seed: final value} of one variant on one task, from rows that ended ok."""
    return {r.seed: v for r in rows if str(r.variant) == variant and r.task == task and r.status == "ok"
            and (v := row_value(r, metric)) is not None}


def metric_bounds(rows: Iterable[ResultRow], task: str, metric: str) -> Bounds | None:
    """The floor and ceiling of ``metric`` on the suite task ``task``, as its rows carry them."""
    return row_bounds((r for r in rows if r.task == task), metric)


def compare(label: str, treat: Mapping[Any, float], ref: Mapping[Any, float], family: int = 1,
            effect: Callable[[float], float | None] | None = None, power: bool = True) -> Comparison:
    """The paired comparison of two {seed: value} mappings, with its power figures, for a family of
    ``family`` comparisons: the interval at level 1 - alpha / family and the power figures at that level
    (Bonferroni's, the strictest step of Holm's procedure). ``effect`` maps the observed difference to
    what the power figure should resolve (the distance from a non-inferiority margin); where it is
    absent or gives None, the observed difference itself. The
    adjusted p values are the family's to fill in (:func:`harness.analysis.claims.verdicts.evaluate_claims`).
    ``power=False`` leaves the power figures out (NaN), for simulations that only need the verdict.
    """
    family = max(1, family)
    alpha = ALPHA / family
    diff, hw, p, n = paired_diff(treat, ref, conf=1.0 - alpha)
    sd = paired_sd(treat, ref)
    distance = effect(diff) if effect is not None else None
    target = diff if distance is None else distance
    return Comparison(label=label, diff=diff, half_width=hw, n=n, p=p, family=family, sd=sd,
                      detectable=detectable_effect(sd, n, alpha=alpha) if power else math.nan,
                      seeds_needed=pairs_needed(target, sd, alpha=alpha) if power and (
                          distance is None or distance > 0) else None,
                      p_perm=sign_flip_p(treat, ref), superiority=superiority(treat, ref), conf=1.0 - alpha)


def scale_of(rows: Iterable[ResultRow]) -> dict[str, list[Any]]:
    """Steps, lengths, batch and device names the rows ran at, and the files the rows hold in different
    versions (``code_files``) or rows of unknown code (``code_unknown``)."""
    rows = list(rows)

    def uniq(xs: Iterable[Any]) -> list[Any]:
        return sorted({x for x in xs if x is not None}, key=lambda x: (str(type(x)), x))

    code = code_differences(rows)  # whether the rows (both arms) ran the same code for what they share
    return {"steps": uniq(r.steps for r in rows), "seq_len": uniq(r.task_len for r in rows),
            "batch_size": uniq(r.batch_size for r in rows),
            "device_name": uniq(device_label(r.device_name) for r in rows),
            "code_files": code["files"], "code_unknown": [code["unknown"]] if code["unknown"] else []}
