"""The selection rule shared by BCWI's alpha, the ensembles' alpha and the candidate choice. It sees dev
outcomes only: the regression set never picks a knob.

Every option is scored on the *same* dev examples as old and the reference (a paired comparison), so
the rule and its bootstrap work on per-example outcomes, not on rounded aggregates. Two objectives:

- ``budget`` (the gate's own): the most accurate option whose dev NFR is within the gate's NFR budget
  with the margin dev's size demands (the one-sided Clopper-Pearson upper bound at ``confidence``;
  0.5 means the point estimate) and whose accuracy gain over old is at least ``min_gain``.
- ``tolerance``: the lowest dev NFR among options whose dev accuracy is at least the reference's minus
  ``tolerance`` (accuracy points as a fraction).

For an ordered knob (alpha) the NFR curve is smoothed into the monotone shape it has in expectation
(isotonic regression over the grid) before the bound is taken: one noisy grid point does not decide.
When no option is admissible the *safe* one is returned, the option with the lowest (smoothed) dev NFR,
marked ``admissible=False``: a caller that gates it expects a reject, never the most accurate option.

How sure the choice is: the rule is re-run on ``bootstrap`` resamples of the dev examples; ``stability``
is the share of resamples that pick the same option, ``distribution`` the share of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from flipgate.metrics.intervals import accuracy_halfwidth, clopper_pearson_upper, wilson
from flipgate.predictions import align

if TYPE_CHECKING:  # only the attributes are read: the rule needs no params file
    from flipgate.params import Choosing, Gate

Objective = Literal["budget", "tolerance"]
Trend = Literal["down", "up"] | None  # how NFR moves along an ordered knob's keys (None: unordered)


def tolerance_and_halfwidth(tolerance: float | str, correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """(tolerance as a fraction, CI half-width of the reference's dev accuracy). `tolerance` is in accuracy
    points, or `ci` to use the half-width itself (the BCWI paper's "gray area")."""
    half = accuracy_halfwidth(correct, n, level)
    return (half if tolerance == "ci" else float(tolerance) / 100), half


@dataclass(frozen=True)
class Rule:
    """A selection rule. Rates are fractions (0.01 = 1%)."""

    objective: Objective = "budget"
    nfr_budget: float = 0.01
    confidence: float = 0.8
    min_gain: float = 0.0
    tolerance: float = 0.005

    def describe(self) -> str:
        if self.objective == "budget":
            margin = "its point estimate" if self.confidence <= 0.5 else f"its {self.confidence:g} upper bound"
            return (f"most accurate option with dev NFR ({margin}) <= {100 * self.nfr_budget:g}% and accuracy gain "
                    f"over old >= {100 * self.min_gain:g} points")
        return f"lowest dev NFR among options within {100 * self.tolerance:.2f} accuracy points of the reference"


@dataclass(frozen=True)
class Options:
    """Per-example dev outcomes, one column per option, all on the same examples."""

    keys: list
    correct: np.ndarray  # (n, k) bool: the option is right
    flips: np.ndarray  # (n, k) bool: old right and the option wrong
    old_correct: np.ndarray  # (n,) bool
    ref_correct: np.ndarray  # (n,) bool: the tolerance rule's reference
    trend: Trend = None

    @property
    def n(self) -> int:
        return len(self.old_correct)

    @classmethod
    def from_tables(cls, tables: dict, old: pd.DataFrame, reference: pd.DataFrame, trend: Trend = None,
                    where: str = "dev") -> Options:
        """Options from predictions tables (id, label, pred), each lined up with old's dev rows by id
        (flipgate.predictions.align: every table must hold old's ids and labels, else FlipgateError)."""
        if not tables:
            raise ValueError("nothing to select from")
        y = old["label"].to_numpy()

        def right(name: object, table: pd.DataFrame) -> np.ndarray:
            return align(old, table, f"{where}: old", f"{where}: {name}", "rerun its stage")["pred"].to_numpy() == y

        old_ok = old["pred"].to_numpy() == y
        correct = np.stack([right(name, t) for name, t in tables.items()], axis=1)
        return cls(list(tables), correct, old_ok[:, None] & ~correct, old_ok, right("reference", reference), trend)


@dataclass(frozen=True)
class Choice:
    key: object  # the chosen knob (an alpha, a model name)
    accuracy: float
    nfr: float
    nfr_bound: float  # the (smoothed) NFR bound the budget rule compared with the budget
    admissible: bool  # False: nothing met the rule; this is the safe fallback
    reason: str
    stability: float  # share of bootstrap resamples of dev that chose the same key
    distribution: dict = field(default_factory=dict)  # key -> share of resamples that chose it
    rule: str = ""

    def as_dict(self) -> dict:
        return {"key": self.key, "accuracy": self.accuracy, "nfr": self.nfr, "nfr_bound": self.nfr_bound,
                "admissible": self.admissible, "reason": self.reason, "stability": self.stability,
                "distribution": {str(k): v for k, v in self.distribution.items()}, "rule": self.rule}


def _smooth(flips: np.ndarray, trend: Trend) -> np.ndarray:
    """Flip counts (..., k) made monotone along the last axis (isotonic regression) for an ordered knob."""
    if trend is None:
        return flips.astype(float)
    rows = flips.reshape(-1, flips.shape[-1]).astype(float)
    fitted = np.stack([isotonic_regression(r, increasing=trend == "up").x for r in rows])
    return fitted.reshape(flips.shape)


def _upper(flips: np.ndarray, n: int, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound of NFR (counts may be fractional after smoothing)."""
    if n == 0:
        return np.ones_like(flips, dtype=float)
    if confidence <= 0.5:
        return flips / n
    return clopper_pearson_upper(np.clip(flips, 0, n), n, confidence)


def _pick(rule: Rule, correct: np.ndarray, flips: np.ndarray, old_c: np.ndarray, ref_c: np.ndarray, n: int,
          trend: Trend) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised over a leading batch axis: counts (b, k), old_c/ref_c (b,). Returns (index, admissible
    flag, NFR bound) per row."""
    smooth = _smooth(flips, trend)
    bound = _upper(smooth, n, rule.confidence)
    if rule.objective == "budget":
        ok = (bound <= rule.nfr_budget + 1e-12) & (correct - old_c[:, None] >= rule.min_gain * n - 1e-9)
        # the most accurate; ties -> fewer flips -> first key
        score = np.where(ok, correct * (n + 1.0) - smooth, -np.inf)
    else:
        ok = correct - ref_c[:, None] >= -rule.tolerance * n - 1e-9
        score = np.where(ok, -smooth * (n + 1.0) + correct, -np.inf)
    any_ok = ok.any(axis=1)
    safe = np.argmax(-smooth * (n + 1.0) + correct, axis=1)  # lowest NFR, then most accurate
    idx = np.where(any_ok, np.argmax(score, axis=1), safe)
    return idx, any_ok, bound


def choose(options: Options, rule: Rule, bootstrap: int = 1000, seed: int = 0) -> Choice:
    """Apply `rule` to the dev outcomes, then to `bootstrap` resamples of them (0: no resampling)."""
    n, k = options.correct.shape
    counts = lambda w: (w @ options.correct, w @ options.flips, w @ options.old_correct, w @ options.ref_correct)  # noqa: E731
    ones = np.ones((1, n))
    idx, ok, bound = _pick(rule, *counts(ones), n, options.trend)
    i = int(idx[0])
    key = options.keys[i]
    distribution: dict = {}
    stability = 1.0
    if bootstrap > 0 and n > 0:
        rng = np.random.default_rng(seed)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=bootstrap).astype(float)
        picks = _pick(rule, *counts(w), n, options.trend)[0]
        shares = np.bincount(picks, minlength=k) / bootstrap
        distribution = {options.keys[j]: round(float(s), 4) for j, s in enumerate(shares) if s > 0}
        stability = float(shares[i])
    acc = float(options.correct[:, i].mean()) if n else 0.0
    nfr = float(options.flips[:, i].mean()) if n else 0.0
    if ok[0]:
        reason = f"{rule.describe()}: {key} ({100 * acc:.2f}%, NFR {100 * nfr:.2f}%)"
    else:
        reason = (f"no option met the rule ({rule.describe()}); the safe one, {key} "
                  f"(lowest dev NFR, {100 * nfr:.2f}%), is marked not admissible")
    return Choice(key, acc, nfr, float(bound[0, i]), bool(ok[0]), reason, round(stability, 4), distribution,
                  rule.describe())


def rule_from(objective: Objective, nfr_budget: float, confidence: float, min_gain: float, tolerance: float | str,
              ci_level: float, ref_correct: int, n: int) -> tuple[Rule, float]:
    """A Rule from params values; returns it with the reference's dev CI half-width (for `tolerance: ci`)."""
    tol, half = tolerance_and_halfwidth(tolerance, ref_correct, n, ci_level)
    return Rule(objective, nfr_budget, confidence, min_gain, tol), half


def rule_for(choosing: Choosing, gate: Gate, reference: pd.DataFrame) -> tuple[Rule, float]:
    """The Rule a params section that chooses on dev (bcwi, ensembles, select) asks for, with the gate's
    budget and min_gain; `reference` is the tolerance rule's reference model's dev predictions (label, pred).
    Returns it with the reference's dev CI half-width, as rule_from does."""
    correct = int((reference["pred"] == reference["label"]).sum())
    return rule_from(choosing.objective, gate.nfr_budget, choosing.confidence, gate.min_gain, choosing.tolerance,
                     choosing.ci_level, correct, len(reference))
