"""Confidence intervals for a rate k/n and McNemar's exact test on negative vs positive flips.

Pure functions over counts; scipy does the statistics (`binomtest`), nothing is hand-rolled.
Edge cases: an empty set (n == 0) has the interval [0, 1] (nothing is known); a test with no
discordant pair (no flip either way) has p = 1.0 (no evidence of any difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scipy.stats import binomtest

Method = Literal["wilson", "clopper-pearson"]
_SCIPY_METHOD = {"wilson": "wilson", "clopper-pearson": "exact"}


@dataclass(frozen=True)
class Interval:
    """A two-sided interval for a rate, as fractions (0.01 = 1%)."""

    low: float
    high: float
    level: float
    method: Method


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
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method=_SCIPY_METHOD[method])
    return Interval(float(ci.low), float(ci.high), level, method)


def wilson(k: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval: well centred for small k, the report's default for NFR."""
    return rate_interval(k, n, level, "wilson")


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Interval:
    """Clopper-Pearson exact interval: conservative (covers at least `level`)."""
    return rate_interval(k, n, level, "clopper-pearson")


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
    p = 1.0 if n == 0 else float(binomtest(int(negative_flips), int(n), 0.5).pvalue)
    return McNemar(int(negative_flips), int(positive_flips), p)
