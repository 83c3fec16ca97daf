"""The cost fields of a result row, from the steps that ran (docs/design.md, "Result rows").

Two kinds of field:

- *Counted* (:func:`count_costs`), on a copy of the model at the job's measured batch (a training job:
  a training batch at the longest training length; a profile job: its profile batch), under a forked
  RNG so the caller's weights and random stream do not move: ``params``, ``params_applied``,
  ``flops_fwd`` (per example), ``flops_unsupported`` and ``act_bytes``, the bytes the step's loss keeps
  for backward (the largest over the phases of a phase model), under the step's precision and compile.
- *Measured* on the steps that ran (:class:`StepMeter`): ``step_ms``, the median compute time of the
  timed steps (forward, loss, backward, clipping, optimiser; batch draws excluded); ``tokens_per_s``,
  the tokens they processed over their total time; ``mfu``; ``mem_bytes``.

The timed steps are every step from index ``warmup`` (``train.profile_warmup``) on, and at least the
last one. A training row times its own training steps (``cost_basis.steps`` "train"); a profile job
runs ``warmup + profile_steps`` steps of the same :class:`~harness.measure.step.TrainStep` on its
profile batch ("profile").

``mem_bytes``: on CUDA (``mem_kind`` "cuda_allocated") the allocator's peak over the timed steps, less
what was allocated before each step other than the model's parameters, buffers, gradients and
optimiser state; on the CPU ("cpu_estimate") parameter and buffer bytes + gradient bytes + optimiser
state bytes, read after the first timed step, + ``act_bytes``.

``mfu`` uses the 3x rule, forward + backward = 3 forward FLOPs (Kaplan et al. 2020, Sec. 2.1;
Chowdhery et al. 2022, PaLM, App. B): 3 x the forward FLOPs of the timed steps' batches over their
time, over :func:`harness.measure.timing.matmul_peak_flops` (on CUDA in the precision's dtype, on
the CPU float32). A batch of the counted batch's shape has its counted FLOPs (``cost_basis.mfu``
"exact"); a batch of another shape (tasks whose training lengths vary) is given the counted batch's
FLOPs per token ("per_token", which overstates MFU for shorter batches of attention models). A phase
model (a GAN) counts one forward of the model per batch a phase draws.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.measure.costs import (
    count_params,
    count_params_applied,
    forward_extras,
    measure_act_bytes,
    optimizer_state_bytes,
    rng_devices,
    state_bytes,
    tensor_bytes,
)
from harness.measure.flops import count_flops
from harness.measure.step import AMP_DTYPES, StepResult, TrainStep
from harness.measure.timing import canonical, matmul_peak_flops
from harness.models.base import Batch

MakeStep = Callable[[nn.Module], TrainStep]  # a model -> its training step


def shape_key(batch: Batch) -> tuple:
    return tuple((k, tuple(v.shape)) for k, v in sorted(batch.inputs.items()))


@dataclass
class Counted:
    """The counted cost fields of a model on one batch, and what :class:`StepMeter` needs of them."""

    params: int
    params_applied: int
    flops_batch: int  # forward FLOPs of the whole counted batch
    flops_unsupported: list[str]
    act_bytes: int
    batch_size: int
    tokens: int  # input tokens of the counted batch (batch size x tokens per example)
    shape: tuple  # the counted batch's input shapes
    saw_extras: bool  # the model's outputs carry extras (ACT's ponder_steps)

    def fields(self) -> dict[str, Any]:
        return {"params": self.params, "params_applied": self.params_applied,
                "flops_fwd": self.flops_batch // self.batch_size, "flops_unsupported": self.flops_unsupported,
                "act_bytes": self.act_bytes}

    def flops_of(self, batch: Batch) -> tuple[float, bool]:
        """Forward FLOPs of ``batch`` and whether they are exact (its shape is the counted one's)."""
        if shape_key(batch) == self.shape:
            return float(self.flops_batch), True
        return self.flops_batch / max(self.tokens, 1) * batch.batch_size * batch.n_tokens, False


def bound_loss(loss: Callable[[Batch], torch.Tensor]) -> Callable[[nn.Module, Batch], torch.Tensor]:
    """A step's loss (of a batch) in the ``loss_fn(model, batch)`` form the counters take."""
    return lambda _model, batch: loss(batch)


def count_costs(model: nn.Module, batch: Batch, make_step: MakeStep, device: torch.device | str) -> Counted:
    """The counted fields of ``model`` on ``batch`` (see the module docstring), on a deep copy."""
    device = canonical(device)
    with torch.random.fork_rng(devices=rng_devices(device)):
        work = copy.deepcopy(model).to(device)  # the caller's weights (and BatchNorm statistics) stay put
        work.train()
        batch = batch.to(device)
        flops_batch, unsupported = count_flops(work, batch)
        step = make_step(work)
        act = max(measure_act_bytes(work, batch, bound_loss(loss)) for loss in step.losses())
        counted = Counted(count_params(work), count_params_applied(work, batch), flops_batch, unsupported,
                          act, batch.batch_size, batch.batch_size * batch.n_tokens, shape_key(batch),
                          step.saw_extras)
        del step, work
    return counted


class StepMeter:
    """Calls a :class:`TrainStep` and measures the steps from index ``warmup`` on (module docstring)."""

    def __init__(self, step: TrainStep, counted: Counted, *, warmup: int, total: int, basis: str) -> None:
        self.step, self.counted, self.basis = step, counted, basis
        self.device = step.device
        self.first_timed = max(0, min(warmup, total - 1))
        self.times: list[float] = []
        self.tokens = 0
        self.flops = 0.0
        self.exact = True
        self.mem: int | None = None

    def _held(self) -> int:
        """Bytes the model holds between steps: parameters, buffers, gradients, optimiser state."""
        grads = tensor_bytes(p.grad for p in self.step.model.parameters() if p.grad is not None)
        opt = sum(optimizer_state_bytes(o) for o in self.step.optimizers)
        return state_bytes(self.step.model) + grads + opt

    def __call__(self, index: int, draw: Callable[[], Batch]) -> StepResult:
        if index < self.first_timed:
            return self.step(index, draw)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            outside = torch.cuda.memory_allocated(self.device) - self._held()
            torch.cuda.reset_peak_memory_stats(self.device)
        drawn: list[Batch] = []

        def tracked() -> Batch:
            drawn.append(draw())
            return drawn[-1]

        res = self.step(index, tracked)
        if res.failed is not None:
            return res
        self.times.append(res.ms)
        self.tokens += res.tokens
        for b in drawn:
            f, exact = self.counted.flops_of(b)
            self.flops += f
            self.exact = self.exact and exact
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.device) - outside
            self.mem = peak if self.mem is None else max(self.mem, peak)
        elif self.mem is None:  # the CPU estimate, from the state the first timed step left
            self.mem = self._held() + self.counted.act_bytes
        return res

    def fields(self) -> dict[str, Any]:
        """The measured cost fields (None where no step was timed) and ``cost_basis``."""
        basis = {"steps": self.basis, "timed": len(self.times), "warmup": self.first_timed,
                 "mfu": "exact" if self.exact else "per_token"}
        kind = "cuda_allocated" if self.device.type == "cuda" else "cpu_estimate"
        if not self.times:
            return {"step_ms": None, "tokens_per_s": None, "mfu": None, "mem_bytes": self.mem,
                    "mem_kind": kind, "cost_basis": basis}
        total_s = sum(self.times) / 1e3
        precision = self.step.spec.precision
        dtype = AMP_DTYPES.get(precision, torch.float32) if self.device.type == "cuda" else torch.float32
        peak = matmul_peak_flops(self.device, dtype)
        return {"step_ms": statistics.median(self.times), "tokens_per_s": self.tokens / total_s,
                "mfu": 3 * self.flops / total_s / peak, "mem_bytes": int(self.mem or 0), "mem_kind": kind,
                "cost_basis": basis}


