"""Stage `evaluate`: metrics of every model against old -> the run's reports/metrics.json (DVC metrics).

Usage: python stages/evaluate.py DATA_DIR [MODEL ...] [--run seeds/<seed> --seed <seed>]
MODEL: folders of the run's predictions/ (default: every one; a folder holding off.json, a method switched
off in params.yaml, is skipped); wall times: the run's reports/timings.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.evaluate import run_stage


def main(run: stage.Run) -> None:
    data_dir, *models = run.args
    run_stage(run, Path(data_dir), models, run.section("data"))


if __name__ == "__main__":
    stage.run("evaluate", main, sections=("base",), metrics=("reports/metrics.json",),
              artifacts=("reports/metrics.json",), args=("DATA_DIR", "..."))
