"""Training loop: AdamW, linear warm-up then cosine decay, gradient clipping, periodic evaluation.

Deterministic on the CPU: the model's initial weights come from ``torch.manual_seed(seed)`` (set by
the runner before building), training batches from a generator seeded with the job's seed, and
evaluation batches from a separate fixed stream, so the same suite and seed give identical numbers.
A non-finite loss ends the job as ``diverged`` at that step.

Alternating optimisers. A model that defines ``optim_phases()`` (a list of
:class:`harness.models.base.OptimPhase`, e.g. a GAN's discriminator then generator) trains through
:func:`train_phases` instead of the single-optimiser loop: at each step every phase in turn draws its
own batch(es) and steps its own AdamW over its own parameters on its own loss, at the train config's
``lr`` times its ``lr_mult`` (so the train ``lr`` is the base rate and the phases keep their ratio,
e.g. SAGAN's two time-scale 1e-4 / 4e-4 is ``lr: 1e-4`` and a discriminator ``lr_mult`` of 4), with
the config's schedule, betas, weight decay and clipping. Evaluation every ``eval_every`` steps, the
curve and divergence (any phase's loss non-finite) work as in the ordinary loop; the curve's ``loss``
is the sum of the phases' mean losses since the last point, and ``loss_<phase>`` each one. Phase
training does not take ``compile: true``. Models without phases train exactly as before.

Numerics (``precision``, ``compile`` in the train config): ``fp32`` runs in float32 (the runner turns
TF32 matmuls on for CUDA); ``bf16`` and ``fp16`` run forward and loss under ``torch.autocast`` to that
dtype, weights and optimizer state staying float32; ``fp16`` also scales the loss with a dynamic
``GradScaler`` (a step whose gradients overflow is skipped and the scale lowered). ``compile: true``
trains through ``torch.compile(model)``; evaluation uses the eager model (same weights).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.measure.step import autocast, lr_at
from harness.models.base import OptimPhase
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
) -> TrainOutcome:
    """Train ``model`` on ``task``; ``eval_models`` maps an eval mode to a builder of the same
    architecture under other keys, which receives the trained weights for one more evaluation
    (its metrics are suffixed ``@mode``). A model with ``optim_phases()`` trains through
    :func:`train_phases`."""
    if hasattr(model, "optim_phases"):
        return train_phases(model, task, cfg, seed, device, progress, eval_models)
    io = model.io
    gen = torch.Generator().manual_seed(seed)
    eval_sets = task.eval_sets(cfg["eval_batches"], cfg["eval_batch_size"], io, seed)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"]
    )
    steps = cfg["steps"]
    precision = cfg.get("precision", "fp32")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    forward = torch.compile(model) if cfg.get("compile", False) else model
    curve: list[dict[str, Any]] = []
    model.train()
    t0 = time.perf_counter()
    running, n_running = 0.0, 0
    metrics: dict[str, float] = {}
    extras: dict[str, float] = {}
    tokens, t_last = 0, time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(
                step, lr=cfg["lr"], steps=steps, warmup=cfg["warmup_steps"], min_ratio=cfg["min_lr_ratio"]
            )
        batch = task.train_batch(cfg["batch_size"], io, gen).to(device)
        with autocast(device, precision):
            out = forward(**batch.inputs)
            loss = task.loss(out, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            return TrainOutcome(
                "diverged", f"loss became {value} at step {step}", {}, curve, time.perf_counter() - t0, step
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # a no-op scale unless fp16
        if cfg["grad_clip"] > 0:
            scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        scaler.step(opt)  # skips the update if fp16 gradients overflowed
        scaler.update()
        running, n_running = running + value, n_running + 1
        tokens += batch.batch_size * batch.n_tokens
        done = step + 1
        if progress is not None and (done % 10 == 0 or done == steps):
            now = time.perf_counter()
            progress(done, steps, value, tokens / max(now - t_last, 1e-9))
            tokens, t_last = 0, now
        if done % cfg["eval_every"] == 0 or done == steps:
            metrics, extras = evaluate(model, task, eval_sets, device, precision)
            curve.append({"step": done, "loss": running / n_running, **metrics})
            running, n_running = 0.0, 0
    metrics.update(eval_other_modes(model, task, eval_sets, device, eval_models))
    return TrainOutcome("ok", None, metrics, curve, time.perf_counter() - t0, steps, extras)


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


def phase_step(
    phase: OptimPhase, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, task: Task,
    cfg: dict[str, Any], io: str, gen: torch.Generator, device: torch.device,
) -> tuple[float, int]:
    """``phase.repeats`` updates of one phase; returns (its last loss, images seen). A non-finite loss
    returns at once, before any update from it."""
    precision = cfg.get("precision", "fp32")
    value, seen = 0.0, 0
    for _ in range(phase.repeats):
        batch = task.train_batch(cfg["batch_size"], io, gen).to(device)
        with autocast(device, precision):
            loss = phase.loss(batch, gen)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value, seen
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg["grad_clip"] > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(phase.params, cfg["grad_clip"])
        scaler.step(opt)
        scaler.update()
        seen += batch.batch_size * batch.n_tokens
    return value, seen


def train_phases(
    model: nn.Module, task: Task, cfg: dict[str, Any], seed: int, device: torch.device,
    progress: Progress | None = None, eval_models: dict[str, Callable[[], nn.Module]] | None = None,
) -> TrainOutcome:
    """:func:`train` for a model with ``optim_phases()``: one AdamW per phase, phases in turn."""
    if cfg.get("compile", False):
        raise ValueError("compile: true is not supported for models trained in optimiser phases")
    io = model.io
    gen = torch.Generator().manual_seed(seed)
    eval_sets = task.eval_sets(cfg["eval_batches"], cfg["eval_batch_size"], io, seed)
    phases: list[OptimPhase] = model.optim_phases()
    opts = [torch.optim.AdamW(p.params, lr=cfg["lr"] * p.lr_mult, betas=tuple(cfg["betas"]),
                              weight_decay=cfg["weight_decay"]) for p in phases]
    fp16 = cfg.get("precision", "fp32") == "fp16"
    scalers = [torch.amp.GradScaler(device.type, enabled=fp16) for _ in phases]
    steps = cfg["steps"]
    curve: list[dict[str, Any]] = []
    model.train()
    t0 = time.perf_counter()
    running = {p.name: 0.0 for p in phases}
    n_running = 0
    metrics: dict[str, float] = {}
    extras: dict[str, float] = {}
    tokens, t_last = 0, time.perf_counter()
    for step in range(steps):
        lr = lr_at(step, lr=cfg["lr"], steps=steps, warmup=cfg["warmup_steps"], min_ratio=cfg["min_lr_ratio"])
        for phase, opt, scaler in zip(phases, opts, scalers):
            for group in opt.param_groups:
                group["lr"] = lr * phase.lr_mult
            value, seen = phase_step(phase, opt, scaler, task, cfg, io, gen, device)
            if not math.isfinite(value):
                return TrainOutcome("diverged", f"{phase.name} loss became {value} at step {step}", {}, curve,
                                    time.perf_counter() - t0, step)
            running[phase.name] += value
            tokens += seen
        n_running += 1
        done = step + 1
        if progress is not None and (done % 10 == 0 or done == steps):
            now = time.perf_counter()
            progress(done, steps, sum(running.values()) / n_running, tokens / max(now - t_last, 1e-9))
            tokens, t_last = 0, now
        if done % cfg["eval_every"] == 0 or done == steps:
            metrics, extras = evaluate(model, task, eval_sets, device, cfg.get("precision", "fp32"))
            means = {f"loss_{k}": v / n_running for k, v in running.items()}
            curve.append({"step": done, "loss": sum(means.values()), **means, **metrics})
            running, n_running = {p.name: 0.0 for p in phases}, 0
    metrics.update(eval_other_modes(model, task, eval_sets, device, eval_models))
    return TrainOutcome("ok", None, metrics, curve, time.perf_counter() - t0, steps, extras)


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
