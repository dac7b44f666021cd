"""Stage `report`: the report people read, rebuilt from predictions alone.

Usage: python stages/report.py DATA_DIR
Reads every seed's run folder (seeds/<seed>/, params.yaml `seeds`; per-example parts from the first) and
writes reports/report.md, reports/report.html (self-contained), reports/flips.parquet, reports/plots/ and,
with several seeds, reports/seeds.json (mean +- std per model).
"""

from pathlib import Path

from flipgate import stage
from flipgate.report.cli import pipeline_report


def main(run: stage.Run) -> None:
    (data_dir,) = run.args
    pipeline_report(Path(data_dir))


if __name__ == "__main__":
    stage.run("report", main, sections=(), artifacts=("reports/report.html", "reports/report.md"),
              tables=("reports/flips.parquet",), args=("DATA_DIR",))
