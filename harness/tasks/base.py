"""Task contract: a task makes batches from a seeded generator and scores model outputs.

:class:`Task` states everything the suite loader, the runner, the training loop and the profiler ask
of a task; :class:`TaskBase` gives the defaults, so a task class only writes what is particular to it.
Batches are laid out for a model's ``io`` (see harness/models/base.py): ``lm``, ``masked``,
``seq2seq`` for token models, ``image`` for image models; ``Task.ios`` lists those a task accepts.

Metric bounds. A task declares, for every metric name it reports (each evaluation set's suffix
included; an eval mode's ``@mode`` suffix does not change a bound), a :class:`MetricBound`:

- ``floor``: the score of a model that learned nothing, not even how often each label occurs: a
  guess uniform over the values a label can take (accuracy 1/K, cross-entropy log2 K bits), or, for a
  metric without labels to guess, the score of predicting nothing (AP 0, TuSimple FN 1);
- ``chance``: the best score without looking at the input, from the task's own label distribution:
  at each scored position the most frequent label (accuracy: the majority class's frequency), or its
  distribution (cross-entropy: the labels' entropy); computed exactly where the generator gives it
  in closed form, else from the labels the task evaluates or from a fixed seeded draw
  (:data:`BOUNDS_SEED`, :data:`BOUNDS_DRAW` examples at the evaluation length), so it depends on the
  task's config only;
- ``ceiling``: a perfect model's score;
- ``higher_is_better``: the direction.

Any of the three is None where the metric has no such value (FID has no floor, PSNR no finite
ceiling). :func:`metric_bounds` gives a built task's bounds in the form a result row stores them
(``bounds``: metric -> {floor, chance, ceiling, higher_is_better}); the report and the claims ledger
read them from the rows (harness/analysis/floors.py) and never import a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from harness.core.errors import HarnessError
from harness.models.base import Batch, model_io

if TYPE_CHECKING:  # pragma: no cover
    from harness.models.base import ModelOutput

IGNORE = -100  # label value that the loss and the metrics skip
MAX_SAMPLES = 16  # images per panel of Task.samples
BOUNDS_SEED = 20_240_611  # the fixed draw a chance level is estimated from, where it has no closed form
BOUNDS_DRAW = 16384  # examples in that draw (a share near 0.15 to about +-0.003)


@dataclass(frozen=True)
class MetricBound:
    """A metric's floor, chance and ceiling on a task, and its direction (see the module docstring)."""

    floor: float | None
    chance: float | None
    ceiling: float | None
    higher_is_better: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The form a result row stores (plain floats, None where a value is undefined)."""
        def num(x: float | None) -> float | None:
            return None if x is None else float(x)

        return {"floor": num(self.floor), "chance": num(self.chance), "ceiling": num(self.ceiling),
                "higher_is_better": bool(self.higher_is_better)}


def metric_bounds(task: Any) -> dict[str, dict[str, Any]]:
    """A built task's metric bounds as a result row stores them: metric -> {floor, chance, ceiling,
    higher_is_better}. Raises HarnessError for a task that declares none (no ``metric_bounds``)."""
    declared = getattr(task, "metric_bounds", None)
    if not callable(declared):
        name = getattr(task, "task_name", type(task).__name__)
        raise HarnessError(f"task {name} declares no metric bounds (Task.metric_bounds, see "
                           "harness/tasks/base.py): the report could not tell a floor or a ceiling")
    return {metric: b.as_dict() for metric, b in declared().items()}


def task_metric_bounds(name: str, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`metric_bounds` of the registered task ``name`` built from ``config`` (a result row's
    ``config.task``; its ``name`` key is skipped): what a stored row lacking ``bounds`` would carry."""
    from harness.core.registry import TASKS

    entry = TASKS.get(name)
    return metric_bounds(entry.obj(entry.config(**{k: v for k, v in config.items() if k != "name"})))


def majority_chance(labels: torch.Tensor) -> tuple[float, float]:
    """Chance of a guess that ignores the input, from labels [N, ...] (N examples of the same shape, no
    IGNORE): (the mean over positions of the most frequent label's share there, the share of the most
    frequent whole example)."""
    flat = labels.reshape(len(labels), -1).long()
    per_position = torch.stack([torch.bincount(col).max() for col in flat.T])
    whole = torch.unique(flat, dim=0, return_counts=True)[1].max()
    return float(per_position.sum()) / flat.numel(), float(whole) / len(flat)


