"""What was found, first: the report's opening section and the lines ``harness run`` ends with.

The Findings section tallies the verdicts of the claims the report's suites bear, empirical ones (a
paired comparison over seeds, a cost ratio, a fitted exponent, a table's shape) apart from the checks
by construction (exact parameter and FLOP counts, which follow from the architecture), names the claims
whose arms also differ in keys they are not about, and gives each suite's headline comparison per
task: the variants better or worse than the baseline beyond seed noise, with their paired difference,
and how many are within noise. :func:`headline_line` is the same comparison as one terminal line.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.analysis.claims import Verdict
from harness.analysis.report.analysis import TaskSummary, VariantSummary
from harness.analysis.report.claims import anchor, verdict_tally
from harness.analysis.report.doc import Block, Heading, Para, Section, Table
from harness.analysis.report.fmt import DASH, fmt_diff, sig
from harness.analysis.report.text import t

__all__ = ["by_construction", "findings_section", "headline_line"]


def by_construction(v: Verdict) -> bool:
    """Whether a claim's verdict follows from the architecture rather than from a measurement: exact
    counts (parameters, FLOPs) and the bytes saved for backward (``act_bytes``, deterministic for a
    given model and input), against learned metrics and timings, which vary with seed and machine."""
    test = v.claim.test
    return test.kind == "count" or (test.kind in ("cost_ratio", "exponent") and test.quantity == "act_bytes")


def _tally(verdicts: Sequence[Verdict], lang: str) -> list[str]:
    if not verdicts:
        return [t(lang, "findings_no_claims")]
    empirical = [v for v in verdicts if not by_construction(v)]
    built = [v for v in verdicts if by_construction(v)]
    out = [t(lang, "findings_empirical", n=len(empirical), tally=verdict_tally(empirical, lang))]
    if built:
        out.append(t(lang, "findings_construction", n=len(built), tally=verdict_tally(built, lang)))
    confounded = [f"`{v.claim.id}`" for v in verdicts if v.confounds]
    if confounded:
        out.append(t(lang, "findings_confounded", ids=t(lang, "sep").join(confounded)))
    return out


def _listed(variants: Sequence[VariantSummary]) -> str:
    return "\n".join(f"`{s.variant}` {fmt_diff(s.diff, s.diff_half_width)}" for s in variants) or DASH


def _noise(ts: TaskSummary, lang: str) -> str:
    if ts.all_at:
        return t(lang, f"findings_all_{ts.all_at}")
    same = sum(1 for s in ts.variants if s.verdict == "same")
    bound = sum(1 for s in ts.variants if s.verdict in ("floor", "ceiling"))
    return str(same) + (t(lang, "findings_at_bound", n=bound) if bound else "")


def findings_section(verdicts: Sequence[Verdict], summaries: Sequence[TaskSummary], lang: str) -> Section:
    """The opening section: the claims' tally and each suite's headline comparison per task."""
    blocks: list[Block] = [Para(" ".join(_tally(verdicts, lang)))]
    body = []
    for ts in summaries:
        link = anchor(t(lang, "suite", suite=ts.suite))
        arrow = "↑" if ts.higher_is_better else "↓"
        better = [s for s in ts.variants if s.verdict == "better"]
        worse = [s for s in ts.variants if s.verdict == "worse"]
        body.append([f"[{ts.suite}]({link}) / {ts.task}", f"{ts.metric or DASH} {arrow}",
                     f"`{ts.baseline}`" if ts.baseline else DASH, _listed(better), _listed(worse),
                     _noise(ts, lang)])
    if body:
        blocks += [Para(t(lang, "findings_table")), Table.of(t(lang, "findings_headers").split("|"), body)]
    return Section(Heading(t(lang, "findings")), "findings", blocks)


def headline_line(ts: TaskSummary) -> str:
    """One suite task's headline comparison in one line of English, for the terminal (``↑``: higher is
    better)."""
    arrow = "↑" if ts.higher_is_better else "↓"
    head = f"{ts.task}: {ts.metric}{arrow} vs {ts.baseline or 'no baseline'}"
    if ts.all_at:
        return f"{head}: all at the metric's {ts.all_at}, nothing compared"
    parts = []
    for verdict, word in (("better", "better"), ("worse", "worse")):
        found = [f"{s.variant} {sig(s.diff, 2) if s.diff < 0 else '+' + sig(s.diff, 2)}"
                 for s in ts.variants if s.verdict == verdict]
        if found:
            parts.append(f"{word} {', '.join(found)}")
    same = sum(1 for s in ts.variants if s.verdict == "same")
    bound = sum(1 for s in ts.variants if s.verdict in ("floor", "ceiling"))
    if same:
        parts.append(f"{same} within seed noise")
    if bound:
        parts.append(f"{bound} at floor or ceiling")
    if not parts:
        parts.append("no comparison (one variant or one seed)")
    return f"{head}: " + "; ".join(parts)
