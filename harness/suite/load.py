"""Suite YAML -> validated, typed suite -> a grid of jobs.

:func:`load_suite` composes small steps: read the file with its includes and overrides
(:mod:`harness.suite.source`), build the typed sections (:mod:`harness.suite.spec`), check what refers
across sections (a baseline naming a variant, a report naming a task, ...), resolve each variant's model
config on each task (:mod:`harness.suite.jobs`, which states the resolution order) and expand the training
and cost-sweep jobs. Every error is an :class:`InputError` naming file, line and dotted key; nothing
runs before the whole suite has been validated.

:func:`report_layout` is the light reader the report uses: the ``report:`` section of the suite file as it
is now, checked as :func:`load_suite` checks it, without building a task or a model (no torch).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.config import build
from harness.core.device import device_type
from harness.core.errors import HarnessError, InputError
from harness.core.heap import policy as heap_policy
from harness.core.registry import MODELS, TASKS, resolve_model, unknown_message
from harness.suite.checks import check_distinct_jobs, check_phases_compile
from harness.suite.jobs import (
    LATER_TRAIN_KEYS,
    Cell,
    Job,
    Suite,
    build_model_config,
    eval_mode_configs,
    eval_mode_error,
    expand_profile_jobs,
    expand_train_jobs,
    fill_task_keys,
    merge_model_keys,
    model_keys,
)
from harness.suite.source import Source, apply_override, load_with_includes, typed_key
from harness.suite.spec import (
    TOP_KEYS,
    VARIANT_KEYS,
    MatchSpec,
    MatrixSpec,
    ProfileConfig,
    ProfileSpec,
    ReportSpec,
    SuiteSpec,
    TaskSpec,
    TrainConfig,
    VariantSpec,
)

__all__ = [
    "LATER_TRAIN_KEYS", "TOP_KEYS", "VARIANT_KEYS", "Job", "MatchSpec", "MatrixSpec",
    "ProfileConfig",
    "ProfileSpec", "ReportSpec", "Suite", "SuiteSpec", "TaskSpec", "TrainConfig", "VariantSpec",
    "apply_override", "eval_mode_configs", "load_suite", "recorded_path", "report_layout",
    "resolve_variant_config",
]


def load_suite(
    path: str | Path,
    overrides: list[str] = (),  # type: ignore[assignment]
    device: str | None = None,
) -> Suite:
    """Load, merge includes, apply overrides, validate and expand a suite into jobs. A refusal located at
    an override names the key as the override typed it."""
    try:
        return _load_suite(Path(path), list(overrides), device)
    except InputError as e:
        raise typed_key(e) from None


def _load_suite(path: Path, overrides: list[str], device: str | None) -> Suite:
    """:func:`load_suite`'s steps."""
    src = Source(str(path))
    data = load_with_includes(path.resolve(), str(path), src, (path.resolve(),))
    for text in overrides:
        apply_override(data, text, src)
    check_top_keys(data, src)
    spec = build(SuiteSpec, {"name": path.stem, **data}, "", src.locate)  # the name defaults to the stem
    train = build(TrainConfig, spec.train or {}, "train", src.locate)
    tasks = build_tasks(spec.tasks, src)
    variants = build_variants(spec.variants, src)
    names = [name for v in variants for name, _ in v.expand()]
    check_unique_variants(variants, src)
    check_matches(variants, names, src)
    check_model_defaults(spec.model or {}, variants, src)
    baselines = resolve_baselines(spec.baseline, [t.label for t in tasks], names, src)
    build_report(spec.report, [t.label for t in tasks], names, sorted(train.eval_modes), src)
    profile = build_profile(spec.profile, tasks, src)
    check_variant_tasks(variants, tasks, profile, src)
    check_eval_mode_keys(train, variants, src)
    cells = resolve_cells(spec, train, tasks, variants, profile, baselines, src)
    check_phases_compile(cells, src, variants, device_type(device or spec.device))
    check_eval_modes_apply(train, cells, src)
    name = spec.name
    dev = device_type(device or spec.device)  # "auto" resolved here: CPU and CUDA jobs never share an id
    common = dict(suite=name, device=dev, description=spec.description, heap=heap_policy(),
                  suite_file=recorded_path(path))
    jobs = expand_train_jobs(cells, list(spec.seeds), **common)
    if profile is not None:
        swept = [c for c in cells if c.swept and c.task_name == (profile.task or tasks[0].label)]
        check_resizable(swept, variants, src)
        jobs += expand_profile_jobs(
            swept, profile.sizes, profile.batch_size, spec.seeds[0], max_step_s=profile.max_step_s,
            max_mem_gib=profile.max_mem_gib, **common,
        )
    check_distinct_jobs(jobs, variants, src)
    baseline = spec.baseline if not isinstance(spec.baseline, dict) else None
    return Suite(name, str(path), spec.description, list(spec.seeds), baseline, dev, train, jobs, names)


