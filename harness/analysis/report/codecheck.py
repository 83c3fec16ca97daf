"""Whether the two arms of each comparison ran the same code, from the rows' own ``code`` records.

Every row says which version of each file of its model, its task and the training step produced it
(:mod:`harness.results.provenance`). Under each ablation table the report names, for every variant
against the baseline, the files both arms depend on that their rows hold in different versions, and
the rows whose code is not known file by file (produced from a tree with uncommitted changes, or
migrated from a dirty commit). A difference in a file the comparison is about (the variant's own
model file) is expected between arms of different commits too; the line lists every file so the
reader can judge, and the ledger's scale column says the same per claim.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.analysis.report.analysis import TaskSummary
from harness.analysis.report.doc import Para
from harness.analysis.report.load import latest
from harness.analysis.report.text import t
from harness.results.provenance import code_differences
from harness.results.rows import ResultRow

__all__ = ["code_lines", "code_note"]

SHOWN = 4  # files named per pair; the rest are counted


def code_note(diff: dict, lang: str) -> str:
    """'different versions of a.py, b.py and 2 more; 3 rows of unknown code', or '' when the same."""
    parts = []
    files = list(diff.get("files") or [])
    if files:
        named = ", ".join(f"`{f}`" for f in files[:SHOWN])
        more = t(lang, "code_more", n=len(files) - SHOWN) if len(files) > SHOWN else ""
        parts.append(t(lang, "code_files", files=named + more))
    if diff.get("unknown"):
        parts.append(t(lang, "code_unknown", n=diff["unknown"]))
    return t(lang, "sep").join(parts)


def code_lines(ts: TaskSummary, rows: Iterable[ResultRow], lang: str) -> list[Para]:
    """The paragraph under an ablation table: the pairs (variant, baseline) whose arms ran different
    code, or that every pair ran the same code for what it shares."""
    if not ts.baseline:
        return []
    picked = [r for r in rows if r.suite == ts.suite and r.task == ts.task and not r.is_profile
              and r.status == "ok"]
    newest, _ = latest(picked, ("variant", "seed"))
    by_variant: dict[str, list[ResultRow]] = {}
    for r in newest:
        by_variant.setdefault(str(r.variant), []).append(r)
    base = by_variant.get(ts.baseline, [])
    cells = []
    for s in ts.variants:
        if s.is_baseline or s.variant not in by_variant:
            continue
        note = code_note(code_differences([*by_variant[s.variant], *base]), lang)
        if note:
            cells.append(f"`{s.variant}`: {note}")
    if not cells:
        return [Para(t(lang, "code_same", baseline=ts.baseline))]
    return [Para(t(lang, "code_differ", baseline=ts.baseline, cells="; ".join(cells)))]
