"""Checks of a suite that need its expanded cells or jobs: one job per variant and task, and where
``compile: true`` can apply."""

from __future__ import annotations

import shutil

from harness.core.errors import InputError
from harness.core.registry import MODELS
from harness.suite.jobs import Cell, Job
from harness.suite.source import Source
from harness.suite.spec import VariantSpec


def variant_index(variants: list[VariantSpec], name: str) -> int:
    """The ``variants:`` entry a (sweep-expanded) variant name comes from."""
    return next(i for i, v in enumerate(variants) if name in [n for n, _ in v.expand()])


def check_distinct_jobs(jobs: list[Job], variants: list[VariantSpec], src: Source) -> None:
    """Two variants whose jobs are the same job (every key that decides the numbers resolves alike, so
    the run_ids agree) would share one row: the second is refused."""
    first: dict[str, Job] = {}
    for job in jobs:
        other = first.setdefault(job.run_id, job)
        if other is not job and other.variant != job.variant:
            kp = f"variants[{variant_index(variants, job.variant)}].name"
            why = (f"variant '{job.variant}' is the same job as variant '{other.variant}' on task "
                   f"'{job.task_name}' (every model, task and train key resolves alike): drop one, or set "
                   "the key that should differ")
            raise InputError(src.locate(kp), kp, why)


def check_phases_compile(cells: list[Cell], src: Source, variants: list[VariantSpec], device: str) -> None:
    """``compile: true`` is refused for a model trained in optimiser phases (a GAN: the step compiles
    single-optimiser models only), and on the CPU where no C++ compiler is on the PATH (torch.compile's
    CPU backend builds C++)."""
    for c in cells:
        if not c.train.get("compile"):
            continue
        i = variant_index(variants, c.variant)
        own = (variants[i].train or {}).get("compile") is not None
        kp = f"variants[{i}].train.compile" if own else "train.compile"
        if hasattr(MODELS.get(c.model).obj, "optim_phases"):
            why = f"model {c.model} trains in optimiser phases, which torch.compile is not applied to"
            raise InputError(src.locate(kp), kp, why)
        if device == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
            why = ("torch.compile on the CPU needs a C++ compiler (c++, g++ or clang++) on the PATH; "
                   "none found")
            raise InputError(src.locate(kp), kp, why)
