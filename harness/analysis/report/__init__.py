"""Turn result rows into report/tables.md, report/index.html and report/figures/*.png.

The report has four parts (docs: "The report"): the notes' two literature tables with "measured here"
columns and a verdict tally, the claims ledger (one row per claim of ``literature.yaml`` with its
computed verdict), one ablation section per suite, and provenance. Paper numbers come from
``harness/literature.yaml``; measurements come only from result rows, and the two never share a cell.

The same result files always give byte-identical output: every collection is sorted before use, floats
are printed with fixed formats, figures are drawn with matplotlib's default style on the Agg canvas at a
fixed size and dpi, and PNG metadata carries no software version. No torch import here.

Modules: ``load`` (rows through the store), ``layout`` (a suite's ``report:`` key), ``analysis``
(ablations, cost fits, overtake lengths), ``doc`` (the report as blocks and sections, and those as
markdown), ``markdown`` (tables as text), ``html`` and ``html_assets`` (the blocks as one self-contained
page, ``report/index.html``), ``figures``, ``literature`` (the notes' tables), ``claims`` (the Claims
section), ``sections`` (one suite's section), ``text`` (every word, en and zh), ``fmt`` (number formats
and orders).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.analysis.claims import Verdict, evaluate_claims, load_claims
from harness.analysis.report.analysis import (
    TaskSummary,
    VariantSummary,
    ablation,
    cost_references,
    overtake_length,
)
from harness.analysis.report.claims import claims_section
from harness.analysis.report.doc import Block, Bullets, Heading, Para, Section, markdown_lines
from harness.analysis.report.fmt import fmt_bytes, fmt_count, fmt_gflops, fmt_rate, natural_key
from harness.analysis.report.html import write_html
from harness.analysis.report.literature import LITERATURE_PATH, Summaries, literature_table, load_literature
from harness.analysis.report.load import Loaded, load, load_rows
from harness.analysis.report.markdown import suite_table
from harness.analysis.report.sections import suite_section
from harness.analysis.report.text import LANGS, t
from harness.results.rows import ResultRow

__all__ = [
    "LITERATURE_PATH",
    "TaskSummary",
    "VariantSummary",
    "ablation",
    "cost_references",
    "fmt_bytes",
    "fmt_count",
    "fmt_gflops",
    "fmt_rate",
    "load_literature",
    "load_rows",
    "overtake_length",
    "suite_table",
    "write_html",
    "write_report",
]

_PROVENANCE_FIELDS = (("prov_devices", "device"), ("prov_device_names", "device_name"),
                      ("prov_torch", "torch_version"), ("prov_harness", "harness_version"),
                      ("prov_commits", "git_commit"))


def _provenance(rows: list[ResultRow], skipped: int, n_files: int, lang: str) -> Section:
    def counted(name: str) -> str:
        c = Counter(str(v) for r in rows if (v := r.field_value(name)) is not None)
        return ", ".join(f"`{k}` ({n})" for k, n in sorted(c.items())) or t(lang, "prov_none")

    items = [t(lang, "prov_rows", n=len(rows), files=n_files, skipped=skipped)]
    items += [f"{t(lang, key)}: {counted(name)}" for key, name in _PROVENANCE_FIELDS]
    stamps = sorted(str(r.finished_at) for r in rows if r.finished_at)
    if stamps:
        items.append(t(lang, "prov_dates", a=stamps[0], b=stamps[-1]))
    return Section(Heading(t(lang, "provenance")), "provenance", [Bullets(tuple(items))])


def _document(loaded: Loaded, results_dir: Path, lang: str, fig_dir: Path, figures: list[str],
              verdicts: list[Verdict]) -> list[Section | Block]:
    """The whole report in ``lang`` as sections (figures not yet in ``figures`` are drawn)."""
    rows = loaded.rows
    cache: Summaries = {}
    papers = load_literature()
    doc: list[Section | Block] = [Section(Heading(t(lang, "title")), "intro", [Para(t(lang, "intro"))])]
    for series in ("transformer", "cv"):
        doc.append(Section(Heading(t(lang, f"series_{series}")), "literature",
                           [literature_table(papers, series, rows, lang, cache, verdicts)], key=series))
    doc.append(claims_section(verdicts, lang))
    suites = sorted({str(r.suite) for r in rows if r.suite is not None}, key=natural_key)
    if not suites:
        doc.append(Para(t(lang, "no_results", path=results_dir.as_posix())))
    doc += [suite_section(rows, suite, lang, fig_dir, figures) for suite in suites]
    doc.append(_provenance(rows, loaded.skipped, loaded.files, lang))
    return doc


def write_report(results_dir: Path, report_dir: Path, lang: str = "en", html: bool = True) -> Path:
    """Write ``report_dir/tables.md`` (in ``lang``), ``report_dir/figures/*.png`` and, with ``html``,
    ``report_dir/index.html`` (every language, ``lang`` shown first; :mod:`harness.analysis.report.html`);
    return the tables path.

    Figures that an earlier report wrote but this one does not are deleted, so the folder always matches
    the results it was built from.
    """
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; expected one of {sorted(LANGS)}")
    results_dir, report_dir = Path(results_dir), Path(report_dir)
    loaded = load(results_dir)
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    verdicts = evaluate_claims(load_claims(), loaded.rows)
    docs = {lang: _document(loaded, results_dir, lang, fig_dir, figures, verdicts)}
    keep = set(figures)
    for old in sorted(fig_dir.glob("*.png")):
        if old.name not in keep:
            old.unlink()
    path = report_dir / "tables.md"
    path.write_text("\n".join(markdown_lines(docs[lang])).rstrip("\n") + "\n", encoding="utf-8", newline="\n")
    if html:
        for other in LANGS:
            docs.setdefault(other, _document(loaded, results_dir, other, fig_dir, figures, verdicts))
        write_html(docs, fig_dir, report_dir / "index.html", lang)
    return path
