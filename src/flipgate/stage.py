"""What every stage script shares: logging set-up, one clear message on bad input, wall time, the
stage's nested MLflow run (params, metrics, artifacts) and, for the per-seed stages, the seed's run folder.

A stage script is `main(run)` plus `stage.run(name, main, ...)`: `run` is a `Run` (the run folder, the seed,
the command line's positional arguments and the params file's sections, each checked once), handed in as
an argument; nothing is kept in module state and sys.argv is left as it is.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flipgate.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_USAGE,
    FlipgateError,
    UsageError,
    internal_error_line,
)
from flipgate.io import read_json, write_json

if TYPE_CHECKING:
    from flipgate.params import Section

__all__ = ["FlipgateError", "Run", "run", "log"]

# Set before stage scripts import transformers or mlflow (they import this module first).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no per-load weight report in stage logs
if not sys.stderr.isatty():  # logs, not a terminal: no "Loading weights" bars (training has its own rule)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

log = logging.getLogger("flipgate.stage")


@dataclass(frozen=True)
class Run:
    """One stage run: the seed's run folder (<root>/models, <root>/predictions, <root>/reports), its seed,
    the command line's positional arguments (--run and --seed taken out) and every section of params.yaml,
    validated once (`params_file.check_all`) before the stage's main runs."""

    root: Path
    seed: int
    args: tuple[str, ...] = ()
    params: Mapping[str, Section] = field(default_factory=dict, compare=False, repr=False)
    per_seed: bool = False  # --seed was given: the stage is `<name>@<seed>` (a dvc.yaml foreach stage)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def section(self, name: str) -> Any:
        """params.yaml's section `name` as its typed, frozen model (flipgate.params)."""
        return self.params[name]


def parse_run(argv: Sequence[str], params: Mapping[str, Section], args: Sequence[str] | None = None) -> Run:
    """The Run of a command line (argv without the script): --run DIR and --seed N taken out, the rest the
    positional arguments. `args` names them for the usage line (a trailing `...` takes any number more, a
    name in brackets is optional); None takes them as given. Raises UsageError for a wrong command line."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--seed", type=int)
    usage = "per-seed stages take --run seeds/<seed> --seed <seed>"
    try:
        opts, rest = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise UsageError(f"{exc} ({usage})") from None
    if opts.run is not None and opts.seed is None:
        raise UsageError(f"--run {opts.run} without --seed ({usage})")
    if args is not None:
        _check_args(rest, args)
    if opts.seed is None:
        from flipgate.params_file import load_seeds

        return Run(Path("."), load_seeds()[0], tuple(rest), params)
    return Run(opts.run or Path("."), opts.seed, tuple(rest), params, per_seed=True)


def _check_args(given: Sequence[str], names: Sequence[str]) -> None:
    required = [n for n in names if not n.startswith("[") and n != "..."]
    most = None if "..." in names else len(names)
    options = [a for a in given if a.startswith("--")]
    if options or len(given) < len(required) or (most is not None and len(given) > most):
        why = f"unknown option {options[0]}" if options else f"expected {' '.join(names) or 'no arguments'}"
        raise UsageError(f"{why}, got {len(given)} argument(s)")


def _configure() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "alembic", "great_expectations", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(
    name: str,
    main: Callable[[Run], None],
    sections: Sequence[str] = ("base",),
    metrics: Sequence[str] = (),
    artifacts: Sequence[str] = (),
    track: bool = True,
    tables: Sequence[str] = (),
    args: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Run a stage's main(run), write its wall time to <run>/reports/timings/<name>.json, then log the
    stage to MLflow: `sections` of params.yaml as params, the numeric leaves of the `metrics` JSON files
    as metrics, `artifacts` (files or folders) and `tables` (a flip ledger or a gate decision, shown as
    MLflow tables: tracking.StageRun.log_table_file); all are paths inside the run folder. `args` names
    the positional arguments (see parse_run); `argv` defaults to sys.argv[1:], which is only read.
    On FlipgateError print one line and exit 3 (bad input; 64 for a wrong command line); on any other
    exception print one line, the traceback only with FLIPGATE_VERBOSE=1, and exit 70 (internal error).
    Outputs are written atomically, so nothing half-written stays behind."""
    _configure()
    start = time.perf_counter()
    try:
        from flipgate.params_file import check_all

        # The whole params file, by every stage: whichever stage DVC runs first fails in seconds on any bad
        # key (and DVC expands a bad seed list, e.g. a repeated seed, silently).
        params = check_all()
        here = parse_run(sys.argv[1:] if argv is None else argv, params, args)
        main(here)
        seconds = time.perf_counter() - start
        timing = here.reports / "timings" / f"{name}.json"
        write_json({"stage": name, "seed": here.seed, "wall_time_s": round(seconds, 2)}, timing)
        label = f"{name}@{here.seed}" if here.per_seed else name
        log.info("%s done in %.1f s", label, seconds)
        if track:  # a stage that opens its own MLflow run (promote) passes track=False
            _track(label, here, sections, [*(str(here.root / m) for m in metrics), str(timing)],
                   [str(here.root / a) for a in artifacts], [str(here.root / t) for t in tables])
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


def _track(name: str, here: Run, sections: Sequence[str], metrics: Sequence[str], artifacts: Sequence[str],
           tables: Sequence[str] = ()) -> None:
    trk = here.section("tracking")
    if not trk.enabled:
        return
    from flipgate import tracking  # mlflow is imported only here

    params = {"seed": here.seed, **{s: here.section(s) for s in sections}}
    with tracking.stage_run(name, params, uri=trk.uri, experiment=trk.experiment) as mlrun:
        for path in metrics:
            if Path(path).exists():
                mlrun.log_metrics(read_json(path))
        for path in artifacts:
            mlrun.log_artifact(path, missing_ok=True)
        for path in tables:
            mlrun.log_table_file(path, missing_ok=True)
