"""The suite schema: one typed dataclass per section of a suite YAML, each built by
:func:`harness.core.config.build` so that a wrong type, an unknown key or a bad value is refused with the
file, line and dotted key. Constraints a type cannot say are in each spec's ``check()``; constraints
between sections (a baseline naming a variant, ...) are validators in :mod:`harness.suite.load`.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.core.config import bounded, positive
from harness.core.errors import HarnessError
from harness.core.registry import TASKS, resolve_model, unknown_message

TOP_KEYS = (
    "name", "description", "include", "seeds", "baseline", "device", "train", "model", "tasks",
    "variants", "profile", "report",
)
# variant keys that are not model keys: which of the suite's tasks it runs on, whether the cost sweep
# (profile:) includes it, train keys that differ from the suite's for this variant, and a budget match
VARIANT_KEYS = ("tasks", "profile", "train", "match")


@dataclass
class SuiteSpec:
    """The top level of a suite (after includes and overrides); sections are built by their own specs."""

    name: str = ""  # load_suite passes the file's stem as the default; null is refused
    description: str = ""
    seeds: list[int] | int = field(default_factory=lambda: [0])
    # one baseline variant for every task, or a mapping task name -> baseline variant
    baseline: str | dict[str, str] | None = None
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    train: dict[str, Any] | None = None  # TrainConfig
    model: dict[str, Any] | None = None  # defaults for every variant whose model accepts the key
    tasks: list[dict[str, Any]] = field(default_factory=list)  # TaskSpec (+ the task's config keys)
    variants: list[dict[str, Any]] = field(default_factory=list)  # VariantSpec (+ model keys)
    profile: dict[str, Any] | None = None  # ProfileSpec
    report: dict[str, Any] | None = None  # ReportSpec

    def __post_init__(self) -> None:
        if isinstance(self.seeds, int):
            self.seeds = [self.seeds]

    def check(self) -> list[tuple[str, str]]:
        if not self.name or any(c in self.name for c in "/\\ "):
            return [("name", f"must be a file-name-safe string, got {self.name!r}")]
        assert isinstance(self.seeds, list)
        if not self.seeds or any(s < 0 for s in self.seeds):
            return [("seeds", f"must be a non-empty list of integers >= 0, got {self.seeds!r}")]
        if len(set(self.seeds)) != len(self.seeds):
            return [("seeds", "lists a seed twice")]
        for key in ("tasks", "variants"):
            if not getattr(self, key):
                return [(key, "must be a non-empty list")]
        return []


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
    # torch threads of every job (torch.set_num_threads, in worker processes and Ray tasks too). On the
    # CPU the reduction order, and so the last bits of every metric, depends on it: results meant to be
    # committed run at the default, 1, which any machine can reproduce; each row records its count.
    threads: int = positive(1)

    def check(self) -> list[tuple[str, str]]:
        if self.warmup_steps > self.steps:
            return [("warmup_steps", f"must not exceed steps ({self.steps}), got {self.warmup_steps}")]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            return [("betas", f"must be two numbers in [0, 1), got {self.betas}")]
        for mode, keys in self.eval_modes.items():
            if not isinstance(mode, str) or not mode or any(c in mode for c in "@ /"):
                return [(f"eval_modes.{mode}",
                         "a mode name must be a non-empty string without '@', '/' or spaces")]
            if not isinstance(keys, dict) or not keys:
                return [(f"eval_modes.{mode}", "must be a non-empty mapping of model keys to values")]
        return []


@dataclass
class TaskSpec:
    """One entry of ``tasks:``: a registered task under a label; its other keys are the task's config."""

    task: str
    name: str | None = None  # the label jobs and reports use; default: the task's name
    cfg: Any = field(default=None, init=False)  # the task's config, built from the entry's other keys

    def check(self) -> list[tuple[str, str]]:
        if self.task not in TASKS.names():
            return [("task", unknown_message("task", self.task, TASKS.names()))]
        if self.name is not None and not self.name:
            return [("name", "must be a non-empty string")]
        return []

    @property
    def label(self) -> str:
        return self.name or self.task


