"""One-time migration of the committed results files to row schema 3 and identity version 2.

    python scripts/migrate_rows_v3.py [--check] [--map results/run_id_map.tsv]

For every row of every ``results/*.jsonl`` (in place; ``--check`` writes nothing):

- ``run_id``: the identity-2 hash of what the row records it ran (harness.suite.jobs.Job.identity):
  its model and resolved config, task and config, train config (keys added since at the values the
  code of the time used), seed, device, shape, the torch threads it ran at and the heap policy of its
  commit (``system`` before harness/heap.py existed). Where the suite file of today expands to a job
  with the row's former run_id and the same threads and heap, the new id must be that job's (checked).
  The former id is kept as ``legacy_run_id``; every pair goes to the map file.
- ``code``: the row's commit and dirty flag from ``git_commit``; for a clean commit, the hash of every
  file of the row's model, task and training step at that commit (read with git), as new rows record
  them; for a dirty one, ``files`` stays unknown.
- ``cost_basis`` ``{"steps": "separate"}``: the costs of these rows came from the separate profiling
  step of the code of the time, not from the steps that trained them.
- ``bounds`` (a second pass, for every training row that lacks it, also in files already at version 3):
  the metric bounds its task declares (``harness.tasks.base.task_metric_bounds`` of ``config.task``),
  as rows written since carry them.
- ``machine``: the CPU model from ``device_name`` (its instruction set was not recorded: unknown);
  ``libraries``: torch's version only (the others were not recorded); ``heap``; ``schema_version`` 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.core.registry import MODELS, TASKS  # noqa: E402
from harness.results.provenance import closure, file_hash, module_path  # noqa: E402
from harness.results.rows import threads_in_name  # noqa: E402
from harness.suite.jobs import Job  # noqa: E402
from harness.suite.load import load_suite  # noqa: E402
from harness.suite.spec import TrainConfig  # noqa: E402

LEGACY_VERSION = "0.1.0"
LEGACY_LATER_TRAIN = {"eval_modes": {}, "precision": "fp32", "compile": False, "threads": 1}
LEGACY_NUMERICS = ("precision", "compile", "threads")
# the modules of the training step and loop in the flat layout every committed row was produced by
OLD_STEP_MODULES = ("harness.train", "harness.runner", "harness.profile")
HEAP_COMMIT = "1f34186"  # the commit that added harness/heap.py (the pinned policy)


def legacy_run_id(job: Job, device: str) -> str:
    """The run_id of identity version 1 (suite and variant names, the device as written)."""
    train = {k: v for k, v in job.train.items()
             if not (k in LEGACY_LATER_TRAIN and v == LEGACY_LATER_TRAIN[k])}
    task_cfg = {k: v for k, v in job.task_cfg.items() if not (k == "metric" and v is None)}
    ident = {
        "kind": job.kind, "suite": job.suite, "variant": job.variant, "model": job.model,
        "model_cfg": job.model_cfg, "task": job.task, "task_cfg": task_cfg,
        "train": train if job.kind == "train" else None, "seed": job.seed, "device": device,
        "seq_len": job.seq_len, "batch_size": job.batch_size, "harness_version": LEGACY_VERSION,
        **({k: v for k, v in train.items() if k in LEGACY_NUMERICS} if job.kind == "profile" else {}),
    }
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@functools.cache
def has_heap(commit: str) -> bool:
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", HEAP_COMMIT, commit], cwd=ROOT)
    return ancestor.returncode == 0


@functools.cache
def tree_at(commit: str) -> Path:
    """harness/ as it was at ``commit``, unpacked into a temporary folder."""
    out = Path(tempfile.mkdtemp(prefix=f"harness-{commit}-"))
    archive = subprocess.run(["git", "archive", commit, "harness"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "harness"


def files_at(commit: str, modules: tuple[str, ...]) -> dict[str, str]:
    """The code.files of a row produced at ``commit`` by ``modules`` (the old layout's step modules)."""
    pkg = tree_at(commit)
    out = {}
    for m in sorted(closure([*modules, *OLD_STEP_MODULES], pkg)):
        path = module_path(m, pkg)
        if path is not None:
            out["harness/" + path.relative_to(pkg).as_posix()] = file_hash(path)
    return out


def defaults(cfg_cls: type) -> dict[str, Any]:
    """A config dataclass's keys at their defaults (the values a key added later reproduces)."""
    out = {}
    for f in dataclasses.fields(cfg_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def row_job(row: dict[str, Any], threads: int, heap: str) -> Job:
    """The identity-2 job a stored row ran, from what the row records (keys added to a config since
    at the defaults, which reproduce what the code of the time did)."""
    cfg = row["config"]
    task = dict(cfg["task"])
    task_name = task.pop("name")
    task = {**defaults(TASKS.get(task_name).config), **task}
    model_cfg = {**defaults(MODELS.get(row["model"]).config), **cfg["model"]}
    train = {**dataclasses.asdict(TrainConfig()), **cfg["train"], "threads": threads}
    kind = cfg.get("kind", row.get("job"))
    return Job(suite=row["suite"], variant=row["variant"], model=row["model"], preset=row.get("preset"),
               model_cfg=model_cfg, task_name=row["task"], task=task_name, task_cfg=task, train=train,
               seed=row["seed"], device=row.get("device") or cfg.get("device", "cpu"), kind=kind,
               seq_len=row.get("seq_len") if kind == "profile" else None,
               batch_size=row.get("batch_size") if kind == "profile" else None, heap=heap)


def migrate_row(row: dict[str, Any], current: dict[str, Job], problems: list[str]) -> dict[str, Any]:
    commit_text = row.get("git_commit") or ""
    commit, dirty = commit_text.removesuffix("+dirty"), commit_text.endswith("+dirty")
    heap = "pinned" if commit and has_heap(commit) else "system"
    threads = row.get("threads") or threads_in_name(row.get("device_name")) or 1
    new = row_job(row, threads, heap).run_id
    job = current.get(row["run_id"])
    if job is not None and threads == job.train.get("threads", 1) and heap == job.heap and job.run_id != new:
        problems.append(f"{row['suite']} {row['variant']} seed {row['seed']} n={row.get('seq_len')}: "
                        f"rebuilt id {new} != the job's {job.run_id}")
    files = None
    if commit and not dirty:
        modules = (MODELS.get(row["model"]).module, TASKS.get(row["config"]["task"]["name"]).module)
        files = files_at(commit, modules)
    name = row.get("device_name") or ""
    out = {**row, "run_id": new, "legacy_run_id": row["run_id"], "schema_version": 3, "heap": heap,
           "threads": threads,
           "code": {"commit": commit or None, "dirty": dirty, "source": None, "files": files},
           "cost_basis": {"steps": "separate"} if row.get("status") == "ok" else None,
           "machine": {"cpu": name.rsplit(" (", 1)[0] if row.get("device") == "cpu" else None,
                       "cpu_capability": None, "gpu": name if row.get("device") == "cuda" else None},
           "libraries": {"torch": row.get("torch_version")}}
    return out


def add_bounds(path: Path, check: bool) -> int:
    """Fill ``bounds`` in the training rows of ``path`` that lack it; returns how many."""
    from harness.tasks.base import task_metric_bounds

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cache: dict[str, Any] = {}
    n = 0
    for r in rows:
        if r.get("job") != "train" or r.get("bounds") is not None:
            continue
        task = r["config"]["task"]
        key = json.dumps(task, sort_keys=True)
        if key not in cache:
            cache[key] = task_metric_bounds(task["name"], task)
        r["bounds"], n = cache[key], n + 1
    if n and not check:
        path.write_text("".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in rows))
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; report what would change")
    ap.add_argument("--map", default=str(ROOT / "results" / "run_id_map.tsv"))
    args = ap.parse_args()
    problems: list[str] = []
    pairs = []
    for path in sorted((ROOT / "results").glob("*.jsonl")):
        suite = load_suite(ROOT / "suites" / f"{path.stem}.yaml")
        current = {legacy_run_id(j, j.device): j for j in suite.jobs}
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if any(r.get("schema_version") == 3 for r in rows):
            print(f"{path.name}: already migrated")
            continue
        out = [migrate_row(r, current, problems) for r in rows]
        ids = {j.run_id for j in suite.jobs}
        stale = sum(r["run_id"] not in ids for r in out)
        pairs += [(path.stem, r["variant"], r["task"], str(r["seed"]), str(r.get("seq_len")),
                   r["legacy_run_id"], r["run_id"], "current" if r["run_id"] in ids else "not today's job")
                  for r in out]
        print(f"{path.name}: {len(out)} rows, {len(out) - stale} of today's jobs, {stale} not "
              "(threads, heap, or an older config)")
        if not args.check:
            path.write_text("".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in out))
    for path in sorted((ROOT / "results").glob("*.jsonl")):
        print(f"{path.name}: bounds added to {add_bounds(path, args.check)} training rows")
    if pairs and not args.check:  # files already at version 3 add no pair: the map stays
        header = "suite\tvariant\ttask\tseed\tseq_len\told_run_id\tnew_run_id\tstatus\n"
        Path(args.map).write_text(header + "".join("\t".join(p) + "\n" for p in pairs))
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
