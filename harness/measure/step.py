"""The one training step: what training runs, what profile jobs time and what the gate compares.

:class:`TrainStep` is built from a model, its task and the train config (:class:`StepSpec`: optimiser,
schedule, clipping, loss scaling, precision, compile) and is the only definition of a step in the
harness. The training loop (:func:`harness.run.train.train`) calls it once per training step; a
cost-sweep cell (a profile job) calls it on its profile batch; ``harness check`` calls it with the
learning rate at 0 (the same code; the weights then stay put, so a model whose work depends on its
weights does the same work in every round).

A step, in order (the order the training loop has always had):

1. set every parameter group's learning rate to :meth:`StepSpec.lr_at` of the step's index;
2. draw the step's batch (``draw()``; the draw is not part of the step's time);
3. forward and loss under :func:`autocast` (``precision``), through ``torch.compile(model)`` when
   ``compile`` is set;
4. a non-finite loss ends the step there (the caller records ``diverged``);
5. ``zero_grad``, backward of the (fp16: scaled) loss, gradient clipping of the unscaled gradients
   when ``grad_clip`` > 0, the optimiser step through the ``GradScaler`` (a no-op scaler unless fp16).

A model with ``optim_phases()`` (a GAN: :class:`harness.models.base.OptimPhase`) steps each phase in
turn, ``repeats`` times, each with its own AdamW at ``lr x lr_mult``, drawing its own batches and
clipping its own parameters. ``compile`` is refused for such models (the loader says so first).

Each call returns a :class:`StepResult` with its compute time in ms (the device synchronised before
and after on CUDA; draws excluded), the tokens it processed and the loss of each phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.models.base import Batch, OptimPhase

Draw = Callable[[], Batch]  # the step's next batch, already on the device
LossFn = Callable[[Batch], torch.Tensor]  # a batch -> the scalar loss of one phase


def lr_at(step: int, *, lr: float, steps: int, warmup: int, min_ratio: float) -> float:
    """Learning rate for 0-based ``step``: linear warm-up to ``lr``, then cosine to ``lr * min_ratio``."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context forward passes and losses run in: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in AMP_DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[precision])


@dataclass(frozen=True)
class StepSpec:
    """The train config's keys that make a step (the suite's ``train:`` section, harness.suite.spec)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0: no clipping
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 with dynamic loss scaling)
    compile: bool = False
    steps: int = 1  # the schedule's length
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1

    @classmethod
    def from_train(cls, train: Mapping[str, Any], **changes: Any) -> StepSpec:
        """The spec of a job's train dict (missing keys at their defaults), with ``changes``."""
        names = {f.name for f in dataclasses.fields(cls)}
        keys = {k: v for k, v in train.items() if k in names}
        if "betas" in keys:
            keys["betas"] = tuple(keys["betas"])
        return dataclasses.replace(cls(**keys), **changes)

    def lr_at(self, step: int) -> float:
        return lr_at(step, lr=self.lr, steps=self.steps, warmup=self.warmup_steps,
                     min_ratio=self.min_lr_ratio)


@dataclass
class StepResult:
    """What one step did: each phase's loss ('' for a single-loss model), the input tokens it processed,
    its compute time, and the phase whose loss was not finite (None: the step completed)."""

    losses: dict[str, float]
    tokens: int
    ms: float
    failed: str | None = None

    @property
    def loss(self) -> float:
        return sum(self.losses.values())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Phase:
    """One optimiser of a step: its parameters, AdamW, scaler, loss, learning-rate multiple, repeats."""

    def __init__(self, name: str, params: list[nn.Parameter], loss: Callable[[Batch, Any], torch.Tensor],
                 spec: StepSpec, device: torch.device, lr_mult: float = 1.0, repeats: int = 1) -> None:
        self.name, self.params, self.loss_of = name, params, loss
        self.lr_mult, self.repeats = lr_mult, repeats
        self.opt = torch.optim.AdamW(params, lr=spec.lr * lr_mult, betas=spec.betas,
                                     weight_decay=spec.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=spec.precision == "fp16")


