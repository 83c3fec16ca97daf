"""What the gate profiles: one :class:`Subject` per variant of a suite, on the shape the module
docstring of :mod:`harness.cli.gate` describes, stepped by its job's own training step."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Subject:
    """One model to profile: built fresh by ``build()`` (seeded), on ``batch``, stepped by the training
    step of its job's train config (:meth:`make_step`) on its task."""

    name: str
    build: Callable[[], Any]
    batch: Any
    task: Any
    train: dict[str, Any]  # the job's train config
    shape: str  # how the input was made, stored with the numbers
    model: str = ""
    reference: str = ""  # whose step time this one's is divided by (default: measure()'s reference)

    def make_step(self, model: Any, device: Any, **changes: Any) -> Any:
        """The job's :class:`harness.measure.step.TrainStep` for ``model`` (``changes``: spec keys)."""
        import torch

        from harness.measure.step import StepSpec, TrainStep

        spec = StepSpec.from_train(self.train, **changes)
        return TrainStep(model, self.task, spec, device, gen=torch.Generator().manual_seed(0))


def suite_subjects(suite: Any, device: str = "cpu") -> tuple[list[Subject], str]:
    """One subject per variant of the suite (shape rule in the module docstring), and the default
    reference. Each subject's own reference is the baseline variant of the task it is profiled on
    (suites may name one per task, e.g. resnet for the image task), if that variant is profiled."""
    from harness.run.execute import build_job, job_batch

    chosen: dict[str, Any] = {}
    for job in suite.jobs:
        if job.kind == "profile":
            old = chosen.get(job.variant)
            if old is None or old.kind != "profile" or job.seq_len < old.seq_len:
                chosen[job.variant] = job
    for job in suite.jobs:
        if job.kind == "train" and job.variant not in chosen:
            chosen[job.variant] = job
    subjects = []
    for vname in suite.variants:
        job = chosen.get(vname)
        if job is None:
            continue
        job = dataclasses.replace(job, device=device)

        def build(job: Any = job) -> Any:
            return build_job(job)[0]

        model, task = build_job(job)
        batch = job_batch(job, model, task)
        if job.kind == "profile":
            shape = f"{job.task_name} seq_len={job.seq_len} batch_size={job.batch_size} (profile)"
        else:
            shape = f"{job.task_name} seq_len={batch.seq_len} batch_size={batch.batch_size} (training batch)"
        subjects.append(Subject(vname, build, batch, task, job.train, shape, job.preset or job.model,
                                job.baseline or ""))
    names = {s.name for s in subjects}
    first = subjects[0].name if subjects else ""
    default = next((s.reference for s in subjects if s.reference in names), first)
    for s in subjects:
        if s.reference not in names:
            s.reference = default
    return subjects, default


__all__ = ["Subject", "suite_subjects"]
