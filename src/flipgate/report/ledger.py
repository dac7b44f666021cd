"""The flip ledger: every regression example, for every model, next to old's prediction.

One row per (model, example) for each model except the baseline (whose own values fill the old_*
columns): id, text, label, old_pred, old_confidence, pred, confidence, flip. Confidence is the softmax
maximum of the row's logits (NaN when a table has no `logits` column). Flip types:
negative (old right, model wrong), positive (old wrong, model right), both_right, both_wrong
(both wrong, whether or not they agree on the wrong class).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.predictions import align, logits_matrix, read_predictions

log = logging.getLogger(__name__)

STALE = "the predictions are from another data update: rerun the pipeline"

FLIP_TYPES = ("negative", "positive", "both_wrong", "both_right")
LEDGER_COLUMNS = ("model", "id", "text", "label", "old_pred", "old_confidence", "pred", "confidence", "flip")


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """max_c softmax(logits)_c per row, computed stably; an empty matrix gives an empty vector."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.size == 0:
        return np.zeros(len(logits))
    z = logits - logits.max(axis=1, keepdims=True)  # the max entry becomes exp(0) = 1
    return 1.0 / np.exp(z).sum(axis=1)


def flip_type(labels, old_pred, pred) -> np.ndarray:
    """The flip type of each example, one of FLIP_TYPES."""
    old_ok = np.asarray(old_pred) == np.asarray(labels)
    ok = np.asarray(pred) == np.asarray(labels)
    return np.select([old_ok & ~ok, ~old_ok & ok, ~old_ok & ~ok], list(FLIP_TYPES[:3]), FLIP_TYPES[3]).astype(object)


def read_regression(data_dir: Path) -> pd.DataFrame:
    """The regression split's id, text and label (ids as strings)."""
    path = Path(data_dir) / "regression.parquet"
    if not path.exists():
        raise FlipgateError(f"{path}: file not found; pass --data with the update stage's folder (data/update)")
    df = pd.read_parquet(path)
    missing = [c for c in ("id", "text", "label") if c not in df.columns]
    if missing:
        raise FlipgateError(f"{path}: missing column(s) {missing}; the regression split needs id, text, label")
    df = df[["id", "text", "label"]].copy()
    df["id"] = df["id"].astype("string")
    return df


def _confidence(table: pd.DataFrame, where: str) -> np.ndarray:
    if "logits" in table.columns:
        return softmax_confidence(logits_matrix(table))
    log.warning("%s: no logits column; confidences are NaN", where)
    return np.full(len(table), np.nan)


def flip_ledger(pred_dirs: dict[str, Path], regression: pd.DataFrame, baseline: str = "old") -> pd.DataFrame:
    """Build the ledger from each model's predictions/<model>/regression.parquet, in regression-set order.

    Raises FlipgateError when the baseline is missing, or ids or labels differ between tables or from
    the regression split.
    """
    if baseline not in pred_dirs:
        raise FlipgateError(f"flip ledger: no predictions for the baseline model {baseline!r}")
    rows = regression[["id", "text", "label"]].reset_index(drop=True)
    paths = {name: folder / "regression.parquet" for name, folder in pred_dirs.items()}
    # every table in regression-set order, with the regression split's ids and labels
    tables = {name: align(rows, read_predictions(path), "the regression split", str(path), STALE)
              for name, path in paths.items()}
    base = tables.pop(baseline)
    old_confidence = _confidence(base, str(paths[baseline]))
    frames = []
    for name, table in tables.items():
        frames.append(rows.assign(old_pred=base["pred"], old_confidence=old_confidence, pred=table["pred"],
                                  confidence=_confidence(table, str(paths[name])),
                                  flip=flip_type(rows["label"], base["pred"], table["pred"])))
        frames[-1].insert(0, "model", name)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LEDGER_COLUMNS})
    ledger = pd.concat(frames, ignore_index=True)[list(LEDGER_COLUMNS)]
    ledger["model"] = ledger["model"].astype("string")
    ledger["flip"] = ledger["flip"].astype("string")
    return ledger
