"""What every stage script shares: logging set-up, one clear message on bad input, wall time."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flipgate.errors import FlipgateError
from flipgate.io import write_json

__all__ = ["FlipgateError", "run", "log"]

log = logging.getLogger("flipgate.stage")


def run(name: str, main: Callable[[], None], timings_dir: str | Path = "reports/timings") -> None:
    """Run a stage's main(): log its wall time to reports/timings/<name>.json; on FlipgateError print
    one line and exit 1 (outputs are written atomically, so nothing half-written stays behind)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no per-load weight report in stage logs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "alembic", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    start = time.perf_counter()
    try:
        main()
    except FlipgateError as exc:
        sys.exit(f"{name}: error: {exc}")
    seconds = time.perf_counter() - start
    write_json({"stage": name, "wall_time_s": round(seconds, 2)}, Path(timings_dir) / f"{name}.json")
    log.info("%s done in %.1f s", name, seconds)
