"""The result row: one typed record per finished job, and the one function that reads old rows.

On disk a row is one JSON object per line (see :mod:`harness.results.store`) whose field names are the design
contract's ("Result rows" in the design document). In memory it is a :class:`ResultRow`: the runner
builds one per job, the executors send its dict form between processes, the store appends it, and the
report reads its attributes. Fields a model adds (``ponder_steps`` for ACT) live in ``extras`` and are
written at the top level of the JSON object, as before.

Schema versions:

- 1: rows without a ``schema_version`` field (everything written before it existed). Their layout is
  the current one; the report has also always accepted a flat ``config`` (``config.seq_len``,
  ``config.steps``, ``config.batch_size`` instead of ``config.task.seq_len``, ``config.train.steps``,
  ``config.train.batch_size``) and rows without ``seq_len`` or ``batch_size`` fields.
- 2: rows carry ``schema_version: 2``; fields as in version 1. Rows written before the ``threads``
  field existed take it from the count their CPU ``device_name`` ends with ("... (2 threads)").
  A training row may also carry ``samples`` (a task's sample images: panel name -> at most 16 images,
  each a nested list H x W or H x W x 3 of ints 0..255). The field is optional within version 2: a
  row without samples omits it (``to_dict``), a row that lacks it or holds an empty one reads as None,
  so rows written before it existed load unchanged and the version stays 2.
- 3: run_ids of identity version 2 (harness.suite.jobs: no names, the resolved device, the heap
  policy); the cost fields measured on the job's own steps through the one training step
  (``cost_basis``); provenance: ``code`` (commit, dirty, source hash, the hash of every file of the
  job's model, task and step), ``libraries``, ``machine`` (CPU model and instruction set, GPU), ``heap``,
  ``suite_file``. Older rows read with ``cost_basis`` ``{"steps": "separate"}`` (their costs came from a
  separate profiling step, not from the steps that trained them) and ``code`` from ``git_commit``
  (commit and dirty only; ``files`` unknown). ``scripts/migrate_rows_v3.py`` rewrote the committed
  results files to this version once (their run_ids, and ``code.files`` from each row's commit).
  Rows written before version 3 may carry ``report_spec`` (the suite's ``report:`` section as it was
  when the job ran); the report reads the layout from the suite file now, so :func:`migrate` drops it.
  A training row may carry ``bounds``, its metric bounds as its task declares them (metric -> {floor,
  chance, ceiling, higher_is_better}, harness/tasks/base.py): optional, omitted when None.

:func:`migrate` turns any of these into a current :class:`ResultRow`; nothing else guesses layouts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEMA_VERSION", "ResultRow", "device_label", "migrate", "threads_in_name"]

SCHEMA_VERSION = 3


@dataclass
class ResultRow:
    """One job's result. Field order follows the design contract; ``None`` means not measured."""

    run_id: str | None = None  # content hash of the resolved job config, seed and code version
    suite: str | None = None
    variant: str | None = None
    model: str | None = None  # registered model (presets resolved)
    preset: str | None = None
    task: str | None = None  # the suite's task label
    seed: Any = None
    job: str | None = None  # train | profile
    status: str | None = None  # ok | diverged | oom | error | skipped
    error: str | None = None  # one line
    params: int | None = None
    params_applied: int | None = None
    flops_fwd: int | None = None
    flops_unsupported: list[str] | None = None
    mem_bytes: int | None = None
    mem_kind: str | None = None  # cuda_allocated | cpu_estimate
    act_bytes: int | None = None
    step_ms: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    # how the cost fields were measured: steps (train: the job's own training steps; profile: a profile
    # job's steps on its batch), timed (steps timed), warmup (steps before them), mfu (exact | per_token)
    cost_basis: dict[str, Any] | None = None
    metric: str | None = None  # the task's headline metric
    value: float | None = None  # its final evaluation
    higher_is_better: bool | None = None
    # each metric's floor, chance, ceiling and direction, as the task declares them; None: not stated
    bounds: dict[str, dict[str, Any]] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # every final evaluation (``metric@mode`` too)
    curve: list[dict[str, Any]] = field(default_factory=list)  # evaluation history
    train_s: float | None = None
    seq_len: int | None = None  # tokens per example as trained (train) or profiled (profile)
    batch_size: int | None = None
    baseline: str | None = None  # the suite's baseline variant for this task
    suite_description: str | None = None
    suite_file: str | None = None  # the suite file the job was read from (relative to the working directory)
    device: str | None = None
    device_name: str | None = None
    threads: int | None = None  # torch threads the job ran at (train.threads; older rows: device_name's)
    torch_version: str | None = None
    harness_version: str | None = None
    git_commit: str | None = None  # short commit, "+dirty" when harness/ differed from it
    # the code that produced the row (harness.results.provenance): commit, dirty, source hash, and the
    # hash of every file of the job's model, task and training step
    code: dict[str, Any] | None = None
    libraries: dict[str, Any] | None = None  # versions of the numeric libraries (torch, numpy, scipy, ...)
    machine: dict[str, Any] | None = None  # cpu (model), cpu_capability (AVX2, AVX512, ...), gpu
    heap: str | None = None  # the C heap's policy: pinned | system (harness.core.heap)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved job config
    finished_at: str | None = None  # ISO 8601, UTC
    extras: dict[str, Any] = field(default_factory=dict)  # model-specific fields (e.g. ponder_steps)
    # a task's sample images (Task.samples): panel -> images (H x W or H x W x 3 ints 0..255); None: none
    samples: dict[str, list] | None = None
    schema_version: int = SCHEMA_VERSION

    # ------------------------------------------------------------------------------ the JSON form
    def to_dict(self) -> dict[str, Any]:
        """The row as one flat JSON object: every field, with ``extras`` at the top level; ``samples``
        only when the row has some."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extras"}
        if not self.samples:
            out.pop("samples")
        if self.bounds is None:
            out.pop("bounds")
        out.update((k, v) for k, v in self.extras.items() if k not in out)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRow:
        """A row from its JSON form, of any schema version (see :func:`migrate`)."""
        return migrate(data)

    def update(self, values: Mapping[str, Any]) -> None:
        """Set fields by name; names that are not fields become extras (a model's diagnostics)."""
        for k, v in values.items():
            if k in _FIELDS:
                setattr(self, k, v)
            else:
                self.extras[k] = v

    # ------------------------------------------------------------------------------ typed reading
    @property
    def is_profile(self) -> bool:
        """A cost-sweep cell (no training) rather than a training job."""
        return self.job == "profile"

    @property
    def task_len(self) -> Any:
        """The task's configured length (the suite's ``seq_len``); tokens per example may differ."""
        task = self.config.get("task")
        configured = task.get("seq_len") if isinstance(task, Mapping) else None
        return self.seq_len if configured is None else configured

    @property
    def steps(self) -> Any:
        """Training steps of the job's config."""
        train = self.config.get("train")
        return train.get("steps") if isinstance(train, Mapping) else None

    def field_value(self, name: str) -> Any:
        """A field or extra named by data (a suite's ``report: extras``); None when the row has none."""
        if name in _FIELDS and name != "extras":
            return getattr(self, name)
        return self.extras.get(name)

    def metric_value(self, metric: str | None) -> Any:
        """The final value of ``metric``: the headline ``value`` when it is the row's metric."""
        if metric is not None and self.metric != metric:
            return self.metrics.get(metric)
        return self.value


_FIELDS = frozenset(f.name for f in dataclasses.fields(ResultRow))
_THREADS_IN_NAME = re.compile(r"\((\d+) threads?\)$")


def device_label(name: Any) -> Any:
    """A device name as the report shows it: the "(1 threads)" of rows written before is "(1 thread)"."""
    return name.replace("(1 threads)", "(1 thread)") if isinstance(name, str) else name


def threads_in_name(name: Any) -> int | None:
    """The thread count a CPU row's ``device_name`` ends with ("... (2 threads)"); None for a GPU's."""
    m = _THREADS_IN_NAME.search(name) if isinstance(name, str) else None
    return int(m.group(1)) if m else None


def _nested(config: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    """``config`` with a flat ``config[key]`` also at ``config[section][key]`` where that is missing."""
    inner = config.get(section)
    if config.get(key) is None or (isinstance(inner, Mapping) and inner.get(key) is not None):
        return config
    return {**config, section: {**(inner if isinstance(inner, Mapping) else {}), key: config[key]}}


def older_provenance(values: dict[str, Any]) -> None:
    """What a row of schema 1 or 2 says of its costs and code, in the fields of version 3."""
    if values.get("cost_basis") is None and values.get("status") == "ok":
        values["cost_basis"] = {"steps": "separate"}
    commit = values.get("git_commit")
    if values.get("code") is None and isinstance(commit, str):
        values["code"] = {"commit": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty"),
                          "source": None, "files": None}


def migrate(data: Mapping[str, Any]) -> ResultRow:
    """Any stored row (see the module docstring for the versions) as a current :class:`ResultRow`.

    Fields keep their stored values; only what is missing is filled: a flat legacy ``config`` gets its
    nested keys, ``seq_len`` and ``batch_size`` come from the config when the row has none, ``threads``
    from the device name, and a null ``metrics``/``curve``/``config`` becomes empty, and so does an
    empty ``samples`` (None). The retired ``report_spec`` is dropped; other unknown fields become extras.
    """
    values = {k: v for k, v in data.items() if k not in ("schema_version", "report_spec")}
    config = values.get("config")
    config = dict(config) if isinstance(config, Mapping) else {}
    for section, key in (("task", "seq_len"), ("train", "steps"), ("train", "batch_size")):
        config = _nested(config, section, key)
    values["config"] = config
    for key, section in (("seq_len", "task"), ("batch_size", "train")):
        if values.get(key) is None and isinstance(config.get(section), Mapping):
            values[key] = config[section].get(key)
    if values.get("threads") is None:
        values["threads"] = threads_in_name(values.get("device_name"))
    for key, empty in (("metrics", {}), ("curve", [])):
        if not isinstance(values.get(key), type(empty)):
            values[key] = type(empty)()
    if not isinstance(values.get("samples"), Mapping) or not values.get("samples"):
        values["samples"] = None
    if int(data.get("schema_version") or 1) < 3:
        older_provenance(values)
    if not isinstance(values.get("bounds"), Mapping):
        values["bounds"] = None
    known = {k: v for k, v in values.items() if k in _FIELDS and k != "extras"}
    extras = {k: v for k, v in values.items() if k not in known}
    return ResultRow(**known, extras=extras, schema_version=SCHEMA_VERSION)
