"""Pick the candidate to gate: the lowest dev NFR among models whose dev accuracy is within the
tolerance of the target model's (the model a plain retrain from scratch would ship)."""

from __future__ import annotations

from pathlib import Path

from flipgate.errors import FlipgateError
from flipgate.io import read_table
from flipgate.metrics.flips import flip_counts
from flipgate.mitigation.select import select_lowest_nfr


def choose_candidate(pred_root: Path, candidates: list[str], reference: str, tolerance_points: float) -> dict:
    """Dev figures only. Candidates without predictions are skipped (and listed as such)."""
    old = read_table(pred_root / "old" / "dev.parquet")
    ref = read_table(pred_root / reference / "dev.parquet")
    ref_acc = flip_counts(ref["label"], old["pred"], ref["pred"]).accuracy
    figures, missing = {}, []
    for name in candidates:
        path = pred_root / name / "dev.parquet"
        if not path.exists():
            missing.append(name)
            continue
        table = read_table(path)
        if table["id"].tolist() != old["id"].tolist():
            raise FlipgateError(f"{path}: rows are not old's dev rows in the same order; rerun its stage")
        c = flip_counts(old["label"], old["pred"], table["pred"])
        figures[name] = {"accuracy": c.accuracy, "nfr": c.nfr}
    if not figures:
        raise FlipgateError(f"select.candidates: none of {candidates} has predictions under {pred_root}")
    choice = select_lowest_nfr(figures, ref_acc, tolerance_points / 100)
    return {"candidate": choice.key, "reason": choice.reason, "reference": reference,
            "reference_dev_accuracy": ref_acc, "dev": figures, "skipped": missing}
