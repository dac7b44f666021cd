"""Compare every model's predictions with old's: accuracy, NFR, NFI, PFR on dev and the regression set."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.io import read_json
from flipgate.metrics.flips import fix_and_new_fault, flip_counts
from flipgate.predictions import align, read_predictions

log = logging.getLogger(__name__)

SPLITS = ("dev", "regression")
RERUN = "both must be predictions on the same split: rerun `dvc repro`"
# The regression set's parts when the update added classes: gold label known to old, or added.
PARTS = {"regression_old_labels": lambda label, k: label < k, "regression_new_labels": lambda label, k: label >= k}


def evaluate(pred_dirs: dict[str, Path], baseline: str = "old", reference: str = "new",
             num_old_labels: int | None = None) -> dict:
    """Metrics per split and model against `baseline`; mitigations also get fix/new-fault rates
    against `reference` (the untreated new model) when its predictions are present.

    With `num_old_labels` (an update that added classes) the regression set splits into two parts:
    `regression_old_labels` repeats the figures on the examples whose gold label old knew (label id <
    num_old_labels), `regression_new_labels` on those of the added classes (old is never right there, so
    NFR is 0 by construction; accuracy says how well the added classes were learnt)."""
    if baseline not in pred_dirs:
        raise FlipgateError(f"evaluate: no predictions for the baseline model {baseline!r}")
    out: dict = {}
    for split in SPLITS:
        tables = {name: read_predictions(d / f"{split}.parquet") for name, d in pred_dirs.items()}
        out[split] = _split_metrics(tables, baseline, reference, split)
        if split == "regression" and num_old_labels is not None:
            for part, keep in PARTS.items():
                rows = {n: t[keep(t["label"], num_old_labels)].reset_index(drop=True) for n, t in tables.items()}
                if len(rows[baseline]):
                    out[part] = _split_metrics(rows, baseline, reference, split)
    return out


def _split_metrics(tables: dict[str, pd.DataFrame], baseline: str, reference: str, split: str) -> dict:
    base = tables[baseline]
    labels, base_pred = base["label"].to_numpy(), base["pred"].to_numpy()
    pred = {name: align(base, table, f"predictions/{baseline}/{split}", f"predictions/{name}/{split}",
                        hint=RERUN)["pred"].to_numpy() for name, table in tables.items()}
    rows = {}
    for name in tables:
        row = flip_counts(labels, base_pred, pred[name]).as_dict()
        if reference in pred and name not in (baseline, reference):
            row.update(fix_and_new_fault(labels, base_pred, pred[reference], pred[name]))
        rows[name] = row
    return rows


def wall_times(folder: str | Path = "reports/timings") -> dict[str, float]:
    times = {}
    for f in sorted(Path(folder).glob("*.json")):
        rec = read_json(f)
        times[rec["stage"]] = rec["wall_time_s"]
    return times
