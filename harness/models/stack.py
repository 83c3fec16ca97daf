"""One sublayer stack for the Transformer variants: an ordering and an execution plan.

A stack is written as a string over letters, one letter per application of a module: ``s`` a
self-attention sublayer, ``f`` a feed-forward sublayer (``blocks.AttentionSublayer`` and
``blocks.FeedForwardSublayer``), or ``l`` a whole layer (``blocks.TransformerLayer``). An n-layer
Transformer is ``(sf)^n``, or ``l^n``; Press et al.'s sandwich reorders the letters.

The *execution plan* says which weights run at each step: step i applies module ``plan[i][1]`` of the
bank named by its letter (a ModuleList the model registers under its own names, so the stack holds no
weights and changes no parameter name). Without sharing, the j-th occurrence of a letter runs module
j of its bank; a letter listed as shared runs module 0 at every occurrence: ALBERT's cross-layer
sharing (Lan et al. 2020) shares ``s``, ``f`` or both, and the Universal Transformer (Dehghani et al.
2019) is ``l^T`` with ``l`` shared. A bank needs 1 + the largest index its letter is given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

Step = tuple[str, int]  # (letter, index of the module in that letter's bank)
Bank = Sequence[nn.Module] | nn.ModuleList  # the modules a letter runs; torch's ModuleList is no Sequence


def execution_plan(order: str, shared: str = "") -> tuple[Step, ...]:
    """For each letter of ``order``, the module it runs: its occurrence number, or 0 if it is ``shared``."""
    seen: Counter[str] = Counter()
    plan = []
    for letter in order:
        plan.append((letter, 0 if letter in shared else seen[letter]))
        seen[letter] += 1
    return tuple(plan)


def bank_sizes(plan: Sequence[Step]) -> dict[str, int]:
    """Modules each letter's bank needs for ``plan``."""
    sizes: dict[str, int] = {}
    for letter, i in plan:
        sizes[letter] = max(sizes.get(letter, 0), i + 1)
    return sizes


class SublayerStack:
    """The modules of ``banks`` applied in the order of ``plan``: h <- module(h) for every step.

    Not an ``nn.Module``: it only refers to modules the model owns, so state-dict names, parameter
    counts and the initialisation order stay the model's.
    """

    def __init__(self, plan: Sequence[Step], banks: Mapping[str, Bank]) -> None:
        for letter, need in bank_sizes(plan).items():
            if len(banks[letter]) < need:
                have = len(banks[letter])
                raise ValueError(f"the plan runs {need} {letter!r} modules; the bank has {have}")
        self.plan = tuple(plan)
        self.banks = dict(banks)
        self._steps = tuple(self.banks[letter][i] for letter, i in self.plan)  # resolved once, not per call

    def steps(self) -> list[nn.Module]:
        """The module applied at each step, in order (shared modules repeat)."""
        return list(self._steps)

    def __call__(
        self,
        h: torch.Tensor,
        memory: torch.Tensor | None = None,
        signal: Callable[[int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Run the plan on h (B, T, D). ``memory``: passed to every module (cross-attention);
        ``signal(t)``: added to the input of step t = 1, 2, ... (the Universal Transformer's P^t)."""
        for t, module in enumerate(self._steps, start=1):
            if signal is not None:
                h = h + signal(t)
            h = module(h) if memory is None else module(h, memory)
        return h
