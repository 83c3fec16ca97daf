"""One job, start to end: build the model and task (seeded), measure the costs, train, and return the
result row. A failing job never raises: out-of-memory becomes ``oom`` and any other exception ``error``
with its one-line reason."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.core.device import (
    device_name,
    free_memory,
    job_threads,
    machine,
    resolve_device,
    torch_threads,
    use_deterministic,
    use_tf32,
)
from harness.run.outcome import is_oom, new_row, one_line, oom_message, utc_now
from harness.suite.jobs import Job

if TYPE_CHECKING:  # pragma: no cover - torch is imported only when a job runs
    from harness.tasks.base import Batch, Task


def build_job(job: Job) -> tuple[Any, Task]:
    """The job's model (seeded) and task objects."""
    import torch

    from harness.core.registry import MODELS, TASKS

    entry = MODELS.get(job.model)
    tentry = TASKS.get(job.task)
    task = tentry.obj(tentry.config(**job.task_cfg))
    torch.manual_seed(job.seed)
    model = entry.obj(entry.config(**job.model_cfg))
    return model, task


def eval_builders(job: Job) -> dict[str, Callable[[], Any]]:
    """Builders of the job's model under each eval mode that applies to it (see TrainConfig)."""
    from harness.core.registry import MODELS
    from harness.suite.jobs import eval_mode_configs

    entry = MODELS.get(job.model)
    modes = eval_mode_configs(entry.config, job.model_cfg, job.train.get("eval_modes") or {})
    return {m: functools.partial(build_config, entry, c) for m, c in modes.items()}


def build_config(entry: Any, cfg: dict[str, Any]) -> Any:
    """A registry entry's model built from a config dict."""
    return entry.obj(entry.config(**cfg))


def job_batch(job: Job, model: Any, task: Task) -> Batch:
    """The batch profiled for the job: a training batch at the longest training length, or a
    batch of exactly ``seq_len`` tokens for a profile job."""
    import torch

    gen = torch.Generator().manual_seed(job.seed)
    if job.kind == "profile":
        assert job.seq_len is not None and job.batch_size is not None  # a profile job has both
        return task.profile_batch(job.seq_len, job.batch_size, model.io, gen)
    return task.longest_batch(job.train["batch_size"], model.io, gen)


def execute(job: Job, progress: Callable[[int, int, float, float], None] | None = None) -> dict[str, Any]:
    """Run one job and return its result row, in its dict form (rows travel from worker processes
    and Ray tasks as plain data); never raises for a failing job. The job runs at its ``train.threads``
    torch threads, wherever it runs (this process, a worker, a Ray task), and the row records them."""
    with torch_threads(job_threads(job.train)):
        return execute_here(job, progress)


def step_builder(job: Job, task: Task, device: Any) -> Callable[[Any], Any]:
    """The job's training step for a model (:class:`harness.measure.step.TrainStep`, from its train
    config). Its noise generator is the job seed's own, apart from the training stream."""
    import torch

    from harness.measure.step import StepSpec, TrainStep

    spec = StepSpec.from_train(job.train)

    def make(model: Any) -> Any:
        return TrainStep(model, task, spec, device, gen=torch.Generator().manual_seed(job.seed))

    return make


def execute_here(
    job: Job, progress: Callable[[int, int, float, float], None] | None = None,
) -> dict[str, Any]:
    """:func:`execute` at the thread count torch has now."""
    import torch

    from harness.measure.meter import count_costs, profile_model
    from harness.run.train import task_samples, train
    from harness.tasks.base import metric_bounds

    started = time.perf_counter()
    row = new_row(job)
    precision = job.train.get("precision", "fp32")
    model = task = batch = None
    failed = False
    try:
        device = resolve_device(job.device)
        row.device, row.device_name = device.type, device_name(device.type)
        row.threads, row.machine = torch.get_num_threads(), machine(device.type)
        use_deterministic()
        if device.type == "cuda":
            use_tf32()
            torch.cuda.reset_peak_memory_stats(device)
        model, task = build_job(job)
        model.to(device)
        batch = job_batch(job, model, task).to(device)
        make_step = step_builder(job, task, device)
        if job.kind == "profile":  # the profile batch, the step run on it, the model's extras
            warmup, timed = job.train["profile_warmup"], job.train["profile_steps"]
            row.update(profile_model(model, batch, make_step, device=device, n_warmup=warmup, n_timed=timed))
            row.status = "ok"
        else:
            row.seq_len, row.batch_size = batch.seq_len, batch.batch_size
            row.metric, row.higher_is_better = task.metric, task.higher_is_better
            row.bounds = metric_bounds(task)  # its own draws: the job's RNG streams are untouched
            counted = count_costs(model, batch, make_step, device)
            row.update(counted.fields())
            out = train(model, task, job.train, job.seed, device, progress, eval_builders(job), counted)
            row.update(out.costs)
            row.update(out.extras)
            row.status, row.error = out.status, out.error
            row.metrics, row.curve, row.train_s = out.metrics, out.curve, round(out.train_s, 3)
            row.value = out.metrics.get(task.metric)
            if out.status == "ok":  # the task's sample images of the trained model, for the report
                row.samples = task_samples(model, task, device, job.seed)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # the suite goes on; the row says why this job failed
        failed = True
        row.status, row.error = ("oom" if is_oom(e) else "error"), one_line(e)
        if row.status == "oom":
            n = row.seq_len if row.seq_len is not None else job.task_cfg.get("seq_len")
            bs = row.batch_size if row.batch_size is not None else job.train["batch_size"]
            row.error = oom_message(n, bs, precision, row.error)
    if failed:
        # the exception (and the frames holding the model, optimizer and activations) is gone by
        # now: drop our own references and hand the memory back before the next job
        model = task = batch = None
        free_memory()
    if row.train_s is None and job.kind == "train":
        row.train_s = round(time.perf_counter() - started, 3)
    row.finished_at = utc_now()
    return row.to_dict()
