"""Wall time of the data validation suite on 100k rows, and the import cost of great_expectations.

Run: python benchmarks/bench_validate.py [--rows 100000] [--repeats 3]
Rows are split 60/20/20 over D_old, D_new and D_reg (synthetic reviews, 2 labels, all checks pass,
so the timing is the common case). The import cost is measured in a fresh interpreter each time.
"""

import argparse
import logging
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from flipgate.data.validate import validate_update

IMPORT_SNIPPET = "import time; t = time.perf_counter(); import great_expectations; print(time.perf_counter() - t)"


def synthetic(prefix: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    words = np.array("the a film movie plot actor good bad slow funny dull sharp long short story ending".split())
    lengths = rng.integers(5, 40, n)
    texts = [f"{prefix}{i} " + " ".join(rng.choice(words, k)) for i, k in enumerate(lengths)]
    ids = pd.Series([f"{prefix}{i}" for i in range(n)], dtype="string")
    return pd.DataFrame({"id": ids, "text": texts, "label": rng.integers(0, 2, n).astype("int64")})


def import_seconds(repeats: int) -> list[float]:
    cmd = [sys.executable, "-c", IMPORT_SNIPPET]
    return [float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout) for _ in range(repeats)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    imports = import_seconds(args.repeats)
    rng = np.random.default_rng(0)
    n_old, n_new = int(args.rows * 0.6), int(args.rows * 0.2)
    old, new = synthetic("o", n_old, rng), synthetic("n", n_new, rng)
    n_dev = int(args.rows * 0.05)
    dev = synthetic("d", n_dev, rng)
    reg = synthetic("r", args.rows - n_old - n_new - n_dev, rng)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = validate_update(old, new, reg, dev=dev, old_labels=[0, 1])
        times.append(time.perf_counter() - start)
        assert result.success, [c.summary() for c in result.failures]
    print(f"rows: {args.rows} (old {len(old)}, new {len(new)}, dev {len(dev)}, regression {len(reg)}), checks: {len(result.checks)}")
    print(f"validate_update wall time: median {statistics.median(times):.2f} s, runs {_round(times)} (goal < 10 s)")
    print(f"import great_expectations (fresh interpreter): median {statistics.median(imports):.2f} s, runs {_round(imports)}")


def _round(xs: list[float]) -> list[float]:
    return [round(x, 2) for x in xs]


if __name__ == "__main__":
    main()
