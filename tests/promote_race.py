"""Two real processes promoting against one store at the same moment (used by test_registry.py).

`race(uri, jobs_a, jobs_b)` starts two spawned processes (no fork: the parent holds MLflow and torch
threads); both open the store after a shared barrier, then run their jobs in lockstep, one barrier per job,
so each pair of promotions starts together. A job is (registered name, candidate folder, baseline folder).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import traceback
from pathlib import Path
from typing import Any

TIMEOUT_S = 300


def _worker(uri: str, jobs: list[tuple[str, str, str]], barrier, out: str) -> None:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    results: dict[str, Any] = {"open": None, "promotions": []}
    try:
        from flipgate import tracking
        from flipgate.gate import registry

        barrier.wait(TIMEOUT_S)
        try:
            tracking.connect(uri).search_experiments(max_results=1)
            results["open"] = "ok"
        except Exception as exc:  # the failure under test: record it, do not hide it
            results["open"] = f"{type(exc).__name__}: {exc}"
        for name, candidate, baseline in jobs:
            barrier.wait(TIMEOUT_S)
            decision = {"verdict": "pass", "candidate": Path(candidate).name, "metrics": {"nfr": 0.0}}
            try:
                p = registry.promote(candidate, decision, name, regression_hash="r1", baseline_folder=baseline,
                                     tracking_uri=uri)
                results["promotions"].append(p.to_dict())
            except Exception as exc:
                results["promotions"].append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
    except Exception:
        results["crash"] = traceback.format_exc()
        barrier.abort()
    Path(out).write_text(json.dumps(results))


def race(uri: str, jobs_a: list, jobs_b: list, tmp: Path) -> tuple[dict, dict]:
    """Run both job lists in two processes; each side's {"open": ..., "promotions": [...]}."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp / "race-a.json", tmp / "race-b.json"]
    procs = [ctx.Process(target=_worker, args=(uri, [tuple(map(str, j)) for j in jobs], barrier, str(out)))
             for jobs, out in zip((jobs_a, jobs_b), outs, strict=True)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT_S * (len(jobs_a) + 2))
        if p.is_alive():
            p.kill()
            p.join()
    return tuple(json.loads(out.read_text()) if out.exists() else {"crash": f"no output (exit {p.exitcode})"}
                 for out, p in zip(outs, procs, strict=True))
