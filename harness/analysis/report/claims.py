"""The claims ledger in words: the report's Claims section, the literature tables' verdict column and
the text ``harness claims`` prints.

Verdicts and their evidence come from :mod:`harness.analysis.claims`; this module only formats them,
with every word from :mod:`harness.analysis.report.text` (English and Chinese).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.analysis.claims import VERDICTS, Verdict
from harness.analysis.claims.evidence import NOT_SEPARABLE, Comparison
from harness.analysis.report.codecheck import code_note
from harness.analysis.report.doc import Heading, Para, Section, Table
from harness.analysis.report.fmt import DASH, finite, fmt_bytes, fmt_count, fmt_diff, fmt_gflops, fmt_p, sig
from harness.analysis.report.text import CLAIM_HEADERS, EXPECT_WORDS, VERDICT_WORDS, t

__all__ = ["anchor", "claim_lines", "claims_section", "confound_text", "evidence_text", "verdict_tally"]


def anchor(heading: str) -> str:
    """The GitHub anchor of a markdown heading ("## Suite: sandwich" -> "#suite-sandwich")."""
    text = heading.lstrip("#").strip().lower()
    return "#" + re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def verdict_tally(verdicts: Sequence[Verdict], lang: str) -> str:
    """"2 supported, 1 not separable" (in the order of :data:`harness.analysis.claims.VERDICTS`); "—"
    if none."""
    counts = Counter(v.verdict for v in verdicts)
    sep = t(lang, "sep")
    return sep.join(f"{counts[k]} {VERDICT_WORDS[lang][k]}" for k in VERDICTS if counts[k]) or DASH


def _quantity(q: str | None, x: Any) -> str:
    if not finite(x):
        return DASH
    if q in ("act_bytes", "mem_bytes"):
        return fmt_bytes(x)
    if q == "flops_fwd":
        return f"{fmt_gflops(x)} GFLOPs"
    if q in ("params", "params_applied"):
        return fmt_count(x)
    return sig(float(x))


def _comparison(v: Verdict, c: Comparison, lang: str) -> list[str]:
    if finite(c.p_holm):  # a two-sided test of the ledger's family, Holm-adjusted
        p = t(lang, "ev_p_holm", p=fmt_p(c.p_holm), perm=fmt_p(c.p_perm_holm), k=c.family)
    elif c.family > 1:  # an interval form, judged at the ledger's simultaneous level
        p = t(lang, "ev_p_level", p=fmt_p(c.p), perm=fmt_p(c.p_perm), level=sig(1.0 - c.conf), k=c.family)
    else:
        p = t(lang, "ev_p", p=fmt_p(c.p), perm=fmt_p(c.p_perm))
    sup = f"{c.superiority:.2f}" if finite(c.superiority) else DASH
    out = [t(lang, "ev_diff", metric=v.metric or "", label=c.label, diff=fmt_diff(c.diff, c.half_width),
             conf=sig(100.0 * c.conf), n=c.n, p=p, sup=sup)]
    if c.shared_with:
        out.append(t(lang, "ev_shared", claims=", ".join(f"`{i}`" for i in c.shared_with)))
    if v.verdict == NOT_SEPARABLE and finite(c.detectable):
        key = "ev_detect" if c.seeds_needed is not None else "ev_detect_never"
        out.append(t(lang, key, mde=sig(c.detectable), seeds=c.seeds_needed))
    return out


def _ratios(v: Verdict, lang: str) -> list[str]:
    out = []
    for r in v.ratios:
        if r.ratio is not None:
            out.append(t(lang, "ev_ratio", quantity=v.quantity, at=f"{v.at:.0f}",
                         variant=v.claim.test.variant, ref=r.reference, ratio=f"{r.ratio:.3f}"))
        elif r.ref_failed:
            out.append(t(lang, "ev_ratio_failed", quantity=v.quantity, at=f"{v.at:.0f}", ref=r.reference))
    out.append(t(lang, "ev_bound_below", x=sig(v.claim.test.below)))
    held = [f"{r.what.get(lang)} (`{r.reference}`)" for r in v.ratios if r.holds]
    missed = [f"{r.what.get(lang)} (`{r.reference}`)" for r in v.ratios if r.holds is False]
    sep = t(lang, "sep")
    words = ([t(lang, "ev_holds", refs=sep.join(held))] if held else []) + (
        [t(lang, "ev_not_holds", refs=sep.join(missed))] if missed else [])
    return [*out, sep.join(words)] if words else out


def _counts(v: Verdict, lang: str) -> list[str]:
    out = []
    for c in v.counts:
        verdict = t(lang, "ev_yes" if c.holds else "ev_no") if c.holds is not None else DASH
        if c.expect == "about":
            tol = next((k.tolerance for k in v.claim.test.checks if k.quantity == c.quantity), 0.0)
            out.append(t(lang, "ev_count_about", quantity=c.quantity, value=_quantity(c.quantity, c.value),
                         ref=_quantity(c.quantity, c.bound), tol=f"{100 * tol:g}%", verdict=verdict))
            continue
        expect = EXPECT_WORDS[lang][c.expect] + (f" (×{sig(c.bound)})" if c.bound is not None else "")
        out.append(t(lang, "ev_count", quantity=c.quantity, value=_quantity(c.quantity, c.value),
                     ref=_quantity(c.quantity, c.ref_value), expect=expect, verdict=verdict))
    return out


def _exponent(v: Verdict, lang: str) -> list[str]:
    spec = v.claim.test
    bound = " ".join(x for x in (f"≥ {spec.min:g}" if spec.min is not None else "",
                                 f"≤ {spec.max:g}" if spec.max is not None else "") if x)
    return [t(lang, "ev_exponent", quantity=v.quantity, k=f"{v.exponent:.2f}", lo=f"{spec.range[0]:g}",
              hi=f"{spec.range[1]:g}", points=v.fit_points, bound=bound)]


def evidence_text(v: Verdict, lang: str) -> str:
    """What the verdict rests on, in one cell (parts joined by "; ")."""
    spec = v.claim.test
    if v.reason == "no_test":
        return t(lang, "ev_no_test", needs=spec.needs.get(lang))
    if v.reason == "no_rows":
        return t(lang, "ev_no_rows", suite=getattr(spec, "suite", "?"))
    parts: list[str] = []
    if v.bound:
        x = f"{v.bound_value or 0.0:.3g}"
        bound = t(lang, "chance", x=x) if v.bound_chance else x
        parts += [t(lang, v.bound, bound=f"{v.metric} {bound}"), t(lang, f"ev_nothing_{v.bound}")]
    if v.comparison is not None:
        parts += _comparison(v, v.comparison, lang)
    if v.means:
        means = ", ".join(f"{k} {sig(m, 4)}" for k, m in v.means.items())
        parts.append(t(lang, "ev_drops", high=spec.high, low=spec.low, means=means) if spec.kind == "layout"
                     else t(lang, "ev_means", means=means))
    if v.ratios:
        parts += _ratios(v, lang)
    if v.counts:
        parts += _counts(v, lang)
    if v.exponent is not None:
        parts += _exponent(v, lang)
    return "; ".join(parts) or DASH


def durability_text(v: Verdict, lang: str) -> str:
    d = v.durability
    if d is None:
        return DASH
    text = t(lang, "dur", trend=t(lang, d.trend), step=d.mid_step, mid=fmt_diff(d.mid.diff, d.mid.half_width),
             end=fmt_diff(d.end.diff, d.end.half_width))
    return text + (t(lang, "dur_early") if d.early else "")


def scale_cell(v: Verdict, lang: str) -> str:
    """Where and at what size the evidence ran, with a link to the suite's section of the report."""
    if not v.suite or v.reason in ("no_rows", "no_test"):
        return DASH
    sc = v.scale
    parts = [f"{v.suite}/{v.task}" if v.task else str(v.suite)]
    if sc.get("seq_len"):
        parts.append("L=" + "/".join(f"{x:g}" if isinstance(x, float) else str(x) for x in sc["seq_len"]))
    if sc.get("steps"):
        parts.append(t(lang, "steps", n="/".join(str(x) for x in sc["steps"])))
    if sc.get("batch_size"):
        parts.append("batch " + "/".join(str(x) for x in sc["batch_size"]))
    if sc.get("device_name"):
        parts.append("/".join(str(x) for x in sc["device_name"]))
    code = code_note({"files": sc.get("code_files"), "unknown": (sc.get("code_unknown") or [0])[0]}, lang)
    if code:
        parts.append(t(lang, "code_scale") + ": " + code)
    link = t(lang, "section_link", anchor=anchor(t(lang, "suite", suite=v.suite)))
    return t(lang, "sep").join(parts) + " " + link


