"""Negative/positive flip counts and rates, always from pooled counts (never per-batch means).

Definitions (regression set of n examples, old = baseline, cand = candidate):
- negative flip: old correct, cand wrong. NFR = negative flips / n.
- NFI = negative flips / cand errors. PFR = (old wrong, cand right) / n.
- fix rate of a mitigation M against new: share of new's negative flips that M does not have.
- new-fault rate: M's negative flips that new does not have, divided by new's negative flips.
Edge cases: every rate whose denominator is zero is 0.0 (an empty set has NFR 0.0 with n == 0;
callers that decide anything, like the gate, must look at n).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True)
class FlipCounts:
    n: int
    old_correct: int
    cand_correct: int
    negative_flips: int
    positive_flips: int

    @property
    def accuracy(self) -> float:
        return _ratio(self.cand_correct, self.n)

    @property
    def old_accuracy(self) -> float:
        return _ratio(self.old_correct, self.n)

    @property
    def nfr(self) -> float:
        return _ratio(self.negative_flips, self.n)

    @property
    def nfi(self) -> float:
        return _ratio(self.negative_flips, self.n - self.cand_correct)

    @property
    def pfr(self) -> float:
        return _ratio(self.positive_flips, self.n)

    def as_dict(self) -> dict[str, float | int]:
        d: dict[str, float | int] = asdict(self)
        d.update(accuracy=self.accuracy, old_accuracy=self.old_accuracy, nfr=self.nfr, nfi=self.nfi, pfr=self.pfr)
        return d


def _check(labels: np.ndarray, *preds: np.ndarray) -> None:
    for p in preds:
        if p.shape != labels.shape:
            raise ValueError(f"predictions of shape {p.shape} do not match labels of shape {labels.shape}")


def negative_flip_mask(labels, old_pred, cand_pred) -> np.ndarray:
    labels, old_pred, cand_pred = map(np.asarray, (labels, old_pred, cand_pred))
    _check(labels, old_pred, cand_pred)
    return (old_pred == labels) & (cand_pred != labels)


def flip_counts(labels, old_pred, cand_pred) -> FlipCounts:
    """Pooled flip counts of a candidate against the old model on the same examples."""
    labels, old_pred, cand_pred = map(np.asarray, (labels, old_pred, cand_pred))
    _check(labels, old_pred, cand_pred)
    old_ok = old_pred == labels
    cand_ok = cand_pred == labels
    return FlipCounts(
        n=int(labels.size),
        old_correct=int(old_ok.sum()),
        cand_correct=int(cand_ok.sum()),
        negative_flips=int((old_ok & ~cand_ok).sum()),
        positive_flips=int((~old_ok & cand_ok).sum()),
    )


def fix_and_new_fault(labels, old_pred, new_pred, mitigated_pred) -> dict[str, float | int]:
    """Fix rate and new-fault rate of a mitigation against the untreated new model.

    Both are 0.0 when new has no negative flips.
    """
    new_nf = negative_flip_mask(labels, old_pred, new_pred)
    mit_nf = negative_flip_mask(labels, old_pred, mitigated_pred)
    n_new = int(new_nf.sum())
    fixed = int((new_nf & ~mit_nf).sum())
    introduced = int((mit_nf & ~new_nf).sum())
    return {
        "fix_rate": _ratio(fixed, n_new),
        "new_fault_rate": _ratio(introduced, n_new),
        "fixed": fixed,
        "introduced": introduced,
    }


def per_class_nfr(labels, old_pred, cand_pred, num_classes: int | None = None) -> dict[int, dict[str, float | int]]:
    """Per gold class: examples, negative flips and NFR within the class (classes with no example omitted)."""
    labels = np.asarray(labels)
    nf = negative_flip_mask(labels, old_pred, cand_pred)
    classes = np.unique(labels) if num_classes is None else np.arange(num_classes)
    out: dict[int, dict[str, float | int]] = {}
    for c in classes:
        in_class = labels == c
        n = int(in_class.sum())
        if n:
            k = int((nf & in_class).sum())
            out[int(c)] = {"n": n, "negative_flips": k, "nfr": k / n}
    return out
