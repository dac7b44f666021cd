"""What the report is made of, found and read once: the model folders (old, target, new first), the label
names, the flip ledger, every model's metrics against old, the selected candidate, the seeds' runs and the
pipeline's reports folders to look in (`Inputs`, `read_inputs`). Nothing here draws, lays out or writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.evaluate import evaluate
from flipgate.io import read_json
from flipgate.report import aggregate
from flipgate.report.ledger import flip_ledger, read_regression

log = logging.getLogger(__name__)

BASELINE, REFERENCE = "old", "new"
MODEL_ORDER = ("old", "target", "new", "bcwi", "gated_fusion", "ensemble_prob", "ensemble_logit",
               "kd", "focal_distill", "dynamic_distill", "prior_wd", "ewc", "mixout")  # the last six: stage baselines


@dataclass(frozen=True)
class Inputs:
    """Everything the report is made of, read once."""

    models: dict[str, Path]
    names: list[str]
    metrics: dict  # evaluate()'s output: {"dev": {model: row}, "regression": {...}}
    ledger: pd.DataFrame
    candidate: str | None
    context: tuple[Path, ...]  # the pipeline's reports folders these predictions belong to; only read
    level: float = 0.95
    runs: list[dict] = field(default_factory=list)
    data: Path = Path("data/update")

    def locate(self, name: str) -> Path:
        """The first context folder's `name` that exists (else the first folder's, for messages)."""
        for folder in self.context:
            if (folder / name).is_file():
                return folder / name
        return self.context[0] / name


def _model_key(name: str) -> tuple[int, str]:
    for i, known in enumerate(MODEL_ORDER):
        if name == known or name.startswith(known + "_"):
            return i, name
    return len(MODEL_ORDER), name


def discover_models(pred_root: Path) -> dict[str, Path]:
    """Model folders holding both dev.parquet and regression.parquet, old/target/new first."""
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        raise FlipgateError(f"{pred_root}: predictions folder not found; pass --predictions (default: predictions)")
    found = {}
    for folder in sorted(p for p in pred_root.iterdir() if p.is_dir()):
        if (folder / "dev.parquet").is_file() and (folder / "regression.parquet").is_file():
            found[folder.name] = folder
        elif (folder / "off.json").is_file():  # a method switched off in params.yaml (e.g. a baseline)
            continue
        else:
            log.warning("%s: no dev.parquet and regression.parquet; left out of the report", folder)
    if BASELINE not in found:
        raise FlipgateError(f"{pred_root}: no {BASELINE}/ predictions; the report compares every model with old's")
    return dict(sorted(found.items(), key=lambda kv: _model_key(kv[0])))


def read_labels(data_dir: Path) -> tuple[list[str], int | None]:
    """(label names in id order, how many old knew, or None when the update added no class)."""
    path = Path(data_dir) / "labels.json"
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise FlipgateError(f"{path}: expected {{\"labels\": [names in id order], ...}}; rerun the update stage")
    names = [str(n) for n in meta["labels"]]
    num_old = meta.get("num_old_labels")
    return names, (int(num_old) if isinstance(num_old, int) and 0 < num_old < len(names) else None)


def find_candidate(folders: Sequence[Path], models: dict[str, Path]) -> str | None:
    """The selected candidate: gate.json's, else select.json's; None when neither names a present model."""
    for path in (folder / name for name in ("gate.json", "select.json") for folder in folders):
        if path.is_file():
            chosen = read_json(path).get("candidate")
            if chosen in models:
                return chosen
            if chosen:
                log.warning("%s: candidate %r has no predictions here; no candidate in the report", path, chosen)
    return None


def read_optional(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except FlipgateError as exc:
        log.warning("%s", exc)
        return None
    return data if isinstance(data, dict) else None


def train_reports(inputs: Inputs) -> dict[str, dict]:
    """role -> train report (train/<role>.json; Gated Fusion's new from gated_fusion.json) of the first
    context folder that has them."""
    out: dict[str, dict] = {}
    for role in ("old", "target", "new"):
        rec = read_optional(inputs.locate(f"train/{role}.json"))
        if rec:
            out[role] = rec
    gf = read_optional(inputs.locate("gated_fusion.json"))
    if gf and (gf.get("train") or {}).get("epoch_curve"):
        out["gated_fusion (its new)"] = {"epoch_curve": gf["train"]["epoch_curve"],
                                         "best_epoch": gf["train"].get("new_best_epoch")}
    return out


def read_inputs(predictions: str | Path, data: str | Path, reports: str | Path, runs: list[str | Path] = (),
                candidate: str | None = None, level: float = 0.95, context: Sequence[str | Path] = ()) -> Inputs:
    """Find and read everything the report is made of (see build_report), and compute every model's
    metrics against old. Raises FlipgateError on bad input."""
    reports = Path(reports)
    context = tuple(Path(c) for c in context) or (reports,)
    models = discover_models(Path(predictions))
    names, num_old = read_labels(Path(data))
    ledger = flip_ledger(models, read_regression(Path(data)), BASELINE)
    seen = [ledger[c].to_numpy(dtype=np.int64).max(initial=-1) for c in ("label", "old_pred", "pred")]
    k = max(len(names), *(int(s) + 1 for s in seen))
    names += [str(c) for c in range(len(names), k)]  # ids past labels.json still get a (numeric) name
    if candidate is not None and candidate not in models:
        raise FlipgateError(f"--candidate {candidate!r}: no {predictions}/{candidate}/ folder; present: {list(models)}")
    return Inputs(models=models, names=names, metrics=evaluate(models, BASELINE, REFERENCE, num_old), ledger=ledger,
                  candidate=candidate or find_candidate(context, models), context=context, level=level,
                  runs=aggregate.load_runs(list(runs)) if runs else [], data=Path(data))