def confound_text(v: Verdict, lang: str) -> str:
    """The keys the claim's arms differ in besides what it is about ("`activation`: gelu vs relu
    (`vanilla`)"), or "—"."""
    if not v.confounds:
        return DASH
    return t(lang, "sep").join(f"`{c.key}`: {c.value} {t(lang, 'vs')} {c.base} (`{c.reference}`)"
                               for c in v.confounds)


def _source(v: Verdict, lang: str) -> str:
    return f"*{t(lang, 'by_' + v.claim.by)}*: {v.claim.source}"


def claims_section(verdicts: Sequence[Verdict], lang: str, left_out: Sequence[Verdict] = ()) -> Section:
    """The report's Claims section: one row per claim, with its computed verdict, the keys its arms also
    differ in, and its evidence; the verdict (:data:`harness.analysis.claims.VERDICTS`) is each row's
    filter key. ``left_out``: the claims the report's suites do not bear, counted in one line."""
    sec = Section(Heading(t(lang, "claims")), "claims", [Para(t(lang, "claims_intro"))])
    if left_out:
        untestable = sum(1 for v in left_out if v.reason == "no_test")
        sec.blocks.append(Para(t(lang, "claims_left_out", n=len(left_out), untestable=untestable)))
    if not verdicts:
        sec.blocks.append(Para(t(lang, "claims_none")))
        return sec
    body = [[f"{v.claim.text.get(lang)} (`{v.claim.id}`)", v.claim.paper, _source(v, lang),
             f"**{VERDICT_WORDS[lang][v.verdict]}**", confound_text(v, lang), evidence_text(v, lang),
             durability_text(v, lang), scale_cell(v, lang)] for v in verdicts]
    sec.blocks.append(Para(t(lang, "claims_tally", tally=verdict_tally(verdicts, lang))))
    early = [f"`{v.claim.id}`" for v in verdicts if v.durability is not None and v.durability.early]
    if early:
        sec.blocks.append(Para(t(lang, "claims_early", ids=t(lang, "sep").join(early))))
    sec.blocks.append(Table.of(CLAIM_HEADERS[lang], body, keys=[v.verdict for v in verdicts]))
    return sec


def claim_lines(v: Verdict, lang: str = "en") -> list[str]:
    """One claim as plain text for the terminal (``harness claims``)."""
    scale = scale_cell(v, lang)
    c = v.claim
    head = f"[{VERDICT_WORDS[lang][v.verdict]}] {c.id} ({c.paper}; {c.by}: {c.source})"
    return [head,
            f"  {v.claim.text.get(lang)}",
            *([f"  arms also differ in: {confound_text(v, lang)}"] if v.confounds else []),
            f"  evidence: {evidence_text(v, lang)}",
            *([f"  durability: {durability_text(v, lang)}"] if v.durability else []),
            *([f"  scale: {scale.rsplit(' [', 1)[0]}"] if scale != DASH else [])]
