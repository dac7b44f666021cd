"""The new-model ensemble over k seeds (the seeds' "Ensemble (16x)" and the Gated Fusion paper's 5/10/20-seed
majority vote), from the members' predictions tables only:

- ``vote``: each member votes its prediction; the class with the most votes wins. **Ties** go to the tied
  class with the highest mean probability over the members, and a tie there too to the lowest class id.
  The table's `logits` are log((votes + mean_prob / 2) / (k + 1/2)): the vote share with the tie-break
  folded in (it can move a prediction only between classes with equal votes), not a calibrated probability.
- ``prob``: the mean of the members' softmax probabilities; `logits` are its log.

Members must hold the same ids and labels (flipgate.predictions.align lines them up with the first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flipgate.mitigation.ensemble import softmax
from flipgate.predictions import align, logits_matrix, predictions_frame

KINDS = ("vote", "prob")


def mean_probability(logits: list[np.ndarray]) -> np.ndarray:
    """(n, classes): the members' softmax probabilities averaged."""
    return np.mean([softmax(np.asarray(x, dtype=np.float64)) for x in logits], axis=0)


def vote_scores(logits: list[np.ndarray]) -> np.ndarray:
    """(n, classes): votes + mean probability / 2, whose argmax is the majority vote with the tie rule above
    (np.argmax takes the first, i.e. the lowest class id, of exact ties)."""
    if not logits:
        raise ValueError("an ensemble needs at least one member")
    n, k = np.asarray(logits[0]).shape
    votes = np.zeros((n, k))
    for x in logits:
        votes[np.arange(n), np.asarray(x).argmax(axis=1)] += 1
    return votes + mean_probability(logits) / 2


def combine(kind: str, logits: list[np.ndarray]) -> np.ndarray:
    """The ensemble's logits column (see the module docstring)."""
    if kind == "vote":
        scores = vote_scores(logits) / (len(logits) + 0.5)
    elif kind == "prob":
        scores = mean_probability(logits)
    else:
        raise ValueError(f"unknown ensemble kind {kind!r}; known: {KINDS}")
    return np.log(np.clip(scores, 1e-30, None)).astype(np.float32)


def ensemble_tables(kind: str, members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The ensemble's predictions table over `members` (name -> table), in the first member's row order."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    (first_name, first), *rest = members.items()
    first = first.reset_index(drop=True)
    tables = [first] + [align(first, t, first_name, name, "rerun its train_new stage") for name, t in rest]
    return predictions_frame(first["id"], first["label"], combine(kind, [logits_matrix(t) for t in tables]))
