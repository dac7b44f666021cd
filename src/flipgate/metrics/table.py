"""Per-class 2x2 flip tables: the sufficient statistics of everything the gate decides.

For each gold class, how many examples the baseline and the candidate got right or wrong (both right,
only the baseline, only the candidate, neither). NFR, PFR, NFI, accuracies, their intervals, McNemar and
the per-class NFR are all functions of these counts, so tables of disjoint parts of a regression set
add up to the table of the whole: a set too large for memory is counted part by part, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flipgate.metrics.flips import FlipCounts

# Column of a (baseline right, candidate right) pair: 2 * baseline right + candidate right.
NEITHER, ONLY_CANDIDATE, ONLY_BASELINE, BOTH = range(4)
_DENSE_LIMIT = 1 << 20  # class ids below this are counted with one bincount; others through np.unique


@dataclass(frozen=True)
class FlipTable:
    """`cells[i, j]`: examples of class `classes[i]` in cell j (NEITHER .. BOTH). Classes ascend, each once,
    and every listed class has at least one example. An empty table has no classes."""

    classes: np.ndarray  # int64, (k,)
    cells: np.ndarray  # int64, (k, 4)

    @classmethod
    def empty(cls) -> FlipTable:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4), np.int64))

    @classmethod
    def from_arrays(cls, labels, old_pred, cand_pred) -> FlipTable:
        """The table of examples aligned row by row. Raises ValueError when the shapes differ."""
        labels, old_pred, cand_pred = (np.asarray(a, dtype=np.int64) for a in (labels, old_pred, cand_pred))
        if not labels.shape == old_pred.shape == cand_pred.shape:
            raise ValueError(f"shapes differ: labels {labels.shape}, baseline {old_pred.shape}, "
                             f"candidate {cand_pred.shape}")
        if labels.size == 0:
            return cls.empty()
        cell = 2 * (old_pred == labels) + (cand_pred == labels)
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < _DENSE_LIMIT:  # one pass, even for 10M rows
            cells = np.bincount(labels * 4 + cell, minlength=4 * (high + 1)).reshape(-1, 4)
            classes = np.flatnonzero(cells.sum(axis=1))
            return cls(classes.astype(np.int64), cells[classes])
        classes, index = np.unique(labels, return_inverse=True)
        cells = np.bincount(index * 4 + cell, minlength=4 * len(classes)).reshape(-1, 4)
        return cls(classes.astype(np.int64), cells)

    def __add__(self, other: FlipTable) -> FlipTable:
        """The table of both parts (they must hold different examples)."""
        classes = np.union1d(self.classes, other.classes).astype(np.int64)
        cells = np.zeros((len(classes), 4), np.int64)
        for part in (self, other):
            cells[np.searchsorted(classes, part.classes)] += part.cells
        return FlipTable(classes, cells)

    @property
    def n(self) -> int:
        return int(self.cells.sum())

    def counts(self) -> FlipCounts:
        """The pooled counts, as `metrics.flips.flip_counts` gives them for the same examples."""
        total = self.cells.sum(axis=0) if len(self.cells) else np.zeros(4, np.int64)
        return FlipCounts(
            n=int(total.sum()),
            old_correct=int(total[ONLY_BASELINE] + total[BOTH]),
            cand_correct=int(total[ONLY_CANDIDATE] + total[BOTH]),
            negative_flips=int(total[ONLY_BASELINE]),
            positive_flips=int(total[ONLY_CANDIDATE]),
        )

    def per_class(self) -> dict[int, dict[str, float | int]]:
        """Per gold class: n, negative flips and NFR, as `metrics.flips.per_class_nfr` gives them."""
        out: dict[int, dict[str, float | int]] = {}
        for c, row in zip(self.classes.tolist(), self.cells):
            n, k = int(row.sum()), int(row[ONLY_BASELINE])
            out[c] = {"n": n, "negative_flips": k, "nfr": k / n}
        return out
