"""`flipgate report`: rebuild report.{md,html}, flips.parquet and plots/ from predictions alone (no model
runs; torch is never imported). With --runs, also the mean +- std table over several seeds' run folders
(or their metrics.json files); the per-example parts then come from the first run folder that holds
predictions/, unless --predictions is given."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PREDICTIONS, DEFAULT_DATA = Path("predictions"), Path("data/update")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.add_argument("--predictions", type=Path, help="folder of <model>/{dev,regression}.parquet (default: predictions)")
    p.add_argument("--data", type=Path, help="the update stage's folder with labels.json and regression.parquet "
                                              "(default: data/update)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where the report is written (default: reports)")
    p.add_argument("--runs", type=Path, nargs="+", default=[], metavar="DIR",
                   help="run folders of several seeds (each with reports/metrics.json) or metrics.json files")
    p.add_argument("--candidate", help="the model to plot beside new (default: gate.json's, else select.json's)")
    p.add_argument("--top", type=int, default=20, help="negative flips listed per model (default 20)")
    p.add_argument("--ci-level", type=float, default=0.95, help="level of the NFR intervals (default 0.95)")


def sources(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(predictions, data, context): the flags; with --runs and no --predictions, the first run folder
    holding predictions/ supplies all three (its reports/ is the context: gate.json, bcwi_curve.png...)."""
    if args.predictions is None:
        for run in args.runs:
            if (run / "predictions").is_dir():
                return run / "predictions", args.data or run / DEFAULT_DATA, run / "reports"
    return args.predictions or DEFAULT_PREDICTIONS, args.data or DEFAULT_DATA, args.reports


def run(args: argparse.Namespace) -> int:
    from flipgate.report.build import build_report

    predictions, data, context = sources(args)
    build_report(predictions, data, args.reports, runs=args.runs, candidate=args.candidate, top=args.top,
                 level=args.ci_level, context=context)  # logs the paths it wrote
    return 0
