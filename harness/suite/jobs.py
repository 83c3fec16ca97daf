"""Jobs, and the pure functions that make them from a validated suite.

Resolution order of a variant's model keys, later wins (:func:`merge_model_keys`): the model's
dataclass defaults, the preset (if the variant names one), the suite's ``model:`` defaults (those keys
the model accepts), the variant's own keys, then the sweep values. The task then fills the keys it
fixes (``vocab_size``, ``max_len``, image keys: ``Task.model_keys``); a user's value may be larger,
never smaller (:func:`fill_task_keys`). A cost-sweep cell takes the training config with the
profiled length, resized by the model config's own ``at_length`` hook (:func:`profiled_config`).
``harness profile`` and ``harness check`` use the same functions; ``harness profile`` picks its task
from the model's declaration (:func:`default_profile_task`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from harness.core.config import build
from harness.core.errors import HarnessError, InputError
from harness.suite.spec import TrainConfig

# The identity scheme (see Job.identity). Version 2 hashes what determines a job's numbers and nothing
# else: no suite or variant name, the resolved device, the heap policy.
IDENTITY_VERSION = 2
# Train keys added after rows were first stored under this scheme, with the value that reproduces the
# older behaviour: at that value they are left out of the run_id, so existing rows stay valid. Empty
# since version 2, which hashes every key the train config has.
LATER_TRAIN_KEYS: dict[str, Any] = {}
# Task config keys added later, likewise left out of the run_id at their old value.
LATER_TASK_KEYS: dict[str, Any] = {}
# What a profile job's cost depends on of the train config: the work the step does (clipping on or
# off, precision, compile), the threads it runs on and how it is timed (warm-up and timed steps). The
# learning rate and schedule change the values a step computes, not its cost.
PROFILE_STEP_KEYS = ("precision", "compile", "threads", "weight_decay", "profile_warmup", "profile_steps")
DEFAULT_HEAP = "pinned"  # harness.core.heap's default policy: left out of the run_id


def identity_train(train: dict[str, Any]) -> dict[str, Any]:
    """The train settings that go into a run_id (later keys at their old value left out)."""
    return {k: v for k, v in train.items() if not (k in LATER_TRAIN_KEYS and v == LATER_TRAIN_KEYS[k])}


def identity_task(task_cfg: dict[str, Any]) -> dict[str, Any]:
    """The task settings that go into a run_id (later keys at their old value left out)."""
    return {k: v for k, v in task_cfg.items() if not (k in LATER_TASK_KEYS and v == LATER_TASK_KEYS[k])}


@dataclass
class Job:
    """One unit of work: a variant on a task with a seed (train), or at a length (profile)."""

    suite: str
    variant: str
    model: str  # registered model (after resolving presets)
    preset: str | None
    model_cfg: dict[str, Any]
    task_name: str
    task: str
    task_cfg: dict[str, Any]
    train: dict[str, Any]
    seed: int
    device: str
    kind: Literal["train", "profile"] = "train"
    seq_len: int | None = None
    batch_size: int | None = None
    baseline: str | None = None
    description: str = ""
    suite_file: str | None = None  # the suite file it was read from: not part of the run_id
    # profile jobs, not part of the run_id: skip longer lengths past this step time, and lengths whose
    # memory is projected past this
    max_step_s: float | None = None
    max_mem_gib: float | None = None
    # a budget-matched variant: what was matched and how well (harness.suite.match); not part of the
    # run_id, which hashes the solved config itself
    match: dict[str, Any] | None = None
    heap: str = DEFAULT_HEAP  # the C heap's policy the job runs under (harness.core.heap)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the job's numbers, hashed into ``run_id``: the model and its
        resolved config, the task and its config, the train config (a profile job: the keys that
        change its cost, :data:`PROFILE_STEP_KEYS`, with clipping as on or off), the seed, the
        resolved device type (``cpu`` or ``cuda``, never ``auto``), the measured shape, and the heap
        policy when it is not the default. Names are not part of it: renaming a suite or a variant
        retrains nothing, and two suites that run the same job share its run_id."""
        out: dict[str, Any] = {
            "v": IDENTITY_VERSION, "kind": self.kind, "model": self.model, "model_cfg": self.model_cfg,
            "task": self.task, "task_cfg": identity_task(self.task_cfg), "seed": self.seed,
            "device": self.device, "seq_len": self.seq_len, "batch_size": self.batch_size,
        }
        if self.kind == "train":
            out["train"] = identity_train(self.train)
        else:
            out["step"] = {**{k: self.train.get(k) for k in PROFILE_STEP_KEYS},
                           "clip": float(self.train.get("grad_clip", 0) or 0) > 0}
        if self.heap != DEFAULT_HEAP:
            out["heap"] = self.heap
        return out

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def config(self) -> dict[str, Any]:
        """The resolved config stored in the row (with ``match`` for a budget-matched variant)."""
        return {
            "model": self.model_cfg, "preset": self.preset, "task": {"name": self.task, **self.task_cfg},
            "train": self.train, "seed": self.seed, "device": self.device, "kind": self.kind,
            **({"match": self.match} if self.match is not None else {}),
        }


