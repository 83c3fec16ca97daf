"""Command line: ``harness run | report | claims | list | profile | prune | verify | check | export``.

Only argparse is imported at start-up; torch and the models load inside the commands that need them,
so ``harness --help`` and ``harness list`` answer at once. Exit codes: 0 all jobs ended ok, diverged
or oom; 1 some job failed with an error; 2 bad input, in which case nothing was run or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from harness.cli.describe import cmd_list
from harness.cli.runcmd import (
    add_report_dirs,
    add_suite_args,
    bad_input,
    cmd_report,
    cmd_run,
    suite_from_args,
)

EXIT_OK, EXIT_JOB_ERROR, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        sys.stderr.write(f"harness: error: {message} (see 'harness {self.prog.split()[-1]} --help')\n"
                         if " " in self.prog else f"harness: error: {message} (see 'harness --help')\n")
        sys.exit(EXIT_BAD_INPUT)


def cmd_export(args: argparse.Namespace) -> int:
    from harness.core.errors import HarnessError
    from harness.results.store import latest_rows, result_files
    from harness.results.tracking import MlflowLogger

    if not result_files(args.results):
        return bad_input(f"export {args.results}: no results file (.jsonl) there")
    try:
        logger = MlflowLogger(what="harness export mlflow")
    except HarnessError as e:
        return bad_input(str(e))
    rows = [r for r in latest_rows(args.results).rows if r.get("run_id") and r.get("suite")]
    try:
        logged, already = logger.export(rows)
    except Exception as e:  # the tracker refused (a server down, a store it cannot write)
        first = (str(e).strip().splitlines() or [""])[0][:300]
        sys.stderr.write(f"harness: error: MLflow at {logger.uri}: {type(e).__name__}: {first}\n")
        return EXIT_JOB_ERROR
    print(f"{logged} run(s) logged to {logger.uri}, {already} already there")
    return EXIT_OK


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.analysis.claims import evaluate_claims, load_claims
    from harness.analysis.report import load_rows
    from harness.analysis.report.claims import claim_lines, verdict_tally
    from harness.core.errors import HarnessError

    try:
        claims = load_claims()
    except HarnessError as e:
        return bad_input(str(e))
    verdicts = evaluate_claims(claims, load_rows(Path(args.results_dir)))
    if args.json:
        print(json.dumps([v.to_json() for v in verdicts], ensure_ascii=False, indent=1, sort_keys=True))
        return EXIT_OK
    for v in verdicts:
        print("\n".join(claim_lines(v, args.lang)) + "\n")
    print(f"{len(verdicts)} claims over {len({v.claim.paper for v in verdicts})} papers: "
          f"{verdict_tally(verdicts, args.lang)}")
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    from harness.cli.profile import profile_one
    from harness.core.errors import HarnessError

    if args.warmup < 0 or args.steps < 1:
        return bad_input("--warmup must be >= 0 and --steps >= 1")
    try:
        fields = profile_one(args.model, args.task, args.overrides, args.device, args.warmup, args.steps,
                             precision=args.precision)
    except HarnessError as e:
        return bad_input(str(e))
    if args.json:
        print(json.dumps(fields, sort_keys=True))
    else:
        width = max(len(k) for k in fields)
        for k, v in fields.items():
            print(f"{k:<{width}}  {v}")
    return EXIT_OK if fields.get("status") == "ok" else EXIT_JOB_ERROR


def cmd_check(args: argparse.Namespace) -> int:
    from harness.cli.gate import run_check
    from harness.core.errors import HarnessError

    try:
        return run_check(args.suite, Path(args.baseline), update=args.update, reason=args.reason,
                         allow_dirty=args.allow_dirty, repeats=args.repeats, device=args.device,
                         time_tolerance=args.time_tolerance, count=not args.no_count,
                         processes=args.count_jobs)
    except HarnessError as e:
        return bad_input(str(e))


def cmd_prune(args: argparse.Namespace) -> int:
    from harness.core.errors import HarnessError
    from harness.results.store import prune_rows, read_rows

    try:
        suite = suite_from_args(args)
    except HarnessError as e:
        return bad_input(str(e))
    path = Path(args.results_dir) / f"{suite.name}.jsonl"
    # a row run on another device or with other numerics is not this expansion's to judge: keep it
    numerics = {_numerics({"config": job.config()}) for job in suite.jobs}
    keep = {job.run_id for job in suite.jobs} | {
        r["run_id"] for r in read_rows(path)
        if "run_id" in r and (n := _numerics(r)) is not None and n not in numerics}
    dropped = prune_rows(path, keep, dry_run=args.dry_run)
    for row in dropped:
        kind = row.get("job", "train")
        where = f"seed={row.get('seed')}" if kind == "train" else f"n={row.get('seq_len')}"
        print(f"{row.get('run_id')}  {row.get('variant')}  {row.get('task')}  {kind}  {where}  "
              f"{row.get('status')}" if row else "(unreadable line)")
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{path}: {verb} {len(dropped)} row(s) that suite {suite.name} no longer expands to",
          file=sys.stderr)
    return EXIT_OK


def _numerics(row: dict) -> tuple[Any, str, bool, int] | None:
    """A stored row's (device, precision, compile, threads), as its job's config recorded them (None: no
    config; rows from before ``train.threads`` count as its default, as their run_ids do)."""
    config = row.get("config")
    if not isinstance(config, dict):
        return None
    train = config.get("train") or {}
    return (config.get("device"), train.get("precision", "fp32"), bool(train.get("compile")),
            int(train.get("threads") or 1))


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.cli.verify import job_lines, table, verdict_line, verify_suite
    from harness.core.errors import HarnessError
    from harness.suite.load import load_suite

    if args.sample < 1 or (args.threads is not None and args.threads < 1):
        return bad_input("--sample and --threads must be >= 1")
    try:
        suite = load_suite(args.suite)
        out = verify_suite(suite, Path(args.results_dir), sample=args.sample, seed=args.seed,
                           threads=args.threads)
    except HarnessError as e:
        return bad_input(str(e))
    print(table(out) if args.table else "\n".join(job_lines(out)))
    for note in out.notes:
        print(note)
    print(verdict_line(out))
    return EXIT_JOB_ERROR if out.failed else EXIT_OK


def _add_verify(sub: Any) -> None:
    v = sub.add_parser("verify", help="retrain a sample of a suite's committed jobs in a scratch folder and "
                                      "compare them with the committed rows (exit 1 on a mismatch)")
    v.add_argument("suite", help="suite YAML file")
    v.add_argument("--sample", type=int, default=6, metavar="N", help="jobs to rerun (default 6)")
    v.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the sample's draw (default 0)")
    v.add_argument("--results-dir", default="results", help="where the committed rows are (only read)")
    v.add_argument("--threads", type=int, default=None, metavar="N",
                   help="rerun at N torch threads instead of each row's recorded count (metrics are then "
                        "compared within a tolerance)")
    v.add_argument("--table", action="store_true",
                   help="print every compared field (job, field, committed, now, verdict)")
    v.set_defaults(func=cmd_verify)


def _add_report(sub: Any) -> None:
    rep = sub.add_parser("report", help="write tables.md, index.html and figures of a results folder's "
                                        "rows (report/ for results/, else <results-dir>/report)")
    add_report_dirs(rep)
    rep.add_argument("--lang", choices=["en", "zh"], default="en")
    rep.add_argument("--suites", default="suites", metavar="DIR",
                     help="where a suite's file is looked for when its rows record none that exists "
                          "(each suite's layout is read from its suite file as it is now)")
    rep.set_defaults(func=cmd_report)


def _add_prune(sub: Any) -> None:
    pn = sub.add_parser("prune",
                        help="drop a suite's result rows whose run_id the suite no longer expands to "
                             "(rows of another device or precision than the one given are kept)")
    add_suite_args(pn)
    pn.add_argument("--results-dir", default="results")
    pn.add_argument("--dry-run", action="store_true", help="print what would be dropped; change nothing")
    pn.set_defaults(func=cmd_prune)


def _add_export(sub: Any) -> None:
    ex = sub.add_parser("export", help="log stored result rows to an experiment tracker (MLflow)")
    ex.add_argument("target", choices=["mlflow"])
    ex.add_argument("results", help="a results .jsonl file or a folder of them")
    ex.set_defaults(func=cmd_export)


def _add_run(sub: Any) -> None:
    r = sub.add_parser("run", help="run a suite: train, profile, store results, write the report")
    add_suite_args(r)
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where jobs run: local (this machine) or ray (a Ray instance or cluster; "
                        "pip install -e '.[ray]')")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster: auto or HOST:PORT (default: start Ray on this machine)")
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local executor: run N training jobs at once in worker processes "
                        "(profile jobs run alone)")
    r.add_argument("--force", action="store_true", help="rerun jobs already in the results file")
    r.add_argument("--no-wait", action="store_true",
                   help="leave jobs another harness run holds to it instead of waiting for them")
    r.add_argument("--log", choices=["mlflow"], default=None,
                   help="also log each stored row as an MLflow run (pip install -e '.[mlflow]')")
    r.add_argument("--dry-run", action="store_true",
                   help="validate and print the job grid and each variant's resolved config; train nothing")
    r.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    r.add_argument("--allow-dirty", action="store_true",
                   help="write into a folder of committed results from a tree with uncommitted changes "
                        "to harness/ (the rows say so: code.dirty)")
    r.add_argument("--tables", action="store_true",
                   help="print the suite's whole tables at the end, not only each task's headline")
    add_report_dirs(r)
    r.set_defaults(func=cmd_run)


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="Benchmark and ablation harness for Transformer variants.")
    from harness.core.version import __version__

    p.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_run(sub)

    _add_report(sub)

    cl = sub.add_parser("claims", help="the claims ledger: each paper's claims with its computed verdict")
    cl.add_argument("--results-dir", default="results")
    cl.add_argument("--json", action="store_true", help="print a JSON list, one object per claim")
    cl.add_argument("--lang", choices=["en", "zh"], default="en")
    cl.set_defaults(func=cmd_claims)

    ls = sub.add_parser("list",
                        help="list registered models, presets, tasks and suites, or one of them whole")
    ls.add_argument("what", nargs="?", metavar="models|tasks|suites|model|task|SUITE",
                    help="one section; a suite (name under suites/ or path): its description and job grid; "
                         "model NAME or task NAME: its keys, defaults, bounds and docstring")
    ls.add_argument("name", nargs="?", metavar="NAME", help="with model or task: the one to describe")
    ls.set_defaults(func=cmd_list)

    pr = sub.add_parser("profile", help="profile one model on a random batch, without training")
    pr.add_argument("model", help="registered model or preset name")
    pr.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="model keys, and seq_len (images: image_size) / batch_size for the input shape")
    pr.add_argument("--task", default=None,
                    help="task supplying vocabulary, batch layout and default seq_len (default: the model's, "
                         "by its io: copy for token models, digits for image classifiers, ...)")
    pr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    pr.add_argument("--warmup", type=int, default=2, help="untimed training steps before timing (default 2)")
    pr.add_argument("--steps", type=int, default=5, help="timed training steps behind step_ms (default 5)")
    pr.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="run forward and loss under autocast to this dtype (default fp32)")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.set_defaults(func=cmd_profile)

    _add_prune(sub)
    _add_export(sub)
    _add_verify(sub)

    ck = sub.add_parser("check", help="regression gate: params, FLOPs, memory, instructions per step and "
                                      "relative speed against a baseline")
    from harness.cli.gate.command import add_arguments

    add_arguments(ck)
    ck.set_defaults(func=cmd_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and argv[0] in sub.choices:
        # flags may come between KEY=VALUE overrides: parse each subcommand's words intermixed
        args = sub.choices[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    refusal = spawned_while_importing()
    if refusal:
        return bad_input(refusal)
    from harness.core.heap import pin_heap

    pin_heap()  # before any tensor: every command measures under one heap policy
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at the interpreter's exit
        return code
    except KeyboardInterrupt:
        sys.stderr.write("harness: interrupted\n")
        return 130
    except BrokenPipeError:  # `harness list | head`: the reader left; say nothing more
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail
        return EXIT_OK


def spawned_while_importing() -> str | None:
    """Why this call must not run: it comes from a ``--jobs`` worker process that multiprocessing is
    still starting, which re-imports the script that started ``harness run`` as ``__mp_main__``; a
    script without an ``if __name__ == "__main__":`` guard would start the whole run again in every
    worker (and wait on its own leases)."""
    import multiprocessing

    main = sys.modules.get("__main__")
    if multiprocessing.parent_process() is None or getattr(main, "__name__", "") != "__mp_main__":
        return None
    return ("harness was called again while a --jobs worker process was starting: multiprocessing "
            "re-imports the script that started the run, and its code runs again; guard the script's "
            "code with `if __name__ == \"__main__\":`")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
