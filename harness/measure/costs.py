"""What a model costs on one batch, counted rather than timed: parameters (unique and applied per
forward), the bytes a step keeps for backward (``act_bytes``), and the bytes of the model's state, its
gradients and its optimiser state. Step times and the assembled cost fields of a row are
:mod:`harness.measure.meter`'s.

Every function takes a model (``model(**batch.inputs) -> ModelOutput``) and a batch;
:func:`measure_act_bytes` also takes ``loss_fn(model, batch) -> scalar loss``, which calls the model.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from harness.models.base import Batch

LossFn = Callable[[nn.Module, Batch], torch.Tensor]

_FORWARD_MARK = "harness::forward"  # record_function label bracketing the forward pass on CPU


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


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def state_bytes(model: nn.Module) -> int:
    """Parameters and buffers, each once: the model's resident memory before a step begins."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return tensor_bytes(tensors.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return tensor_bytes(
        v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)
    )


@torch.no_grad()
def forward_extras(model: nn.Module, batch: Batch) -> dict[str, float]:
    """The scalar extras the model reports (``ModelOutput.extras``, e.g. ACT's ``ponder_steps``) for
    one forward pass in eval mode, as training rows carry them from evaluation. The model's mode and
    the global RNG state are left as they were."""
    device = _device_of(model, batch)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=rng_devices(device)):
            out = model(**batch.inputs)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in out.extras.items()}


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG state profiling must restore (those initialised, and ``device``)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    if device.type == "cuda" and device.index not in devices:
        devices.append(device.index)
    return devices
