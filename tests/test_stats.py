"""Hand-checked numbers for harness.analysis.stats."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from harness.analysis.stats import fit_power_law, holm, mean_ci, paired_diff

T_975_DF4 = 2.7764451051977987  # two-sided 95% Student-t quantile, 4 degrees of freedom (t tables)
T_975_DF3 = 3.182446305284263


def test_mean_ci_known_interval() -> None:
    # values 1..5: mean 3, sample s.d. sqrt(2.5), so half width = t(0.975, 4) * sqrt(2.5) / sqrt(5)
    mean, hw, n = mean_ci([5, 3, 1, 4, 2])
    assert n == 5
    assert mean == pytest.approx(3.0)
    assert hw == pytest.approx(T_975_DF4 * math.sqrt(0.5), rel=1e-12)
    assert hw == pytest.approx(1.963243, abs=1e-6)


def test_mean_ci_drops_missing_and_handles_small_n() -> None:
    mean, hw, n = mean_ci([2.0, None, float("nan")])
    assert (mean, n) == (2.0, 1)
    assert math.isnan(hw)
    mean, hw, n = mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(hw)


def test_mean_ci_other_level() -> None:
    _, hw90, _ = mean_ci([1, 2, 3, 4, 5], conf=0.90)
    assert hw90 == pytest.approx(2.131846786 * math.sqrt(0.5), rel=1e-9)


def test_paired_diff_pairs_by_seed_and_matches_ttest_rel() -> None:
    treatment = {0: 1.0, 1: 2.0, 2: 4.0, 3: 7.0, 9: 100.0}  # seed 9 has no partner
    baseline = {3: 5.5, 2: 3.0, 1: 1.0, 0: 0.5, 5: 3.0}  # seed 5 has no partner
    diff, hw, p, n = paired_diff(treatment, baseline)
    # differences 0.5, 1.0, 1.0, 1.5: mean 1, s.d. sqrt(1/6), t = 1 / (sqrt(1/6) / 2) = 2 * sqrt(6)
    assert n == 4
    assert diff == pytest.approx(1.0)
    assert hw == pytest.approx(T_975_DF3 * math.sqrt(1 / 6) / 2, rel=1e-12)
    assert p == pytest.approx(2 * st.t.sf(2 * math.sqrt(6), 3), rel=1e-12)
    ref = st.ttest_rel([1.0, 2.0, 4.0, 7.0], [0.5, 1.0, 3.0, 5.5])
    assert p == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert p == pytest.approx(0.01628, abs=1e-5)


def test_paired_diff_sign_small_n_and_degenerate() -> None:
    diff, _, _, _ = paired_diff({0: 1.0, 1: 1.0}, {0: 2.0, 1: 3.0})
    assert diff == pytest.approx(-1.5)
    diff, hw, p, n = paired_diff({0: 1.0}, {0: 0.25, 1: 0.5})
    assert (diff, n) == (0.75, 1) and math.isnan(hw) and math.isnan(p)
    _, _, p, n = paired_diff({0: None, 1: 2.0}, {0: 1.0, 1: 1.0})
    assert n == 1 and math.isnan(p)
    # identical differences: the t statistic is degenerate
    assert paired_diff({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})[2] == 1.0
    assert paired_diff({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})[2] == 0.0
    assert paired_diff({}, {})[3] == 0


def test_holm_hand_example() -> None:
    # sorted raw p: 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04
    # -> monotone: 0.04 -> 0.06
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_nan_and_cap() -> None:
    adj = holm([0.5, float("nan"), 0.2, None])
    assert adj[0] == pytest.approx(0.5) and adj[2] == pytest.approx(0.4)
    assert math.isnan(adj[1]) and math.isnan(adj[3])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []
    assert holm([0.03]) == [0.03]


def test_fit_power_law_exact() -> None:
    xs = [128, 256, 512, 1024, 2048]
    ys = [3.0 * x**2.5 for x in xs]
    k, a = fit_power_law(xs, ys)
    assert k == pytest.approx(2.5, abs=1e-12)
    assert a == pytest.approx(3.0, rel=1e-9)


def test_fit_power_law_skips_bad_points() -> None:
    k, a = fit_power_law([1, 2, 4, 8, 0, None], [5, 10, 20, 40, 1, 3])
    assert k == pytest.approx(1.0) and a == pytest.approx(5.0)
    k, a = fit_power_law([4, 4], [1, 2])
    assert math.isnan(k) and math.isnan(a)


def test_sign_flip_exact_floors_and_hand_count() -> None:
    """Exact two-sided sign-flip p values: 2 / 2**n when every difference has one sign, and a hand count
    of the 2**3 sign patterns otherwise; one-sided against a shifted margin."""
    from harness.analysis.stats import sign_flip_p

    base = {s: 0.0 for s in range(8)}
    for n, floor in ((3, 0.25), (5, 0.0625), (6, 0.03125), (8, 0.0078125)):
        treat = {s: 1.0 + 0.1 * s for s in range(n)}
        assert sign_flip_p(treat, base) == pytest.approx(floor)
        assert sign_flip_p(treat, base, alternative="greater") == pytest.approx(floor / 2)
        assert sign_flip_p(treat, base, alternative="less") == pytest.approx(1.0)
    # differences 3, -1, 2 (mean 4/3): of the 8 patterns, |sum| >= 4 for (3,-1,2), (3,1,2) and their negations
    assert sign_flip_p({0: 3.0, 1: -1.0, 2: 2.0}, {0: 0.0, 1: 0.0, 2: 0.0}) == pytest.approx(4 / 8)
    # against a margin: differences all below 2.0 are "less" than it in every seed
    five = {s: 1.0 for s in range(5)}
    assert sign_flip_p(five, base, shift=2.0, alternative="less") == pytest.approx(1 / 32)
    assert math.isnan(sign_flip_p({0: 1.0}, {0: 0.0})) and sign_flip_p(base, base) == 1.0


def test_superiority_counts_ties_as_half() -> None:
    from harness.analysis.stats import superiority

    assert superiority({0: 1.0, 1: 2.0, 2: 0.0, 3: 5.0}, {0: 0.0, 1: 2.0, 2: 1.0, 3: 4.0}) == 0.625
    assert math.isnan(superiority({0: 1.0}, {1: 1.0}))


def test_power_survives_far_tails() -> None:
    """At a strict level and a huge effect scipy's noncentral t gives NaN; power is then 1, not NaN."""
    from harness.analysis.stats import detectable_effect, pairs_needed

    assert pairs_needed(1.0, 1e-4, alpha=0.05 / 48) == 2
    assert 0 < detectable_effect(1e-4, 8, alpha=0.05 / 48) < 1e-3


def test_exact_sign_flip_matches_scipy_permutation_test() -> None:
    import numpy as np

    from harness.analysis.stats import sign_flip_p

    rng = np.random.default_rng(3)
    for n in (4, 7, 10):
        d = rng.normal(0.3, 1.0, n)
        for alt in ("two-sided", "greater", "less"):
            ref = st.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                      vectorized=True, n_resamples=np.inf, alternative=alt).pvalue
            got = sign_flip_p(dict(enumerate(d)), dict.fromkeys(range(n), 0.0), alternative=alt)
            assert got == pytest.approx(min(float(ref), 1.0)), (n, alt)