class TrainStep:
    """The training step of ``model`` on ``task`` under ``spec`` (see the module docstring).

    ``loss`` replaces the task's loss (``loss(model_output, batch)``), for callers that profile a
    model without a task object. ``gen`` is the training generator a phase model draws noise from.
    """

    def __init__(self, model: nn.Module, task: Any, spec: StepSpec, device: torch.device | str, *,
                 gen: torch.Generator | None = None,
                 loss: Callable[[Any, Batch], torch.Tensor] | None = None) -> None:
        self.model, self.spec, self.device = model, spec, torch.device(device)
        self.task_loss = loss if loss is not None else task.loss
        self.gen = gen if gen is not None else torch.Generator().manual_seed(0)
        self.saw_extras = False  # whether the model's outputs carried extras (ACT's ponder_steps)
        make_phases = getattr(model, "optim_phases", None)
        phases: list[OptimPhase] | None = make_phases() if callable(make_phases) else None
        if phases is not None and spec.compile:
            raise ValueError("compile: true is not supported for models trained in optimiser phases")
        self.forward = torch.compile(model) if spec.compile else model
        if phases is None:
            # model.parameters(), in registration order: the order gradient clipping sums the norm in
            self.phases = [_Phase("", list(model.parameters()), self._model_loss, spec, self.device)]
        else:
            self.phases = [_Phase(p.name, p.params, p.loss, spec, self.device, p.lr_mult, p.repeats)
                           for p in phases]
        self.single = phases is None

    def _model_loss(self, batch: Batch, _gen: Any) -> torch.Tensor:
        out = self.forward(**batch.inputs)
        self.saw_extras = self.saw_extras or bool(getattr(out, "extras", None))
        return self.task_loss(out, batch)

    def losses(self) -> list[LossFn]:
        """Each phase's loss as a function of a batch, under the step's precision (what the activation
        memory of a step is measured on)."""

        def bound(phase: _Phase) -> LossFn:
            def loss(batch: Batch) -> torch.Tensor:
                with autocast(self.device, self.spec.precision):
                    return phase.loss_of(batch, self.gen)
            return loss

        return [bound(p) for p in self.phases]

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [p.opt for p in self.phases]

    @property
    def batches_per_step(self) -> int:
        return sum(p.repeats for p in self.phases)

    def __call__(self, index: int, draw: Draw) -> StepResult:
        """Training step ``index`` (0-based, for the schedule), drawing its batch(es) from ``draw``."""
        lr = self.spec.lr_at(index)
        losses: dict[str, float] = {}
        tokens, draw_s = 0, 0.0
        sync(self.device)
        start = time.perf_counter()
        for phase in self.phases:
            for group in phase.opt.param_groups:
                group["lr"] = lr * phase.lr_mult
            for _ in range(phase.repeats):
                t0 = time.perf_counter()
                batch = draw()
                draw_s += time.perf_counter() - t0
                value = self._update(phase, batch)
                losses[phase.name] = value
                if not math.isfinite(value):
                    return StepResult(losses, tokens, self._ms(start, draw_s), failed=phase.name)
                tokens += batch.batch_size * batch.n_tokens
        return StepResult(losses, tokens, self._ms(start, draw_s))

    def _update(self, phase: _Phase, batch: Batch) -> float:
        with autocast(self.device, self.spec.precision):
            loss = phase.loss_of(batch, self.gen)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value  # before any update from it
        phase.opt.zero_grad(set_to_none=True)
        phase.scaler.scale(loss).backward()  # a no-op scale unless fp16
        if self.spec.grad_clip > 0:
            phase.scaler.unscale_(phase.opt)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(phase.params, self.spec.grad_clip)
        phase.scaler.step(phase.opt)  # skips the update if fp16 gradients overflowed
        phase.scaler.update()
        return value

    def _ms(self, start: float, draw_s: float) -> float:
        sync(self.device)
        return (time.perf_counter() - start - draw_s) * 1e3


__all__ = ["AMP_DTYPES", "Draw", "LossFn", "StepResult", "StepSpec", "TrainStep", "autocast", "lr_at", "sync"]
