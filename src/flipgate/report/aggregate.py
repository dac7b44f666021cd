"""Several seeds: mean and sample standard deviation per model, the way the papers' tables report them.

Input: run folders (each holding reports/metrics.json, as the evaluate stage writes it) or metrics.json
files. A model missing from some runs is aggregated over the runs that have it (its `seeds` says how
many); a metric missing from a run (fix rates when that run had no `new`) is left out of that metric.
Standard deviation is the sample one (ddof=1); with one seed it is 0.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flipgate.errors import FlipgateError
from flipgate.io import read_json

METRICS = ("accuracy", "nfr", "nfi", "pfr", "fix_rate", "new_fault_rate")


def metrics_path(run: str | Path) -> Path:
    """A metrics.json file, or the one inside a run folder (reports/metrics.json, else metrics.json)."""
    run = Path(run)
    if run.is_dir():
        for candidate in (run / "reports" / "metrics.json", run / "metrics.json"):
            if candidate.is_file():
                return candidate
        raise FlipgateError(f"{run}: no reports/metrics.json in this run folder; run the evaluate stage in it first")
    return run


def load_runs(runs: list[str | Path], split: str = "regression") -> list[dict]:
    """Read each run's metrics; each must have the `split` section."""
    out = []
    for run in runs:
        path = metrics_path(run)
        metrics = read_json(path)
        if not isinstance(metrics, dict) or not isinstance(metrics.get(split), dict):
            raise FlipgateError(f"{path}: no {split!r} section; is it a metrics.json from the evaluate stage?")
        out.append({"path": str(path), **metrics})
    return out


def mean_std(values: list[float]) -> dict[str, float | int]:
    """{"mean", "std", "n"}: sample std (ddof=1), 0.0 for a single value. Raises ValueError when empty."""
    if not values:
        raise ValueError("mean_std of no values")
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "n": int(a.size)}


def aggregate(runs: list[dict], split: str = "regression") -> dict[str, dict]:
    """{model: {"seeds": k, metric: {"mean", "std", "n"}, ...}} over the runs' `split` rows.

    Models keep the order in which they first appear.
    """
    per_model: dict[str, list[dict]] = {}
    for run in runs:
        for model, row in run[split].items():
            per_model.setdefault(model, []).append(row)
    out: dict[str, dict] = {}
    for model, rows in per_model.items():
        entry: dict = {"seeds": len(rows)}
        for metric in METRICS:
            values = [float(r[metric]) for r in rows if r.get(metric) is not None]
            if values:
                entry[metric] = mean_std(values)
        out[model] = entry
    return out


def wall_time(runs: list[dict]) -> dict[str, float | int] | None:
    """Mean and std of each run's total wall time (the sum over its stages), or None when no run has times."""
    totals = [sum(r["wall_time_s"].values()) for r in runs if r.get("wall_time_s")]
    return mean_std(totals) if totals else None
