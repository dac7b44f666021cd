"""Is a trained model fit to judge? Simple references on dev and the training curve, checked after
training so that a comparison, an alpha or a gate verdict is never about a model that did not learn.

Checks (each: observed, threshold, pass/fail):
- ``beats_trivial``: dev accuracy exceeds the better of the majority-class accuracy (the training
  data's most frequent label, scored on dev) and chance (1 / classes) by more than the Wilson 95%
  half-width of the model's dev accuracy.
- ``train_loss``: the kept epoch's training loss is at most 3/4 of ln(classes), the loss of a head
  that knows nothing (a model still near it has barely started).
- ``converged``: when training ended at the kept epoch (no early stop on dev), the last epoch's
  training-loss drop is under half of the first epoch-to-epoch drop: a loss still falling that
  steeply means more epochs (or a higher learning rate) would have helped. Needs three epochs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from flipgate.metrics.intervals import accuracy_halfwidth

STEEP = 0.5  # last drop / first drop above this: still learning
LOSS_SHARE = 0.75  # final loss / ln(classes) above this: barely trained


def fit_checks(
    epoch_loss: list[float],
    kept_epoch: int,
    stopped_on_dev: bool,
    train_labels: np.ndarray,
    dev_labels: np.ndarray,
    dev_pred: np.ndarray,
    num_classes: int,
) -> dict:
    """The checks above as {"fit": bool, "checks": [...], "advice": str}. `kept_epoch` is 1-based;
    `stopped_on_dev` is True when the adaptive schedule stopped (or kept an earlier epoch) on dev."""
    checks = []
    n = len(dev_labels)
    acc = float(np.mean(dev_pred == dev_labels)) if n else 0.0
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    majority = values[np.argmax(counts)] if len(values) else None
    majority_acc = float(np.mean(dev_labels == majority)) if n and majority is not None else 0.0
    trivial = max(majority_acc, 1.0 / max(num_classes, 1))
    margin = accuracy_halfwidth(int(round(acc * n)), n)
    checks.append(_check("beats_trivial", acc, ">", trivial + margin, acc > trivial + margin,
                         f"dev accuracy {100 * acc:.2f}% vs majority class {100 * majority_acc:.2f}%, chance "
                         f"{100 / max(num_classes, 1):.2f}%, margin {100 * margin:.2f} points (n={n})"))
    final = epoch_loss[kept_epoch - 1] if epoch_loss else math.inf
    ceiling = LOSS_SHARE * math.log(max(num_classes, 2))
    checks.append(_check("train_loss", final, "<=", ceiling, final <= ceiling,
                         f"training loss {final:.3f} at epoch {kept_epoch}; ln({num_classes}) = "
                         f"{math.log(max(num_classes, 2)):.3f} is an untrained head's"))
    if stopped_on_dev or kept_epoch < 3:
        why = "dev accuracy stopped improving" if stopped_on_dev else "fewer than 3 epochs: no curve to judge"
        checks.append(_check("converged", None, "<=", STEEP, True, why))
    else:
        first = epoch_loss[0] - epoch_loss[1]
        last = epoch_loss[kept_epoch - 2] - epoch_loss[kept_epoch - 1]
        ratio = last / first if first > 0 else (math.inf if last > 0 else 0.0)
        checks.append(_check("converged", ratio, "<=", STEEP, ratio <= STEEP,
                             f"the last epoch's loss drop is {ratio:.2f}x the first's"))
    failed = [c["name"] for c in checks if c["verdict"] == "fail"]
    return {"fit": not failed, "failed": failed, "checks": checks, "dev_accuracy": acc,
            "advice": advice(failed) if failed else ""}


def advice(failed: list[str]) -> str:
    if "converged" in failed or "train_loss" in failed:
        return ("train longer or hotter: `epochs: auto` with a larger `max_epochs`, or a higher `lr`/`head_lr` "
                "in this model's params section")
    return ("the model does not beat a trivial predictor on dev: check the labels and text columns, then "
            "train longer (`epochs: auto`, larger `max_epochs`) or with a higher `lr`")


def _check(name: str, observed, op: str, threshold: float, ok: bool, detail: str) -> dict:
    return {"name": name, "observed": observed, "op": op, "threshold": threshold,
            "verdict": "pass" if ok else "fail", "detail": detail}


def unfit_line(role: str, fit: dict) -> str:
    """One line for a log, a report or the gate: which model, which checks failed, what to change."""
    return f"{role} is not fit to judge (failed: {', '.join(fit['failed'])}): {fit['advice']}"


def unfit_models(folder: str | Path) -> dict[str, str]:
    """role -> unfit_line, for every train report (<role>.json) in `folder` whose fit checks failed."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        fit = json.loads(path.read_text()).get("fit")
        if fit and not fit["fit"]:
            out[path.stem] = unfit_line(path.stem, fit)
    return out
