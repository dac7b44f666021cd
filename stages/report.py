"""Stage `report`: the report people read, rebuilt from predictions alone.

Usage: python stages/report.py PREDICTIONS_DIR DATA_DIR
Writes reports/report.md, reports/report.html (self-contained), reports/flips.parquet and reports/plots/.
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.report.build import build_report


def main() -> None:
    predictions, data = map(Path, sys.argv[1:3])
    build_report(predictions, data, "reports")


if __name__ == "__main__":
    stage.run("report", main, sections=(), artifacts=("reports/report.html", "reports/report.md"))
