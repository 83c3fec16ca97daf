"""Budget-matched baselines: solve a width key so that one variant costs what another does.

A paper's claim is often about a budget: ALBERT against a BERT with as many parameters (Lan et al.
2020, Table 2), FPT against an FPN with as many FLOPs (Zhang et al. 2020), a LambdaResNet against a
ResNet with as many parameters (Bello 2021, Table 4). Long Range Arena (Tay et al. 2021) compares
models whose parameter counts lie within 10% of each other. A suite states such a match on the
variant that is to be sized (``match:`` in docs/design.md); :func:`solve` searches the named integer
key for the value whose budget is closest to the target variant's, and the caller refuses the suite
when even that value is outside the tolerance.

The budgets are the cost fields of a result row that do not need training: ``params``,
``params_applied`` and ``flops_fwd`` (per example), counted here with the same functions the profiler
uses (:mod:`harness.measure.costs`, :mod:`harness.measure.flops`), on a model built from the resolved
config and the
job's own training batch shape, so the counts are the ones the rows will carry.

The search assumes that the budget does not decrease as the key grows (true of widths). It runs over
multiples of ``step`` (e.g. 4 when 4 heads must divide d_model, 8 to keep a GroupNorm's 8 groups):
doubling or halving from the starting value to bracket the target, then bisecting for the smallest
multiple at or above it, and finally taking whichever of that multiple and the one below it is
closer (a tie goes to the smaller width). Keys listed in ``scale`` keep their proportion to the
solved key (d_ff = 4 d_model stays so); a list-valued key (ResNet ``widths``) is solved through its
first entry, its other entries kept in proportion.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.core.errors import HarnessError

__all__ = ["BUDGETS", "Solved", "count_budget", "scaled_keys", "solve", "start_value"]

BUDGETS = ("params", "params_applied", "flops_fwd")
MAX_EVALUATIONS = 64  # a search that needs more than this is refused (the budget never reaches the target)

_COUNTS: dict[tuple[str, ...], int] = {}  # counting builds a model and traces it: once per config


@dataclass
class Solved:
    """The solved value of the key, the config it gives, and the budgets compared."""

    value: int
    cfg: Any
    achieved: int
    target: int

    @property
    def rel(self) -> float:
        """(achieved - target) / target."""
        return (self.achieved - self.target) / self.target if self.target else float("inf")


def start_value(value: Any) -> int:
    """The integer the search starts from: the key's value, or the first entry of a list-valued key."""
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, bool) or not isinstance(first, int) or first < 1:
        raise HarnessError(f"the key must hold a positive integer (or a list of them), got {value!r}")
    return first


def _proportional(value: Any, factor: float) -> Any:
    if isinstance(value, list):
        return [max(1, round(x * factor)) for x in value]
    return max(1, round(value * factor))


def scaled_keys(cfg: dict[str, Any], key: str, scale: list[str], value: int) -> dict[str, Any]:
    """The model keys to set for the solved ``value`` of ``key``: the key itself (a list scaled so that
    its first entry is ``value``), and each key in ``scale`` in the same proportion."""
    factor = value / start_value(cfg[key])
    out = {k: _proportional(cfg[k], factor) for k in scale if cfg.get(k) is not None}
    out[key] = _proportional(cfg[key], factor) if isinstance(cfg[key], list) else value
    if isinstance(cfg[key], list):
        out[key][0] = value
    return out


def solve(config_at: Callable[[int], Any], count: Callable[[Any], int], target: int, start: int,
          step: int) -> Solved:
    """The multiple of ``step`` whose config's budget is closest to ``target`` (see the module
    docstring). ``config_at(value)`` builds the config (raising for a value the model refuses),
    ``count(cfg)`` its budget. Raises HarnessError when no multiple brackets the target."""
    seen: dict[int, tuple[Any, int]] = {}

    def at(k: int) -> int:
        if k not in seen:
            if len(seen) >= MAX_EVALUATIONS:
                raise HarnessError(f"no value brackets the target {target:,} in {MAX_EVALUATIONS} tries")
            cfg = config_at(k * step)
            seen[k] = (cfg, count(cfg))
        return seen[k][1]

    k = max(1, round(start / step))
    if at(k) >= target:  # halve until below the target (or at the smallest multiple)
        lo, hi = k, k
        while lo > 1 and at(lo) >= target:
            hi, lo = lo, max(1, lo // 2)
        if at(lo) >= target:
            hi = lo
    else:  # double until at or above the target
        lo, hi = k, 2 * k
        while at(hi) < target:
            lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: at(hi) >= target and (lo == hi or at(lo) < target)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid) < target else (lo, mid)
    best = min((c for c in (hi - 1, hi) if c >= 1), key=lambda c: (abs(at(c) - target), c))
    cfg, achieved = seen[best]
    return Solved(value=best * step, cfg=cfg, achieved=achieved, target=target)


def count_budget(entry: Any, cfg: Any, task: Any, task_id: str, batch_size: int, budget: str) -> int:
    """One budget of the model ``entry`` (a registry entry) built from ``cfg``, on a training batch of
    ``task`` with ``batch_size`` examples (``flops_fwd`` per example); ``task_id`` names the task and
    its config, for the cache. Imports torch."""
    key = (entry.name, json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str), task_id,
           str(batch_size), budget)
    if key not in _COUNTS:
        _COUNTS[key] = _count(entry, cfg, task, batch_size, budget)
    return _COUNTS[key]


def _count(entry: Any, cfg: Any, task: Any, batch_size: int, budget: str) -> int:
    import torch

    from harness.measure.costs import count_params, count_params_applied
    from harness.measure.flops import count_flops

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = entry.obj(cfg)
        if budget == "params":
            return count_params(model)
        batch = task.longest_batch(batch_size, model.io, torch.Generator().manual_seed(0))
        if budget == "params_applied":
            return count_params_applied(model, batch)
        flops, _ = count_flops(model, batch)
        return flops // batch.batch_size
