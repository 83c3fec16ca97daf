"""One section of the report per suite: overview grid, train x eval matrices, per-task ablations with
their figures, and cost sweeps (fitted exponents, overtake lengths, cost ratios), as blocks
(:mod:`harness.analysis.report.doc`). The variant is each table row's filter key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.analysis.report.analysis import (
    ALPHA,
    PROFILE_QUANTITIES,
    ProfileSeries,
    ablation,
    cost_references,
    overtake_length,
    profile_series,
)
from harness.analysis.report.budget import budget_lines
from harness.analysis.report.codecheck import code_lines
from harness.analysis.report.configs import config_blocks
from harness.analysis.report.curves import curve_section
from harness.analysis.report.doc import Block, Bullets, Figure, Heading, Para, Section, Table
from harness.analysis.report.figures import cost_figure, metric_figure, samples_figure
from harness.analysis.report.fmt import DASH, finite, fmt_mean, in_order, natural_key, slug, uniq
from harness.analysis.report.literature import paper_table
from harness.analysis.report.load import latest
from harness.analysis.report.markdown import ablation_table, failure_lines, scale_text
from harness.analysis.report.pareto import pareto_section
from harness.analysis.report.text import ABL_HEADERS, t
from harness.analysis.stats import mean_ci, mode
from harness.results.rows import ResultRow
from harness.suite.spec import MatrixSpec, ReportSpec

__all__ = ["samples_section", "suite_section"]

CROSS_QUANTITIES = ("step_ms", "act_bytes")  # the costs compared with the references


def _mean3(values: list[Any]) -> str:
    vals = [float(v) for v in values if finite(v)]
    return f"{sum(vals) / len(vals):.3f}" if vals else DASH


def _grid_cell(rows: list[ResultRow], layout: ReportSpec) -> str:
    if not rows:
        return DASH
    text = " / ".join(_mean3([r.metrics.get(m) for r in rows]) for m in layout.grid)
    for e in layout.extras:
        if any(finite(r.field_value(e)) for r in rows):
            text += f"; {e} {_mean3([r.field_value(e) for r in rows])}"
    return f"{text} (n={len(rows)})"


def grid_section(srows: list[ResultRow], layout: ReportSpec, tasks: list[str], lang: str) -> list[Block]:
    """A variant x task table of several metrics per cell ("tok_acc / seq_acc"), as papers lay out
    their algorithmic tables, with the layout's ``extras`` row fields (such as ponder_steps)."""
    if not layout.grid:
        return []
    rows, _ = latest((r for r in srows if not r.is_profile), ("variant", "task", "seed"))
    cells: dict[tuple[str, str], list[ResultRow]] = {}
    for r in rows:
        if r.status == "ok":
            cells.setdefault((str(r.variant), str(r.task)), []).append(r)
    variants = in_order((str(r.variant) for r in rows), layout.variant_order)
    body = [[v, *(_grid_cell(cells.get((v, task), []), layout) for task in tasks)] for v in variants]
    return [Heading(t(lang, "grid", metrics=" / ".join(layout.grid))),
            Table.of(["variant", *tasks], body, keys=variants)]


def _matrix_cell(rows: list[ResultRow], m: MatrixSpec, mode_: str, ref: Any) -> str:
    mean, hw, n = mean_ci([r.metrics.get(f"{m.metric}@{mode_}" if mode_ else m.metric) for r in rows])
    if not n:
        text = DASH
    elif m.scale >= 10:  # percent-like: one decimal, as papers print them
        text = f"{mean * m.scale:.1f}" + (f" ± {hw * m.scale:.1f}" if finite(hw) else "") + f" (n={n})"
    else:
        text = fmt_mean(mean * m.scale, hw * m.scale, n) + f" (n={n})"
    return text + (f" [{ref}]" if ref is not None else "")


def matrix_section(srows: list[ResultRow], m: MatrixSpec, lang: str) -> list[Block]:
    """Rows = variants (training setting), columns = eval modes, with the paper's table beside ours."""
    rows, _ = latest((r for r in srows if not r.is_profile and str(r.task) == m.task),
                     ("variant", "task", "seed"))
    paper = paper_table(m.paper) if m.paper else {}
    values = paper.get("values")
    body = []
    for variant, row_label in m.rows.items():
        ok = [r for r in rows if str(r.variant) == variant and r.status == "ok"]
        paper_row = values.get(row_label) if isinstance(values, dict) else None
        body.append([f"{row_label} (`{variant}`)", *(
            _matrix_cell(ok, m, mode_, paper_row.get(col) if isinstance(paper_row, dict) else None)
            for mode_, col in m.columns.items())])
    out: list[Block] = [Heading(f"### {m.title or f'{m.metric}: {m.task}'}"),
                        Para(t(lang, "matrix_note", metric=m.metric))]
    cap = paper.get("caption")
    if cap:
        out.append(Para(str(cap.get(lang) or cap.get("en")) if isinstance(cap, dict) else str(cap)))
    return [*out, Table.of(["train \\ eval", *m.columns.values()], body, keys=list(m.rows))]


