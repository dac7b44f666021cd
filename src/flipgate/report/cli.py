"""`flipgate report`: rebuild reports/report.{md,html}, reports/flips.parquet and reports/plots from
predictions alone (no model runs; torch is never imported). With --runs, also the mean +- std table
over several seeds' run folders (or their metrics.json files)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.add_argument("--predictions", type=Path, default=Path("predictions"), help="folder of predictions/<model>/")
    p.add_argument("--data", type=Path, default=Path("data/update"),
                   help="the update stage's folder: labels.json and regression.parquet")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where the report is written")
    p.add_argument("--runs", type=Path, nargs="+", default=[], metavar="DIR",
                   help="run folders of several seeds (each with reports/metrics.json) or metrics.json files")
    p.add_argument("--candidate", help="the model to plot beside new (default: reports/gate.json's, else select.json's)")
    p.add_argument("--top", type=int, default=20, help="negative flips listed per model (default 20)")
    p.add_argument("--ci-level", type=float, default=0.95, help="level of the NFR intervals (default 0.95)")


def run(args: argparse.Namespace) -> int:
    from flipgate.report.build import build_report

    build_report(args.predictions, args.data, args.reports, runs=args.runs, candidate=args.candidate,
                 top=args.top, level=args.ci_level)  # logs the paths it wrote
    return 0
