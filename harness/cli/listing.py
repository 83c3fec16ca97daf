"""What ``harness list`` and ``harness run --dry-run`` print about suites.

``harness list`` shows each suite on one line: its file name and the first sentence of its description,
cut to the terminal's width with an ellipsis. ``harness list SUITE`` (a name under ``suites/`` or a
path) shows the whole description, the job grid and each variant's resolved config, what ``harness run
SUITE --dry-run`` prints (:func:`dry_run_text`): per task, every variant's resolved model config and the
keys in which it differs from the task's baseline, a value that is its model's default marked so.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

# words whose trailing period does not end a sentence ("Vaswani et al. 2017", "e.g. copy")
ABBREVIATIONS = {"al", "e.g", "i.e", "cf", "vs", "fig", "eq", "sec", "approx", "resp"}
ELLIPSIS = "…"


def first_sentence(text: str) -> str:
    """The first sentence of a description, whitespace collapsed: up to the first ``.``, ``!`` or
    ``?`` followed by a space (or the end) outside parentheses and not closing an abbreviation."""
    text = " ".join(text.split())
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch in ".!?" and depth == 0 and (i + 1 == len(text) or text[i + 1] == " "):
            word = re.split(r"[\s(]", text[:i])[-1].lower()
            if ch != "." or word not in ABBREVIATIONS:
                return text[:i + 1]
    return text


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    if len(text) <= width:
        return text
    return text[:max(0, width - 1)].rstrip() + ELLIPSIS


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def suite_lines(suites: list[tuple[str, str]], indent: int = 2, width: int | None = None) -> list[str]:
    """One line per suite: ``name  first sentence``, each cut to ``width`` (default: the terminal's)."""
    width = terminal_width() if width is None else width
    pad = max((len(n) for n, _ in suites), default=0)
    lines = []
    for name, desc in suites:
        head = f"{' ' * indent}{name:<{pad}}  "
        lines.append(fit(head + first_sentence(desc), width).rstrip())
    return lines


def find_suite(name: str, root: Path) -> Path | None:
    """A suite named on the command line: a path, else ``suites/NAME`` with or without ``.yaml``."""
    candidates = [Path(name), root / "suites" / name, root / "suites" / f"{name}.yaml"]
    return next((p for p in candidates if p.is_file()), None)


def describe_suite(suite: Any, width: int | None = None) -> str:
    """``harness list SUITE``: the name, the whole description wrapped to the terminal, the job grid."""
    width = terminal_width() if width is None else width
    text = " ".join(str(suite.description or "").split())
    desc = textwrap.fill(text, width=max(40, width)) if text else "(no description)"
    return f"{suite.name}\n\n{desc}\n\n{dry_run_text(suite)}"


def job_grid(suite: Any) -> str:
    """The suite's job grid with each model's parameters and forward GFLOPs per example (built on
    the CPU, nothing trained): what ``harness run --dry-run`` and ``harness list SUITE`` print."""
    from tabulate import tabulate

    from harness.measure.costs import count_params
    from harness.measure.flops import count_flops
    from harness.run.execute import build_job, job_batch

    cache: dict[tuple[str, str, Any], tuple[int, int]] = {}
    rows = []
    for job in suite.jobs:
        key = (job.variant, job.task_name, job.seq_len)
        if key not in cache:
            model, task = build_job(job)
            batch = job_batch(job, model, task)
            flops, _ = count_flops(model, batch)
            cache[key] = (count_params(model), flops // batch.batch_size)
        params, flops = cache[key]
        seed = job.seed if job.kind == "train" else f"n={job.seq_len}"
        rows.append([job.kind, job.variant, job.model if job.preset is None else job.preset, job.task_name,
                     seed, f"{params:,}", f"{flops / 1e9:.4f}", job.run_id])
    n_train = len(suite.train_jobs())
    head = (f"suite {suite.name}: {len(suite.jobs)} jobs ({n_train} training, "
            f"{len(suite.jobs) - n_train} profiling), seeds {suite.seeds}, device {suite.device}")
    headers = ["job", "variant", "model", "task", "seed", "params", "GFLOPs/ex", "run_id"]
    return head + "\n" + tabulate(rows, headers=headers)


def dry_run_text(suite: Any) -> str:
    """What ``harness run --dry-run`` prints: the job grid, then each variant's resolved config."""
    return job_grid(suite) + "\n\n" + resolved_configs(suite)


def _model_default(model: str, key: str) -> Any:
    import dataclasses

    from harness.core.registry import MODELS
    from harness.suite.differ import MISSING

    cfg = MODELS.get(model).config
    found = next((f for f in dataclasses.fields(cfg) if f.name == key), None)
    return MISSING if found is None or found.default is dataclasses.MISSING else found.default


def difference_text(job: Any, base: Any) -> str:
    """The keys in which ``job``'s variant differs from ``base``'s: ``norm: pre (sandwich's default) vs
    post``, the model first, training settings as ``train.<key>``."""
    from harness.suite.differ import MISSING, arm, differences, show_value

    found = differences(arm(job.model, job.model_cfg, job.train), arm(base.model, base.model_cfg, base.train))
    parts = []
    for d in found:
        mine = show_value(d.value)
        own = d.key != "model" and not d.key.startswith("train.") and d.value is not MISSING
        if own and d.value == _model_default(job.model, d.key):
            mine += f" ({job.model}'s default)"
        parts.append(f"{d.key}: {mine} vs {show_value(d.base)}")
    return "; ".join(parts) or "nothing but the name"


def resolved_configs(suite: Any, width: int | None = None) -> str:
    """Per task, each variant's resolved model config and the keys in which it differs from the task's
    baseline (variants in suite order)."""
    from harness.suite.differ import show_value

    width = max(60, terminal_width() if width is None else width)
    firsts: dict[str, dict[str, Any]] = {}
    for job in suite.train_jobs():
        firsts.setdefault(job.task_name, {}).setdefault(job.variant, job)
    out = []
    for task, jobs in firsts.items():
        base_name = next(iter(jobs.values())).baseline
        base = jobs.get(base_name) if base_name else None
        out.append(f"resolved configs on task {task}" + (f" (baseline {base_name}):" if base else ":"))
        for name, job in jobs.items():
            config = " ".join(f"{k}={show_value(v)}" for k, v in job.model_cfg.items())
            out.append(textwrap.fill(f"{name} ({job.model}): {config}", width, initial_indent="  ",
                                     subsequent_indent="      "))
            if base is not None and job is not base:
                out.append(textwrap.fill(f"differs from {base_name}: {difference_text(job, base)}", width,
                                         initial_indent="    ", subsequent_indent="      "))
    return "\n".join(out)
