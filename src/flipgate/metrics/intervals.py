"""Confidence intervals for a rate k/n and McNemar's exact test on negative vs positive flips.

Pure functions over counts; scipy does the statistics (`binomtest`, the beta quantiles), nothing is
hand-rolled. The one place interval maths lives: the gate's upper-bound check, the dev selection rule's
NFR bound and accuracy half-width, and the report's intervals all come from here.
Edge cases: an empty set (n == 0) has the interval [0, 1] (nothing is known); a test with no
discordant pair (no flip either way) has p = 1.0 (no evidence of any difference).
scipy.stats is imported on first use (it costs ~0.7 s): `flipgate gate` without an upper bound never pays it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["wilson", "clopper-pearson"]
_SCIPY_METHOD = {"wilson": "wilson", "clopper-pearson": "exact"}


@dataclass(frozen=True)
class Interval:
    """A two-sided interval for a rate, as fractions (0.01 = 1%)."""

    low: float
    high: float
    level: float
    method: Method

    @property
    def halfwidth(self) -> float:
        return (self.high - self.low) / 2


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def rate_interval(k: int, n: int, level: float = 0.95, method: Method = "wilson") -> Interval:
    """Two-sided `level` interval for the binomial rate k/n (Wilson score or Clopper-Pearson exact).

    n == 0 gives [0, 1]. Raises ValueError for k outside [0, n], a level outside (0, 1) or an
    unknown method.
    """
    _check_counts(k, n)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in _SCIPY_METHOD:
        raise ValueError(f"method must be one of {sorted(_SCIPY_METHOD)}, got {method!r}")
    if n == 0:
        return Interval(0.0, 1.0, level, method)
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method=_SCIPY_METHOD[method])
    return Interval(float(ci.low), float(ci.high), level, method)


def wilson(k: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval: well centred for small k, the report's default for NFR."""
    return rate_interval(k, n, level, "wilson")


def accuracy_halfwidth(correct: int, n: int, level: float = 0.95) -> float:
    """Half-width of the Wilson interval of an accuracy (the BCWI paper's "gray area"); 0.0 on an empty set."""
    return wilson(correct, n, level).halfwidth if n else 0.0


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Interval:
    """Clopper-Pearson exact interval: conservative (covers at least `level`)."""
    return rate_interval(k, n, level, "clopper-pearson")


def clopper_pearson_upper(k, n: int, level: float):
    """One-sided exact (Clopper-Pearson) upper confidence bound of a binomial proportion k/n.

    The bound u solves P(Binom(n, u) <= k) = 1 - level, i.e. the `level` quantile of Beta(k+1, n-k).
    `k` is a count or an array of counts (a smoothed count may be fractional); a float comes back for a
    count, an array for an array. Edge cases: k == n gives 1.0; n == 0 (no information) gives 1.0.
    Raises ValueError for k outside [0, n] or a level outside (0, 1).
    """
    counts = np.asarray(k, dtype=float)
    if n < 0 or counts.size and not ((counts >= 0).all() and (counts <= max(n, 0)).all()):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if counts.ndim == 0:
        if counts >= n:
            return 1.0
        from scipy.stats import beta

        return float(beta.ppf(level, k + 1, n - k))
    from scipy.stats import beta

    # n - k is floored away from 0 where k == n only to keep beta.ppf quiet there: those rows are 1.0
    return np.where(counts >= n, 1.0, beta.ppf(level, counts + 1, np.maximum(n - counts, 1e-9)))


def min_examples_for_bound(budget: float, level: float) -> int | None:
    """Smallest n whose upper bound with zero flips, 1 - (1-level)**(1/n), is <= budget.

    None when no n suffices (budget 0). For budget 0.01 at level 0.95 this is 299 ("rule of three").
    """
    if budget <= 0.0:
        return None
    if budget >= 1.0:
        return 1
    n = math.ceil(math.log(1.0 - level) / math.log1p(-budget))
    # Guard the float rounding of the closed form with the exact bound.
    while n > 1 and clopper_pearson_upper(0, n - 1, level) <= budget:
        n -= 1
    while clopper_pearson_upper(0, n, level) > budget:
        n += 1
    return n


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of old vs a candidate on the same examples.

    The discordant pairs are the flips: negative (old right, candidate wrong) and positive (old wrong,
    candidate right). Under "both models are equally accurate" each discordant pair is negative with
    probability 1/2; a small p says the accuracies differ beyond chance, in the direction of the larger count.
    """

    negative_flips: int
    positive_flips: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.negative_flips + self.positive_flips


def mcnemar_exact(negative_flips: int, positive_flips: int) -> McNemar:
    """Two-sided exact binomial test of `negative_flips` among all flips at p = 1/2.

    No flip at all gives p = 1.0. Raises ValueError on a negative count.
    """
    if negative_flips < 0 or positive_flips < 0:
        raise ValueError(f"flip counts must be >= 0, got {negative_flips} and {positive_flips}")
    n = negative_flips + positive_flips
    if n == 0:
        return McNemar(int(negative_flips), int(positive_flips), 1.0)
    from scipy.stats import binomtest

    p = float(binomtest(int(negative_flips), int(n), 0.5).pvalue)
    return McNemar(int(negative_flips), int(positive_flips), p)
