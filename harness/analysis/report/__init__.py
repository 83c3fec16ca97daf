"""Turn result rows into report/tables.md, report/index.html and report/figures/*.png.

The report has four parts (docs: "The report"): the notes' two literature tables with "measured here"
columns and a verdict tally, the claims ledger (one row per claim of ``literature.yaml`` with its
computed verdict), one ablation section per suite, and provenance. Paper numbers come from
``harness/literature.yaml``; measurements come only from result rows, and the two never share a cell.

The same result files and suite files (which hold each suite's layout) always give byte-identical
output: every collection is sorted before use, floats are printed with fixed formats, figures are drawn
with matplotlib's default style on the Agg canvas at a fixed size and dpi, and PNG metadata carries no
software version. No torch import here.

Modules: ``load`` (rows through the store), ``layout`` (a suite's ``report:`` key, read from its suite
file as it is now), ``analysis`` (ablations, cost fits, overtake lengths), ``doc`` (the report as blocks
and sections, and those as markdown), ``markdown`` (tables as text), ``html`` and ``html_assets`` (the
blocks as one self-contained page, ``report/index.html``), ``figures``, ``literature`` (the notes'
tables), ``claims`` (the Claims section), ``sections`` (one suite's section), ``text`` (every word, en
and zh), ``fmt`` (number formats and orders).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
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
from harness.analysis.report.findings import findings_section
from harness.analysis.report.fmt import fmt_bytes, fmt_count, fmt_gflops, fmt_rate, natural_key
from harness.analysis.report.html import write_html
from harness.analysis.report.layout import SUITES_DIR, SuiteLayout, suite_layouts
from harness.analysis.report.literature import (
    LITERATURE_PATH,
    Summaries,
    literature_table,
    load_literature,
    measured_suites,
)
from harness.analysis.report.load import Loaded, load, load_rows
from harness.analysis.report.markdown import suite_table
from harness.analysis.report.sections import suite_section
from harness.analysis.report.target import ReportInUse, default_report_dir, report_conflict, write_source
from harness.analysis.report.text import LANGS, t
from harness.results.rows import ResultRow, device_label

__all__ = [
    "LITERATURE_PATH",
    "ReportInUse",
    "TaskSummary",
    "VariantSummary",
    "ablation",
    "cost_references",
    "default_report_dir",
    "fmt_bytes",
    "fmt_count",
    "fmt_gflops",
    "fmt_rate",
    "load_literature",
    "load_rows",
    "overtake_length",
    "print_warning",
    "report_conflict",
    "suite_table",
    "write_html",
    "write_report",
]

_PROVENANCE_FIELDS = (("prov_devices", "device"), ("prov_device_names", "device_name"),
                      ("prov_torch", "torch_version"), ("prov_harness", "harness_version"),
                      ("prov_commits", "git_commit"))


def _layout_note(layout: SuiteLayout, lang: str) -> str | None:
    """Why a suite's section has the default layout (its suite file missing or refused), or None."""
    if layout.error is not None:
        error = layout.error.replace("`", "'")
        return t(lang, "prov_layout_broken", suite=layout.suite, path=layout.path, error=error)
    if layout.path is None:
        tried = t(lang, "sep").join(f"`{p}`" for p in layout.tried)
        return t(lang, "prov_layout_missing", suite=layout.suite, tried=tried)
    return None


def _provenance(rows: list[ResultRow], skipped: int, n_files: int, layouts: dict[str, SuiteLayout],
                lang: str) -> Section:
    def counted(name: str) -> str:
        c = Counter(str(device_label(v)) for r in rows if (v := r.field_value(name)) is not None)
        return ", ".join(f"`{k}` ({n})" for k, n in sorted(c.items())) or t(lang, "prov_none")

    items = [t(lang, "prov_rows", n=len(rows), files=n_files, skipped=skipped)]
    items += [f"{t(lang, key)}: {counted(name)}" for key, name in _PROVENANCE_FIELDS]
    stamps = sorted(str(r.finished_at) for r in rows if r.finished_at)
    if stamps:
        items.append(t(lang, "prov_dates", a=stamps[0], b=stamps[-1]))
    items += [note for layout in layouts.values() if (note := _layout_note(layout, lang))]
    return Section(Heading(t(lang, "provenance")), "provenance", [Bullets(tuple(items))])


