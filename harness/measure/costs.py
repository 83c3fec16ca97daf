"""Parameters, memory and speed of one model on one batch: the cost fields of a result row.

Every function takes a model (``model(**batch.inputs) -> ModelOutput``) and a batch; the memory and
speed ones also take ``loss_fn(model, batch) -> scalar loss``, which calls the model itself.
:func:`profile_model` bundles them into the fields named in docs/design.md ("Result rows") and leaves the
caller's model and global RNG state as they were.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypedDict

import torch
from torch import nn

from harness.measure.flops import count_flops
from harness.measure.step import AMP_DTYPES, autocast
from harness.tasks.base import Batch

LossFn = Callable[[nn.Module, Batch], torch.Tensor]
MemKind = Literal["cuda_allocated", "cpu_estimate"]

_FORWARD_MARK = "harness::forward"  # record_function label bracketing the forward pass on CPU
_MATMUL_N = 2048
_PEAK_CACHE: dict[str, float] = {}


class ProfileResult(TypedDict):
    """The cost fields of a result row (docs/design.md, "Result rows")."""

    params: int
    params_applied: int
    flops_fwd: int
    flops_unsupported: list[str]
    mem_bytes: int
    mem_kind: MemKind
    act_bytes: int
    step_ms: float | None  # None when profiled with n_timed=0 (costs only)
    tokens_per_s: float | None
    mfu: float | None


# --- parameters --------------------------------------------------------------------------------------


def unique_trainable(model: nn.Module) -> list[nn.Parameter]:
    """Trainable parameters, each storage once: ``parameters()`` dedupes shared Parameter objects, and
    the storage key also catches distinct Parameter objects that alias the same memory."""
    seen: set[tuple[object, ...]] = set()
    unique = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key: tuple[object, ...] = (
            (id(p),)
            if p.device.type == "meta"  # meta tensors have no storage address to compare
            else (p.untyped_storage().data_ptr(), p.storage_offset(), tuple(p.shape), tuple(p.stride()))
        )
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def count_params(model: nn.Module) -> int:
    """Unique trainable parameters; a tensor shared by several modules counts once."""
    return sum(p.numel() for p in unique_trainable(model))


def _applied_params(module: nn.Module) -> Iterable[nn.Parameter]:
    """The parameters one call of ``module`` applies: its own, plus any it declares it uses functionally."""
    yield from module.parameters(recurse=False)
    extra = getattr(module, "extra_applied_params", None)
    if callable(extra):
        yield from extra()
    if isinstance(module, nn.MultiheadAttention):
        # nn.MultiheadAttention applies out_proj's weights through F.multi_head_attention_forward
        # without calling out_proj, so out_proj's own hook never fires.
        yield from module.out_proj.parameters()


def count_params_applied(model: nn.Module, batch: Batch) -> int:
    """Trainable parameters summed over every module call in one forward pass.

    A layer applied T times (Universal Transformer recurrence, ALBERT cross-layer sharing) counts T
    times. Each call of a module adds its direct parameters and those returned by its optional
    ``extra_applied_params()`` method, for weights it uses functionally (e.g. an output head tied to
    the embedding matrix). Parameters used functionally without that method, and modules invoked
    through ``.forward(...)`` rather than ``__call__``, are not seen. Runs once in eval mode under
    ``torch.no_grad``, with PyTorch's fused attention fast path off (it bypasses submodule calls).
    """
    total = 0

    def count_call(module: nn.Module, args: object) -> None:
        nonlocal total
        mine = {id(p): p for p in _applied_params(module) if p.requires_grad}
        total += sum(p.numel() for p in mine.values())

    handles = [m.register_forward_pre_hook(count_call) for m in model.modules()]
    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        model.eval()
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad():
            model(**batch.inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return total


# --- memory ------------------------------------------------------------------------------------------


def _device_of(model: nn.Module, batch: Batch) -> torch.device:
    for p in model.parameters():
        return p.device
    for t in batch.inputs.values():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: kineto writes "USDT ... profiler_start/stop" lines straight to it,
    which would interleave with the runner's progress display."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _live_bytes_after_forward(prof: torch.profiler.profile) -> int:
    """Bytes allocated inside the forward mark and not freed before it closed.

    Walks the allocator events of every thread in time order, keyed by address, so that frees of
    blocks allocated before the forward (which are not activations) do not subtract.
    """
    from torch._C._profiler import _ExtraFields_Allocation

    results = prof.profiler.kineto_results if prof.profiler is not None else None
    if results is None:
        raise RuntimeError("the profiler recorded no results")
    window: tuple[int, int] | None = None
    allocations: list[tuple[int, int, int]] = []  # (time ns, address, +bytes allocated / -bytes freed)
    stack = list(reversed(results.experimental_event_tree()))
    while stack:  # depth first, in recorded order, so that equal timestamps keep their sequence
        event = stack.pop()
        fields = event.extra_fields
        if isinstance(fields, _ExtraFields_Allocation):
            allocations.append((event.start_time_ns, fields.ptr, fields.alloc_size))
        elif event.name == _FORWARD_MARK:
            window = (event.start_time_ns, event.end_time_ns)
        stack.extend(reversed(event.children))
    if window is None:
        raise RuntimeError(f"profiler trace has no {_FORWARD_MARK!r} range")
    live: dict[int, int] = {}
    for time_ns, ptr, size in sorted(allocations, key=lambda a: a[0]):  # stable: ties keep tree order
        if not window[0] <= time_ns <= window[1]:
            continue
        if size > 0:
            live[ptr] = size
        else:
            live.pop(ptr, None)
    return sum(live.values())


def measure_act_bytes(model: nn.Module, batch: Batch, loss_fn: LossFn) -> int:
    """Bytes allocated during forward (through the loss) and still alive when backward starts.

    These are the tensors autograd keeps for backward, however they are kept (``save_for_backward``,
    tensors stored on a custom Function's ``ctx``, closures), plus the loss itself. Read from the
    allocator: on CUDA the change in ``torch.cuda.memory_allocated``; on CPU the allocation and free
    events that ``torch.profiler`` records with ``profile_memory=True``. One unmeasured step runs
    first so that lazily built state (cached masks, library workspaces) is not mistaken for
    activations. Leaves the model's gradients at None.
    """
    device = _device_of(model, batch)
    model.zero_grad(set_to_none=True)
    warm = loss_fn(model, batch)
    if warm.requires_grad:
        warm.backward()
    del warm
    model.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        loss = loss_fn(model, batch)
        torch.cuda.synchronize(device)
        act = torch.cuda.memory_allocated(device) - before
    else:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        with _quiet_stderr():
            prof.start()
        try:
            with torch.profiler.record_function(_FORWARD_MARK):
                loss = loss_fn(model, batch)
        finally:
            with _quiet_stderr():
                prof.stop()
        act = _live_bytes_after_forward(prof)
    if loss.requires_grad:
        loss.backward()  # frees the graph and everything it saved
    del loss
    model.zero_grad(set_to_none=True)
    return int(act)


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _state_bytes(model: nn.Module) -> int:
    """Parameters and buffers, each once: the model's resident memory before a step begins."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return _tensor_bytes(tensors.values())


def _optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return _tensor_bytes(
        v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)
    )