def _overtake_cell(ps: ProfileSeries, ref: ProfileSeries, q: str, failed: list[float], lengths: list[float],
                   lang: str) -> str:
    mine = dict(ps.points[q])
    n = overtake_length(mine, dict(ref.points[q]), failed, lengths)
    if n is None:
        return t(lang, "never", n=f"{lengths[-1]:.0f}" if lengths else "?")
    if n == min(mine, default=n):
        return t(lang, "from_start", n=f"{n:.0f}")
    return f"{n:.0f}"


def _ratio_cell(ps: ProfileSeries, ref: ProfileSeries, q: str, at: float) -> str:
    a, b = dict(ps.points[q]).get(at), dict(ref.points[q]).get(at)
    return f"{a / b:.3f}" if a is not None and b else DASH


def overtake_section(series: list[ProfileSeries], prows: list[ResultRow], refs: list[str], ratio_at: Any,
                     lang: str) -> list[Block]:
    """From which length each variant stays cheaper than each reference, and the cost ratios at one length."""
    others = [ps for ps in series if ps.variant not in refs]
    if not refs or not others:
        return []
    by_name = {ps.variant: ps for ps in series}
    lengths = sorted({float(r.seq_len or 0) for r in prows if finite(r.seq_len)})
    # the newest cell per length only: a reference that failed once and ran later is no win there
    failed = {v: [float(r.seq_len or 0) for r in by_name[v].failures if finite(r.seq_len)] for v in refs}
    pairs = [(ref, q) for ref in refs for q in CROSS_QUANTITIES]
    body = [[ps.variant, *(_overtake_cell(ps, by_name[ref], q, failed[ref], lengths, lang)
                           for ref, q in pairs)] for ps in others]
    keys = [ps.variant for ps in others]
    out: list[Block] = [Para(t(lang, "overtake")),
                        Table.of(["variant", *(f"{q} < {ref}" for ref, q in pairs)], body, keys=keys)]
    if finite(ratio_at):
        at = float(ratio_at)
        rbody = [[ps.variant, *(_ratio_cell(ps, by_name[ref], q, at) for ref, q in pairs)] for ps in others]
        heads = ["variant", *(f"{q} / {ref}" for ref, q in pairs)]
        out += [Para(t(lang, "ratio", n=f"{at:.0f}")), Table.of(heads, rbody, keys=keys)]
    return out


def _task_section(rows: list[ResultRow], suite: str, task: str, lang: str, fig_dir: Path,
                  figures: list[str], order: list[str]) -> list[Block]:
    """One task's ablation table with its budget lines, each variant's config against the baseline's,
    its strip plot, accuracy against cost and its failed jobs (variants in ``order``)."""
    ts = ablation(rows, suite, task, order=order)
    headers, body = ablation_table(ts, lang)
    k = sum(1 for s in ts.variants if not s.is_baseline and finite(s.p))
    out: list[Block] = [
        Heading(t(lang, "task", task=task)), Para(t(lang, "scale", scale=scale_text(ts, lang))),
        Table.of(headers, body, keys=[s.variant for s in ts.variants]),
        Para(t(lang, "direction", metric=ts.metric, alpha=ALPHA, k=k,
               direction=t(lang, "higher" if ts.higher_is_better else "lower")))]
    if ABL_HEADERS[lang]["params_applied"] in headers:
        out.append(Para(t(lang, "applied_note")))
    out += budget_lines(ts, rows, lang)  # which budget each comparison holds; budget-matched pairs
    out += code_lines(ts, rows, lang)  # whether each comparison's arms ran the same code
    out += config_blocks(rows, ts, lang)  # what each variant changes against the baseline
    if ts.superseded:
        out.append(Para(t(lang, "superseded", n=ts.superseded)))
    if ts.all_at and ts.bound is not None:  # nothing was learned (or everything): say so, draw nothing
        value = ts.bound.worst if ts.all_at == "floor" else ts.bound.best
        out.append(Para(t(lang, f"all_{ts.all_at}", metric=ts.metric, x=f"{value:.3g}")))
    elif any(s.values for s in ts.variants):
        name = slug(suite, task, "metric") + ".png"
        if name not in figures:  # drawn once for both languages
            metric_figure(ts, fig_dir / name)
            figures.append(name)
        out += [Figure(name, f"{suite} {task} {ts.metric}"), Para(t(lang, "fig_metric", metric=ts.metric))]
        out += curve_section(rows, suite, task, ts.metric, [s.variant for s in ts.variants], lang)
        out += pareto_section(ts, lang, fig_dir, figures)  # accuracy against step time and memory
    out += samples_section(rows, suite, task, lang, fig_dir, figures, order)
    if ts.failures:
        out += [Para(t(lang, "failed")), Bullets(tuple(failure_lines(ts.failures)))]
    return out


