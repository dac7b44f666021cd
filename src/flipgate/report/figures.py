"""What the report draws, computed from its inputs: flip matrices, NFR per gold class, the epoch curves and
the BCWI curve as PNGs (drawn by flipgate.report.plots), and the tables DVC plots draws (plots/*.csv)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.io import read_json
from flipgate.metrics.flips import per_class_nfr
from flipgate.report.inputs import BASELINE, REFERENCE, Inputs, train_reports
from flipgate.report.plots import epoch_curves_png, flip_matrix_png, per_class_nfr_png

BCWI_CURVE_CSV, PER_CLASS_CSV = "bcwi_curve.csv", "per_class_nfr.csv"  # plots/ files dvc.yaml declares


def flip_matrix(old_pred, pred, num_classes: int) -> np.ndarray:
    """Counts of (old's prediction, the model's prediction) pairs; shape (num_classes, num_classes)."""
    old_pred, pred = np.asarray(old_pred, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    flat = np.bincount(old_pred * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def focus_models(inputs: Inputs) -> list[str]:
    """The models the plots and flip lists show: new and the selected candidate."""
    return [m for m in dict.fromkeys([REFERENCE, inputs.candidate]) if m and m in inputs.models and m != BASELINE]


def class_nfr(ledger: pd.DataFrame, model: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    sub = ledger[ledger["model"] == model]
    per = per_class_nfr(sub["label"], sub["old_pred"], sub["pred"], num_classes=k)
    n = np.array([per.get(c, {}).get("n", 0) for c in range(k)])
    return n, np.array([per.get(c, {}).get("nfr", 0.0) for c in range(k)])


def make_plots(inputs: Inputs) -> dict[str, bytes]:
    """{file name under plots/: PNG bytes}: a flip matrix per focus model, one per-class NFR plot and the
    BCWI curve when the bcwi stage drew one."""
    k, pngs = len(inputs.names), {}
    for model in focus_models(inputs):
        sub = inputs.ledger[inputs.ledger["model"] == model]
        m = flip_matrix(sub["old_pred"], sub["pred"], k)
        off = int(m.sum() - np.trace(m))
        pngs[f"flip_matrix_{model}.png"] = flip_matrix_png(
            m, inputs.names, f"old vs {model} on the regression set ({off} changed predictions)", model)
    curve = inputs.locate("bcwi_curve.png")  # the bcwi stage's plot, copied so every PNG sits in plots/
    if curve.is_file():
        pngs["bcwi_curve.png"] = curve.read_bytes()
    if focus_models(inputs):
        nfr = {model: class_nfr(inputs.ledger, model, k)[1] for model in focus_models(inputs)}
        pngs["per_class_nfr.png"] = per_class_nfr_png(nfr, inputs.names, "NFR per gold class (regression set)")
    curves = {m: r for m, r in train_reports(inputs).items() if r.get("epoch_curve")}
    if curves:
        pngs["epoch_curves.png"] = epoch_curves_png({m: r["epoch_curve"] for m, r in curves.items()},
                                                    {m: r.get("best_epoch") for m, r in curves.items()})
    return pngs


def bcwi_curve_frame(curve: dict, variant: str = "plain") -> pd.DataFrame:
    """The bcwi stage's curve (bcwi_curve.json rows: variant, alpha, split, accuracy, nfr, pfr, ...) as one
    row per alpha of `variant`: alpha, accuracy_dev, nfr_dev, pfr_dev, accuracy_regression, ... (a plain
    table DVC plots draws as lines against alpha). Empty when the curve has no row of `variant`."""
    rows = [r for r in curve.get("rows") or [] if isinstance(r, dict) and r.get("variant") == variant]
    if not rows:
        return pd.DataFrame(columns=["alpha"])
    long = pd.DataFrame(rows)
    wide = long.pivot_table(index="alpha", columns="split", values=["accuracy", "nfr", "pfr"], aggfunc="first")
    wide.columns = [f"{metric}_{split}" for metric, split in wide.columns]
    order = [f"{m}_{s}" for s in ("dev", "regression") for m in ("accuracy", "nfr", "pfr")]
    return wide[[c for c in order if c in wide.columns]].reset_index()


def per_class_frame(inputs: Inputs) -> pd.DataFrame:
    """One row per gold class of the regression set: class, n, nfr_new, nfr_candidate (NFR within the
    class of new and of the selected candidate; new's again when there is no other candidate) and
    candidate (its name). No rows without new's predictions."""
    columns = ["class", "n", "nfr_new", "nfr_candidate", "candidate"]
    if REFERENCE not in inputs.models:
        return pd.DataFrame(columns=columns)
    cand = inputs.candidate if inputs.candidate in inputs.models and inputs.candidate != BASELINE else REFERENCE
    k = len(inputs.names)
    n, nfr_new = class_nfr(inputs.ledger, REFERENCE, k)
    frame = pd.DataFrame({"class": inputs.names, "n": n, "nfr_new": nfr_new,
                          "nfr_candidate": class_nfr(inputs.ledger, cand, k)[1], "candidate": cand})
    return frame.loc[frame["n"] > 0, columns].reset_index(drop=True)


def plot_data(inputs: Inputs) -> dict[str, bytes]:
    """{file name under plots/: CSV bytes}: the BCWI curve (when the bcwi stage wrote bcwi_curve.json) and
    per-class NFR, the tables `dvc plots show` / `dvc plots diff` draw (dvc.yaml `plots`)."""
    out = {PER_CLASS_CSV: per_class_frame(inputs).to_csv(index=False).encode()}
    curve = inputs.locate("bcwi_curve.json")
    if curve.is_file():
        record = read_json(curve)
        if not isinstance(record, dict):
            raise FlipgateError(f"{curve}: expected {{\"rows\": [...]}} as the bcwi stage writes it")
        out[BCWI_CURVE_CSV] = bcwi_curve_frame(record).to_csv(index=False).encode()
    return out
