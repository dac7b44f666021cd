"""Wall time of `flipgate gate` end to end (a subprocess: interpreter start, imports, reads, join, decision).

Writes a baseline and a candidate predictions parquet per size (id, label, pred, logits of 3 classes)
to a temp dir, then times the command twice: candidate rows in the baseline's order (the usual case:
both predicted from one regression file) and shuffled (the id join does real work).

    .venv/bin/python benchmarks/bench_gate.py                      # 100k and 10M rows, 3 runs each
    .venv/bin/python benchmarks/bench_gate.py --sizes 100000 --runs 5

Goals: < 3 s at 100k rows, < 15 s at 10M rows. Peak RSS is the largest of any run so far.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CLASSES = 3
GOALS = {100_000: 3.0, 10_000_000: 15.0}


def predictions(ids: pa.Array, labels: np.ndarray, pred: np.ndarray, rng: np.random.Generator) -> pa.Table:
    logits = rng.standard_normal(len(pred) * CLASSES, dtype=np.float32)
    offsets = pa.array(np.arange(0, len(logits) + 1, CLASSES, dtype=np.int32))
    return pa.table(
        {"id": ids, "label": labels, "pred": pred, "logits": pa.ListArray.from_arrays(offsets, pa.array(logits))}
    )


def write_files(n: int, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Baseline ~90% accurate; candidate ~91% with ~0.45% negative flips, in order and shuffled."""
    rng = np.random.default_rng(seed)
    # large_string ids, as flipgate.predictions.predictions_frame writes them
    ids = pc.binary_join_element_wise("reg-", pc.cast(pa.array(np.arange(n)), pa.string()), "")
    ids = pc.cast(ids, pa.large_string())
    labels = rng.integers(0, CLASSES, n)
    wrong = (labels + 1) % CLASSES
    base = np.where(rng.random(n) < 0.90, labels, wrong)
    cand = np.where(rng.random(n) < 0.15, labels, base)  # fixes some errors
    cand = np.where((base == labels) & (rng.random(n) < 0.005), wrong, cand)  # breaks ~0.45%
    paths = {name: folder / f"{name}_{n}.parquet" for name in ("baseline", "same order", "shuffled")}
    pq.write_table(predictions(ids, labels, base, rng), paths["baseline"])
    pq.write_table(predictions(ids, labels, cand, rng), paths["same order"])
    perm = rng.permutation(n)
    pq.write_table(predictions(ids.take(perm), labels[perm], cand[perm], rng), paths["shuffled"])
    return paths


def gate_command(base: Path, cand: Path) -> list[str]:
    exe = Path(sys.executable).parent / "flipgate"
    return [str(exe), "gate", "--baseline", str(base), "--candidate", str(cand)]


def time_run(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1, 2):
        raise SystemExit(f"gate failed ({proc.returncode}): {proc.stderr}")
    return wall, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_gate.") as tmp:
        for n in args.sizes:
            paths = write_files(n, Path(tmp))
            for order in ("same order", "shuffled"):
                base, cand = paths["baseline"], paths[order]
                size_mb = (base.stat().st_size + cand.stat().st_size) / 2**20
                walls, rc = zip(*(time_run(gate_command(base, cand)) for _ in range(args.runs)))
                rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                goal = GOALS.get(n)
                verdict = "" if goal is None else ("ok" if statistics.median(walls) < goal else "SLOW")
                rows.append((n, order, size_mb, statistics.median(walls), min(walls), rss_mb, rc[0], goal, verdict))
            for path in paths.values():
                path.unlink()  # keep the temp dir small before the next size
    print(f"{'rows':>12} {'candidate':>10} {'files MiB':>10} {'median s':>9} {'min s':>7} {'peak RSS MiB':>13} "
          f"{'exit':>5} {'goal s':>7}")
    for n, order, size_mb, med, low, rss, rc, goal, verdict in rows:
        print(f"{n:>12,} {order:>10} {size_mb:>10.1f} {med:>9.2f} {low:>7.2f} {rss:>13.0f} {rc:>5} "
              f"{goal or '':>7} {verdict}")
    print(f"\n{os.cpu_count()} CPU(s); reproduce: {os.path.relpath(sys.executable)} benchmarks/bench_gate.py "
          f"--sizes {' '.join(map(str, args.sizes))} --runs {args.runs}")


if __name__ == "__main__":
    main()
