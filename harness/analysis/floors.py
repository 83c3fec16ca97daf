"""Where a metric cannot tell variants apart: its floor (zero, or chance for the task) and its ceiling.

A comparison in which every variant sits at the floor (nothing learned) or every variant at the ceiling
(everything learned) compares nothing, whatever its p value says. This module knows, per registered
task and metric, the value a model gets by guessing and the perfect value, without importing torch or
the tasks themselves (the report and the claims ledger use it; a row's ``config.task`` gives the task's
registered name and its keys). Chance levels:

- ``copy``, ``reverse``, ``sort``, ``duplication``: ``tok_acc`` 1/vocab (uniform over the alphabet),
  ``seq_acc`` 0 (whole sequences by guessing: (1/vocab)^L, zero for any length that matters).
- ``addition``: ``tok_acc`` 0.1 (ten digits), ``seq_acc`` 0.
- ``binary_addition``, ``binary_multiplication``: ``tok_acc`` 1/3 ('0', '1' and the output pad),
  ``seq_acc`` 0.
- ``listops``: 0.1 (ten classes) for ``seq_acc`` and ``tok_acc``.
- ``digits``: ``acc`` 0.1; ``shapes``: ``miou`` 0 (segment), ``acc`` 0.5 (classify).
- ``char_lm``: ``bpc`` 8 (uniform over 256 bytes; lower is better, perfect is 0), ``acc`` 1/256.

Suffixes of a metric's name do not change its bounds: ``tok_acc_train_len`` and ``tok_acc@lsh-1`` are
``tok_acc``. A value within ``TOLERANCE`` of the range from a bound counts as at that bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TOLERANCE", "Bounds", "at_bound", "bounds"]

TOLERANCE = 0.01  # a fraction of |best - worst|: 0.01 on an accuracy is one percentage point

_SEQ = ("copy", "reverse", "sort", "duplication")
_BINARY = ("binary_addition", "binary_multiplication")


@dataclass(frozen=True)
class Bounds:
    """The worst (guessing: zero or chance) and the best (perfect) value of a metric on a task."""

    worst: float
    best: float
    chance: bool  # worst is a chance level above zero (not a plain zero)

    def position(self, value: Any) -> str | None:
        """``floor`` or ``ceiling`` when ``value`` sits at that bound (within the tolerance), else None.

        A value beyond the worst (below chance) is at the floor."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        tol = TOLERANCE * abs(self.best - self.worst)
        up = 1.0 if self.best > self.worst else -1.0
        if (v - self.worst) * up <= tol:
            return "floor"
        if (self.best - v) * up <= tol:
            return "ceiling"
        return None


def _base_metric(metric: str) -> str:
    return metric.split("@", 1)[0].removesuffix("_train_len")


def bounds(task: str | None, metric: str | None,
           task_config: Mapping[str, Any] | None = None) -> Bounds | None:
    """The bounds of ``metric`` on the registered task ``task`` (None where they are not defined)."""
    if not task or not metric:
        return None
    cfg = task_config or {}
    m = _base_metric(metric)
    vocab = cfg.get("vocab")
    if m == "seq_acc" and (task in _SEQ or task in _BINARY or task == "addition"):
        return Bounds(0.0, 1.0, chance=False)
    if m == "tok_acc" and task in _SEQ and isinstance(vocab, int) and vocab > 0:
        return Bounds(1.0 / vocab, 1.0, chance=True)
    if m == "tok_acc" and task == "addition":
        return Bounds(0.1, 1.0, chance=True)
    if m == "tok_acc" and task in _BINARY:
        return Bounds(1.0 / 3.0, 1.0, chance=True)
    if task == "listops" and m in ("seq_acc", "tok_acc"):
        return Bounds(0.1, 1.0, chance=True)
    if task == "digits" and m == "acc":
        return Bounds(0.1, 1.0, chance=True)
    if task == "shapes":
        if m == "miou" and cfg.get("mode", "segment") == "segment":
            return Bounds(0.0, 1.0, chance=False)
        if m == "acc" and cfg.get("mode") == "classify":
            return Bounds(0.5, 1.0, chance=True)
    if task == "char_lm":
        if m == "bpc":
            return Bounds(8.0, 0.0, chance=True)
        if m == "acc":
            return Bounds(1.0 / 256.0, 1.0, chance=True)
    return None


def at_bound(b: Bounds | None, values: Iterable[Any]) -> str | None:
    """``floor`` or ``ceiling`` when every value sits at that same bound; None otherwise (or no value)."""
    if b is None:
        return None
    where = {b.position(v) for v in values}
    if len(where) == 1:
        (only,) = where
        return only
    return None
