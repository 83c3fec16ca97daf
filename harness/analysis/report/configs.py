"""Each variant's resolved config, and the keys in which it differs from the baseline, under each task's
ablation table: a comparison that changes more than its name says shows it here (a sandwich that is
pre-LN against a post-LN baseline: ``norm: pre vs post``).

The config is the one the rows recorded (``config.model``, ``config.train``) from the variant's newest
training row on the task, an ``ok`` one where there is one; the differences are
:func:`harness.suite.differ.differences` (the model's name, each model key, ``train.<key>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.analysis.report.analysis import TaskSummary
from harness.analysis.report.doc import Block, Para, Table
from harness.analysis.report.fmt import DASH
from harness.analysis.report.text import t
from harness.results.rows import ResultRow
from harness.suite.differ import arm, differences, show_value

__all__ = ["config_blocks", "config_text", "variant_row"]


def variant_row(rows: Sequence[ResultRow], suite: str, task: str, variant: str) -> ResultRow | None:
    """The newest training row of ``variant`` on ``task`` (an ok one where there is one)."""
    picked = [r for r in rows if r.suite == suite and str(r.task) == task and str(r.variant) == variant
              and not r.is_profile]
    picked.sort(key=lambda r: (r.status == "ok", str(r.finished_at), str(r.run_id)))
    return picked[-1] if picked else None


def _arm(r: ResultRow) -> dict[str, Any]:
    model = r.config.get("model")
    train = r.config.get("train")
    return arm(r.model, model if isinstance(model, dict) else {}, train if isinstance(train, dict) else {})


def config_text(r: ResultRow) -> str:
    """A row's resolved model config as ``key: value`` pairs, in the config's key order."""
    model = r.config.get("model")
    if not isinstance(model, dict) or not model:
        return DASH
    return ", ".join(f"{k}: {show_value(v)}" for k, v in model.items())


def config_blocks(rows: Sequence[ResultRow], ts: TaskSummary, lang: str) -> list[Block]:
    """The table of each variant's differences from the baseline and its whole resolved config."""
    chosen = {s.variant: variant_row(rows, ts.suite, ts.task, s.variant) for s in ts.variants}
    base = chosen.get(ts.baseline) if ts.baseline else None
    body, keys = [], []
    for s in ts.variants:
        r = chosen[s.variant]
        if r is None:
            continue
        if s.is_baseline:
            diff = t(lang, "baseline")
        elif base is None:
            diff = DASH
        else:
            found = differences(_arm(r), _arm(base))
            diff = "; ".join(f"`{d.key}`: {show_value(d.value)} {t(lang, 'vs')} {show_value(d.base)}"
                             for d in found) or t(lang, "config_same")
        name = str(r.model) + (f" ({r.preset})" if r.preset else "")
        body.append([s.variant, name, diff, config_text(r)])
        keys.append(s.variant)
    if not body:
        return []
    baseline = ts.baseline or "baseline"
    headers = [t(lang, "config_variant"), t(lang, "config_model"), t(lang, "config_diff", baseline=baseline),
               t(lang, "config_resolved")]
    return [Para(t(lang, "configs", baseline=baseline)), Table.of(headers, body, keys=keys)]
