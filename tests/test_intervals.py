import math

import numpy as np
import pytest
from scipy.stats import beta, norm

from flipgate.metrics.intervals import (
    clopper_pearson,
    clopper_pearson_upper,
    mcnemar_exact,
    min_examples_for_bound,
    rate_interval,
    wilson,
)


def wilson_by_hand(k: int, n: int, level: float) -> tuple[float, float]:
    """The Wilson score interval written out: centre (k + z²/2) / (n + z²), half-width
    z / (n + z²) * sqrt(k (n - k) / n + z² / 4)."""
    z = norm.ppf(1 - (1 - level) / 2)
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n,level", [(3, 10, 0.95), (0, 50, 0.95), (7, 2000, 0.9), (50, 50, 0.99)])
def test_wilson_matches_the_formula(k, n, level):
    ci = wilson(k, n, level)
    low, high = wilson_by_hand(k, n, level)
    assert ci.low == pytest.approx(max(low, 0.0), abs=1e-12)
    assert ci.high == pytest.approx(min(high, 1.0), abs=1e-12)
    assert (ci.level, ci.method) == (level, "wilson")


def test_wilson_hand_checked_value():
    # 3 of 10 at 95%: z = 1.95996; centre 4.92073 / 13.84146 = 0.35551, half-width 0.24772.
    ci = wilson(3, 10)
    assert (ci.low, ci.high) == (pytest.approx(0.10779, abs=1e-5), pytest.approx(0.60322, abs=1e-5))


@pytest.mark.parametrize("k,n,level", [(3, 10, 0.95), (1, 400, 0.95), (12, 30, 0.8)])
def test_clopper_pearson_matches_beta_quantiles(k, n, level):
    a = 1 - level
    ci = clopper_pearson(k, n, level)
    assert ci.low == pytest.approx(beta.ppf(a / 2, k, n - k + 1), rel=1e-9)
    assert ci.high == pytest.approx(beta.ppf(1 - a / 2, k + 1, n - k), rel=1e-9)


def test_clopper_pearson_table_value():
    # 3 of 10 at 95%: the exact interval of the published tables, (0.0667, 0.6525)
    ci = clopper_pearson(3, 10)
    assert (ci.low, ci.high) == (pytest.approx(0.066740, abs=1e-6), pytest.approx(0.652453, abs=1e-6))


def test_clopper_pearson_zero_successes_has_closed_form():
    ci = clopper_pearson(0, 100)
    assert ci.low == 0.0
    assert ci.high == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-9)


def test_clopper_pearson_is_wider_than_wilson():
    w, cp = wilson(5, 200), clopper_pearson(5, 200)
    assert cp.low < w.low and cp.high > w.high


def test_empty_set_knows_nothing():
    assert (wilson(0, 0).low, wilson(0, 0).high) == (0.0, 1.0)
    assert (clopper_pearson(0, 0).low, clopper_pearson(0, 0).high) == (0.0, 1.0)


@pytest.mark.parametrize("k,n,level,method", [(5, 3, 0.95, "wilson"), (-1, 3, 0.95, "wilson"),
                                              (1, 3, 1.0, "wilson"), (1, 3, 0.95, "agresti")])
def test_bad_arguments_raise(k, n, level, method):
    with pytest.raises(ValueError):
        rate_interval(k, n, level, method)


def upper_by_bisection(k: int, n: int, level: float) -> float:
    """The one-sided exact upper bound by its definition: the p at which P(X <= k | n, p) = 1 - level,
    the binomial CDF summed term by term and bisected (it falls as p grows)."""
    def cdf(p: float) -> float:
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) > 1 - level else (low, mid)
    return low


@pytest.mark.parametrize("k,n,level", [(0, 10, 0.95), (2, 10, 0.95), (3, 1000, 0.95), (17, 2000, 0.9), (5, 50, 0.99)])
def test_clopper_pearson_upper_matches_its_definition(k, n, level):
    assert clopper_pearson_upper(k, n, level) == pytest.approx(upper_by_bisection(k, n, level), rel=1e-9)


def test_clopper_pearson_upper_table_value():
    assert clopper_pearson_upper(2, 10, 0.95) == pytest.approx(0.506901, abs=1e-6)  # the tables' 0.5069


def test_clopper_pearson_upper_edges():
    assert clopper_pearson_upper(0, 0, 0.95) == 1.0
    assert clopper_pearson_upper(7, 7, 0.95) == 1.0
    assert clopper_pearson_upper(0, 100, 0.95) == pytest.approx(1 - 0.05 ** (1 / 100))
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2, 0.95)
    with pytest.raises(ValueError):
        clopper_pearson_upper(0, 2, 1.0)


def test_min_examples_for_bound_is_the_rule_of_three():
    assert min_examples_for_bound(0.01, 0.95) == 299
    assert clopper_pearson_upper(0, 299, 0.95) <= 0.01 < clopper_pearson_upper(0, 298, 0.95)
    assert min_examples_for_bound(0.0, 0.95) is None


def test_clopper_pearson_upper_of_an_array_is_the_bound_of_each_count():
    """The selection rule bounds a whole grid of (smoothed, so possibly fractional) counts at once."""
    counts = np.array([0, 2, 2.5, 10, 10])
    bounds = clopper_pearson_upper(counts, 10, 0.9)
    assert bounds.tolist() == [clopper_pearson_upper(0, 10, 0.9), clopper_pearson_upper(2, 10, 0.9),
                               pytest.approx(beta.ppf(0.9, 3.5, 7.5), rel=1e-12), 1.0, 1.0]
    assert clopper_pearson_upper(np.zeros((2, 3)), 0, 0.9).tolist() == [[1.0] * 3] * 2
    with pytest.raises(ValueError):
        clopper_pearson_upper(np.array([0, 11]), 10, 0.9)


def test_halfwidth_is_half_the_interval():
    ci = wilson(3, 10)
    assert ci.halfwidth == (ci.high - ci.low) / 2 == pytest.approx(0.24772, abs=1e-5)


def test_mcnemar_hand_case():
    # 1 negative vs 9 positive flips: P(X <= 1 | Bin(10, 1/2)) = 11/1024, two-sided doubles it.
    t = mcnemar_exact(1, 9)
    assert t.p_value == pytest.approx(22 / 1024, rel=1e-12)
    assert (t.negative_flips, t.positive_flips, t.discordant) == (1, 9, 10)
    assert mcnemar_exact(9, 1).p_value == pytest.approx(22 / 1024, rel=1e-12)  # symmetric
    assert mcnemar_exact(0, 5).p_value == pytest.approx(2 / 32, rel=1e-12)


def test_mcnemar_balanced_and_empty():
    assert mcnemar_exact(4, 4).p_value == pytest.approx(1.0)
    assert mcnemar_exact(0, 0).p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)
