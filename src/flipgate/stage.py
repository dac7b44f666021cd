"""What every stage script shares: logging set-up, one clear message on bad input, wall time, and the
stage's nested MLflow run (params, metrics, artifacts)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from flipgate.errors import FlipgateError
from flipgate.io import read_json, write_json

__all__ = ["FlipgateError", "run", "log"]

# Set before stage scripts import transformers or mlflow (they import this module first).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no per-load weight report in stage logs

log = logging.getLogger("flipgate.stage")


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
    timings_dir: str | Path = "reports/timings",
    track: bool = True,
) -> None:
    """Run a stage's main(), write its wall time to reports/timings/<name>.json, then log the stage to
    MLflow: `sections` of params.yaml as params, the numeric leaves of the `metrics` JSON files as
    metrics, and `artifacts` (files or folders). On FlipgateError print one line and exit 1; outputs are
    written atomically, so nothing half-written stays behind."""
    _configure()
    start = time.perf_counter()
    try:
        main()
        seconds = time.perf_counter() - start
        timing = Path(timings_dir) / f"{name}.json"
        write_json({"stage": name, "wall_time_s": round(seconds, 2)}, timing)
        log.info("%s done in %.1f s", name, seconds)
        if track:  # a stage that opens its own MLflow run (promote) passes track=False
            _track(name, sections, [*metrics, str(timing)], artifacts)
    except FlipgateError as exc:
        sys.exit(f"{name}: error: {exc}")


def _track(name: str, sections: Sequence[str], metrics: Sequence[str], artifacts: Sequence[str]) -> None:
    from flipgate.params import load_section

    trk = load_section("tracking")
    if not trk.enabled:
        return
    from flipgate import tracking  # mlflow is imported only here

    params = {s: load_section(s) for s in sections}
    with tracking.stage_run(name, params, uri=trk.uri, experiment=trk.experiment) as mlrun:
        for path in metrics:
            if Path(path).exists():
                mlrun.log_metrics(read_json(path))
        for path in artifacts:
            mlrun.log_artifact(path, missing_ok=True)
