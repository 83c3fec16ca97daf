"""What a claim's two arms differ in besides what the claim is about: its confounds.

A claim compares arms: a metric test its ``variant`` with its ``reference`` (or one variant on two
tasks, which is one arm), a count test its variant with its reference, a cost-ratio test its variant
with each reference. Each arm is read from its newest row (an ``ok`` one when there is one): the model,
the resolved model config and, for metric tests, the train config (counts and costs do not depend on
training). :func:`harness.suite.differ.confounds` decides which differing keys the comparison owns (the
model, the keys only one arm's model has, the claim's ``about`` keys, a budget match's solved key); the
rest are listed on the claim's row. A key that one arm leaves at null (a value the model derives from
other keys, such as vanilla's ``causal`` from ``arch``) is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.claims.schema import Claim
from harness.results.rows import ResultRow
from harness.suite.differ import arm, confounds, differences, show_value

__all__ = ["Confound", "claim_confounds"]


@dataclass(frozen=True)
class Confound:
    """A key in which the claim's variant differs from ``reference`` that the claim is not about."""

    reference: str
    key: str
    value: str
    base: str


def _newest(rows: Sequence[ResultRow], suite: str, variant: str, task: str | None, profile: bool | None,
            size: float | None = None) -> ResultRow | None:
    picked = [r for r in rows if r.suite == suite and str(r.variant) == variant
              and (task is None or r.task == task) and (profile is None or r.is_profile == profile)
              and (size is None or (r.seq_len is not None and float(r.seq_len) == size))]
    picked.sort(key=lambda r: (r.status == "ok", str(r.finished_at), str(r.run_id)))
    return picked[-1] if picked else None


def _arm(r: ResultRow, with_train: bool) -> dict[str, Any]:
    model_cfg = r.config.get("model") if isinstance(r.config.get("model"), dict) else {}
    train = r.config.get("train") if with_train and isinstance(r.config.get("train"), dict) else None
    return arm(r.model, model_cfg, train)


def _matched(r: ResultRow) -> list[str]:
    match = r.config.get("match")
    return [str(match["key"])] if isinstance(match, dict) and match.get("key") else []


def _pairs(claim: Claim) -> list[tuple[str, str, str | None, str | None, bool | None, bool]]:
    """(variant, reference, task, reference task, profile rows?, with train keys) per compared pair."""
    test = claim.test
    if test.kind == "metric":
        if test.reference_task and test.reference == test.variant:
            return []
        return [(test.variant, test.reference, test.task, test.reference_task or test.task, False, True)]
    if test.kind == "count" and test.reference:
        return [(test.variant, test.reference, test.task, test.task, None, False)]
    if test.kind == "cost_ratio":
        return [(test.variant, ref.variant, test.task, test.task, True, False) for ref in test.references]
    return []


def claim_confounds(claim: Claim, rows: Sequence[ResultRow]) -> list[Confound]:
    """The confounds of each of the claim's compared pairs (none when a row of an arm is missing)."""
    suite = getattr(claim.test, "suite", None)
    out: list[Confound] = []
    size = float(claim.test.at) if claim.test.kind == "cost_ratio" else None  # the cells compared
    for variant, reference, task, ref_task, profile, with_train in _pairs(claim):
        mine = _newest(rows, str(suite), variant, task, profile, size)
        base = _newest(rows, str(suite), reference, ref_task, profile, size)
        if mine is None or base is None:
            continue
        diffs = differences(_arm(mine, with_train), _arm(base, with_train))
        for d in confounds(diffs, claim.about, [*_matched(mine), *_matched(base)]):
            if d.value is None or d.base is None:
                continue  # null: derived from other keys by that model
            out.append(Confound(reference, d.key, show_value(d.value), show_value(d.base)))
    return out
