"""Stage `report`: the report people read, rebuilt from predictions alone.

Usage: python stages/report.py DATA_DIR
Reads every seed's run folder (seeds/<seed>/, params.yaml `seeds`; per-example parts from the first) and
writes reports/report.md, reports/report.html (self-contained), reports/flips.parquet, reports/plots/ and,
with several seeds, reports/seeds.json (mean +- std per model).
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.report.build import build_report
from flipgate.report.cli import pipeline_sources


def main() -> None:
    predictions, runs, context = pipeline_sources()
    build_report(predictions, Path(sys.argv[1]), "reports", runs=runs, context=context)


if __name__ == "__main__":
    stage.run("report", main, sections=(), artifacts=("reports/report.html", "reports/report.md"),
              tables=("reports/flips.parquet",))
