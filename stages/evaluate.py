"""Stage `evaluate`: metrics of every model against old -> the run's reports/metrics.json (DVC metrics).

Usage: python stages/evaluate.py DATA_DIR [MODEL ...] [--run seeds/<seed> --seed <seed>]
MODEL: folders of the run's predictions/ (default: every one); wall times: the run's reports/timings.
"""

import sys

from flipgate import stage
from flipgate.data import update
from flipgate.evaluate import evaluate, wall_times
from flipgate.io import write_json
from flipgate.params import read_params
from flipgate.provenance import snapshot
from flipgate.report.show import results_table


def main() -> None:
    data_dir, run = sys.argv[1], stage.current()
    root = run.predictions
    names = sys.argv[2:] or sorted(p.name for p in root.iterdir() if p.is_dir())
    labels, num_old = update.load_labels(data_dir)
    metrics = evaluate({n: root / n for n in names}, num_old_labels=num_old if num_old < len(labels) else None)
    metrics["seed"] = run.seed
    metrics["wall_time_s"] = wall_times(run.reports / "timings")
    metrics["provenance"] = snapshot(data_dir, read_params())
    write_json(metrics, run.reports / "metrics.json")
    stage.log.info("results on the regression set:\n%s", results_table(metrics))


if __name__ == "__main__":
    stage.run("evaluate", main, sections=("base",), metrics=("reports/metrics.json",), artifacts=("reports/metrics.json",))