def entropy_bits(counts: torch.Tensor) -> float:
    """The entropy in bits of the distribution of ``counts`` (a 1-d tensor of counts)."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def token_loss(out: ModelOutput, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the scored label positions, plus the model's auxiliary loss if any."""
    logits = out.logits
    flat = logits.reshape(-1, logits.shape[-1])
    loss = F.cross_entropy(flat, batch.labels.reshape(-1), ignore_index=IGNORE)
    return loss if out.aux_loss is None else loss + out.aux_loss


@runtime_checkable
class Task(Protocol):
    """What a task gives the harness. ``gen`` is a seeded ``torch.Generator``; ``io`` the model's io."""

    metric: str  # the headline metric, a key of :meth:`metrics` (with suffix "")
    higher_is_better: bool
    ios: tuple[str, ...]  # the model io formats the task lays batches out for
    # the ios for which this task is ``harness profile``'s default (at most one task per io; a model
    # class may name another with ``profile_task``), and the size (tokens, or image side) it profiles
    # at when none is given
    profile_ios: tuple[str, ...]
    profile_size: int

    def model_keys(self) -> dict[str, Any]:
        """Model keys the task fixes (vocabulary, length, classes, ...): the suite fills them in, and a
        user's integer value may be larger, never smaller."""
        ...

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        """Why a model config cannot run on this task (one line), or None."""
        ...

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """The next training batch."""
        ...

    def longest_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """A training batch at the longest training length: what a training job's costs are measured on."""
        ...

    def eval_sets(self, n_batches: int, batch_size: int, io: str, seed: int) -> dict[str, list[Batch]]:
        """Fixed evaluation batches by metric suffix ('' is the headline evaluation)."""
        ...

    def profile_batch(self, seq_len: int, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        """A batch of exactly ``seq_len`` tokens (image tasks: images of side ``seq_len``), for
        cost against length; its content does not matter."""
        ...

    def loss(self, out: ModelOutput, batch: Batch) -> torch.Tensor:
        """The training loss (scalar)."""
        ...

    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple:
        """Counts for one batch that add up over batches (element-wise)."""
        ...

    def metrics(self, counts: tuple, suffix: str) -> dict[str, float]:
        """Metrics from summed counts, each name ending in ``suffix``."""
        ...

    def metric_bounds(self) -> dict[str, MetricBound]:
        """Every metric name :meth:`metrics` reports over the evaluation sets -> its bounds (see the
        module docstring). Deterministic: a function of the task's config."""
        ...

    def samples(self, model: Any, device: torch.device, seed: int) -> dict[str, list]:
        """Sample images of the trained ``model`` (in eval mode, called under ``torch.no_grad()``) for
        the report's figure: panel name (e.g. "generated"; "lr", "ref", "sr", "hr") -> at most
        :data:`MAX_SAMPLES` images, each a nested list H x W (grey) or H x W x 3 (RGB) of ints 0..255.
        Deterministic for a given ``seed`` (draw from a ``torch.Generator`` seeded with it). ``{}``: no
        samples (the default)."""
        ...


class TaskBase:
    """Defaults of the :class:`Task` contract: no model keys, every model accepted, the longest batch
    is a training batch, token cross-entropy as the loss, no sample images, the default profile task of
    no io (profiled at 128 when it is named)."""

    higher_is_better: ClassVar[bool] = True
    ios: ClassVar[tuple[str, ...]] = ("lm", "masked", "seq2seq")
    profile_ios: ClassVar[tuple[str, ...]] = ()  # the default profile task of no io
    profile_size: ClassVar[int] = 128

    def model_keys(self) -> dict[str, Any]:
        return {}

    def check_model(self, cfg: Any, model_cls: type) -> str | None:
        io = model_io(model_cls, cfg)
        if io is not None and io not in self.ios:
            return f"its io is '{io}'; the task lays batches out for {', '.join(self.ios)}"
        return None

    # what a batch of the task is for, in an error: "digits needs an image model (io 'image')"
    needs: ClassVar[str] = "a model"

    def need_io(self, io: str) -> None:
        """Refuse to lay out a batch for an io the task does not make (a suite never gets here: the
        loader refuses such a model through :meth:`check_model`)."""
        if io not in self.ios:
            ios = " or ".join(f"'{i}'" for i in self.ios)
            raise ValueError(f"{self.task_name} needs {self.needs} (io {ios}), got io '{io}'")

    @property
    def task_name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    def train_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        raise NotImplementedError

    def longest_batch(self, batch_size: int, io: str, gen: torch.Generator) -> Batch:
        return self.train_batch(batch_size, io, gen)

    def loss(self, out: ModelOutput, batch: Batch) -> torch.Tensor:
        return token_loss(out, batch)

    def samples(self, model: Any, device: torch.device, seed: int) -> dict[str, list]:
        return {}
