"""Training loop: the one training step of the train config, periodic evaluation, the curve.

Every step is :class:`harness.measure.step.TrainStep` (AdamW, linear warm-up then cosine decay,
gradient clipping, fp16 loss scaling, autocast precision, ``torch.compile``; a phase model's phases in
turn), called through a :class:`harness.measure.meter.StepMeter` so that the row's step time, speed,
MFU and memory are those of the steps that trained it.

Deterministic on the CPU: the model's initial weights come from ``torch.manual_seed(seed)`` (set by
the runner before building), training batches from a generator seeded with the job's seed, and
evaluation batches from a separate fixed stream, so the same suite and seed give identical numbers.
A non-finite loss ends the job as ``diverged`` at that step.

Alternating optimisers. A model that defines ``optim_phases()`` (a list of
:class:`harness.models.base.OptimPhase`, e.g. a GAN's discriminator then generator): at each step
every phase in turn draws its own batch(es) and steps its own AdamW over its own parameters on its own
loss, at the train config's ``lr`` times its ``lr_mult`` (so the train ``lr`` is the base rate and the
phases keep their ratio, e.g. SAGAN's two time-scale 1e-4 / 4e-4 is ``lr: 1e-4`` and a discriminator
``lr_mult`` of 4), with the config's schedule, betas, weight decay and clipping. The curve's ``loss`` is
then the sum of the phases' mean losses since the last point, and ``loss_<phase>`` each one; phase
training does not take ``compile: true``.

Numerics (``precision``, ``compile`` in the train config): ``fp32`` runs in float32 (the runner turns
TF32 matmuls on for CUDA); ``bf16`` and ``fp16`` run forward and loss under ``torch.autocast`` to that
dtype, weights and optimizer state staying float32; ``fp16`` also scales the loss with a dynamic
``GradScaler`` (a step whose gradients overflow is skipped and the scale lowered). ``compile: true``
trains through ``torch.compile(model)``; evaluation uses the eager model (same weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.measure.meter import Counted, StepMeter
from harness.measure.step import StepSpec, TrainStep, autocast
from harness.tasks.base import MAX_SAMPLES, Batch, Task

Progress = Callable[[int, int, float, float], None]  # step, total, loss, tokens/s


@dataclass
class TrainOutcome:
    status: str  # ok | diverged
    error: str | None
    metrics: dict[str, float]
    curve: list[dict[str, Any]]
    train_s: float
    steps_done: int
    extras: dict[str, float] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)  # measured on the training steps


@torch.no_grad()
def evaluate(
    model: nn.Module, task: Task, sets: dict[str, list[Batch]], device: torch.device, precision: str = "fp32"
) -> tuple[dict[str, float], dict[str, float]]:
    """Task metrics over fixed evaluation sets, plus the mean of any scalar extras the model reports."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    extras: dict[str, list[float]] = {}
    try:
        for suffix, batches in sets.items():
            totals: list | None = None  # the task's counts, summed over batches
            for b in batches:
                b = b.to(device)
                with autocast(device, precision):
                    out = model(**b.inputs)
                counts = task.score(out.logits, b.labels)
                totals = list(counts) if totals is None else [a + c for a, c in zip(totals, counts)]
                if suffix == "":
                    for k, v in out.extras.items():
                        extras.setdefault(k, []).append(float(v))
            metrics.update(task.metrics(tuple(totals or ()), suffix))
    finally:
        model.train(was_training)
    return metrics, {k: sum(v) / len(v) for k, v in extras.items()}


