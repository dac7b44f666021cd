"""What every stage script shares: logging set-up, one clear message on bad input, wall time, the
stage's nested MLflow run (params, metrics, artifacts) and, for the per-seed stages, the seed's run folder.

A per-seed stage is called with `--run seeds/<seed> --seed <seed>` (dvc.yaml's foreach over `seeds`);
it reads and writes models/, predictions/ and reports/ under that folder. Without --seed a stage uses
the project root and the first of `seeds`, so a stage script run by hand behaves as one run."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flipgate.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_USAGE,
    FlipgateError,
    UsageError,
    internal_error_line,
)
from flipgate.io import read_json, write_json

__all__ = ["FlipgateError", "Run", "current", "run", "log"]

# Set before stage scripts import transformers or mlflow (they import this module first).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no per-load weight report in stage logs
if not sys.stderr.isatty():  # logs, not a terminal: no "Loading weights" bars (training has its own rule)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

log = logging.getLogger("flipgate.stage")


@dataclass(frozen=True)
class Run:
    """One seed's run folder: <root>/models, <root>/predictions, <root>/reports."""

    root: Path
    seed: int

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


_current: Run | None = None


def current() -> Run:
    """The run this stage works in (set by run() from --run/--seed; defaults: "." and the first seed)."""
    global _current
    if _current is None:
        from flipgate.params import load_seeds

        _current = Run(Path("."), load_seeds()[0])
    return _current


def _take_run_options(argv: list[str]) -> tuple[list[str], Run | None]:
    """Remove --run DIR and --seed N from argv; return (the rest, the run when --seed was given)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--seed", type=int)
    usage = "per-seed stages take --run seeds/<seed> --seed <seed>"
    try:
        opts, rest = parser.parse_known_args(argv[1:])
    except argparse.ArgumentError as exc:
        raise UsageError(f"{exc} ({usage})") from None
    if opts.run is not None and opts.seed is None:
        raise UsageError(f"--run {opts.run} without --seed ({usage})")
    return [argv[0], *rest], (None if opts.seed is None else Run(opts.run or Path("."), opts.seed))


def _configure() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "alembic", "great_expectations", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(
    name: str,
    main: Callable[[], None],
    sections: Sequence[str] = ("base",),
    metrics: Sequence[str] = (),
    artifacts: Sequence[str] = (),
    track: bool = True,
    tables: Sequence[str] = (),
) -> None:
    """Run a stage's main(), write its wall time to <run>/reports/timings/<name>.json, then log the
    stage to MLflow: `sections` of params.yaml as params, the numeric leaves of the `metrics` JSON files
    as metrics, `artifacts` (files or folders) and `tables` (a flip ledger or a gate decision, shown as
    MLflow tables: tracking.StageRun.log_table_file); all are paths inside the run folder. On
    FlipgateError print one line and exit 3 (bad input; 64 for a wrong --run/--seed); on any other
    exception print one line, the traceback only with FLIPGATE_VERBOSE=1, and exit 70 (internal error).
    Outputs are written atomically, so nothing half-written stays behind."""
    global _current
    _configure()
    start = time.perf_counter()
    try:
        from flipgate.params import check_all

        # The whole params file, by every stage: whichever stage DVC runs first fails in seconds on any bad
        # key (and DVC expands a bad seed list, e.g. a repeated seed, silently).
        check_all()
        sys.argv, given = _take_run_options(sys.argv)
        if given is not None:
            _current = given
        seeded = given is not None
        here = current()
        main()
        seconds = time.perf_counter() - start
        timing = here.reports / "timings" / f"{name}.json"
        write_json({"stage": name, "seed": here.seed, "wall_time_s": round(seconds, 2)}, timing)
        log.info("%s done in %.1f s", f"{name}@{here.seed}" if seeded else name, seconds)
        if track:  # a stage that opens its own MLflow run (promote) passes track=False
            _track(f"{name}@{here.seed}" if seeded else name, here.seed, sections,
                   [*(str(here.root / m) for m in metrics), str(timing)], [str(here.root / a) for a in artifacts],
                   [str(here.root / t) for t in tables])
    except UsageError as exc:
        _exit(f"{name}: error: {exc}", EXIT_USAGE)
    except FlipgateError as exc:
        _exit(f"{name}: error: {exc}", EXIT_BAD_INPUT)
    except Exception as exc:
        if os.environ.get("FLIPGATE_VERBOSE", "") not in ("", "0"):
            traceback.print_exc()
        _exit(internal_error_line(name, exc, rerun="rerun with FLIPGATE_VERBOSE=1"), EXIT_INTERNAL)


def _exit(line: str, code: int) -> None:
    print(line, file=sys.stderr)
    sys.exit(code)


def _track(name: str, seed: int, sections: Sequence[str], metrics: Sequence[str], artifacts: Sequence[str],
           tables: Sequence[str] = ()) -> None:
    from flipgate.params import load_section

    trk = load_section("tracking")
    if not trk.enabled:
        return
    from flipgate import tracking  # mlflow is imported only here

    params = {"seed": seed, **{s: load_section(s) for s in sections}}
    with tracking.stage_run(name, params, uri=trk.uri, experiment=trk.experiment) as mlrun:
        for path in metrics:
            if Path(path).exists():
                mlrun.log_metrics(read_json(path))
        for path in artifacts:
            mlrun.log_artifact(path, missing_ok=True)
        for path in tables:
            mlrun.log_table_file(path, missing_ok=True)