def _document(loaded: Loaded, results_dir: Path, layouts: dict[str, SuiteLayout], lang: str, fig_dir: Path,
              figures: list[str], verdicts: list[Verdict]) -> list[Section | Block]:
    """The whole report in ``lang`` as sections, each suite's in its layout (figures not yet in
    ``figures`` are drawn)."""
    rows = loaded.rows
    cache: Summaries = {}
    papers = load_literature()
    present = {str(r.suite) for r in rows}
    shown = [v for v in verdicts if getattr(v.claim.test, "suite", None) in present]
    summaries = [ablation(rows, suite, task, order=layout.spec.variant_order)
                 for suite, layout in layouts.items()
                 for task in sorted({str(r.task) for r in rows if r.suite == suite and not r.is_profile},
                                    key=natural_key)]
    doc: list[Section | Block] = [Section(Heading(t(lang, "title")), "intro", [Para(t(lang, "intro"))]),
                                  findings_section(shown, summaries, lang)]
    if not layouts or any(measured_suites(p) & present for p in papers):  # else: no paper is measured
        for i, series in enumerate(("transformer", "cv")):
            intro = [Para(t(lang, "lit_intro"))] if i == 0 else []
            doc.append(Section(Heading(t(lang, f"series_{series}")), "literature",
                               [*intro, literature_table(papers, series, rows, lang, cache, verdicts)],
                               key=series))
    elif layouts:
        doc.append(Para(t(lang, "literature_none")))
    shown_ids = {v.claim.id for v in shown}
    doc.append(claims_section(shown, lang, [v for v in verdicts if v.claim.id not in shown_ids]))
    if not layouts:
        doc.append(Para(t(lang, "no_results", path=results_dir.as_posix())))
    doc += [suite_section(rows, s, layout.spec, lang, fig_dir, figures) for s, layout in layouts.items()]
    doc.append(_provenance(rows, loaded.skipped, loaded.files, layouts, lang))
    return doc


def print_warning(message: str) -> None:
    """A warning of the report on stderr, one line."""
    sys.stderr.write(f"harness: warning: {message}\n")


def write_report(results_dir: Path, report_dir: Path, lang: str = "en", html: bool = True,
                 suites_dir: Path = SUITES_DIR, warn: Callable[[str], None] = print_warning,
                 overwrite: bool = False) -> Path:
    """Write ``report_dir/tables.md`` (in ``lang``), ``report_dir/figures/*.png`` and, with ``html``,
    ``report_dir/index.html`` (every language, ``lang`` shown first; :mod:`harness.analysis.report.html`);
    return the tables path.

    Each suite's layout is read from its suite file as it is now: the one its rows record, else
    ``suites_dir/<suite>.yaml`` (:mod:`harness.analysis.report.layout`). A suite file that does not load
    is passed to ``warn`` (one line) and its suite laid out by default; the provenance section says so.

    Figures that an earlier report wrote but this one does not are deleted, so the folder always matches
    the results it was built from. A folder that holds the report of other results
    (:mod:`harness.analysis.report.target`) is refused with :class:`ReportInUse` unless ``overwrite``;
    the folder's ``source.json`` then names ``results_dir``.
    """
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; expected one of {sorted(LANGS)}")
    results_dir, report_dir = Path(results_dir), Path(report_dir)
    conflict = None if overwrite else report_conflict(results_dir, report_dir)
    if conflict is not None:
        raise ReportInUse(conflict)
    loaded = load(results_dir)
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    verdicts = evaluate_claims(load_claims(), loaded.rows)
    layouts = suite_layouts(loaded.rows, Path(suites_dir))
    for layout in layouts.values():
        if layout.warning is not None:
            warn(layout.warning)
    docs = {lang: _document(loaded, results_dir, layouts, lang, fig_dir, figures, verdicts)}
    keep = set(figures)
    for old in sorted(fig_dir.glob("*.png")):
        if old.name not in keep:
            old.unlink()
    write_source(results_dir, report_dir)
    path = report_dir / "tables.md"
    path.write_text("\n".join(markdown_lines(docs[lang])).rstrip("\n") + "\n", encoding="utf-8", newline="\n")
    if html:
        for other in LANGS:
            docs.setdefault(other, _document(loaded, results_dir, layouts, other, fig_dir, figures, verdicts))
        write_html(docs, fig_dir, report_dir / "index.html", lang)
    return path
