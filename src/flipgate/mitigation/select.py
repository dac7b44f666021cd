"""The selection rule shared by BCWI, ensembles and the candidate choice. It sees dev figures only:
the regression set never picks a knob."""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest


def accuracy_halfwidth(correct: int, n: int, level: float = 0.95) -> float:
    """Half-width of the Wilson interval of an accuracy (the paper's "gray area"); 0.0 on an empty set."""
    if n == 0:
        return 0.0
    ci = binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    return (ci.high - ci.low) / 2


def tolerance_and_halfwidth(tolerance: float | str, correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """(tolerance as a fraction, CI half-width of the reference's dev accuracy). `tolerance` is in accuracy
    points, or `ci` to use the half-width itself (the BCWI paper's "gray area")."""
    half = accuracy_halfwidth(correct, n, level)
    return (half if tolerance == "ci" else float(tolerance) / 100), half


@dataclass(frozen=True)
class Choice:
    key: object  # the chosen knob (an alpha, a model name)
    accuracy: float
    nfr: float
    floor: float  # the accuracy every admissible option had to reach
    reason: str


def select_lowest_nfr(options: dict[object, dict], reference_accuracy: float, tolerance: float) -> Choice:
    """Among options (key -> {"accuracy", "nfr"} on dev) whose accuracy >= reference - tolerance, the one
    with the lowest NFR; ties go to higher accuracy, then to the first key. Tolerance is a fraction
    (0.005 = half a point). With no admissible option, the most accurate one is returned and the reason
    says so."""
    if not options:
        raise ValueError("nothing to select from")
    floor = reference_accuracy - tolerance
    admissible = {k: v for k, v in options.items() if v["accuracy"] >= floor - 1e-12}
    if not admissible:
        key = max(options, key=lambda k: options[k]["accuracy"])
        o = options[key]
        return Choice(key, o["accuracy"], o["nfr"], floor,
                      f"no option reached dev accuracy {100 * floor:.2f}%; took the most accurate, {key}")
    order = list(admissible)
    key = min(order, key=lambda k: (admissible[k]["nfr"], -admissible[k]["accuracy"], order.index(k)))
    o = admissible[key]
    return Choice(key, o["accuracy"], o["nfr"], floor,
                  f"lowest dev NFR ({100 * o['nfr']:.2f}%) among {len(admissible)} option(s) with dev accuracy "
                  f">= {100 * floor:.2f}% (reference {100 * reference_accuracy:.2f}% - {100 * tolerance:.2f} points)")
