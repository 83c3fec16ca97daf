"""Suite YAML -> validated, typed suite -> a grid of jobs.

Resolution order of a variant's model keys, later wins: the model's dataclass defaults, the preset
(if the variant names one), the suite's ``model:`` defaults (those keys the model accepts), the
variant's own keys, then the sweep values. ``vocab_size``/``max_len`` come from the task unless set.
Every error is an :class:`InputError` naming file, line and dotted key; nothing runs before the
whole suite has been validated.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import __version__, yamlio
from harness.config import bounded, build, positive
from harness.errors import InputError
from harness.registry import TASKS, resolve_model, unknown_message

# variant keys that are not model keys: which of the suite's tasks it runs on, whether the cost sweep
# (profile:) includes it, and train keys that differ from the suite's for this variant
VARIANT_KEYS = ("tasks", "profile", "train")

TOP_KEYS = (
    "name", "description", "include", "seeds", "baseline", "device", "train", "model", "tasks",
    "variants", "profile", "report",
)


@dataclass
class TrainConfig:
    """Optimisation and evaluation settings shared by every job of a suite."""

    steps: int = positive(200)
    batch_size: int = positive(32)
    lr: float = bounded(1.0e-3, lo=1e-12)
    warmup_steps: int = bounded(0, lo=0)
    min_lr_ratio: float = bounded(0.1, lo=0.0, hi=1.0)  # cosine decays to lr * min_lr_ratio
    weight_decay: float = bounded(0.01, lo=0.0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    grad_clip: float = bounded(1.0, lo=0.0)  # 0 disables clipping
    eval_every: int = positive(100)
    eval_batches: int = positive(4)
    eval_batch_size: int = positive(64)
    profile_warmup: int = bounded(2, lo=0)
    profile_steps: int = positive(5)  # timed steps behind step_ms
    # Extra evaluations of the trained weights under other model keys, e.g. Reformer trained with
    # LSH and evaluated with full attention: {full: {attention: full}, lsh-8: {eval_n_hashes: 8}}.
    # Each gives metrics "<metric>@<mode>"; a mode applies to the variants whose model has its keys.
    eval_modes: dict[str, dict] = field(default_factory=dict)
    # Numerics of training and profiling: fp32 (TF32 matmuls on CUDA), or autocast to bf16 / fp16
    # (fp16 with dynamic loss scaling); compile: torch.compile the model for the training loop.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False

    def check(self) -> list[tuple[str, str]]:
        if self.warmup_steps > self.steps:
            return [("warmup_steps", f"must not exceed steps ({self.steps}), got {self.warmup_steps}")]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            return [("betas", f"must be two numbers in [0, 1), got {self.betas}")]
        return []


@dataclass
class ProfileConfig:
    """Cost-against-length sweep: each variant profiled (no training) at each length."""

    seq_lens: list[int] = field(default_factory=list)  # tokens; for image tasks, the image side
    image_sizes: list[int] = field(default_factory=list)  # the same list under its image name
    batch_size: int = positive(4)
    task: str | None = None  # which of the suite's tasks supplies the inputs; default: the first
    # A variant whose training step at one length took longer than this (or ran out of memory) is not
    # profiled at the longer lengths: those cells are recorded as status "skipped" with the reason.
    max_step_s: float | None = None
    # A length whose mem_bytes, extrapolated from the variant's two previous lengths (a power law in
    # n), would pass this many GiB is skipped too: on the CPU the kernel kills a process that runs out
    # of memory, and no result row can record that. Default: a quarter of the machine's memory on the
    # CPU; none on CUDA, where running out is caught and recorded as status "oom".
    max_mem_gib: float | None = None

    def check(self) -> list[tuple[str, str]]:
        if self.seq_lens and self.image_sizes:
            return [("image_sizes", "give seq_lens or image_sizes, not both")]
        key = "image_sizes" if self.image_sizes else "seq_lens"
        sizes = self.sizes
        if not sizes:
            return [("seq_lens", "must list at least one length (or image_sizes)")]
        for i, n in enumerate(sizes):
            if n < 1:
                return [(f"{key}[{i}]", f"must be >= 1, got {n}")]
        if self.max_step_s is not None and self.max_step_s <= 0:
            return [("max_step_s", f"must be > 0, got {self.max_step_s}")]
        if self.max_mem_gib is not None and self.max_mem_gib <= 0:
            return [("max_mem_gib", f"must be > 0, got {self.max_mem_gib}")]
        return []

    @property
    def sizes(self) -> list[int]:
        return self.image_sizes or self.seq_lens


@dataclass
class ReportSpec:
    """How the report lays out this suite besides the per-task ablation tables."""

    grid: list[str] = field(default_factory=list)  # metrics shown per cell of a variant x task table
    extras: list[str] = field(default_factory=list)  # row fields appended to each cell (e.g. ponder_steps)
    matrix: list[dict] = field(default_factory=list)  # train-setting x eval-mode tables (MatrixSpec)
    fit_range: list[int] = field(default_factory=list)  # [lo, hi]: cost exponents fitted on lo <= n <= hi
    ratio_at: int | None = None  # cost sweep: each variant's cost relative to the references at this n
    references: list[str] = field(default_factory=list)  # cost sweep references (default: vanilla variants)

    def check(self) -> list[tuple[str, str]]:
        if self.fit_range and (len(self.fit_range) != 2 or not 1 <= self.fit_range[0] < self.fit_range[1]):
            return [("fit_range", f"must be [lo, hi] with 1 <= lo < hi, got {self.fit_range}")]
        return []


@dataclass
class MatrixSpec:
    """A table whose rows are variants (how a model was trained) and whose columns are eval modes (how
    it was evaluated), e.g. Reformer's duplication table; ``paper`` names a table of literature.yaml
    (``<paper id>.<table>``) whose numbers are shown beside ours, matched by the row and column labels."""

    task: str
    metric: str
    rows: dict[str, str]  # variant -> row label
    columns: dict[str, str]  # eval mode ('' = the headline evaluation) -> column label
    title: str = ""
    paper: str | None = None
    scale: float = 1.0  # multiply measured values (e.g. 100 for percent, as papers print them)


# Train keys added after results were first committed, with the value that reproduces the older
# behaviour: at that value they are left out of the run_id, so existing results stay valid.
LATER_TRAIN_KEYS: dict[str, Any] = {"eval_modes": {}, "precision": "fp32", "compile": False}
# Of those, the ones that change a profile job's numbers too (a profile job's identity has no train dict).
NUMERICS_KEYS = ("precision", "compile")


def _identity_train(train: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in train.items() if not (k in LATER_TRAIN_KEYS and v == LATER_TRAIN_KEYS[k])}


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
    report_spec: dict[str, Any] | None = None  # layout only: not part of the run_id
    max_step_s: float | None = None  # profile jobs: skip longer lengths past this (not part of the run_id)
    max_mem_gib: float | None = None  # profile jobs: skip lengths projected past this (not part of the run_id)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the job's numbers: hashed into ``run_id``."""
        return {
            "kind": self.kind, "suite": self.suite, "variant": self.variant, "model": self.model,
            "model_cfg": self.model_cfg, "task": self.task, "task_cfg": self.task_cfg,
            "train": _identity_train(self.train) if self.kind == "train" else None, "seed": self.seed,
            "device": self.device, "seq_len": self.seq_len, "batch_size": self.batch_size,
            "harness_version": __version__,
            # a profile job has no train dict in its identity, but precision and compile change its costs
            **({k: v for k, v in _identity_train(self.train).items() if k in NUMERICS_KEYS}
               if self.kind == "profile" else {}),
        }

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model_cfg, "preset": self.preset, "task": {"name": self.task, **self.task_cfg},
            "train": self.train, "seed": self.seed, "device": self.device, "kind": self.kind,
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


