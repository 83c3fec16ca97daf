"""``harness run`` and ``harness report``: where the rows and the report go, and what the terminal shows.

The report goes beside the results it is built from (``report/`` for ``results/``, else
``<results-dir>/report``; :mod:`harness.analysis.report.target`) unless ``--report-dir`` says where;
a folder that holds the report of other results is replaced only with ``--overwrite-report``, and the
refusal comes before any job runs. At the end ``run`` prints a short summary on stdout: one line per
task of the suite with its headline comparison, which verdicts (the claims' and the suite table's) the
new rows changed, and where the report is; ``--tables`` prints the suite's whole tables too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.listing import fit, terminal_width

EXIT_OK, EXIT_JOB_ERROR, EXIT_BAD_INPUT = 0, 1, 2
SHOWN_CHANGES = 6  # verdict changes listed one by one; the rest are counted


def bad_input(message: str) -> int:
    sys.stderr.write(f"harness: error: {message}\n")
    return EXIT_BAD_INPUT


def report_dir_of(args: argparse.Namespace) -> Path:
    """``--report-dir``, else beside the results (``default_report_dir``)."""
    from harness.analysis.report import default_report_dir

    return Path(args.report_dir) if args.report_dir else default_report_dir(Path(args.results_dir))


def add_suite_args(p: argparse.ArgumentParser) -> None:
    """The arguments that decide a suite's jobs (and so their run_ids), for run and prune alike."""
    p.add_argument("suite", help="suite YAML file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a suite field by dotted path")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="default: the suite's, else cpu")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                   help="shorthand for train.precision=...: autocast dtype (fp16 adds loss scaling)")
    p.add_argument("--compile", action="store_true", help="shorthand for train.compile=true (torch.compile)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="shorthand for train.threads=N: torch threads of every job (default 1; a job at "
                        "another count has another run_id)")


def suite_from_args(args: argparse.Namespace) -> Any:
    """The suite as :func:`add_suite_args`'s arguments resolve it; raises HarnessError on bad input."""
    from harness.suite.load import load_suite

    overrides = list(args.overrides)
    if args.precision is not None:
        overrides.append(f"train.precision={args.precision}")
    if args.compile:
        overrides.append("train.compile=true")
    if args.threads is not None:
        overrides.append(f"train.threads={args.threads}")
    return load_suite(args.suite, overrides, device=args.device)


def _refusal(args: argparse.Namespace) -> str | None:
    """Flags that do not go together, or an executor that cannot start."""
    if args.ray_address and args.executor != "ray":
        return "--ray-address needs --executor ray"
    if args.jobs < 1:
        return f"--jobs must be >= 1, got {args.jobs}"
    if args.executor == "ray" and args.jobs != 1:
        return "--jobs is for --executor local; Ray runs as many jobs as its CPUs (or GPUs) allow"
    if args.executor == "ray" and not args.dry_run:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            return "--executor ray needs Ray, which is not installed: pip install -e '.[ray]'"
    return None


def _cuda_refusal(args: argparse.Namespace, suite: Any) -> str | None:
    if args.executor == "local" and (args.device == "cuda" or suite.device == "cuda"):
        import torch  # on Ray the workers, not this machine, need the GPU

        if not torch.cuda.is_available():
            return "--device cuda: no CUDA device is available (torch.cuda.is_available() is False)"
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from harness.analysis.report import report_conflict
    from harness.core.errors import HarnessError

    refusal = _refusal(args)
    try:
        suite = suite_from_args(args) if refusal is None else None
    except HarnessError as e:
        return bad_input(str(e))
    if refusal is not None:
        return bad_input(refusal)
    if args.dry_run:
        from harness.cli.listing import dry_run_text

        print(dry_run_text(suite))
        return EXIT_OK
    results_dir, report_dir = Path(args.results_dir), report_dir_of(args)
    refusal = _cuda_refusal(args, suite) or dirty_refusal(suite, results_dir, args.allow_dirty)
    if refusal is None and not args.no_report and not args.overwrite_report:
        refusal = report_conflict(results_dir, report_dir)
    if refusal is not None:
        return bad_input(refusal)
    before = _verdicts(suite, results_dir)
    try:
        summary = _run(args, suite, results_dir)
    except HarnessError as e:
        return bad_input(str(e))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing new"
    print(f"{summary.ran} job(s) run, {summary.skipped} already in {summary.results_path}: {counts}",
          file=sys.stderr)
    path = None
    if not args.no_report:
        from harness.analysis.report import write_report

        path = write_report(results_dir, report_dir, overwrite=True)
    for line in summary_lines(suite, results_dir, before, summary.ran + summary.reused, path, args.tables):
        print(line)
    return EXIT_JOB_ERROR if summary.statuses.get("error") else EXIT_OK


def _run(args: argparse.Namespace, suite: Any, results_dir: Path) -> Any:
    from harness.run.executors import make_executor
    from harness.run.orchestrate import run_suite

    on_row = row_logger(args.log)
    executor = make_executor(args.executor, jobs=args.jobs, ray_address=args.ray_address, device=suite.device)
    try:
        return run_suite(suite, results_dir, force=args.force, executor=executor, wait=not args.no_wait,
                         on_row=on_row)
    finally:
        if executor is not None:
            executor.close()


def dirty_refusal(suite: Any, results_dir: Path, allow_dirty: bool) -> str | None:
    """Why a run may not write into ``results_dir``: it holds committed results (git tracks files in
    it), the harness source differs from the commit, and some job would train. None: go ahead (with
    ``--allow-dirty`` the rows are written and say ``code.dirty``)."""
    from harness.results.provenance import git_state, tracked_by_git
    from harness.run.orchestrate import pending_jobs

    if allow_dirty or not tracked_by_git(results_dir):
        return None
    _, changed = git_state()
    if not changed or not pending_jobs(suite, results_dir):
        return None
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return (f"{results_dir}: holds committed results and harness/ has uncommitted changes ({shown}): "
            "commit them first, or pass --allow-dirty to write rows marked dirty")


def row_logger(log: str | None) -> Any:
    """``--log mlflow``: the hook that logs each stored row (raises HarnessError without MLflow)."""
    if log is None:
        return None
    from harness.results.tracking import MlflowLogger

    return MlflowLogger().hook


# --- the summary --------------------------------------------------------------------------------


def _verdicts(suite: Any, results_dir: Path) -> dict[str, str] | None:
    """Every verdict the results folder gives now, by name: each claim's and each comparison of the
    suite's tables; None when no job of the suite would run (nothing can change)."""
    from harness.run.orchestrate import pending_jobs

    if results_dir.is_dir() and not pending_jobs(suite, results_dir):
        return None
    return verdicts_now(suite.name, results_dir)


def verdicts_now(suite: str, results_dir: Path) -> dict[str, str]:
    from harness.analysis.claims import evaluate_claims, load_claims
    from harness.analysis.report import ablation, load_rows

    rows = load_rows(results_dir) if results_dir.is_dir() else []
    out = {f"claim {v.claim.id}": v.verdict for v in evaluate_claims(load_claims(), rows)}
    for task in sorted({str(r.task) for r in rows if r.suite == suite and not r.is_profile}):
        for s in ablation(rows, suite, task).variants:
            if not s.is_baseline:
                out[f"{task} {s.variant}"] = _VERDICT_WORDS.get(s.verdict, s.verdict)
    return out


_VERDICT_WORDS = {"better": "better", "worse": "worse", "same": "within seed noise", "floor": "at floor",
                  "ceiling": "at ceiling", "na": "not compared"}


def change_lines(before: dict[str, str] | None, after: dict[str, str] | None, stored: int) -> list[str]:
    """What the new rows changed: "verdicts: none changed" or one line per change (a few, then a count)."""
    if before is None or after is None or not stored:
        return ["verdicts: none changed (no new rows)"]
    changed = [(k, before.get(k, "new"), v) for k, v in sorted(after.items()) if before.get(k) != v]
    if not changed:
        return ["verdicts: none changed"]
    out = [f"verdicts changed: {len(changed)}"]
    out += [f"  {k}: {old} -> {new}" for k, old, new in changed[:SHOWN_CHANGES]]
    if len(changed) > SHOWN_CHANGES:
        out.append(f"  ... and {len(changed) - SHOWN_CHANGES} more (the report has them all)")
    return out


def summary_lines(suite: Any, results_dir: Path, before: dict[str, str] | None, stored: int,
                  report: Path | None, tables: bool) -> list[str]:
    """The end of ``harness run``: each task's headline comparison, the verdicts the run changed and
    where the report is (and the whole tables with ``tables``)."""
    from harness.analysis.report import ablation, load_rows, suite_table
    from harness.analysis.report.findings import headline_line

    rows = load_rows(results_dir) if results_dir.is_dir() else []
    width = terminal_width()
    tasks = sorted({str(r.task) for r in rows if r.suite == suite.name and not r.is_profile})
    out = [f"{suite.name}: headline comparisons (the report and --tables have the whole tables)"]
    order = list(suite.variants)
    out += [fit("  " + headline_line(ablation(rows, suite.name, task, order=order)), width) for task in tasks]
    after = verdicts_now(suite.name, results_dir) if before is not None and stored else None
    out += change_lines(before, after, stored)
    if report is not None:
        out.append(f"report: {report} and {report.parent / 'index.html'}")
    if tables:
        out = [suite_table(rows, suite.name, order=order), "", *out]
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from harness.analysis.report import ReportInUse, write_report

    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        return bad_input(f"--results-dir {results_dir}: not a directory")
    try:
        path = write_report(results_dir, report_dir_of(args), lang=args.lang, suites_dir=Path(args.suites),
                            overwrite=args.overwrite_report)
    except ReportInUse as e:
        return bad_input(str(e))
    print(f"report written to {path} and {path.parent / 'index.html'}")
    return EXIT_OK


def add_report_dirs(p: argparse.ArgumentParser) -> None:
    """``--results-dir``, ``--report-dir`` and ``--overwrite-report``, for run and report."""
    p.add_argument("--results-dir", default="results")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where the report goes (default: report/ for results/, else <results-dir>/report)")
    p.add_argument("--overwrite-report", action="store_true",
                   help="write the report even where the report folder holds the report of other results")