# --- sections ----------------------------------------------------------------------------------


def check_top_keys(data: dict, src: Source) -> None:
    for key in data:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(TOP_KEYS)}"
            raise InputError(src.locate(str(key)), str(key), f"unknown top-level key{hint}")


def build_tasks(entries: list[dict[str, Any]], src: Source) -> list[TaskSpec]:
    """Each ``tasks:`` entry as a TaskSpec with its task's config built; labels must be unique."""
    out: list[TaskSpec] = []
    for i, t in enumerate(entries):
        kp = f"tasks[{i}]"
        spec = build(TaskSpec, {k: v for k, v in t.items() if k in ("name", "task")}, kp, src.locate)
        if spec.label in [x.label for x in out]:
            raise InputError(src.locate(f"{kp}.name"), f"{kp}.name", f"duplicate task name '{spec.label}'")
        entry = TASKS.get(spec.task)
        if not callable(getattr(entry.obj, "metric_bounds", None)):
            why = f"task '{spec.task}' declares no metric bounds (Task.metric_bounds, harness/tasks/base.py)"
            raise InputError(src.locate(f"{kp}.task"), f"{kp}.task", why)
        config = entry.config
        rest = {k: v for k, v in t.items() if k not in ("name", "task")}
        spec.cfg = build(config, rest, kp, src.locate, f"task {spec.task}")
        out.append(spec)
    return out


def build_variants(entries: list[dict[str, Any]], src: Source) -> list[VariantSpec]:
    """Each ``variants:`` entry as a VariantSpec; its keys other than the spec's are model keys."""
    spec_keys = {f.name for f in dataclasses.fields(VariantSpec) if f.init}
    out = []
    for i, v in enumerate(entries):
        own = {k: x for k, x in v.items() if k in spec_keys}
        spec = build(VariantSpec, own, f"variants[{i}]", src.locate)
        spec.keys = {k: x for k, x in v.items() if k not in spec_keys}
        if spec.match is not None:
            spec.matched = build(MatchSpec, spec.match, f"variants[{i}].match", src.locate)
        out.append(spec)
    return out


def check_unique_variants(variants: list[VariantSpec], src: Source) -> None:
    seen: set[str] = set()
    for i, v in enumerate(variants):
        for name, _ in v.expand():
            if name in seen:
                kp = f"variants[{i}].name"
                raise InputError(src.locate(kp), kp, f"duplicate variant name '{name}'")
            seen.add(name)


def check_matches(variants: list[VariantSpec], names: list[str], src: Source) -> None:
    """A ``match:`` names another variant that is not itself matched, and keys of the variant's model."""
    matched = {v.name for v in variants if v.matched is not None}
    for i, v in enumerate(variants):
        m = v.matched
        if m is None:
            continue
        kp = f"variants[{i}].match"
        _refer(src, f"{kp}.to", "variant", m.to, [n for n in names if n != v.name])
        if m.to in matched:
            raise InputError(src.locate(f"{kp}.to"), f"{kp}.to",
                             f"variant '{m.to}' is matched itself; match to a variant of fixed size")
        accepted = sorted(model_keys(resolve_model(v.model)[0].config))
        for where, k in [("key", m.key), *((f"scale[{j}]", k) for j, k in enumerate(m.scale))]:
            if k not in accepted:
                raise InputError(src.locate(f"{kp}.{where}"), f"{kp}.{where}",
                                 unknown_message(f"key of model {v.model}", k, accepted))