# --- speed -------------------------------------------------------------------------------------------


def train_step(model: nn.Module, batch: Batch, loss_fn: LossFn, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model, batch).backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_ms(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    n_warmup: int,
    n_timed: int,
    device: torch.device | str,
) -> list[float]:
    """Wall time in milliseconds of ``n_timed`` full training steps, after ``n_warmup`` untimed ones.

    A step is zero_grad, forward and loss, backward, optimizer.step. On CUDA the device is
    synchronised before and after each timed step, since kernels run asynchronously.
    """
    device = torch.device(device)
    for _ in range(n_warmup):
        train_step(model, batch, loss_fn, optimizer)
    times = []
    for _ in range(n_timed):
        _sync(device)
        start = time.perf_counter()
        train_step(model, batch, loss_fn, optimizer)
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def alternate_step_ms(
    steps: dict[str, Callable[[], None]],
    *,
    rounds: int,
    per_round: int,
    device: torch.device | str = "cpu",
    order: Literal["reverse", "rotate"] = "reverse",
) -> dict[str, list[float]]:
    """Wall times in ms of each named step function, measured side by side, in the order they ran.

    Each round runs every function ``per_round`` times in turn, so that slow phases of a shared or
    noisy machine fall on all of them alike; a ratio of their medians is then a fair comparison where
    absolute times are not. From one round to the next the order reverses (``reverse``) or rotates
    by one (``rotate``: no function always follows the same one). The caller warms up.
    """
    device = torch.device(device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    for r in range(rounds):
        if order == "rotate":
            turn = names[r % len(names):] + names[: r % len(names)]
        else:
            turn = names if r % 2 == 0 else names[::-1]
        for k in turn:
            for _ in range(per_round):
                _sync(device)
                start = time.perf_counter()
                steps[k]()
                _sync(device)
                times[k].append((time.perf_counter() - start) * 1e3)
    return times


def _canonical(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def matmul_peak_flops(device: torch.device | str, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a 2048 x 2048 matmul in ``dtype`` on ``device``, measured once per process and cached.

    The MFU denominator: a peak achieved on the same device in the same process (under the same
    thread count and TF32 settings as the model), not a datasheet number. Median of 5 timings after
    2 warm-up runs; on CUDA each timing spans 20 matmuls so that launch overhead does not dominate.
    """
    device = _canonical(device)
    key = f"{device}/{dtype}"
    if key not in _PEAK_CACHE:
        n = _MATMUL_N
        # A private generator: measuring must not advance the caller's RNG stream.
        generator = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=generator).to(dtype)
        b = torch.randn(n, n, device=device, generator=generator).to(dtype)
        reps = 20 if device.type == "cuda" else 1
        for _ in range(2):
            torch.mm(a, b)
        times = []
        for _ in range(5):
            _sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            _sync(device)
            times.append((time.perf_counter() - start) / reps)
        _PEAK_CACHE[key] = 2 * n**3 / statistics.median(times)
    return _PEAK_CACHE[key]


def _autocast_loss(loss_fn: LossFn, device: torch.device, precision: str, autocast: Callable) -> LossFn:
    def wrapped(model: nn.Module, batch: Batch) -> torch.Tensor:
        with autocast(device, precision):
            return loss_fn(model, batch)

    return wrapped


@torch.no_grad()
def forward_extras(model: nn.Module, batch: Batch) -> dict[str, float]:
    """The scalar extras the model reports (``ModelOutput.extras``, e.g. ACT's ``ponder_steps``) for
    one forward pass in eval mode, as training rows carry them from evaluation. The model's mode and
    the global RNG state are left as they were."""
    device = _device_of(model, batch)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            out = model(**batch.inputs)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in out.extras.items()}


class ExtrasProbe:
    """The loss function to profile with: ``loss(model(**batch.inputs), batch)``, noting whether the
    model's outputs carry extras. :meth:`extras` then runs :func:`forward_extras`'s eval pass only for a
    model that reports some (ACT), not for every cell of a cost sweep."""

    def __init__(self, loss: Callable[[Any, Batch], torch.Tensor]) -> None:
        self.loss = loss
        self.seen = False

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = model(**batch.inputs)
        self.seen = self.seen or bool(out.extras)
        return self.loss(out, batch)

    def extras(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        return forward_extras(model, batch) if self.seen else {}


# --- everything --------------------------------------------------------------------------------------


def profile_model(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    *,
    device: torch.device | str,
    n_warmup: int = 2,
    n_timed: int = 5,
    lr: float = 1e-3,
    precision: str = "fp32",
) -> ProfileResult:
    """All cost fields of a result row for ``model`` on ``batch``, trained with AdamW on a deep copy.

    ``flops_fwd`` is per example (batch FLOPs // batch size). ``mem_bytes`` on CUDA
    (``mem_kind="cuda_allocated"``) is the allocator's peak during one training step after
    ``reset_peak_memory_stats``, less what was allocated before the step other than the working
    copy's own parameters and buffers (so the caller's tensors do not count). On CPU
    (``"cpu_estimate"``) it is parameter and buffer bytes + gradient bytes + AdamW state bytes (read
    after one step) + ``act_bytes``. ``mfu`` uses the 3x rule, forward + backward = 3 forward FLOPs
    (Kaplan et al. 2020, Sec. 2.1; Chowdhery et al. 2022, PaLM, App. B): 3 * flops_fwd * batch size
    per step second over :func:`matmul_peak_flops`. The global RNG state (CPU and CUDA) is restored.
    ``n_timed=0`` measures the costs only: ``step_ms``, ``tokens_per_s`` and ``mfu`` are None.

    ``precision`` ``bf16``/``fp16`` runs each forward and loss of the memory and speed measurements
    under ``torch.autocast`` (parameters count and FLOPs do not depend on it); on CUDA the MFU peak is
    then the matmul peak in that dtype, on the CPU it stays the float32 peak. fp16 steps are timed
    without loss scaling (its cost is a few element-wise kernels).
    """
    device = _canonical(device)
    if precision != "fp32":
        loss_fn = _autocast_loss(loss_fn, device, precision, autocast)

    with torch.random.fork_rng(devices=_rng_devices(device)):
        work = copy.deepcopy(model).to(device)  # stepping an optimizer must not touch the caller's weights
        work.train()
        batch = batch.to(device)
        params = count_params(work)
        params_applied = count_params_applied(work, batch)
        flops_batch, unsupported = count_flops(work, batch)
        act_bytes = measure_act_bytes(work, batch, loss_fn)
        optimizer = torch.optim.AdamW(unique_trainable(work), lr=lr)
        mem_bytes, mem_kind = step_memory(work, batch, loss_fn, optimizer, device, act_bytes)
        times = measure_step_ms(
            work, batch, loss_fn, optimizer, n_warmup=n_warmup, n_timed=n_timed, device=device
        ) if n_timed else []
        peak_dtype = AMP_DTYPES.get(precision, torch.float32) if device.type == "cuda" else torch.float32
        peak = matmul_peak_flops(device, peak_dtype) if n_timed else 0.0

    flops_fwd = flops_batch // batch.batch_size
    step_s = statistics.median(times) / 1e3 if times else None  # None: costs only, no speed fields
    return ProfileResult(
        params=params,
        params_applied=params_applied,
        flops_fwd=flops_fwd,
        flops_unsupported=unsupported,
        mem_bytes=int(mem_bytes),
        mem_kind=mem_kind,
        act_bytes=act_bytes,
        step_ms=step_s * 1e3 if step_s is not None else None,
        tokens_per_s=batch.batch_size * batch.n_tokens / step_s if step_s is not None else None,
        mfu=3 * flops_fwd * batch.batch_size / step_s / peak if step_s is not None else None,
    )


def _rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG state profiling must restore (those initialised, and ``device``)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    if device.type == "cuda" and device.index not in devices:
        devices.append(device.index)
    return devices


def step_memory(
    work: nn.Module, batch: Batch, loss_fn: LossFn, optimizer: torch.optim.Optimizer, device: torch.device,
    act_bytes: int,
) -> tuple[int, MemKind]:
    """Peak memory of one training step (which allocates the gradients and the AdamW state): on CUDA
    the allocator's peak less what was allocated outside the model, on the CPU an estimate from the
    parameter, gradient and optimizer-state bytes plus ``act_bytes``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        outside = torch.cuda.memory_allocated(device) - _state_bytes(work)
        torch.cuda.reset_peak_memory_stats(device)
        train_step(work, batch, loss_fn, optimizer)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - outside, "cuda_allocated"
    train_step(work, batch, loss_fn, optimizer)
    grads = _tensor_bytes(p.grad for p in unique_trainable(work) if p.grad is not None)
    return _state_bytes(work) + grads + _optimizer_state_bytes(optimizer) + act_bytes, "cpu_estimate"