@dataclass
class VariantSpec:
    """One entry of ``variants:``: a model or preset; its other keys are model keys."""

    name: str
    model: str  # a registered model or preset
    sweep: dict[str, Any] | None = None  # key -> list of values: one variant per grid point
    tasks: list[str] | None = None  # the suite's task labels it trains on (default all; []: sweep only)
    profile: bool = True  # whether the cost sweep (profile:) includes it
    train: dict[str, Any] | None = None  # train keys that differ from the suite's for this variant
    match: dict[str, Any] | None = None  # MatchSpec: size this variant to another's budget
    keys: dict[str, Any] = field(default_factory=dict, init=False)  # the model keys
    matched: MatchSpec | None = field(default=None, init=False)  # ``match`` built

    def check(self) -> list[tuple[str, str]]:
        if not self.name:
            return [("name", "must be a non-empty string")]
        try:
            resolve_model(self.model)
        except HarnessError as e:  # with a did-you-mean
            return [("model", str(e))]
        problems = self.sweep_problems()
        if problems:
            return problems
        if self.train is not None:
            if not self.train:
                return [("train", "must be a mapping of train keys that differ for this variant")]
            if "eval_modes" in self.train:
                return [("train.eval_modes", "eval modes are set for the whole suite")]
        if self.match is not None and self.sweep is not None:
            return [("match", "a matched variant cannot have a sweep: give each size its own variant")]
        return []

    def sweep_problems(self) -> list[tuple[str, str]]:
        """What in ``sweep`` (and the name's ``{key}`` fields) would keep :meth:`expand` from naming the
        grid points; needs no model, so a reader of the names alone can check it without torch."""
        if self.sweep is None:
            return []
        if not self.sweep:
            return [("sweep", "must be a mapping of key -> list of values")]
        for k, vals in self.sweep.items():
            if not isinstance(vals, list) or not vals:
                return [(f"sweep.{k}", "must be a non-empty list of values")]
        unknown = self.name_fields() - set(self.sweep)
        if unknown:
            return [("name", f"name uses {{{sorted(unknown)[0]}}} which is not a sweep key")]
        return []

    def name_fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.name) if f}

    def expand(self) -> list[tuple[str, dict[str, Any]]]:
        """(variant name, model keys) per grid point of ``sweep`` (just the variant without one)."""
        if self.sweep is None:
            return [(self.name, dict(self.keys))]
        fields = self.name_fields()
        out = []
        for combo in itertools.product(*self.sweep.values()):
            point = dict(zip(self.sweep, combo))
            if fields:
                vname = self.name.format(**point)
            else:  # no {key} in the name: append each key and value
                vname = self.name + "".join(f"-{k}{x}" for k, x in point.items())
            out.append((vname, {**self.keys, **point}))
        return out


@dataclass
class MatchSpec:
    """A variant's ``match:``: solve the model key ``key`` (an integer width, or a list of widths scaled
    through its first entry) so that this variant's ``budget`` is the one of variant ``to`` on the same
    task, within ``tolerance`` (relative: LRA's rule is 0.1). ``step``: search multiples of it (4 when 4
    heads must divide d_model); ``scale``: keys kept in proportion to the solved one (d_ff). See
    :mod:`harness.suite.match`."""

    to: str
    key: str
    budget: Literal["params", "params_applied", "flops_fwd"] = "params"
    tolerance: float = bounded(0.1, lo=0.0, hi=1.0)
    step: int = positive(1)
    scale: list[str] = field(default_factory=list)

    def check(self) -> list[tuple[str, str]]:
        if self.tolerance <= 0:
            return [("tolerance", f"must be > 0 (a relative tolerance such as 0.1), got {self.tolerance}")]
        if self.key in self.scale:
            return [("scale", f"lists the solved key '{self.key}' itself")]
        return []


@dataclass
class ProfileSpec:
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


ProfileConfig = ProfileSpec  # the name before the suite schema was typed


@dataclass
class ReportSpec:
    """How the report lays out this suite besides the per-task ablation tables: the ``report:`` section,
    which the report reads from the suite file as it is now (:func:`harness.suite.load.report_layout`).
    ``ReportSpec()`` is the default layout: no grid, no matrix, every exponent over the whole sweep,
    no ratio table, the vanilla variants as references."""

    grid: list[str] = field(default_factory=list)  # metrics shown per cell of a variant x task table
    extras: list[str] = field(default_factory=list)  # row fields appended to each cell (e.g. ponder_steps)
    matrix: list[dict] = field(default_factory=list)  # train-setting x eval-mode tables, as written
    fit_range: list[int] = field(default_factory=list)  # [lo, hi]: cost exponents fitted on lo <= n <= hi
    ratio_at: int | None = None  # cost sweep: each variant's cost relative to the references at this n
    references: list[str] = field(default_factory=list)  # cost sweep references (default: vanilla variants)
    matrices: list[MatrixSpec] = field(default_factory=list, init=False)  # ``matrix`` built, in its order
    # the suite's variant names in the suite file's order (sweeps expanded), which the report's tables
    # follow after the baseline; set by harness.suite.load.report_layout, empty for the default layout
    variant_order: list[str] = field(default_factory=list, init=False, compare=False)

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
