"""``harness profile``: one model or preset profiled on a random batch, without a suite."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.core.device import device_name, free_memory, resolve_device, use_deterministic, use_tf32
from harness.core.version import __version__
from harness.run.outcome import is_oom, one_line, oom_message

# harness profile's defaults; seq_len None: the task's own profile_size (harness/tasks/base.py)
PROFILE_SHAPE: dict[str, int | None] = {"seq_len": None, "batch_size": 8, "seed": 0}


def profile_overrides(overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """``harness profile``'s KEY=VALUE arguments: the input's shape (``seq_len``, ``image_size`` as its
    image name, ``batch_size``, ``seed``; a ``seq_len`` not given is None), and model keys with the
    argument each came from."""
    from harness.core.errors import HarnessError
    from harness.core.yamlio import parse_scalar

    shape = dict(PROFILE_SHAPE)
    keys: dict[str, Any] = {}
    where: dict[str, str] = {}
    for text in overrides:
        if "=" not in text:
            raise HarnessError(f"override '{text}': expected KEY=VALUE")
        k, raw = text.split("=", 1)
        value = parse_scalar(raw, f"override '{text}'", k)
        if k == "image_size":  # image models: the input's side plays the part of seq_len
            k = "seq_len"
        if k in shape:
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if k == "seed" else 1):
                raise HarnessError(f"override '{text}': {k}: expected a positive integer, got {value!r}")
            shape[k] = value
        else:
            keys[k], where[k] = value, f"override '{text}'"
    return shape, keys, where


def profile_one(
    model_name: str, task_name: str | None, overrides: list[str], device: str, n_warmup: int = 2,
    n_timed: int = 5, precision: str = "fp32",
) -> dict[str, Any]:
    """``harness profile``: build one model or preset with KEY=VALUE keys and profile it on a random
    batch of ``batch_size`` x ``seq_len`` tokens (image models: ``image_size`` x ``image_size`` images),
    without training, on ``task_name`` or else the task the model declares (``profile_task``, or the
    task that is the default for its io: copy for token models, digits for image classifiers, ...;
    harness.suite.jobs.default_profile_task); ``seq_len`` defaults to that task's ``profile_size``
    (128 for those two). The fields are a result row's cost fields, plus the model's extras (e.g.
    ``ponder_steps``) from one forward pass in eval mode, as training rows carry them from evaluation.
    Raises HarnessError on bad input."""
    import torch

    from harness.measure.meter import profile_model
    from harness.measure.step import StepSpec, TrainStep
    from harness.suite.jobs import profile_target
    from harness.suite.spec import TrainConfig

    shape, keys, where = profile_overrides(overrides)
    entry, cfg, tentry, task = profile_target(model_name, task_name, shape["seq_len"], keys, where)
    if shape["seq_len"] is None:
        shape["seq_len"] = task.profile_size
    dev = resolve_device(device)
    use_deterministic()  # the settings a suite's jobs run under
    if dev.type == "cuda":
        use_tf32()
    torch.manual_seed(shape["seed"])
    model = entry.obj(cfg).to(dev)
    gen = torch.Generator().manual_seed(shape["seed"])
    batch = task.profile_batch(shape["seq_len"], shape["batch_size"], model.io, gen).to(dev)
    fields: dict[str, Any] = {"model": model_name, "task": tentry.name, **shape, "precision": precision,
                              "status": "ok", "error": None}
    try:
        # the step a suite's job takes at the train config's defaults, in the precision asked for
        spec = StepSpec.from_train(dataclasses.asdict(TrainConfig()), precision=precision)
        fields.update(profile_model(model, batch, lambda m: TrainStep(m, task, spec, dev), device=dev,
                                    n_warmup=n_warmup, n_timed=n_timed))
    except Exception as e:  # report it like a job would
        fields["status"], fields["error"] = ("oom" if is_oom(e) else "error"), one_line(e)
        if fields["status"] == "oom":
            fields["error"] = oom_message(shape["seq_len"], shape["batch_size"], precision, fields["error"])
    if fields["status"] != "ok":
        free_memory()
    fields.update({"device": dev.type, "device_name": device_name(dev.type),
                   "torch_version": torch.__version__, "harness_version": __version__,
                   "config": dataclasses.asdict(cfg)})
    return fields
