"""Old-new ensembles (the Gated Fusion paper's baselines), computed from predictions tables only.

Two ensembles of the old and new models' outputs, weighted by alpha = the weight on NEW
(note: BCWI's alpha is the weight on old; here alpha 1 is new alone, alpha 0 old alone):
- probability ensemble: p = (1 - alpha) * softmax(old) + alpha * softmax(new); its table's `logits` are log p.
- logit ensemble: l = (1 - alpha) * old + alpha * new.
alpha is chosen on dev with the rule BCWI uses (`flipgate.mitigation.selection_rule`); the regression set is only
scored, never consulted.

An update that adds classes gives old fewer logit columns than new: old's missing columns are filled with
its row minimum (logits) and zero (probabilities), so old never votes for a class it did not know.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.metrics.flips import fix_and_new_fault, flip_counts
from flipgate.mitigation.selection_rule import Options, Rule, choose, tolerance_and_halfwidth
from flipgate.predictions import align, logits_matrix, predictions_frame

log = logging.getLogger(__name__)

KINDS = ("prob", "logit")
PAPER_ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)


def pad_old_logits(old: np.ndarray, num_labels: int) -> np.ndarray:
    """Old's logits widened to `num_labels` columns, added columns at the row minimum (add_classes).

    Raises FlipgateError when old has MORE columns than new (label ids must only grow).
    """
    old = np.asarray(old, dtype=np.float32)
    k_old = old.shape[1] if old.ndim == 2 else 0
    if k_old == num_labels or len(old) == 0:
        return old
    if k_old > num_labels:
        raise FlipgateError(f"old has {k_old} classes but new only {num_labels}; label ids must only grow")
    fill = np.repeat(old.min(axis=1, keepdims=True), num_labels - k_old, axis=1)
    return np.concatenate([old, fill], axis=1)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def logit_ensemble(old: np.ndarray, new: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * old + alpha * new, logits of shape (n, classes)."""
    old = pad_old_logits(old, new.shape[1])
    return ((1 - alpha) * old + alpha * new).astype(np.float32)


def prob_ensemble(old: np.ndarray, new: np.ndarray, alpha: float) -> np.ndarray:
    """log((1 - alpha) * p_old + alpha * p_new): log-probabilities, usable as logits (same argmax)."""
    p_old = softmax(pad_old_logits(old, new.shape[1]).astype(np.float64))
    if p_old.shape[1] > old.shape[1]:  # added classes: old gives them no probability mass
        p_old[:, old.shape[1]:] = 0.0
        p_old /= p_old.sum(axis=1, keepdims=True)
    p = (1 - alpha) * p_old + alpha * softmax(new.astype(np.float64))
    return np.log(np.clip(p, 1e-30, None)).astype(np.float32)


COMBINE = {"prob": prob_ensemble, "logit": logit_ensemble}


def aligned_pair(old: pd.DataFrame, new: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(old, new's rows in old's order), both with a fresh index; see flipgate.predictions.align."""
    return old.reset_index(drop=True), align(old, new, f"predictions/old/{split}", f"predictions/new/{split}",
                                             hint="rerun both model stages on the same data/update")


@dataclass(frozen=True)
class EnsembleResult:
    kind: str
    alpha: float
    reason: str
    curve: list[dict]  # one row per (alpha, split)
    tables: dict[str, pd.DataFrame]  # split -> predictions table at the chosen alpha
    metrics: dict[str, dict]  # split -> flip metrics at the chosen alpha (+ fix/new fault against new)
    choice: dict = field(default_factory=dict)  # the selection: rule, admissible, stability on dev resamples


def score(table: pd.DataFrame, old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """Flip metrics of `table` against old, plus fix and new-fault rates against new (all aligned)."""
    labels, old_pred = old["label"].to_numpy(), old["pred"].to_numpy()
    row = flip_counts(labels, old_pred, table["pred"].to_numpy()).as_dict()
    row.update(fix_and_new_fault(labels, old_pred, new["pred"].to_numpy(), table["pred"].to_numpy()))
    return row


def dev_tolerance(tolerance: float | str, new_dev: pd.DataFrame, ci_level: float) -> float:
    """The BCWI rule on new's dev predictions (see select.tolerance_and_halfwidth)."""
    correct = int((new_dev["pred"].to_numpy() == new_dev["label"].to_numpy()).sum())
    return tolerance_and_halfwidth(tolerance, correct, len(new_dev), ci_level)[0]


def ensemble(
    kind: str,
    old: dict[str, pd.DataFrame],
    new: dict[str, pd.DataFrame],
    alphas: list[float],
    rule: Rule = Rule(),
) -> EnsembleResult:
    """Sweep alphas on every split of `old`/`new` (split -> predictions table, ids aligned), pick alpha on
    `dev` only by `rule` (new is the tolerance rule's reference), and return the chosen tables. Needs a
    `dev` split; every other split is only scored."""
    if "dev" not in old or "dev" not in new:
        raise FlipgateError("ensembles: alpha is chosen on dev; the dev predictions of old and new are missing")
    if not alphas:
        raise FlipgateError("ensembles.alphas: give at least one alpha")
    aligned = {s: aligned_pair(old[s], new[s], s) for s in old}
    curve, tables = [], {}
    for alpha in alphas:
        for split, (o, n) in aligned.items():
            logits = COMBINE[kind](logits_matrix(o), logits_matrix(n), alpha)
            tables[alpha, split] = predictions_frame(o["id"], o["label"], logits)
            m = score(tables[alpha, split], o, n)
            curve.append({"alpha": alpha, "split": split,
                          **{k: m[k] for k in ("accuracy", "nfr", "pfr", "negative_flips", "n")}})
    o_dev, n_dev = aligned["dev"]
    # alpha weighs new: NFR rises with it
    choice = choose(Options.from_tables({a: tables[a, "dev"] for a in alphas}, o_dev, n_dev, trend="up",
                                        where=f"{kind} ensemble"), rule)
    log.info("%s ensemble: alpha %.2f, in %.0f%% of dev resamples (%s)", kind, choice.key, 100 * choice.stability,
             choice.reason)
    chosen = {s: tables[choice.key, s] for s in aligned}
    metrics = {s: score(chosen[s], *aligned[s]) for s in aligned}
    return EnsembleResult(kind, float(choice.key), choice.reason, curve, chosen, metrics, choice.as_dict())