def _some_variant_accepts(keys: Any, prefix: str, variants: list[VariantSpec], src: Source) -> None:
    """Each of ``keys`` (at ``prefix.key``) must be a key of at least one variant's model."""
    accepted = set().union(*(model_keys(resolve_model(v.model)[0].config) for v in variants))
    for k in keys:
        if k not in accepted:
            close = difflib.get_close_matches(str(k), sorted(accepted), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            kp = f"{prefix}.{k}"
            raise InputError(src.locate(kp), kp, f"no variant's model accepts this key{hint}")


def check_model_defaults(defaults: dict[str, Any], variants: list[VariantSpec], src: Source) -> None:
    """Each of the suite's ``model:`` defaults must be a key of at least one variant's model."""
    _some_variant_accepts(defaults, "model", variants, src)


def resolve_baselines(
    spec: str | dict[str, str] | None, labels: list[str], names: list[str], src: Source,
) -> dict[str, str | None]:
    """Task label -> its baseline variant (one for all tasks, or a mapping per task)."""
    if not isinstance(spec, dict):
        if spec is not None:
            _refer(src, "baseline", "baseline variant", spec, names)
        return {t: spec for t in labels}
    for k, b in spec.items():
        kp = f"baseline.{k}"
        if k not in labels:
            raise InputError(src.locate(kp), kp, unknown_message("task", str(k), labels))
        if b not in names:
            raise InputError(src.locate(kp), kp, unknown_message("baseline variant", str(b), names))
    return dict(spec)


def _refer(src: Source, key: str, kind: str, name: str, known: list[str]) -> None:
    if name not in known:
        raise InputError(src.locate(key), key, unknown_message(kind, name, known))


def build_report(
    data: dict[str, Any] | None, labels: list[str], names: list[str], eval_modes: list[str], src: Source,
) -> ReportSpec:
    """The ``report:`` section (the default layout when there is none, its ``matrices`` built); the
    tasks, variants and eval modes it names must be among the suite's ``labels``, ``names`` and
    ``eval_modes``."""
    if data is None:
        return ReportSpec()
    spec = build(ReportSpec, data, "report", src.locate)
    for j, m in enumerate(spec.matrix):
        kp = f"report.matrix[{j}]"
        ms = build(MatrixSpec, m, kp, src.locate)
        _refer(src, f"{kp}.task", "task", ms.task, labels)
        for v in ms.rows:
            _refer(src, f"{kp}.rows.{v}", "variant", v, names)
        for mode in ms.columns:
            if mode:
                _refer(src, f"{kp}.columns.{mode}", "eval mode", mode, eval_modes)
        spec.matrices.append(ms)
    for j, v in enumerate(spec.references):
        _refer(src, f"report.references[{j}]", "variant", v, names)
    return spec


# --- the report's reader -------------------------------------------------------------------------


def recorded_path(path: str | Path) -> str:
    """A suite file's path as rows record it (``suite_file``): relative to the working directory when
    the file is inside it, else absolute; '/'-separated."""
    full = Path(path).resolve()
    try:
        return full.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def declared_names(spec: SuiteSpec, src: Source) -> tuple[list[str], list[str]]:
    """The task labels and the variant names (sweeps expanded) that a suite declares, read without the
    registry (so without torch): an entry's naming keys are checked as a full load checks them, its
    other keys are not read, and a registered task or model name is not looked up."""
    labels = []
    for i, t in enumerate(spec.tasks):
        own = {k: v for k, v in t.items() if k in ("name", "task")}
        labels.append(build(TaskSpec, own, f"tasks[{i}]", src.locate, check=False).label)
    variants = []
    for i, v in enumerate(spec.variants):
        kp = f"variants[{i}]"
        own = {k: x for k, x in v.items() if k in ("name", "model", "sweep")}
        variant = build(VariantSpec, own, kp, src.locate, check=False)
        for key, message in variant.sweep_problems():
            raise InputError(src.locate(f"{kp}.{key}"), f"{kp}.{key}", message)
        variants.append(variant)
    check_unique_variants(variants, src)
    return labels, [name for v in variants for name, _ in v.expand()]


def report_layout(path: str | Path) -> ReportSpec:
    """The ``report:`` layout of the suite file at ``path`` as it is now (includes merged, no overrides;
    ``ReportSpec()`` when it has no ``report:`` key), with the messages :func:`load_suite` gives for
    what it reads: the top-level keys and types, ``train`` (for the eval modes), the task labels, the
    variant names and the ``report:`` section. Builds no task or model, so it imports no torch and
    does not see what only building them refuses. Raises :class:`InputError` (a missing file too)."""
    path = Path(path)
    src = Source(str(path))
    data = load_with_includes(path.resolve(), str(path), src, (path.resolve(),))
    check_top_keys(data, src)
    spec = build(SuiteSpec, {"name": path.stem, **data}, "", src.locate)
    train = build(TrainConfig, spec.train or {}, "train", src.locate)
    labels, names = declared_names(spec, src)
    layout = build_report(spec.report, labels, names, sorted(train.eval_modes), src)
    layout.variant_order = list(names)
    return layout


def build_profile(data: dict[str, Any] | None, tasks: list[TaskSpec], src: Source) -> ProfileSpec | None:
    if data is None:
        return None
    profile = build(ProfileSpec, data, "profile", src.locate)
    if profile.task is not None:
        _refer(src, "profile.task", "task", profile.task, [t.label for t in tasks])
    return profile


def check_variant_tasks(
    variants: list[VariantSpec], tasks: list[TaskSpec], profile: ProfileSpec | None, src: Source,
) -> None:
    """A variant's ``tasks:`` name the suite's tasks, and a variant must run something."""
    labels = [t.label for t in tasks]
    for i, v in enumerate(variants):
        kp = f"variants[{i}].tasks"
        for j, x in enumerate(v.tasks or []):
            _refer(src, f"{kp}[{j}]", "task", x, labels)
        if v.tasks == [] and not (v.profile and profile is not None):
            why = "is empty and the variant is not in a cost sweep: it would run nothing"
            raise InputError(src.locate(kp), kp, why)


def check_resizable(swept: list[Cell], variants: list[VariantSpec], src: Source) -> None:
    """A variant in the cost sweep must have a model whose config says how it resizes to a length
    (``at_length``, harness/models/base.py)."""
    index = {name: i for i, v in enumerate(variants) for name, _ in v.expand()}
    for c in swept:
        if not callable(getattr(c.cfg, "at_length", None)):
            kp = f"variants[{index[c.variant]}].profile"
            why = (f"model '{c.model}' does not say how it resizes to a length (its config has no "
                   "at_length), so it cannot be in the cost sweep; set profile: false")
            raise InputError(src.locate(kp), kp, why)


def check_eval_mode_keys(train: TrainConfig, variants: list[VariantSpec], src: Source) -> None:
    """Each key of each eval mode must be a key that some variant's model accepts."""
    for mode, keys in train.eval_modes.items():
        _some_variant_accepts(keys, f"train.eval_modes.{mode}", variants, src)


# --- model configs -------------------------------------------------------------------------------


def resolve_variant_config(
    v: VariantSpec, i: int, keys: dict[str, Any], defaults: dict[str, Any], task: TaskSpec, task_obj: Any,
    src: Source,
) -> Any:
    """The model config of variant ``v`` (entry ``i`` of ``variants:``, at one sweep point ``keys``) on
    ``task``, in the order stated in :mod:`harness.suite.jobs`; refusals name the key where it was set."""
    entry, preset_cfg = resolve_model(v.model)
    accepted = model_keys(entry.config)
    sweep = set(v.sweep or {})
    merged, origin = merge_model_keys([
        (preset_cfg, lambda _k: f"variants[{i}].model"),
        ({k: x for k, x in defaults.items() if k in accepted}, lambda k: f"model.{k}"),
        (keys, lambda k: f"variants[{i}].{'sweep.' if k in sweep else ''}{k}"),
    ])
    small = fill_task_keys(entry.config, merged, origin, task_obj.model_keys(), f"variants[{i}]")
    if small:
        k, need = small[0]
        where = origin[k]
        why = f"must be >= {need} for task '{task.label}', got {merged[k]}"
        raise InputError(src.locate(where), where, why)
    cfg = build_model_config(entry, merged, origin, f"variants[{i}]", src.locate, f"variants[{i}]")
    problem = task_obj.check_model(cfg, entry.obj)
    if problem:
        kp = f"variants[{i}].model"
        raise InputError(src.locate(kp), kp, f"cannot run on task '{task.label}': {problem}")
    return cfg


def variant_train(spec: SuiteSpec, train: TrainConfig, v: VariantSpec, i: int, src: Source) -> dict[str, Any]:
    """A variant's train settings: the suite's, with the variant's own ``train:`` keys."""
    if v.train is None:
        return dataclasses.asdict(train)
    kp = f"variants[{i}].train"
    return dataclasses.asdict(build(TrainConfig, {**(spec.train or {}), **v.train}, kp, src.locate))


def resolve_cells(
    spec: SuiteSpec, train: TrainConfig, tasks: list[TaskSpec], variants: list[VariantSpec],
    profile: ProfileSpec | None, baselines: dict[str, str | None], src: Source,
) -> list[Cell]:
    """Every (variant, task) cell that trains or is in the cost sweep, in suite order."""
    task_objs = {t.label: TASKS.get(t.task).obj(t.cfg) for t in tasks}
    swept_on = (profile.task or tasks[0].label) if profile is not None else None
    cells = []
    for i, v in enumerate(variants):
        trains_on = v.tasks if v.tasks is not None else [t.label for t in tasks]
        vtrain = variant_train(spec, train, v, i, src)
        entry, _ = resolve_model(v.model)
        for vname, keys in v.expand():
            for t in tasks:
                trains = t.label in trains_on
                if not trains and not (v.profile and t.label == swept_on):
                    continue
                cfg = resolve_variant_config(v, i, keys, spec.model or {}, t, task_objs[t.label], src)
                preset = v.model if v.model != entry.name else None
                cells.append(Cell(vname, entry.name, preset, cfg, t.label, t.task, t.cfg, vtrain, trains,
                                  v.profile and profile is not None, baselines.get(t.label)))
    for i, v in enumerate(variants):
        if v.matched is not None:
            for c in cells:
                if c.variant == v.name:
                    solve_match(c, cells, v, i, spec.model or {}, tasks, task_objs, src)
    return cells


def solve_match(
    cell: Cell, cells: list[Cell], v: VariantSpec, i: int, defaults: dict[str, Any], tasks: list[TaskSpec],
    task_objs: dict[str, Any], src: Source,
) -> None:
    """Size the matched variant's ``cell`` to its target's budget on the same task (harness.suite.match): set
    the solved config and the match record, or refuse the suite when no value is within the tolerance."""
    from harness.suite.match import count_budget, scaled_keys, solve, start_value

    m = v.matched
    assert m is not None
    kp = f"variants[{i}].match"
    target = next((c for c in cells if c.variant == m.to and c.task_name == cell.task_name), None)
    if target is None:
        why = f"variant '{m.to}' does not run on task '{cell.task_name}', which '{v.name}' runs on"
        raise InputError(src.locate(f"{kp}.to"), f"{kp}.to", why)
    task = next(t for t in tasks if t.label == cell.task_name)
    task_obj = task_objs[cell.task_name]
    task_id = f"{task.task}:{dataclasses.asdict(task.cfg)}"
    start_cfg = dataclasses.asdict(cell.cfg)

    def count(c: Cell, cfg: Any) -> int:
        entry = MODELS.get(c.model)
        return count_budget(entry, cfg, task_obj, task_id, int(c.train["batch_size"]), m.budget)

    def config_at(value: int) -> Any:
        keys = {**v.keys, **scaled_keys(start_cfg, m.key, m.scale, value)}
        try:
            return resolve_variant_config(v, i, keys, defaults, task, task_obj, src)
        except InputError as e:
            why = f"{m.key}={value} is refused ({e.message}); set {kp}.step to a multiple the model accepts"
            raise InputError(src.locate(f"{kp}.key"), f"{kp}.key", why) from None

    try:
        solved = solve(config_at, lambda cfg: count(cell, cfg), count(target, target.cfg),
                       start_value(start_cfg[m.key]), m.step)
    except HarnessError as e:
        raise InputError(src.locate(f"{kp}.key"), f"{kp}.key", str(e)) from None
    record = {"to": m.to, "budget": m.budget, "key": m.key, "value": solved.value, "target": solved.target,
              "achieved": solved.achieved, "rel": round(solved.rel, 6), "tolerance": m.tolerance}
    if abs(solved.rel) > m.tolerance:
        why = (f"no {m.key} matches '{m.to}' on {m.budget} within {m.tolerance:g}: the closest, "
               f"{solved.value}, gives {solved.achieved:,} against {solved.target:,} ({solved.rel:+.1%})")
        raise InputError(src.locate(kp), kp, why)
    cell.cfg, cell.match = solved.cfg, record


def mode_locator(src: Source, prefix: str) -> Callable[[str], str]:
    """Where an eval mode's refused key was set: ``prefix.<the key's last part>``."""
    return lambda dotted: src.locate(f"{prefix}.{dotted.split('.')[-1]}")


def check_eval_modes_apply(train: TrainConfig, cells: list[Cell], src: Source) -> None:
    """Each eval mode must apply to some variant: for the first cell whose model has the mode's keys
    but refuses its values, say why."""
    used: set[str] = set()
    errors: dict[str, InputError] = {}
    for cell in cells:
        cfg_cls = MODELS.get(cell.model).config
        cdict = dataclasses.asdict(cell.cfg)
        for mode, over in train.eval_modes.items():
            if mode in used or not set(over) <= model_keys(cfg_cls):
                continue
            mp = f"train.eval_modes.{mode}"
            err = eval_mode_error(cfg_cls, cdict, over, mp, mode_locator(src, mp))
            if err is None:
                used.add(mode)
            else:
                errors.setdefault(mode, err)
    for mode in train.eval_modes:
        if mode not in used and mode in errors:
            raise errors[mode]