@dataclass
class Suite:
    name: str
    path: str
    description: str
    seeds: list[int]
    baseline: str | None
    device: str
    train: TrainConfig
    jobs: list[Job]
    variants: list[str]

    def train_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.kind == "train"]


# --- model configs -------------------------------------------------------------------------------


def model_keys(cfg_cls: type) -> set[str]:
    """The keys a model config accepts."""
    return {f.name for f in dataclasses.fields(cfg_cls) if f.init}


Layer = tuple[dict[str, Any], Callable[[str], str]]  # (keys, key -> where it was set)


def merge_model_keys(layers: Iterable[Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    """Keys of later layers win; each key remembers where it was set. The caller gives the layers in
    resolution order (preset, the suite's defaults the model accepts, the variant's keys, sweep values)."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for keys, where in layers:
        for k, v in keys.items():
            merged[k], origin[k] = v, where(k)
    return merged, origin


def fill_task_keys(
    cfg_cls: type, merged: dict[str, Any], origin: dict[str, str], task_keys: dict[str, Any], where: str,
) -> list[tuple[str, Any]]:
    """Fill the task's keys the model accepts and the user did not set; return the user's values that
    are smaller than the task needs, as (key, need), in the task's order."""
    accepted = model_keys(cfg_cls)
    small = []
    for k, need in task_keys.items():
        if k not in accepted:
            continue
        if k not in merged:
            merged[k], origin[k] = need, where
        elif isinstance(merged[k], int) and merged[k] < need:
            small.append((k, need))
    return small


def build_model_config(
    entry: Any, merged: dict[str, Any], origin: dict[str, str], prefix: str, locate: Callable[[str], str],
    fallback: str,
) -> Any:
    """The model's config dataclass; a refused key is located where the user set it."""

    def where(dotted: str) -> str:
        return locate(origin.get(dotted.split(".")[-1], fallback))

    return build(entry.config, merged, prefix, where, f"model {entry.name}")


def profiled_config(cfg: Any, n: int) -> dict[str, Any]:
    """Built model config ``cfg`` at profiled length ``n``, as keys: the config's own ``at_length(n)``
    says which keys change (harness/models/base.py). Raises HarnessError for a config without one (the
    suite loader refuses such a model in a cost sweep before this)."""
    if not callable(getattr(cfg, "at_length", None)):
        raise HarnessError(f"{type(cfg).__name__} does not say how it resizes to a length (no at_length)")
    return {**dataclasses.asdict(cfg), **cfg.at_length(n)}


def default_profile_task(entry: Any, merged: dict[str, Any], origin: dict[str, str], model_name: str) -> str:
    """The task ``harness profile`` runs a model on when none is named: the one its class names
    (``profile_task``), else the task that declares itself the default for the model's io
    (``profile_ios``). A model whose io follows its config is built from ``merged`` to read it."""
    from harness.core.registry import TASKS
    from harness.models.base import model_io

    named = getattr(entry.obj, "profile_task", None)
    if isinstance(named, str):
        return named
    io = getattr(entry.obj, "io", None)
    if not isinstance(io, str):
        try:
            io = model_io(entry.obj, build_model_config(entry, merged, origin, "", lambda w: w, model_name))
        except InputError as e:
            raise HarnessError(str(e)) from None
    claims = [name for name in TASKS.names() if io in getattr(TASKS.get(name).obj, "profile_ios", ())]
    if len(claims) != 1:
        which = f"tasks {', '.join(claims)} all claim it" if claims else "no task claims it"
        raise HarnessError(f"{model_name}: no default task for io '{io}' ({which}); name one with --task")
    return claims[0]


def profile_target(
    model_name: str, task_name: str | None, n: int | None, keys: dict[str, Any], where: dict[str, str],
) -> tuple[Any, Any, Any, Any]:
    """(model entry, model config, task entry, task) for ``harness profile`` at length ``n`` (None: the
    task's ``profile_size``), resolved as a suite resolves a variant: the preset, then the user's keys;
    the task (:func:`default_profile_task` unless named, built with its defaults) fills the keys it
    fixes except those the model's ``at_length(n)`` sets, which win. Raises HarnessError on bad input."""
    from harness.core.registry import TASKS, resolve_model

    entry, preset = resolve_model(model_name)
    merged, origin = merge_model_keys([(preset, lambda _k: model_name), (keys, lambda k: where[k])])
    tentry = TASKS.get(task_name or default_profile_task(entry, merged, origin, model_name))
    task = tentry.obj(tentry.config())
    n = task.profile_size if n is None else n
    if not callable(getattr(entry.config, "at_length", None)):
        raise HarnessError(f"{model_name} does not say how it resizes to a length (its config has no "
                           "at_length): it cannot be profiled at a size")
    try:  # the keys at_length(n) sets, asked of an unchecked config (the build below checks the result)
        accepted = {k: v for k, v in merged.items() if k in model_keys(entry.config)}
        sized = entry.config(**accepted).at_length(n)
    except (TypeError, ValueError):  # a key missing or of the wrong type: the build below names it
        sized = {}
    fixed = {k: v for k, v in task.model_keys().items() if k not in sized}
    fill_task_keys(entry.config, merged, origin, fixed, model_name)  # the user's values win here
    try:
        cfg = build_model_config(entry, {**merged, **sized}, origin, "", lambda w: w, model_name)
    except InputError as e:
        raise HarnessError(str(e)) from None
    return entry, cfg, tentry, task


def eval_mode_error(
    cfg_cls: type, model_cfg: dict[str, Any], over: dict[str, Any], prefix: str = "",
    locate: Callable[[str], str] = lambda _k: "",
) -> InputError | None:
    """Why a model (which has all of the mode's keys) refuses the mode's values; None if it accepts them."""
    try:
        build(cfg_cls, {**model_cfg, **over}, prefix, locate)
    except InputError as e:
        return e
    return None


def eval_mode_configs(
    model_cls_cfg: type, model_cfg: dict[str, Any], modes: dict[str, dict],
) -> dict[str, dict]:
    """The eval modes that apply to a model, as full model configs: a mode applies when the model has
    all its keys and accepts its values (so ``attention: full`` applies to Reformer, not to vanilla,
    whose ``attention`` is sdpa or math)."""
    keys = model_keys(model_cls_cfg)
    return {m: {**model_cfg, **over} for m, over in modes.items()
            if set(over) <= keys and eval_mode_error(model_cls_cfg, model_cfg, over) is None}


# --- jobs ----------------------------------------------------------------------------------------


@dataclass
class Cell:
    """A variant on one of the suite's tasks, with its resolved model config."""

    variant: str
    model: str  # the registered model
    preset: str | None  # the preset the variant named, if any
    cfg: Any  # the model's config dataclass
    task_name: str  # the suite's label of the task
    task: str  # the registered task
    task_cfg: Any  # the task's config dataclass
    train: dict[str, Any]  # the variant's train settings
    trains: bool  # False: the cell exists only for the cost sweep
    swept: bool  # whether the variant is in the cost sweep (profile:)
    baseline: str | None = None
    match: dict[str, Any] | None = None  # the budget match that sized cfg (harness.suite.match), if any


def expand_train_jobs(cells: Iterable[Cell], seeds: list[int], **common: Any) -> list[Job]:
    """One job per training cell and seed, in cell order; ``common``: suite, device, description,
    suite_file."""
    jobs = []
    for c in cells:
        for seed in seeds if c.trains else ():
            # a config may draw something from the job's seed (e.g. a random sublayer order); it
            # is resolved here so that the stored config and the run_id say what was run
            seeded = c.cfg.for_seed(seed) if hasattr(c.cfg, "for_seed") else c.cfg
            jobs.append(Job(
                variant=c.variant, model=c.model, preset=c.preset, model_cfg=dataclasses.asdict(seeded),
                task_name=c.task_name, task=c.task, task_cfg=dataclasses.asdict(c.task_cfg), train=c.train,
                seed=seed, baseline=c.baseline, match=c.match, **common,
            ))
    return jobs


def expand_profile_jobs(
    cells: list[Cell], sizes: list[int], batch_size: int, seed: int, *, max_step_s: float | None,
    max_mem_gib: float | None, **common: Any,
) -> list[Job]:
    """The cost sweep: one job per length and swept cell (``cells``: each swept variant on the sweep's
    task), length-major, so that the variants' cells at one length run one after another and a slow
    phase of the machine falls on all of them rather than on one variant's longer lengths. Each
    cell's model config is resized by its own ``at_length`` (:func:`profiled_config`)."""
    jobs = []
    for n in sizes:
        for c in cells:
            jobs.append(Job(
                variant=c.variant, model=c.model, preset=c.preset,
                model_cfg=profiled_config(c.cfg, n),
                task_name=c.task_name, task=c.task, task_cfg=dataclasses.asdict(c.task_cfg), train=c.train,
                seed=seed, kind="profile", seq_len=n, batch_size=batch_size, baseline=c.baseline,
                max_step_s=max_step_s, max_mem_gib=max_mem_gib, match=c.match, **common,
            ))
    return jobs