# --------------------------------------------------------------------------------------------------


class _Source:
    """Merged suite data plus where each key path came from."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.locs: dict[tuple[Any, ...], str] = {}

    def locate(self, dotted: str) -> str:
        kp = _split(dotted)
        while kp:
            if kp in self.locs:
                return self.locs[kp]
            kp = kp[:-1]
        return self.locs.get((), self.display)


def _split(dotted: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for part in dotted.replace("[", ".").replace("]", "").split("."):
        if part == "":
            continue
        out.append(int(part) if part.isdigit() else part)
    return tuple(out)


def _dotted(kp: tuple[Any, ...]) -> str:
    s = ""
    for p in kp:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_with_includes(path: Path, display: str, src: _Source, seen: tuple[Path, ...]) -> dict:
    data, locs = yamlio.load(path, display)
    if data is None:
        raise InputError(f"{display}:1", "", "suite file is empty")
    if not isinstance(data, dict):
        raise InputError(locs.get((), display), "", f"a suite must be a mapping, got {type(data).__name__}")
    merged: dict = {}
    inc = data.get("include")
    if inc is not None:
        names = inc if isinstance(inc, list) else [inc]
        for i, name in enumerate(names):
            kp = ("include", i) if isinstance(inc, list) else ("include",)
            if not isinstance(name, str):
                raise InputError(locs[kp], _dotted(kp), f"expected a file name, got {name!r}")
            target = (path.parent / name).resolve()
            if target in seen:
                raise InputError(locs[kp], _dotted(kp), f"include cycle through {name}")
            if not target.exists():
                raise InputError(locs[kp], _dotted(kp), f"included file not found: {name}")
            shown = str(Path(display).parent / name)
            merged = _deep_merge(merged, _load_with_includes(target, shown, src, (*seen, target)))
    # this file's keys win, and so do their locations
    src.locs.update(locs)
    return _deep_merge(merged, {k: v for k, v in data.items() if k != "include"})


def apply_override(data: dict, text: str, src: _Source) -> None:
    """``a.b.c=VALUE`` sets a nested key (creating mappings); integers index lists."""
    where = f"override '{text}'"
    if "=" not in text:
        raise InputError(where, "", "expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise InputError(where, key, "malformed key")
    value = yamlio.parse_scalar(raw, where, key)
    kp = _split(key)
    node: Any = data
    for i, part in enumerate(kp[:-1]):
        nxt = kp[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise InputError(where, key, f"no list item {part} under {_dotted(kp[:i]) or 'top level'}")
            node = node[part]
        elif isinstance(node, dict):
            if part not in node:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        else:
            raise InputError(where, key, f"{_dotted(kp[:i])} is not a mapping or list")
    last = kp[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise InputError(where, key, "list index out of range")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InputError(where, key, f"{_dotted(kp[:-1])} is not a mapping or list")
    for k in [k for k in src.locs if k[: len(kp)] == kp]:
        del src.locs[k]
    src.locs[kp] = where


def _require_list(data: dict, key: str, src: _Source) -> list:
    v = data.get(key)
    if not isinstance(v, list) or not v:
        raise InputError(src.locate(key), key, "must be a non-empty list")
    return v


def _expand_sweep(v: dict, i: int, src: _Source) -> list[tuple[str, dict]]:
    """A variant with ``sweep: {k: [1, 2]}`` -> one (name, keys) per grid point."""
    name = v["name"]
    sweep = v.get("sweep")
    base = {k: x for k, x in v.items() if k not in ("name", "model", "sweep", *VARIANT_KEYS)}
    if sweep is None:
        return [(name, base)]
    kp = f"variants[{i}].sweep"
    if not isinstance(sweep, dict) or not sweep:
        raise InputError(src.locate(kp), kp, "must be a mapping of key -> list of values")
    for k, vals in sweep.items():
        if not isinstance(vals, list) or not vals:
            raise InputError(src.locate(f"{kp}.{k}"), f"{kp}.{k}", "must be a non-empty list of values")
    fields = {f for _, f, _, _ in string.Formatter().parse(name) if f}
    unknown = fields - set(sweep)
    if unknown:
        key = f"variants[{i}].name"
        raise InputError(src.locate(key), key, f"name uses {{{sorted(unknown)[0]}}} which is not a sweep key")
    keys = list(sweep)
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        point = dict(zip(keys, combo))
        vname = name.format(**point) if fields else name + "".join(f"-{k}{x}" for k, x in point.items())
        out.append((vname, {**base, **point}))
    return out


def _check_eval_modes(train: TrainConfig, expanded: list[tuple[int, str, str, dict]], src: _Source) -> None:
    """Each eval mode must be a mapping of model keys that some variant's model accepts."""
    all_keys = set().union(*(_model_keys(resolve_model(m)[0].config) for _, _, m, _ in expanded))
    for mode, keys in train.eval_modes.items():
        kp = f"train.eval_modes.{mode}"
        if not isinstance(mode, str) or not mode or any(c in mode for c in "@ /"):
            raise InputError(src.locate(kp), kp, "a mode name must be a non-empty string without '@', '/' or spaces")
        if not isinstance(keys, dict) or not keys:
            raise InputError(src.locate(kp), kp, "must be a non-empty mapping of model keys to values")
        for k in keys:
            if k not in all_keys:
                close = difflib.get_close_matches(str(k), sorted(all_keys), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise InputError(src.locate(f"{kp}.{k}"), f"{kp}.{k}", f"no variant's model accepts this key{hint}")


def _eval_mode_error(
    cfg_cls: type, model_cfg: dict[str, Any], over: dict[str, Any], prefix: str = "",
    locate: Callable[[str], str] = lambda _k: "",
) -> InputError | None:
    """Why a model (which has all of the mode's keys) refuses the mode's values; None if it accepts them."""
    try:
        build(cfg_cls, {**model_cfg, **over}, prefix, locate)
    except InputError as e:
        return e
    return None


def eval_mode_configs(model_cls_cfg: type, model_cfg: dict[str, Any], modes: dict[str, dict]) -> dict[str, dict]:
    """The eval modes that apply to a model, as full model configs: a mode applies when the model has
    all its keys and accepts its values (so ``attention: full`` applies to Reformer, not to vanilla,
    whose ``attention`` is sdpa or math)."""
    keys = _model_keys(model_cls_cfg)
    return {m: {**model_cfg, **over} for m, over in modes.items()
            if set(over) <= keys and _eval_mode_error(model_cls_cfg, model_cfg, over) is None}


def _model_keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def load_suite(
    path: str | Path,
    overrides: list[str] = (),  # type: ignore[assignment]
    device: str | None = None,
) -> Suite:
    """Load, merge includes, apply overrides, validate and expand a suite into jobs."""
    path = Path(path)
    display = str(path)
    src = _Source(display)
    data = _load_with_includes(path.resolve(), display, src, (path.resolve(),))
    for text in overrides:
        apply_override(data, text, src)

    for key in data:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(TOP_KEYS)}"
            raise InputError(src.locate(str(key)), str(key), f"unknown top-level key{hint}")

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise InputError(src.locate("name"), "name", f"must be a file-name-safe string, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InputError(src.locate("description"), "description", "must be a string")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list) or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise InputError(src.locate("seeds"), "seeds", f"must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(src.locate("seeds"), "seeds", "lists a seed twice")
    dev = device or data.get("device", "cpu")
    if dev not in ("auto", "cpu", "cuda"):
        raise InputError(src.locate("device"), "device", f"must be one of auto, cpu, cuda, got {dev!r}")

    train = build(TrainConfig, data.get("train", {}) or {}, "train", src.locate)
    defaults = data.get("model", {}) or {}
    if not isinstance(defaults, dict):
        raise InputError(src.locate("model"), "model", "must be a mapping of model keys")

    # tasks
    tasks: list[tuple[str, str, Any]] = []
    for i, t in enumerate(_require_list(data, "tasks", src)):
        kp = f"tasks[{i}]"
        if not isinstance(t, dict):
            raise InputError(src.locate(kp), kp, "must be a mapping with at least 'task'")
        if "task" not in t:
            raise InputError(src.locate(kp), f"{kp}.task", "required key is missing")
        tname = t["task"]
        if tname not in TASKS.names():
            raise InputError(src.locate(f"{kp}.task"), f"{kp}.task", unknown_message("task", tname, TASKS.names()))
        entry = TASKS.get(tname)
        label = t.get("name", tname)
        if not isinstance(label, str) or not label:
            raise InputError(src.locate(f"{kp}.name"), f"{kp}.name", "must be a non-empty string")
        if label in [x[0] for x in tasks]:
            raise InputError(src.locate(f"{kp}.name"), f"{kp}.name", f"duplicate task name '{label}'")
        cfg = build(entry.config, {k: v for k, v in t.items() if k not in ("name", "task")}, kp, src.locate, f"task {tname}")
        tasks.append((label, tname, cfg))

    # variants
    expanded: list[tuple[int, str, str, dict]] = []
    for i, v in enumerate(_require_list(data, "variants", src)):
        kp = f"variants[{i}]"
        if not isinstance(v, dict):
            raise InputError(src.locate(kp), kp, "must be a mapping with 'name' and 'model'")
        for req in ("name", "model"):
            if req not in v:
                raise InputError(src.locate(kp), f"{kp}.{req}", "required key is missing")
        if not isinstance(v["name"], str) or not v["name"]:
            raise InputError(src.locate(f"{kp}.name"), f"{kp}.name", "must be a non-empty string")
        if not isinstance(v["model"], str):
            raise InputError(src.locate(f"{kp}.model"), f"{kp}.model", "must be a model or preset name")
        try:
            resolve_model(v["model"])
        except Exception as e:  # HarnessError with did-you-mean
            raise InputError(src.locate(f"{kp}.model"), f"{kp}.model", str(e)) from None
        for vname, keys in _expand_sweep(v, i, src):
            expanded.append((i, vname, v["model"], keys))
    names: list[str] = []
    for i, vname, _, _ in expanded:
        if vname in names:
            kp = f"variants[{i}].name"
            raise InputError(src.locate(kp), kp, f"duplicate variant name '{vname}'")
        names.append(vname)

    # suite-level model defaults must be meaningful for at least one variant
    accepted: set[str] = set()
    for _, _, mname, _ in expanded:
        accepted |= _model_keys(resolve_model(mname)[0].config)
    for k in defaults:
        if k not in accepted:
            close = difflib.get_close_matches(str(k), sorted(accepted), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise InputError(src.locate(f"model.{k}"), f"model.{k}", f"no variant's model accepts this key{hint}")

    # one baseline variant for every task, or a mapping task name -> baseline variant
    baseline_spec = data.get("baseline")
    task_labels = [t[0] for t in tasks]
    per_task: dict[str, str | None] = {}
    if isinstance(baseline_spec, dict):
        for k, b in baseline_spec.items():
            kp = f"baseline.{k}"
            if k not in task_labels:
                raise InputError(src.locate(kp), kp, unknown_message("task", str(k), task_labels))
            if b not in names:
                raise InputError(src.locate(kp), kp, unknown_message("baseline variant", str(b), names))
            per_task[k] = b
        baseline = None
    else:
        baseline = baseline_spec
        if baseline is not None and baseline not in names:
            raise InputError(src.locate("baseline"), "baseline", unknown_message("baseline variant", str(baseline), names))
        per_task = {t: baseline for t in task_labels}

    report_spec = None
    if data.get("report") is not None:
        spec = build(ReportSpec, data["report"], "report", src.locate)
        for j, m in enumerate(spec.matrix):
            kp = f"report.matrix[{j}]"
            ms = build(MatrixSpec, m, kp, src.locate)
            if ms.task not in [t[0] for t in tasks]:
                raise InputError(src.locate(f"{kp}.task"), f"{kp}.task", unknown_message("task", ms.task, [t[0] for t in tasks]))
            for v in ms.rows:
                if v not in names:
                    raise InputError(src.locate(f"{kp}.rows.{v}"), f"{kp}.rows.{v}", unknown_message("variant", v, names))
            for mode in ms.columns:
                if mode and mode not in train.eval_modes:
                    raise InputError(src.locate(f"{kp}.columns.{mode}"), f"{kp}.columns.{mode}",
                                     unknown_message("eval mode", mode, sorted(train.eval_modes)))
        for j, v in enumerate(spec.references):
            if v not in names:
                kp = f"report.references[{j}]"
                raise InputError(src.locate(kp), kp, unknown_message("variant", v, names))
        report_spec = dataclasses.asdict(spec)
    profile = None
    if data.get("profile") is not None:
        profile = build(ProfileConfig, data["profile"], "profile", src.locate)
        if profile.task is not None and profile.task not in [t[0] for t in tasks]:
            raise InputError(
                src.locate("profile.task"), "profile.task",
                unknown_message("task", profile.task, [t[0] for t in tasks]),
            )

    labels = [t[0] for t in tasks]
    plabel = (profile.task or labels[0]) if profile is not None else None
    runs_on: dict[str, list[str]] = {}  # variant -> the task labels it trains on
    vtrain: dict[str, dict[str, Any]] = {}  # variant -> its train settings (the suite's, with its own keys)
    profiled: dict[str, bool] = {}
    for i, vname, _, _ in expanded:
        v = data["variants"][i]
        only = v.get("tasks", labels)
        kp = f"variants[{i}].tasks"
        if not isinstance(only, list) or not all(isinstance(x, str) for x in only):
            raise InputError(src.locate(kp), kp, "must be a list of the suite's task names ([]: cost sweep only)")
        for j, x in enumerate(only):
            if x not in labels:
                raise InputError(src.locate(f"{kp}[{j}]"), f"{kp}[{j}]", unknown_message("task", x, labels))
        flag = v.get("profile", True)
        if not isinstance(flag, bool):
            kpp = f"variants[{i}].profile"
            raise InputError(src.locate(kpp), kpp, f"expected true or false, got {flag!r}")
        runs_on[vname], profiled[vname] = list(only), flag and profile is not None
        if not only and not profiled[vname]:
            raise InputError(src.locate(kp), kp, "is empty and the variant is not in a cost sweep: it would run nothing")
        vt = v.get("train")
        if vt is None:
            vtrain[vname] = dataclasses.asdict(train)
        else:
            kpt = f"variants[{i}].train"
            if not isinstance(vt, dict) or not vt:
                raise InputError(src.locate(kpt), kpt, "must be a mapping of train keys that differ for this variant")
            if "eval_modes" in vt:
                raise InputError(src.locate(f"{kpt}.eval_modes"), f"{kpt}.eval_modes", "eval modes are set for the whole suite")
            vtrain[vname] = dataclasses.asdict(build(TrainConfig, {**(data.get("train") or {}), **vt}, kpt, src.locate))

    _check_eval_modes(train, expanded, src)
    mode_used: set[str] = set()
    mode_errors: dict[str, InputError] = {}
    jobs: list[Job] = []
    model_cfgs: dict[tuple[str, str], dict] = {}
    for i, vname, mname, keys in expanded:
        entry, preset_cfg = resolve_model(mname)
        ckeys = _model_keys(entry.config)
        preset = mname if mname != entry.name else None
        sweep_keys = set(data["variants"][i].get("sweep") or {})
        for label, tname, tcfg in tasks:
            trains = label in runs_on[vname]
            if not trains and not (profiled[vname] and label == plabel):
                continue
            task_obj = TASKS.get(tname).obj(tcfg)
            origin: dict[str, str] = {}
            merged: dict[str, Any] = {}
            for k, val in preset_cfg.items():
                merged[k], origin[k] = val, f"variants[{i}].model"
            for k, val in defaults.items():
                if k in ckeys:
                    merged[k], origin[k] = val, f"model.{k}"
            for k, val in keys.items():
                merged[k], origin[k] = val, f"variants[{i}].{'sweep.' if k in sweep_keys else ''}{k}"
            # the task sets vocabulary and length; a user's value may be larger, never smaller
            for k, need in task_obj.model_keys().items():
                if k not in ckeys:
                    continue
                if k not in merged:
                    merged[k], origin[k] = need, f"variants[{i}]"
                elif isinstance(merged[k], int) and merged[k] < need:
                    where = origin[k]
                    raise InputError(src.locate(where), where, f"must be >= {need} for task '{label}', got {merged[k]}")

            def locate(dotted: str, _o: dict = origin, _i: int = i) -> str:
                key = dotted.split(".")[-1]
                return src.locate(_o.get(key, f"variants[{_i}]"))

            cfg = build(entry.config, merged, f"variants[{i}]", locate, f"model {entry.name}")
            check_task = getattr(task_obj, "check_model", None)
            if check_task is not None:
                problem = check_task(cfg, entry.obj)
                if problem:
                    kp = f"variants[{i}].model"
                    raise InputError(src.locate(kp), kp, f"cannot run on task '{label}': {problem}")
            cdict = dataclasses.asdict(cfg)
            model_cfgs[(vname, label)] = cdict
            for mode, over in train.eval_modes.items():
                if mode in mode_used or not set(over) <= ckeys:
                    continue
                mp = f"train.eval_modes.{mode}"
                err = _eval_mode_error(entry.config, cdict, over, mp,
                                       lambda d, _m=mp: src.locate(f"{_m}.{d.split('.')[-1]}"))
                if err is None:
                    mode_used.add(mode)
                else:
                    mode_errors.setdefault(mode, err)
            for seed in seeds if trains else ():
                # a config may draw something from the job's seed (e.g. a random sublayer order); it
                # is resolved here so that the stored config and the run_id say what was run
                seeded = cfg.for_seed(seed) if hasattr(cfg, "for_seed") else cfg
                jobs.append(Job(
                    suite=name, variant=vname, model=entry.name, preset=preset, model_cfg=dataclasses.asdict(seeded),
                    task_name=label, task=tname, task_cfg=dataclasses.asdict(tcfg), train=vtrain[vname],
                    seed=seed, device=dev, baseline=per_task.get(label), description=description,
                    report_spec=report_spec,
                ))
    for mode in train.eval_modes:
        if mode not in mode_used and mode in mode_errors:
            raise mode_errors[mode]  # the mode fits no variant: say why for the first that has its keys
    if profile is not None:
        ptask = next(t for t in tasks if t[0] == plabel)
        swept = [(vname, mname, resolve_model(mname)[0]) for _, vname, mname, _ in expanded if profiled[vname]]
        # length-major: the variants' cells at one length run one after another, so that a slow phase
        # of the machine falls on all of them rather than on one variant's longer lengths
        for n in profile.sizes:
            for vname, mname, entry in swept:
                cfg = dict(model_cfgs[(vname, plabel)])
                if "max_len" in cfg:
                    cfg["max_len"] = max(int(cfg["max_len"]), n)
                if "image_size" in cfg:  # image models: the profiled length is the image side
                    cfg["image_size"] = n
                jobs.append(Job(
                    suite=name, variant=vname, model=entry.name, preset=mname if mname != entry.name else None,
                    model_cfg=cfg, task_name=plabel, task=ptask[1], task_cfg=dataclasses.asdict(ptask[2]),
                    train=vtrain[vname], seed=seeds[0], device=dev, kind="profile", seq_len=n,
                    batch_size=profile.batch_size, baseline=per_task.get(plabel), description=description,
                    report_spec=report_spec, max_step_s=profile.max_step_s,
                    max_mem_gib=profile.max_mem_gib,
                ))
    return Suite(name, display, description, list(seeds), baseline, dev, train, jobs, names)
