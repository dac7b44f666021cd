"""Stage `evaluate`: every model's metrics against old (flipgate.evaluate), the run's wall times and the
provenance of the figures (flipgate.provenance), as the run's reports/metrics.json (DVC metrics)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.data import update
from flipgate.evaluate import evaluate, wall_times
from flipgate.io import write_json
from flipgate.provenance import snapshot
from flipgate.report.show import results_table

if TYPE_CHECKING:
    from flipgate.params import Data
    from flipgate.stage import Run

log = logging.getLogger(__name__)


def run_stage(run: Run, data_dir: Path, models: Sequence[str], data: Data) -> dict:
    """`models`: folders of the run's predictions/ (empty: every one; a folder holding off.json, a method
    switched off in params.yaml, is skipped). Returns the metrics written."""
    root = run.predictions
    names = list(models) or sorted(p.name for p in root.iterdir() if p.is_dir())
    off = [n for n in names if (root / n / "off.json").is_file()]  # a method switched off in params.yaml
    names = [n for n in names if n not in off]
    if off:
        log.info("off, not evaluated: %s", ", ".join(off))
    labels, num_old = update.load_labels(data_dir)
    metrics = evaluate({n: root / n for n in names}, num_old_labels=num_old if num_old < len(labels) else None)
    metrics["seed"] = run.seed
    metrics["wall_time_s"] = wall_times(run.reports / "timings")
    metrics["provenance"] = snapshot(data_dir, {"data": data.model_dump()})
    write_json(metrics, run.reports / "metrics.json")
    log.info("results on the regression set:\n%s", results_table(metrics))
    return metrics
