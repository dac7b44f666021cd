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
from flipgate.evaluate import align
from flipgate.io import logits_matrix, read_table

log = logging.getLogger(__name__)

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


def _with_confidence(table: pd.DataFrame, where: str) -> pd.DataFrame:
    out = table[["id", "label", "pred"]].copy()
    if "logits" in table.columns:
        out["confidence"] = softmax_confidence(logits_matrix(table))
    else:
        log.warning("%s: no logits column; confidences are NaN", where)
        out["confidence"] = np.nan
    return out


def _check_against_data(regression: pd.DataFrame, old: pd.DataFrame, where: str) -> pd.DataFrame:
    """regression joined with old's rows; every id of both must match, with the same label."""
    merged = regression.merge(old, on="id", how="outer", suffixes=("", "_pred"), indicator=True)
    unmatched = merged["_merge"] != "both"
    if unmatched.any():
        raise FlipgateError(
            f"{where}: {int(unmatched.sum())} id(s) not in both the predictions and the regression split "
            f"(e.g. {merged['id'][unmatched].iloc[0]!r}); the predictions are from another data update: rerun the pipeline"
        )
    differ = merged["label"] != merged["label_pred"]
    if differ.any():
        raise FlipgateError(f"{where}: {int(differ.sum())} label(s) differ from the regression split's; rerun the pipeline")
    return merged


def flip_ledger(pred_dirs: dict[str, Path], regression: pd.DataFrame, baseline: str = "old") -> pd.DataFrame:
    """Build the ledger from each model's predictions/<model>/regression.parquet, in regression-set order.

    Raises FlipgateError when the baseline is missing, or ids or labels differ between tables or from
    the regression split.
    """
    if baseline not in pred_dirs:
        raise FlipgateError(f"flip ledger: no predictions for the baseline model {baseline!r}")
    where = str(pred_dirs[baseline] / "regression.parquet")
    base_table = read_table(pred_dirs[baseline] / "regression.parquet", columns=("id", "label", "pred"))
    base = _with_confidence(base_table, where)
    joined = _check_against_data(regression, base, where)
    joined = regression[["id", "text", "label"]].merge(
        joined[["id", "pred", "confidence"]].rename(columns={"pred": "old_pred", "confidence": "old_confidence"}), on="id"
    )
    frames = []
    for name, folder in pred_dirs.items():
        if name == baseline:
            continue
        path = folder / "regression.parquet"
        table = read_table(path, columns=("id", "label", "pred"))
        align(base_table, table, str(path))  # same ids and labels as old, else a FlipgateError
        model = joined.merge(_with_confidence(table, str(path))[["id", "pred", "confidence"]], on="id")
        model.insert(0, "model", name)
        model["flip"] = flip_type(model["label"], model["old_pred"], model["pred"])
        frames.append(model)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LEDGER_COLUMNS})
    ledger = pd.concat(frames, ignore_index=True)[list(LEDGER_COLUMNS)]
    ledger["model"] = ledger["model"].astype("string")
    ledger["flip"] = ledger["flip"].astype("string")
    return ledger
