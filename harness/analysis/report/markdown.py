"""Tables as text: markdown tables (tabulate, pipe format), the ablation table's cells, the scale line,
and the terminal summary ``harness run`` prints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

from harness.analysis.report.analysis import TaskSummary, VariantSummary, ablation
from harness.analysis.report.fmt import (
    DASH,
    finite,
    fmt_bytes,
    fmt_count,
    fmt_diff,
    fmt_gflops,
    fmt_mean,
    fmt_mfu,
    fmt_ms,
    fmt_p,
    fmt_rate,
    natural_key,
)
from harness.analysis.report.load import as_rows
from harness.analysis.report.text import ABL_HEADERS, t
from harness.results.rows import ResultRow

__all__ = ["ablation_table", "cell", "failure_lines", "md_table", "scale_text", "suite_table", "verdict_text"]


def cell(text: Any) -> str:
    """Make a string safe for one markdown table cell ("—" when empty)."""
    s = DASH if text is None or str(text).strip() == "" else str(text)
    return s.replace("\r", "").replace("\n", "<br>").replace("|", "\\|")


def md_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are written as given (no number reformatting)."""
    return tabulate([[cell(c) for c in row] for row in rows], headers=[cell(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


def _runs_cell(s: VariantSummary) -> str:
    total = sum(s.status.values())
    ok = s.status.get("ok", 0)
    if ok == total:
        return str(total)
    others = ", ".join(f"{c} {k}" for k, c in s.status.items() if k != "ok")
    return f"{ok}/{total} ok ({others})"


def _cost_cells(s: VariantSummary, mixed_mem: bool) -> dict[str, str]:
    c = s.cost
    kinds = f" [{'/'.join(s.mem_kinds)}]" if mixed_mem and s.mem_kinds else ""
    applied = c.get("params_applied")  # shown for every variant once any variant shares weights
    return {
        "params": fmt_count(c.get("params")),
        "params_applied": fmt_count(applied),
        "flops_fwd": fmt_gflops(c.get("flops_fwd")),
        "mem_bytes": fmt_bytes(c.get("mem_bytes")) + kinds,
        "act_bytes": fmt_bytes(c.get("act_bytes")),
        "step_ms": fmt_ms(c.get("step_ms")),
        "tokens_per_s": fmt_rate(c.get("tokens_per_s")),
        "mfu": fmt_mfu(c.get("mfu")),
    }


def verdict_text(s: VariantSummary, lang: str) -> str:
    """A comparison's verdict; at a floor or ceiling it says so, with the bound ("chance 0.125")."""
    if s.verdict in ("floor", "ceiling") and s.bound is not None:
        value = s.bound.worst if s.verdict == "floor" else s.bound.best
        chance = s.bound.chance and s.verdict == "floor"
        x = f"{value:.3g}"
        return t(lang, s.verdict, bound=t(lang, "chance", x=x) if chance else x)
    return t(lang, s.verdict)


def ablation_table(ts: TaskSummary, lang: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of an ablation table: seeds, comparison with the baseline, cost."""
    h = ABL_HEADERS[lang]
    show_applied = any(finite(applied := s.cost.get("params_applied")) and applied != s.cost.get("params")
                       for s in ts.variants)
    mixed_mem = len({k for s in ts.variants for k in s.mem_kinds}) > 1
    cost_keys = ["params", *(["params_applied"] if show_applied else []), "flops_fwd", "mem_bytes",
                 "act_bytes", "step_ms", "tokens_per_s", "mfu"]
    headers = [h["variant"], h["runs"], h["metric"].format(metric=ts.metric or "value"), h["n"],
               h["diff"].format(baseline=ts.baseline or "baseline"), h["p"], h["verdict"],
               *(h[k] for k in cost_keys)]
    out: list[list[str]] = []
    for s in ts.variants:
        cost = _cost_cells(s, mixed_mem)
        diff = t(lang, "ref") if s.is_baseline else fmt_diff(s.diff, s.diff_half_width)
        out.append([s.variant, _runs_cell(s), fmt_mean(s.mean, s.half_width, s.n), str(s.n), diff,
                    DASH if s.is_baseline else fmt_p(s.p_holm), verdict_text(s, lang),
                    *(cost[k] for k in cost_keys)])
    return headers, out


def scale_text(ts: TaskSummary, lang: str, short: bool = False) -> str:
    """Where and at what size a task's rows ran: lengths, steps, batch, device (and memory kind)."""
    def join(xs: list[Any]) -> str:
        return "/".join(str(x) for x in xs)

    sc = ts.scale
    parts = [f"{ts.suite}/{ts.task}"]
    if sc["seq_len"]:
        same = sc["tokens"] == sc["seq_len"] or not sc["tokens"]
        tokens = "" if same else t(lang, "tokens_per_example", tokens=join(sc["tokens"]))
        parts.append(f"L={join(sc['seq_len'])}{tokens}")
    if sc["steps"]:
        parts.append(t(lang, "steps", n=join(sc["steps"])))
    if sc["batch_size"]:
        parts.append(f"batch {join(sc['batch_size'])}")
    if sc["device"]:
        parts.append(join(sc["device"]))
    if not short:
        if sc["device_name"]:
            parts.append(join(sc["device_name"]))
        if sc["mem_kind"]:
            parts.append(t(lang, "memory", kinds=join(sc["mem_kind"])))
    return t(lang, "sep").join(parts)


def failure_lines(failures: Iterable[ResultRow]) -> list[str]:
    """One list item per job that did not end ok: where, its status, the first line of its error."""
    out = []
    for r in failures:
        where = [f"`{r.variant}`"]
        if r.seed is not None:
            where.append(f"seed {r.seed}")
        if r.is_profile:
            where.append(f"seq_len {r.seq_len}")
        err = str(r.error or "").strip().splitlines()
        out.append(f"{', '.join(where)}: **{r.status or 'unknown'}**" + (f" - {err[0]}" if err else ""))
    return out


def suite_table(rows: Any, suite: str, order: Sequence[str] = ()) -> str:
    """The suite's ablation tables as plain text for the terminal (one table per task; variants after the
    baseline in ``order``, then in natural order)."""
    rows = as_rows(rows)
    tasks = sorted({str(r.task) for r in rows if r.suite == suite and not r.is_profile}, key=natural_key)
    if not tasks:
        return f"No results for suite {suite!r}."
    blocks: list[str] = []
    for task in tasks:
        ts = ablation(rows, suite, task, order=order)
        headers, body = ablation_table(ts, "en")
        direction = "higher" if ts.higher_is_better else "lower"
        blocks.append(f"{suite} / {task}  ({scale_text(ts, 'en', short=True)}; "
                      f"{ts.metric}: {direction} is better; baseline {ts.baseline or 'none'})\n"
                      + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True))
    return "\n\n".join(blocks)
