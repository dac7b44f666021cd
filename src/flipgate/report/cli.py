"""`flipgate report`: rebuild report.{md,html}, flips.parquet and plots/ from predictions alone (no model
runs; torch is never imported). With no flags, inside a flipgate project: the pipeline's runs
(seeds/<seed>/ for each of params.yaml's `seeds`; per-example parts from the first), as the report stage
does. With --runs, the mean +- std table over those run folders (or their metrics.json files); the
per-example parts then come from the first run folder that holds predictions/, unless --predictions is given."""

from __future__ import annotations

import argparse
from pathlib import Path

from flipgate.errors import FlipgateError

DEFAULT_PREDICTIONS, DEFAULT_DATA, SEEDS_DIR = Path("predictions"), Path("data/update"), Path("seeds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.add_argument("--predictions", type=Path, help="folder of <model>/{dev,regression}.parquet "
                                                     "(default: the first seed's, seeds/<seed>/predictions)")
    p.add_argument("--data", type=Path, help="the update stage's folder with labels.json and regression.parquet "
                                              "(default: data/update)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where the report is written (default: reports)")
    p.add_argument("--runs", type=Path, nargs="+", default=[], metavar="DIR",
                   help="run folders of several seeds (each with reports/metrics.json) or metrics.json files")
    p.add_argument("--candidate", help="the model to plot beside new (default: gate.json's, else select.json's)")
    p.add_argument("--top", type=int, default=20, help="negative flips listed per model (default 20)")
    p.add_argument("--ci-level", type=float, default=0.95, help="level of the NFR intervals (default 0.95)")


def pipeline_runs(params: str | Path = "params.yaml", root: Path = SEEDS_DIR) -> list[Path]:
    """The pipeline's run folders, one per seed of params.yaml (the first is the primary run)."""
    from flipgate.params_file import load_seeds

    return [root / str(seed) for seed in load_seeds(params)]


def pipeline_sources(reports: Path = Path("reports")) -> tuple[Path, list[Path], list[Path]]:
    """(predictions, runs to aggregate, context folders) of the pipeline's report: the first seed's
    predictions; every seed's run folder when there are several; the first seed's reports, then `reports`."""
    runs = pipeline_runs()
    first = runs[0]
    if not (first / "predictions").is_dir():
        raise FlipgateError(f"{first / 'predictions'}: not found; run `dvc repro` first, or pass --predictions")
    return first / "predictions", runs if len(runs) > 1 else [], [first / "reports", reports]


def pipeline_report(data: Path, reports: Path = Path("reports")) -> dict[str, Path]:
    """The report stage: the pipeline's report (pipeline_sources) built and written under `reports`."""
    from flipgate.report.build import build_report

    predictions, runs, context = pipeline_sources(reports)
    return build_report(predictions, data, reports, runs=runs, context=context)


def sources(args: argparse.Namespace) -> tuple[Path, Path, list[Path], list[Path]]:
    """(predictions, data, runs, context folders) from the flags; see the module docstring."""
    runs = list(args.runs)
    if not runs and args.predictions is None and Path("params.yaml").is_file():
        predictions, runs, context = pipeline_sources(args.reports)
        return predictions, args.data or DEFAULT_DATA, runs, context
    if args.predictions is None:
        for run in runs:
            if (run / "predictions").is_dir():
                data = args.data or (run / DEFAULT_DATA if (run / DEFAULT_DATA).is_dir() else DEFAULT_DATA)
                return run / "predictions", data, runs, [run / "reports", args.reports]
    return args.predictions or DEFAULT_PREDICTIONS, args.data or DEFAULT_DATA, runs, [args.reports]


def run(args: argparse.Namespace) -> int:
    from flipgate.report.build import build_report

    predictions, data, runs, context = sources(args)
    build_report(predictions, data, args.reports, runs=runs, candidate=args.candidate, top=args.top,
                 level=args.ci_level, context=context)  # logs the paths it wrote
    return 0