def samples_section(rows: list[ResultRow], suite: str, task: str, lang: str, fig_dir: Path,
                    figures: list[str], order: list[str] | None = None) -> list[Block]:
    """The task's sample images (rows' ``samples``, see ``Task.samples``): one figure row per variant,
    from its lowest seed's newest ok training row; nothing when no row carries samples."""
    trained = [r for r in rows if r.suite == suite and str(r.task) == task and not r.is_profile]
    newest, _ = latest(trained, ("variant", "seed"))
    chosen: dict[str, ResultRow] = {}
    for r in newest:
        if r.status == "ok" and r.samples:
            old = chosen.get(str(r.variant))
            if old is None or natural_key(str(r.seed)) < natural_key(str(old.seed)):
                chosen[str(r.variant)] = r
    if not chosen:
        return []
    shown = in_order(chosen, order or [])
    name = slug(suite, task, "samples") + ".png"
    if name not in figures:  # drawn once for both languages
        samples_figure([(f"{v} (seed {chosen[v].seed})", dict(chosen[v].samples or {})) for v in shown],
                       f"{suite} / {task}: samples", fig_dir / name)
        figures.append(name)
    return [Figure(name, f"{suite} {task} samples"), Para(t(lang, "fig_samples"))]


def _exponent_table(series: list[ProfileSeries], layout: ReportSpec, lang: str) -> list[Block]:
    headers = ["variant", *(f"k({q})" for q in PROFILE_QUANTITIES), "seq_len"]
    body = []
    for ps in series:
        xs = sorted({x for pts in ps.points.values() for x, _ in pts})
        span = f"{xs[0]:.0f}–{xs[-1]:.0f} ({len(xs)})" if xs else DASH
        body.append([ps.variant, *(f"{ps.exponents[q]:.2f}" if finite(ps.exponents[q]) else DASH
                                   for q in PROFILE_QUANTITIES), span])
    lo_hi = layout.fit_range
    rng = t(lang, "exp_range", lo=lo_hi[0], hi=lo_hi[1]) if lo_hi else ""
    return [Para(t(lang, "exp_table", range=rng)),
            Table.of(headers, body, keys=[ps.variant for ps in series])]


def _profile_section(rows: list[ResultRow], srows: list[ResultRow], suite: str, task: str,
                     layout: ReportSpec, lang: str, fig_dir: Path, figures: list[str]) -> list[Block]:
    """One task's cost sweep: the figure, fitted exponents, overtake lengths and failed cells."""
    series = profile_series(rows, suite, task, layout.fit_range, layout.variant_order)
    prows = [r for r in srows if r.is_profile and str(r.task) == task]
    lens, batches, devices = ("/".join(str(x) for x in uniq(getattr(r, f) for r in prows))
                              for f in ("seq_len", "batch_size", "device"))
    parts = (f"{suite}/{task}", f"L={lens}" if lens else "", f"batch {batches}" if batches else "", devices)
    scale = t(lang, "sep").join(p for p in parts if p)
    out: list[Block] = [Heading(t(lang, "profile", task=task)), Para(t(lang, "scale", scale=scale))]
    if any(pts for ps in series for pts in ps.points.values()):
        name = slug(suite, task, "cost") + ".png"
        if name not in figures:
            cost_figure(series, suite, task, fig_dir / name)
            figures.append(name)
        out += [Figure(name, f"{suite} {task} cost"), Para(t(lang, "fig_cost"))]
    out += _exponent_table(series, layout, lang)
    refs = cost_references(layout, {str(r.variant): str(r.model) for r in prows})
    refs = [v for v in refs if any(ps.variant == v for ps in series)]
    out += overtake_section(series, prows, refs, layout.ratio_at, lang)
    fails = [r for ps in series for r in ps.failures]
    if fails:
        out += [Para(t(lang, "failed")), Bullets(tuple(failure_lines(fails)))]
    return out


def suite_section(rows: list[ResultRow], suite: str, layout: ReportSpec, lang: str, fig_dir: Path,
                  figures: list[str]) -> Section:
    """The whole section of one suite in its ``layout`` (read from the suite file:
    :mod:`harness.analysis.report.layout`); the figures it draws are added to ``figures`` (a figure
    already there is not drawn again)."""
    srows = [r for r in rows if r.suite == suite]
    out: list[Block] = []
    # the description of the suite's most recent run (an edited suite file's text shows once a job of
    # it has run again; the layout, by contrast, is read from the suite file as it is now)
    newest = max(srows, key=lambda r: (str(r.finished_at or ""), str(r.run_id)), default=None)
    desc = newest.suite_description if newest is not None else None
    if desc:
        out.append(Para(str(desc).strip()))
    baseline = mode(r.baseline for r in srows)
    out.append(Para(t(lang, "baseline_is", baseline=baseline) if baseline else t(lang, "no_baseline")))
    train_tasks = sorted({str(r.task) for r in srows if not r.is_profile}, key=natural_key)
    out += grid_section(srows, layout, train_tasks, lang)
    for m in layout.matrices:
        out += matrix_section(srows, m, lang)
    for task in train_tasks:
        out += _task_section(rows, suite, task, lang, fig_dir, figures, layout.variant_order)
    for task in sorted({str(r.task) for r in srows if r.is_profile}, key=natural_key):
        out += _profile_section(rows, srows, suite, task, layout, lang, fig_dir, figures)
    return Section(Heading(t(lang, "suite", suite=suite)), "suite", out, key=suite)
