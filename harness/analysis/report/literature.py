"""The notes' two literature tables: the papers' own columns from ``harness/literature.yaml``, then the
"measured here" columns from the suites each paper's ``measured`` entry names.

Paper numbers and measurements never share a cell. A paper that nothing measures keeps "—" in every
measured cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.analysis.claims import Verdict
from harness.analysis.report.analysis import TaskSummary, ablation
from harness.analysis.report.claims import verdict_tally
from harness.analysis.report.doc import Table
from harness.analysis.report.fmt import (
    DASH,
    finite,
    fmt_bytes,
    fmt_count,
    fmt_diff,
    fmt_gflops,
    fmt_mean,
    fmt_p,
    fmt_rate,
    natural_key,
)
from harness.analysis.report.markdown import scale_text
from harness.analysis.report.text import LIT_HEADERS, t
from harness.results.rows import ResultRow

__all__ = ["LITERATURE_PATH", "PROSE", "Summaries", "literature_table", "load_literature", "measured_suites",
           "paper_table"]

LITERATURE_PATH = Path(__file__).resolve().parents[2] / "literature.yaml"

PROSE = ("problem", "method", "result", "training", "other")  # the papers' own text columns, in order
Summaries = dict[tuple[Any, ...], TaskSummary]  # ablations already computed, by (suite, task, metric, base)


def load_literature(path: Path | None = None) -> list[dict[str, Any]]:
    """The paper list from ``literature.yaml`` (see the schema at the top of that file)."""
    with Path(path or LITERATURE_PATH).open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    papers = data.get("papers", []) if isinstance(data, dict) else []
    return [p for p in papers if isinstance(p, dict)]


def paper_table(ref: str) -> Mapping[str, Any]:
    """A paper's reported table by ``<paper id>.<table>`` (empty when literature.yaml has none)."""
    pid, _, table = ref.partition(".")
    entry = next((p for p in load_literature() if p.get("id") == pid), {})
    tables = entry.get("tables")
    found = tables.get(table) if isinstance(tables, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _measured_line(ts: TaskSummary, variant: str, m: Mapping[str, Any], lang: str) -> list[str] | None:
    """The measured cells of one (variant, task) of a paper row, or None when it has no row."""
    s = ts.get(variant)
    if s is None:
        return None
    c = s.cost
    mem = fmt_bytes(c.get("mem_bytes"))
    if mem != DASH and s.mem_kinds:
        mem += f" ({'/'.join(s.mem_kinds)})"
    show = m.get("headline", True) is not False
    headline = DASH
    if s.n and show:
        headline = f"{ts.metric} {fmt_mean(s.mean, s.half_width, s.n)} (n={s.n})"
    if not show:
        delta = DASH
    elif s.is_baseline:
        delta = t(lang, "ref")
    elif finite(s.diff):
        delta = (f"{fmt_diff(s.diff, s.diff_half_width)} (n={s.n_pairs}, "
                 f"p_Holm={fmt_p(s.p_holm)}; vs {ts.baseline})")
    else:
        delta = DASH
    return [scale_text(ts, lang, short=True), fmt_count(c.get("params")), fmt_gflops(c.get("flops_fwd")), mem,
            fmt_rate(c.get("tokens_per_s")), headline, delta]


def measured_cells(paper: Mapping[str, Any], rows: list[ResultRow], lang: str, cache: Summaries) -> list[str]:
    """The seven "measured here" cells of one literature row ("—" where nothing was measured)."""
    spec = paper.get("measured")
    specs = spec if isinstance(spec, list) else [spec] if isinstance(spec, Mapping) else []
    lines: list[tuple[str, list[str]]] = []  # (label prefix, cells)
    for m in specs:
        suite, variant, base = str(m.get("suite")), str(m.get("variant")), m.get("baseline")
        tasks = [m["task"]] if m.get("task") else sorted(
            {str(r.task) for r in rows
             if r.suite == suite and not r.is_profile and str(r.variant) == variant}, key=natural_key)
        for task in tasks:
            key = (suite, task, m.get("metric"), base)
            if key not in cache:
                cache[key] = ablation(rows, suite, task, metric=m.get("metric"), baseline=base)
            cells = _measured_line(cache[key], variant, m, lang)
            if cells is None:
                continue
            label = f"{variant} ({task})" if len(specs) > 1 else task
            lines.append((f"{label}: " if len(tasks) > 1 or len(specs) > 1 else "", cells))
    if not lines:
        return [DASH] * 7
    out = []
    for j in range(7):
        parts = [cells[j] if j == 0 or cells[j] == DASH else prefix + cells[j] for prefix, cells in lines]
        out.append("\n".join(parts) if any(p != DASH for p in parts) else DASH)
    return out


def _text(p: Mapping[str, Any], key: str, lang: str) -> str:
    v = p.get(key)
    if isinstance(v, Mapping):
        v = v.get(lang) or v.get("en")
    return str(v).strip() if v else DASH


def _with_notes(p: Mapping[str, Any], key: str, lang: str) -> str:
    """A paper fact, with the notes' differing value beside it."""
    value = p.get(key)
    notes = p.get("notes")
    noted = notes.get(key) if isinstance(notes, Mapping) else None
    if value is None:
        return DASH
    if noted is not None and str(noted) != str(value):
        return t(lang, "notes_diff", value=value, notes=noted)
    return str(value)


def literature_table(papers: list[dict[str, Any]], series: str, rows: list[ResultRow], lang: str,
                     cache: Summaries, verdicts: Sequence[Verdict] = ()) -> Table:
    """The notes' table of one series (``transformer`` or ``cv``): the title, the measured headline
    metric and its change against vanilla, the tally of the computed verdicts of the paper's claims (the
    Claims section has them one by one) and the other measured columns first, then the paper's own year
    and venue and its prose (problem to other), which the HTML page folds."""
    body = []
    for p in papers:
        if p.get("series") != series:
            continue
        title = str(p.get("title") or p.get("id"))
        if p.get("arxiv"):
            title = f"[{title}](https://arxiv.org/abs/{p['arxiv']})"
        scale, params, flops, mem, rate, headline, delta = measured_cells(p, rows, lang, cache)
        body.append([title, headline, delta,
                     verdict_tally([v for v in verdicts if v.claim.paper == p.get("id")], lang),
                     scale, params, flops, mem, rate,
                     _with_notes(p, "year", lang), _with_notes(p, "venue", lang),
                     *(_text(p, k, lang) for k in PROSE)])
    first = len(LIT_HEADERS[lang]) - len(PROSE)
    return Table.of(LIT_HEADERS[lang], body, fold=range(first, first + len(PROSE)))


def measured_suites(paper: Mapping[str, Any]) -> set[str]:
    """The suites a paper's ``measured`` entries and its claims' tests name."""
    spec = paper.get("measured")
    specs = spec if isinstance(spec, list) else [spec] if isinstance(spec, Mapping) else []
    names = {str(m.get("suite")) for m in specs if isinstance(m, Mapping) and m.get("suite")}
    for c in paper.get("claims") or []:
        test = c.get("test") if isinstance(c, Mapping) else None
        if isinstance(test, Mapping) and test.get("suite"):
            names.add(str(test["suite"]))
    return names
