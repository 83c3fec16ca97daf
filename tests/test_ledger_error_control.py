"""The ledger-wide error control, by simulation through the verdict code itself.

Each simulated ledger has the committed ledger's family: as many distinct tests as the committed claims
read, as many of them two-sided. Every two-sided comparison is drawn under the null (both arms from one
distribution, paired by seed) and judged by :func:`family_of` and :func:`decide`, exactly as
``evaluate_claims`` judges the committed rows. A ledger with any "supported" or "contradicted" verdict
is a false positive; over 2,000 ledgers their rate must stay at or below the nominal 5% (with a
binomial allowance of two standard errors for the simulation's own noise).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.claims import load_claims
from harness.analysis.claims.evidence import ALPHA, CONTRADICTED, SUPPORTED, compare
from harness.analysis.claims.verdicts import adjusted, decide, family_of, ledger_family
from harness.results.store import load_rows

REPO = Path(__file__).resolve().parent.parent
LEDGERS = 2000


@functools.cache
def committed_family() -> tuple[int, int]:
    fam = ledger_family(load_claims(), load_rows(REPO / "results"))
    return fam.size, fam.directional


def false_positive_rate(size: int, directional: int, seeds: int, shift: float = 0.0,
                        rng_seed: int = 0) -> float:
    rng = np.random.default_rng(rng_seed)
    wrong = 0
    for _ in range(LEDGERS):
        tests = []
        for k in range(directional):
            base = rng.normal(0.0, 1.0, seeds)  # what the seed shares between the arms
            treat = dict(enumerate(base + rng.normal(0.0, 1.0, seeds) + shift))
            ref = dict(enumerate(base + rng.normal(0.0, 1.0, seeds)))
            comp = compare(f"t{k}", treat, ref, family=size, power=False)
            tests.append((("t", k), comp, "higher", f"c{k}"))
        # the interval-form tests take their share of alpha without being drawn here
        tests += [(("i", k), compare("i", {0: 0.0, 1: 0.0}, {0: 0.0, 1: 0.0}, power=False), "same", f"i{k}")
                  for k in range(size - directional)]
        fam = family_of(tests)
        verdicts = [decide("higher", adjusted(c, key, fam, reader))
                    for key, c, _, reader in tests[:directional]]
        wrong += any(v in (SUPPORTED, CONTRADICTED) for v in verdicts)
    return wrong / LEDGERS


@pytest.mark.slow
def test_null_ledgers_keep_the_family_wise_error_at_alpha() -> None:
    size, directional = committed_family()
    assert directional >= 10 and size >= directional  # the committed ledger's family, not a toy one
    rate = false_positive_rate(size, directional, seeds=10)
    allowance = 2 * math.sqrt(ALPHA * (1 - ALPHA) / LEDGERS)
    assert rate <= ALPHA + allowance, (rate, size, directional)


@pytest.mark.slow
def test_the_simulation_can_see_a_false_positive() -> None:
    """The same simulation without the correction (a family of one per test) finds far more than 5%:
    the test above could fail."""
    _, directional = committed_family()
    rng = np.random.default_rng(1)
    wrong = 0
    for _ in range(200):
        for k in range(directional):
            base = rng.normal(0.0, 1.0, 10)
            c = compare("t", dict(enumerate(base + rng.normal(0.0, 1.0, 10))),
                        dict(enumerate(base + rng.normal(0.0, 1.0, 10))), power=False)
            if decide("higher", c) in (SUPPORTED, CONTRADICTED):
                wrong += 1
                break
    assert wrong / 200 > 0.2
