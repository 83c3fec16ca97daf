"""Which budget each comparison of an ablation table holds, and the budget-matched comparisons.

A difference between two variants means something different at equal parameters, at equal applied
parameters (ALBERT's sharing keeps these and the FLOPs) or at equal forward FLOPs. Under each
ablation table the report says, for every variant against the baseline, which of the three budgets
the pair holds: equal within :data:`TOLERANCE` (LRA's 10% rule), computed from the rows' own counts,
so old rows get the line too. A variant sized to another's budget by a suite's ``match:``
(:mod:`harness.suite.match`) carries the match in ``config.match``; for it the report adds the match (key,
target against achieved, tolerance) and the paired comparison of the target with its matched
reference, which is the comparison the paper's claim is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.analysis.report.analysis import TaskSummary, VariantSummary
from harness.analysis.report.doc import Para
from harness.analysis.report.fmt import fmt_count, fmt_diff, fmt_p, natural_key
from harness.analysis.report.load import latest
from harness.analysis.report.text import t
from harness.analysis.stats import paired_diff
from harness.results.rows import ResultRow

__all__ = ["BUDGETS", "TOLERANCE", "MatchedPair", "budget_lines", "held_budgets", "matched_pairs"]

BUDGETS = ("params", "params_applied", "flops_fwd")
TOLERANCE = 0.1  # a budget is held when the two counts are within 10% of each other (LRA's rule)


def held_budgets(s: VariantSummary, ref: VariantSummary, tolerance: float = TOLERANCE) -> dict[str, float]:
    """Budget -> the ratio variant / reference, for each budget both have; held when within tolerance."""
    out = {}
    for q in BUDGETS:
        a, b = s.cost.get(q), ref.cost.get(q)
        if a is not None and b:
            out[q] = float(a) / float(b)
    return out


@dataclass
class MatchedPair:
    """A variant sized to another's budget (``config.match`` of its rows) and what the match achieved."""

    variant: str
    match: Mapping[str, Any]
    diff: float  # target - matched, paired by seed
    half_width: float
    p: float
    n: int


def matched_pairs(ts: TaskSummary, rows: Iterable[ResultRow]) -> list[MatchedPair]:
    """The budget-matched variants of one ablation, each with its target's paired difference."""
    picked = [r for r in rows if r.suite == ts.suite and r.task == ts.task and not r.is_profile]
    newest, _ = latest(picked, ("variant", "seed"))
    records: dict[str, Mapping[str, Any]] = {}
    for r in sorted(newest, key=lambda r: str(r.finished_at or "")):
        m = r.config.get("match")
        if isinstance(m, Mapping) and m.get("to") is not None:
            records[str(r.variant)] = m
    out = []
    for name in sorted(records, key=natural_key):
        m, mine, target = records[name], ts.get(name), ts.get(str(records[name]["to"]))
        if mine is None:
            continue
        d, hw, p, n = paired_diff(target.values, mine.values) if target is not None else (
            float("nan"), float("nan"), float("nan"), 0)
        out.append(MatchedPair(name, m, d, hw, p, n))
    return out


def _ratios(ratios: Mapping[str, float], tolerance: float, lang: str) -> str:
    held = [q for q, r in ratios.items() if abs(r - 1.0) <= tolerance]
    parts = [f"{q} ×{r:.2f}" for q, r in ratios.items()]
    return (", ".join(held) if held else t(lang, "budget_none")) + f" ({', '.join(parts)})"


def _match_line(mp: MatchedPair, metric: str, lang: str) -> str:
    m = mp.match
    rel = float(m.get("rel", 0.0))
    return t(lang, "budget_matched", variant=mp.variant, to=m.get("to"), budget=m.get("budget"),
             width=m.get("key"), value=m.get("value"), achieved=fmt_count(m.get("achieved")),
             target=fmt_count(m.get("target")), rel=f"{rel:+.1%}", tol=f"{float(m.get('tolerance', 0)):.0%}",
             metric=metric, diff=fmt_diff(mp.diff, mp.half_width), p=fmt_p(mp.p), n=mp.n)


def budget_lines(ts: TaskSummary, rows: Iterable[ResultRow], lang: str) -> list[Para]:
    """The paragraphs under an ablation table: budgets held against the baseline, then each match."""
    base = ts.get(ts.baseline) if ts.baseline else None
    out = []
    others = [s for s in ts.variants if not s.is_baseline]
    if base is not None and others:
        cells = [f"`{s.variant}`: {_ratios(held_budgets(s, base), TOLERANCE, lang)}" for s in others]
        out.append(Para(t(lang, "budget_held", baseline=base.variant, tol=f"{TOLERANCE:.0%}",
                          cells="; ".join(cells))))
    for mp in matched_pairs(ts, rows):
        out.append(Para(_match_line(mp, str(ts.metric), lang)))
    return out
