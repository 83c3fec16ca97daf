"""Seed statistics for the ablation tables and the claims ledger: t intervals, paired t-tests, the exact
paired sign-flip permutation test, the share of seeds on which one arm beats the other, Holm correction,
power-law fits, and the power of a paired t-test (the smallest effect n seeds detect, the seeds an
effect needs).

Every function drops missing values (``None`` and NaN) instead of failing, because result rows of failed
jobs carry nulls. Inputs are sorted before any reduction so the same data always gives the same floats.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _st
from scipy.optimize import brentq

__all__ = [
    "as_finite", "detectable_effect", "fit_power_law", "holm", "mean_ci", "paired_diff", "paired_sd",
    "mode", "pairs_needed", "sign_flip_p", "superiority",
]


def as_finite(x: Any) -> float | None:
    """``x`` as a finite float, or None for missing, NaN, infinite, boolean or non-numeric values."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _finite_sorted(values: Iterable[Any]) -> np.ndarray:
    return np.array(sorted(f for v in values if (f := as_finite(v)) is not None), dtype=np.float64)


def mean_ci(values: Iterable[float | None], conf: float = 0.95) -> tuple[float, float, int]:
    """Mean, Student-t half width at level ``conf``, and the number of finite values used.

    One value gives a NaN half width; no value gives ``(nan, nan, 0)``.
    """
    xs = _finite_sorted(values)
    n = int(xs.size)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(xs[0]), math.nan, 1
    return float(xs.mean()), float(_st.t.ppf(0.5 + conf / 2.0, n - 1) * _st.sem(xs)), n


def _pairs(treatment_by_seed: Mapping[Any, float | None],
           baseline_by_seed: Mapping[Any, float | None]) -> tuple[np.ndarray, np.ndarray]:
    seeds = sorted((s for s in treatment_by_seed if as_finite(treatment_by_seed[s]) is not None
                    and as_finite(baseline_by_seed.get(s)) is not None),
                   key=lambda s: (str(type(s)), s))
    return (np.array([as_finite(treatment_by_seed[s]) for s in seeds], dtype=np.float64),
            np.array([as_finite(baseline_by_seed[s]) for s in seeds], dtype=np.float64))


