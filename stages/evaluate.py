"""Stage `evaluate`: metrics of every model against old -> reports/metrics.json (DVC metrics).

Usage: python stages/evaluate.py DATA_DIR PREDICTIONS_DIR [MODEL ...]   (default: every folder in PREDICTIONS_DIR)
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.data import update
from flipgate.evaluate import evaluate, wall_times
from flipgate.io import write_json
from flipgate.report.show import results_table


def main() -> None:
    data_dir, root = sys.argv[1], Path(sys.argv[2])
    names = sys.argv[3:] or sorted(p.name for p in root.iterdir() if p.is_dir())
    labels, num_old = update.load_labels(data_dir)
    metrics = evaluate({n: root / n for n in names}, num_old_labels=num_old if num_old < len(labels) else None)
    metrics["wall_time_s"] = wall_times()
    write_json(metrics, "reports/metrics.json")
    stage.log.info("results on the regression set:\n%s", results_table(metrics))


if __name__ == "__main__":
    stage.run("evaluate", main, sections=("base",), metrics=("reports/metrics.json",), artifacts=("reports/metrics.json",))
