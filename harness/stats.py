"""Seed statistics for the ablation tables: t intervals, paired tests, Holm correction, power-law fits.

Every function drops missing values (``None`` and NaN) instead of failing, because result rows of failed
jobs carry nulls. Inputs are sorted before any reduction so the same data always gives the same floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _st

__all__ = ["fit_power_law", "holm", "mean_ci", "paired_diff"]


def _num(x: Any) -> float | None:
    """``x`` as a finite float, or None for missing, NaN, infinite, boolean or non-numeric values."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _finite_sorted(values: Iterable[Any]) -> np.ndarray:
    return np.array(sorted(f for v in values if (f := _num(v)) is not None), dtype=np.float64)


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
    seeds = sorted((s for s in treatment_by_seed
                    if _num(treatment_by_seed[s]) is not None and _num(baseline_by_seed.get(s)) is not None),
                   key=lambda s: (str(type(s)), s))
    t = np.array([_num(treatment_by_seed[s]) for s in seeds], dtype=np.float64)
    b = np.array([_num(baseline_by_seed[s]) for s in seeds], dtype=np.float64)
    n = len(seeds)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float((t - b).mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    hw = float(_st.t.ppf(0.5 + conf / 2.0, n - 1) * _st.sem(t - b))
    if float((t - b).std(ddof=1)) == 0.0:
        return mean, hw, (1.0 if mean == 0.0 else 0.0), n
    return mean, hw, min(float(_st.ttest_rel(t, b).pvalue), 1.0), n


def holm(pvalues: Sequence[float | None]) -> list[float]:
    """Holm–Bonferroni adjusted p values, in the input order.

    Missing or NaN entries stay NaN and do not count towards the number of comparisons. Adjusted values
    are monotone in the raw p values and capped at 1.
    """
    out = [math.nan] * len(pvalues)
    valid = sorted((p, i) for i, raw in enumerate(pvalues) if (p := _num(raw)) is not None)
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
                 if (x := _num(x0)) is not None and (y := _num(y0)) is not None and x > 0 and y > 0)
    if len({x for x, _ in pts}) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log([x for x, _ in pts]), np.log([y for _, y in pts]), 1)
    return float(slope), math.exp(float(intercept))