def profile_model(
    model: nn.Module, batch: Batch, make_step: MakeStep, *, device: torch.device | str, n_warmup: int = 2,
    n_timed: int = 5,
) -> dict[str, Any]:
    """Every cost field of ``model`` on ``batch`` without training it: the counted fields, then
    ``n_warmup + n_timed`` steps of ``make_step``'s step on a copy, the batch drawn each time (a
    profile job, ``harness profile``). ``n_timed=0``: the counted fields only (``harness check``'s
    costs); the speed fields are then None and ``mem_bytes`` is the CPU estimate after one step. The
    model's extras (``ponder_steps``) from one eval forward are included when it reports some. The
    caller's model and the global RNG state are left as they were."""
    device = canonical(device)
    batch = batch.to(device)
    counted = count_costs(model, batch, make_step, device)
    with torch.random.fork_rng(devices=rng_devices(device)):
        work = copy.deepcopy(model).to(device)
        work.train()
        step = make_step(work)
        meter = StepMeter(step, counted, warmup=n_warmup if n_timed else 0, total=n_warmup + max(n_timed, 1),
                          basis="profile")
        for i in range(n_warmup + max(n_timed, 1)):
            res = meter(i, lambda: batch)
            if res.failed is not None:
                raise FloatingPointError(f"the loss became {res.loss} at profiled step {i}")
        measured = meter.fields()
        del step, work
    if not n_timed:
        measured.update(step_ms=None, tokens_per_s=None, mfu=None)
        measured["cost_basis"] = {**measured["cost_basis"], "timed": 0}
    extras = forward_extras(model, batch) if counted.saw_extras else {}
    return {**counted.fields(), **measured, **extras}


__all__ = ["Counted", "MakeStep", "StepMeter", "count_costs", "profile_model", "shape_key"]
