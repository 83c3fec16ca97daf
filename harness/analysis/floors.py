"""Where a metric cannot tell variants apart: its floor (nothing learned, or chance) and its ceiling.

A comparison in which either arm sits at the floor (nothing learned: a reference at its floor is beaten by
anything that learned at all) or both arms at the ceiling (everything learned) compares nothing, whatever
its p value says (:func:`arms_at_bound`). The bounds come from the result rows:
the runner stores in each training row the bounds its task declares (``bounds``: metric -> {floor,
chance, ceiling, higher_is_better}; how a task computes them is harness/tasks/base.py), so this module
reads no task, imports no torch and knows no task by name. A row without ``bounds`` (written before
they existed) has none: its metrics are never called uninformative.

From a metric's declared values, :func:`bounds` takes as the worst value its chance level where the
task states one (the best guess that ignores the input, e.g. ListOps' majority class), else its floor;
a worst value within ``TOLERANCE`` of zero is zero (guessing a whole sequence, (1/V)^L). The best is
the ceiling. A metric without both (FID has no floor, PSNR no finite ceiling) has no bounds here. An
eval mode's suffix (``tok_acc@lsh-1``) does not change a metric's bounds; an evaluation set's suffix
(``tok_acc_train_len``) is a metric of its own, with its own entry. A value within ``TOLERANCE`` of
the range from a bound counts as at that bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TOLERANCE", "Bounds", "arms_at_bound", "at_bound", "bounds", "row_bounds"]

TOLERANCE = 0.01  # a fraction of |best - worst|: 0.01 on an accuracy is one percentage point


@dataclass(frozen=True)
class Bounds:
    """The worst (nothing learned: zero, a floor or a chance level) and the best (perfect) value of a
    metric on a task."""

    worst: float
    best: float
    chance: bool  # worst is a chance level above zero (not a plain zero or floor)

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


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def bounds(declared: Mapping[str, Any] | None, metric: str | None) -> Bounds | None:
    """The bounds of ``metric`` from a row's ``bounds`` field (None where they are not defined)."""
    if not isinstance(declared, Mapping) or not metric:
        return None
    entry = declared.get(metric, declared.get(metric.split("@", 1)[0]))
    if not isinstance(entry, Mapping):
        return None
    floor, chance, best = (_number(entry.get(k)) for k in ("floor", "chance", "ceiling"))
    worst = chance if chance is not None else floor
    if worst is None or best is None or worst == best:
        return None
    if abs(worst) <= TOLERANCE * abs(best - worst):
        return Bounds(0.0, best, chance=False)
    return Bounds(worst, best, chance=chance is not None)


def row_bounds(rows: Iterable[Any], metric: str | None) -> Bounds | None:
    """:func:`bounds` of ``metric`` from the first of ``rows`` (result rows of one task) that carries
    bounds; None when none does."""
    declared = next((r.bounds for r in rows if isinstance(getattr(r, "bounds", None), Mapping)), None)
    return bounds(declared, metric)


def at_bound(b: Bounds | None, values: Iterable[Any]) -> str | None:
    """``floor`` or ``ceiling`` when every value sits at that same bound; None otherwise (or no value)."""
    if b is None:
        return None
    where = {b.position(v) for v in values}
    if len(where) == 1:
        (only,) = where
        return only
    return None


def arms_at_bound(b: Bounds | None, arms: Iterable[Iterable[Any]]) -> str | None:
    """Whether a comparison of ``arms`` (each an iterable of values) can tell them apart: ``floor`` when
    any one arm sits wholly at the floor (a reference that learned nothing is beaten by anything, a
    variant that learned nothing loses to anything), ``ceiling`` when every arm sits at the ceiling
    (nothing is left to gain); None otherwise."""
    if b is None:
        return None
    places = [at_bound(b, values) for values in arms]
    if "floor" in places:
        return "floor"
    if places and all(p == "ceiling" for p in places):
        return "ceiling"
    return None
