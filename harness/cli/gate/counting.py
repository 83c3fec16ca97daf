"""Instructions per training step of each subject, counted under callgrind in one valgrind process.

:func:`count_instructions` runs ``python -m harness.cli.gate.counting`` (:func:`main`) under valgrind
(:func:`harness.measure.instructions.callgrind_command`) in an empty folder with
:data:`harness.measure.instructions.COUNT_ENV`. That process imports torch once (a minute or more under
valgrind), builds the same subjects as the gate (:func:`harness.cli.gate.subjects.suite_subjects` of the
suite file, or a ``FILE:FUNCTION`` that returns ``(subjects, reference)``, for tests), switches
instrumentation on, runs a fixed small training step (:func:`settle`: the code every step shares gets
translated once, and one-time work is done before any count) and then forks one child per model, up to
``jobs`` at a time. Each child starts from the same state of the parent, so a model's count does not
depend on which models were counted before it or beside it. A child builds its model (seeded), runs
``COUNT_WARMUP`` steps of its job's training step at learning rate 0 (AdamW's state exists from the
first on; the second still does first-time work, about 1.7% of a vanilla step) and counts the next
``COUNT_STEPS`` steps alone, the garbage collector off, dumping the count under the model's name.

Counted in one process one after another instead, the same tiny vanilla model built afresh counted
1.25% fewer instructions the second time, and the first model of the process three times as many.
Forked, two builds of it counted the same within 124 instructions.
Successive steps of one model differ by up to 0.8% (step 2: 14,019,610; step 4: 14,089,883): every
count is of the same step of the same fresh model.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

COUNT_WARMUP = 2
COUNT_STEPS = 1
COUNT_TIMEOUT_S = 3600
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the checkout holding harness/


def count_instructions(
    source: str | Path, names: Sequence[str], *, jobs: int = 1, steps: int = COUNT_STEPS,
    warmup: int = COUNT_WARMUP,
) -> dict[str, Any]:
    """{"instructions": {name: per step}, "cpu_capability": what torch saw under valgrind, "jobs": n}.

    ``source``: a suite file, or ``FILE:FUNCTION`` returning ``(subjects, reference)``; ``jobs``: models
    counted at once (forked children of the one valgrind process). Raises HarnessError when counting
    fails (the last lines of its output in the message)."""
    from harness.measure.instructions import callgrind_command, count_env, read_counts

    source = str(source)
    if ".py:" in source:  # FILE:FUNCTION
        path, _, func = source.rpartition(":")
        source = f"{Path(path).resolve()}:{func}"
    else:
        source = str(Path(source).resolve())
    env = count_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="harness-count-") as tmp:
        folder = Path(tmp)
        argv = ["-m", "harness.cli.gate.counting", source, "--only", ",".join(names), "--steps", str(steps),
                "--warmup", str(warmup), "--jobs", str(jobs), "--info", str(folder / "info.json")]
        # %p: each forked child dumps into files of its own
        command = callgrind_command(argv, folder / "cg.out.%p")
        with open(folder / "log", "w") as log:
            try:
                code: Any = subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           timeout=COUNT_TIMEOUT_S).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if code != 0:
            tail = (folder / "log").read_text(errors="replace").splitlines()[-15:]
            raise HarnessError(f"counting instructions under callgrind failed ({code}):\n" + "\n".join(tail))
        info = json.loads((folder / "info.json").read_text())
        counts = {name: round(total / steps) for name, total in read_counts(folder / "cg.out").items()}
    missing = [n for n in names if n not in counts]
    if missing:
        raise HarnessError(f"callgrind wrote no count for {', '.join(missing)}")
    return {"instructions": {n: counts[n] for n in names}, "cpu_capability": info["cpu_capability"],
            "jobs": jobs}


def load_subjects(source: str) -> tuple[list[Any], str]:
    """The subjects of a suite file, or those a ``FILE:FUNCTION`` returns."""
    if ".py:" in source:
        path, func = source.rsplit(":", 1)
        spec = importlib.util.spec_from_file_location(Path(path).stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, func)()
    from harness.cli.gate.subjects import suite_subjects
    from harness.suite.load import load_suite

    return suite_subjects(load_suite(source))


def settle() -> None:
    """A fixed small training step, run three times: two linear layers, a loss, backward, clipping and
    AdamW, the machinery every model's step goes through."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)
    x = torch.randn(8, 16, generator=gen)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


def count_one(subject: Any, callgrind: Any, warmup: int, steps: int) -> None:
    """In a forked child: build, warm up, count ``steps`` steps, dump under the subject's name."""
    import torch

    torch.manual_seed(0)
    model = subject.build().train()
    step = subject.make_step(model, "cpu", lr=0.0)
    batch = subject.batch
    for i in range(warmup):
        step(i, lambda: batch)
    gc.collect()
    gc.disable()

    def counted() -> None:
        for i in range(warmup, warmup + steps):
            step(i, lambda: batch)

    callgrind.count(subject.name, counted)


def fork_each(subjects: list[Any], callgrind: Any, args: argparse.Namespace) -> list[str]:
    """Count each subject in a forked child, ``args.jobs`` at a time; the names of those that failed."""
    running: dict[int, str] = {}
    failed = []

    def reap() -> None:
        pid, status = os.wait()
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(running[pid])
        running.pop(pid)

    for s in subjects:
        while len(running) >= max(1, args.jobs):
            reap()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                count_one(s, callgrind, args.warmup, args.steps)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        running[pid] = s.name
    while running:
        reap()
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """The valgrind process: count the subjects named by ``--only`` (all by default), one dump each."""
    p = argparse.ArgumentParser(prog="python -m harness.cli.gate.counting")
    p.add_argument("source")
    p.add_argument("--only", default="")
    p.add_argument("--steps", type=int, default=COUNT_STEPS)
    p.add_argument("--warmup", type=int, default=COUNT_WARMUP)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--info", required=True)
    args = p.parse_args(argv)

    from harness.core.heap import pin_heap
    from harness.measure.instructions import Callgrind

    pin_heap()  # the heap policy every harness command measures under
    callgrind = Callgrind()
    if not callgrind.active:
        print("not running under callgrind (run it through harness.cli.gate.counting.count_instructions)",
              file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    subjects, _ = load_subjects(args.source)
    only = [n for n in args.only.split(",") if n]
    chosen = [s for s in subjects if not only or s.name in only]
    Path(args.info).write_text(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability()}))
    callgrind.begin()
    settle()
    failed = fork_each(chosen, callgrind, args)
    if failed:
        print(f"counting failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["COUNT_STEPS", "COUNT_WARMUP", "count_instructions", "count_one", "fork_each", "load_subjects",
           "main", "settle"]