def paired_diff(
    treatment_by_seed: Mapping[Any, float | None],
    baseline_by_seed: Mapping[Any, float | None],
    conf: float = 0.95,
) -> tuple[float, float, float, int]:
    """Paired comparison over the seeds present (and finite) in both mappings.

    Returns ``(mean_diff, half_width, p_value, n)`` with diff = treatment - baseline, the half width of
    the Student-t interval of the mean difference, and the two-sided p value of the paired t-test
    (``scipy.stats.ttest_rel``). ``p`` is NaN when ``n < 2``. When every difference is the same number
    the test statistic is degenerate: p is 1.0 for a zero difference and 0.0 otherwise.
    """
    t, b = _pairs(treatment_by_seed, baseline_by_seed)
    n = int(t.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float((t - b).mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    hw = float(_st.t.ppf(0.5 + conf / 2.0, n - 1) * _st.sem(t - b))
    if float((t - b).std(ddof=1)) == 0.0:
        return mean, hw, (1.0 if mean == 0.0 else 0.0), n
    return mean, hw, min(float(_st.ttest_rel(t, b).pvalue), 1.0), n


# up to this many pairs every one of the 2**n sign patterns is enumerated; beyond, a fixed-seed sample
EXACT_SIGN_FLIP_MAX = 16


def sign_flip_p(treatment_by_seed: Mapping[Any, float | None],
                baseline_by_seed: Mapping[Any, float | None], shift: float = 0.0,
                alternative: str = "two-sided") -> float:
    """p value of the paired sign-flip permutation test of the mean difference (minus ``shift``: a
    margin a one-sided test is against; ``alternative`` ``two-sided``, ``less`` or ``greater``).

    Under the null that the arms are exchangeable within a seed, every difference is as likely negated;
    the p value is the share of the 2**n sign patterns (the observed one included) whose mean difference
    is at least as far from zero as the observed. Distribution-free; exact (every pattern enumerated) up
    to :data:`EXACT_SIGN_FLIP_MAX` pairs, beyond which ``scipy.stats.permutation_test`` samples 100,000
    patterns with a fixed seed (tests/test_stats.py checks the two agree). Two-sided it cannot go below
    2 / 2**n: 0.25 at 3 seeds, 0.0625 at 5, 0.0078 at 8; one-sided 1 / 2**n. NaN below 2 pairs; 1.0
    when every shifted difference is zero.
    """
    t, b = _pairs(treatment_by_seed, baseline_by_seed)
    d = t - b - shift
    n = int(d.size)
    if n < 2:
        return math.nan
    if not np.any(d):
        return 1.0
    if n > EXACT_SIGN_FLIP_MAX:
        res = _st.permutation_test(
            (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True,
            n_resamples=100_000, alternative=alternative, rng=np.random.default_rng(0))
        return min(float(res.pvalue), 1.0)
    # exact: the sum under every sign pattern (the observed one is the all-plus row), compared with a
    # relative tolerance so that patterns equal to the observed sum in exact arithmetic count
    sums = _sign_patterns(n) @ d
    obs = float(d.sum())
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()))
    if alternative == "greater":
        hits = sums >= obs - tol
    elif alternative == "less":
        hits = sums <= obs + tol
    else:
        hits = np.abs(sums) >= abs(obs) - tol
    return min(float(hits.mean()), 1.0)


@functools.lru_cache(maxsize=EXACT_SIGN_FLIP_MAX)
def _sign_patterns(n: int) -> np.ndarray:
    """All 2**n vectors of n signs (+1 / -1), one per row."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    return (1 - 2 * bits).astype(np.float64)


def superiority(treatment_by_seed: Mapping[Any, float | None],
                baseline_by_seed: Mapping[Any, float | None]) -> float:
    """The share of paired seeds on which the treatment is above the baseline (ties count one half): an
    estimate of P(A > B) over seeds. NaN without a pair."""
    t, b = _pairs(treatment_by_seed, baseline_by_seed)
    if t.size == 0:
        return math.nan
    return float((np.sum(t > b) + 0.5 * np.sum(t == b)) / t.size)


def holm(pvalues: Sequence[float | None]) -> list[float]:
    """Holm–Bonferroni adjusted p values, in the input order.

    Missing or NaN entries stay NaN and do not count towards the number of comparisons. Adjusted values
    are monotone in the raw p values and capped at 1.
    """
    out = [math.nan] * len(pvalues)
    valid = sorted((p, i) for i, raw in enumerate(pvalues) if (p := as_finite(raw)) is not None)
    m = len(valid)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        adj = min(1.0, (m - rank) * p)
        running = max(running, adj)
        out[i] = running
    return out


def fit_power_law(xs: Sequence[float | None], ys: Sequence[float | None]) -> tuple[float, float]:
    """Least-squares fit of ``y = prefactor * x**exponent`` on log-log axes; returns (exponent, prefactor).

    Pairs with a missing or non-positive coordinate are skipped; fewer than two distinct x give NaNs.
    """
    pts = sorted((x, y) for x0, y0 in zip(xs, ys)
                 if (x := as_finite(x0)) is not None and (y := as_finite(y0)) is not None and x > 0 and y > 0)
    if len({x for x, _ in pts}) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log([x for x, _ in pts]), np.log([y for _, y in pts]), 1)
    return float(slope), math.exp(float(intercept))


def _paired_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs for a true mean difference ``effect``."""
    if n < 2 or sd <= 0:
        return math.nan
    df = n - 1
    crit = float(_st.t.ppf(1.0 - alpha / 2.0, df))
    nc = abs(effect) * math.sqrt(n) / sd
    power = float(_st.nct.sf(crit, df, nc) + _st.nct.cdf(-crit, df, nc))
    if not math.isfinite(power):  # scipy's noncentral t gives NaN far in its tail: the normal limit
        power = float(_st.norm.sf(crit - nc) + _st.norm.cdf(-crit - nc))
    return power


def detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean difference a two-sided paired t-test at level ``alpha`` detects with probability
    ``power``, given ``n`` pairs whose differences have standard deviation ``sd``.

    NaN for fewer than two pairs or a missing sd; 0.0 when the differences do not vary at all.
    """
    sd_ = as_finite(sd)
    if n < 2 or sd_ is None:
        return math.nan
    if sd_ == 0.0:
        return 0.0
    hi = sd_
    while _paired_power(hi, sd_, n, alpha) < power:
        hi *= 2.0
    return float(brentq(lambda d: _paired_power(d, sd_, n, alpha) - power, 0.0, hi, xtol=1e-12 * hi))


def pairs_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8,
                 n_max: int = 10_000) -> int | None:
    """How many pairs the paired t-test needs to detect ``effect`` (differences with sd ``sd``) with
    probability ``power`` at level ``alpha``; None for a zero effect or more than ``n_max``."""
    e, s = as_finite(effect), as_finite(sd)
    if e is None or s is None or e == 0.0:
        return None
    if s == 0.0:
        return 2
    lo, hi = 2, 2
    while _paired_power(e, s, hi, alpha) < power:
        if hi >= n_max:
            return None
        lo, hi = hi, min(2 * hi, n_max)
    while lo < hi:  # power grows with n: the smallest n that reaches it
        mid = (lo + hi) // 2
        if _paired_power(e, s, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def paired_sd(treatment_by_seed: Mapping[Any, float | None],
              baseline_by_seed: Mapping[Any, float | None]) -> float:
    """Standard deviation (ddof 1) of the paired differences over the seeds present in both; NaN below 2."""
    t, b = _pairs(treatment_by_seed, baseline_by_seed)
    return float(np.std(np.sort(t - b), ddof=1)) if t.size >= 2 else math.nan


def mode(values: Iterable[Any]) -> Any:
    """Most common non-null value; ties go to the smallest in sort order."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    best = max(counts.values())
    return min((v for v, c in counts.items() if c == best), key=lambda v: (str(type(v)), str(v)))