def train(
    model: nn.Module,
    task: Task,
    cfg: dict[str, Any],
    seed: int,
    device: torch.device,
    progress: Progress | None = None,
    eval_models: dict[str, Callable[[], nn.Module]] | None = None,
    counted: Counted | None = None,
) -> TrainOutcome:
    """Train ``model`` on ``task`` with the one :class:`~harness.measure.step.TrainStep` of ``cfg``;
    ``eval_models`` maps an eval mode to a builder of the same architecture under other keys, which
    receives the trained weights for one more evaluation (its metrics are suffixed ``@mode``).
    ``counted``: the model's counted costs (:func:`harness.measure.meter.count_costs`), which the
    steps' meter needs for MFU and the CPU memory estimate; with it the outcome's ``costs`` holds the
    cost fields measured on the training steps themselves (from ``profile_warmup`` on)."""
    io: str = model.io  # type: ignore[assignment]  # every registered model declares its io
    gen = torch.Generator().manual_seed(seed)
    eval_sets = task.eval_sets(cfg["eval_batches"], cfg["eval_batch_size"], io, seed)
    steps = cfg["steps"]
    step = TrainStep(model, task, StepSpec.from_train(cfg), device, gen=gen)
    meter = (StepMeter(step, counted, warmup=cfg["profile_warmup"], total=steps, basis="train")
             if counted is not None else None)
    run = meter if meter is not None else step
    precision = cfg.get("precision", "fp32")
    curve: list[dict[str, Any]] = []
    model.train()
    t0 = time.perf_counter()
    running = {p.name: 0.0 for p in step.phases}
    n_running = 0
    metrics: dict[str, float] = {}
    extras: dict[str, float] = {}
    tokens, t_last = 0, time.perf_counter()

    def draw() -> Batch:
        return task.train_batch(cfg["batch_size"], io, gen).to(device)

    def ended(status: str, error: str | None, done: int) -> TrainOutcome:
        costs = meter.fields() if meter is not None else {}
        ok = status == "ok"
        return TrainOutcome(status, error, metrics if ok else {}, curve, time.perf_counter() - t0, done,
                            extras if ok else {}, costs)

    for i in range(steps):
        res = run(i, draw)
        if res.failed is not None:
            value = res.losses[res.failed]
            who = f"{res.failed} loss" if res.failed else "loss"
            return ended("diverged", f"{who} became {value} at step {i}", i)
        for name, value in res.losses.items():
            running[name] += value
        n_running += 1
        tokens += res.tokens
        done = i + 1
        if progress is not None and (done % 10 == 0 or done == steps):
            now = time.perf_counter()
            shown = res.loss if step.single else sum(running.values()) / n_running
            progress(done, steps, shown, tokens / max(now - t_last, 1e-9))
            tokens, t_last = 0, now
        if done % cfg["eval_every"] == 0 or done == steps:
            metrics, extras = evaluate(model, task, eval_sets, device, precision)
            curve.append({"step": done, **curve_losses(running, n_running, step.single), **metrics})
            running, n_running = {p.name: 0.0 for p in step.phases}, 0
    metrics.update(eval_other_modes(model, task, eval_sets, device, eval_models))
    return ended("ok", None, steps)


def curve_losses(running: dict[str, float], n: int, single: bool) -> dict[str, float]:
    """A curve point's losses: the mean loss since the last point; a phase model's ``loss_<phase>``
    means and their sum as ``loss``."""
    if single:
        return {"loss": running[""] / n}
    means = {f"loss_{k}": v / n for k, v in running.items()}
    return {"loss": sum(means.values()), **means}


def eval_other_modes(
    model: nn.Module, task: Task, eval_sets: dict[str, list[Batch]], device: torch.device,
    eval_models: dict[str, Callable[[], nn.Module]] | None,
) -> dict[str, float]:
    """The trained weights evaluated once more under each eval mode's config (metrics ``name@mode``)."""
    metrics: dict[str, float] = {}
    for mode, make in (eval_models or {}).items():
        other = make().to(device)
        other.load_state_dict(model.state_dict())
        head_only = {"": eval_sets[""]}
        mode_metrics, _ = evaluate(other, task, head_only, device)
        metrics.update({f"{k}@{mode}": v for k, v in mode_metrics.items()})
    return metrics


def _check_image(img: Any, where: str) -> None:
    rows = img if isinstance(img, list) else None
    if not rows or not all(isinstance(r, list) and len(r) == len(rows[0]) for r in rows):
        raise ValueError(f"{where}: an image must be a non-empty nested list H x W (x 3)")
    flat = [v for r in rows for px in r for v in (px if isinstance(px, list) else [px])]
    if not all(isinstance(v, int) and 0 <= v <= 255 for v in flat):
        raise ValueError(f"{where}: pixel values must be ints 0..255")


@torch.no_grad()
def task_samples(model: nn.Module, task: Task, device: torch.device, seed: int) -> dict[str, list] | None:
    """The task's sample images of the trained model (``Task.samples``), checked against the shared
    layout (panel -> at most MAX_SAMPLES images of ints 0..255); None when the task gives none."""
    make = getattr(task, "samples", None)
    if make is None:
        return None
    was_training = model.training
    model.eval()
    try:
        panels = make(model, device, seed)
    finally:
        model.train(was_training)
    if not panels:
        return None
    for name, images in panels.items():
        if not isinstance(images, list) or not 0 < len(images) <= MAX_SAMPLES:
            raise ValueError(f"samples panel {name!r}: 1 to {MAX_SAMPLES} images expected")
        for i, img in enumerate(images):
            _check_image(img, f"samples panel {name!r} image {i}")
    return {str(k): v for k, v in panels.items()}
