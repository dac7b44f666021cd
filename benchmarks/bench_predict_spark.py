"""`flipgate predict --spark` against the plain `flipgate predict` on the embedded default's regression set.

Writes the regression set of params.yaml's split (embedded Rotten Tomatoes, `update` section: 2,000
sentences by default, the same rows `dvc repro update` writes to data/update/regression) to a jsonl,
then runs both commands as separate processes on it, each timed end to end (process start, model
load and, for Spark, the JVM included), and checks the issue's criterion: same ids, same preds,
logits within 1e-5; and that `flipgate gate` accepts the Spark folder against the plain table.

MODEL defaults to the embedded all-MiniLM-L6-v2 with a fresh 2-class head (seeded; the head is not
trained: throughput and equality do not depend on it); `--model` takes any model folder or models:/ URI.

    nice -n 19 .venv/bin/python benchmarks/bench_predict_spark.py                  # local[2], 2 parts
    nice -n 19 .venv/bin/python benchmarks/bench_predict_spark.py --model seeds/0/models/old --master 'local[2]'

Prints the figures and the commands; exits 1 when the predictions differ.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
FLIPGATE = str(Path(sys.executable).with_name("flipgate"))


def regression_set(params: Path):
    from flipgate import params_file as P
    from flipgate.data.sources import compose_update

    sections = P.check_all(params)
    return compose_update(sections["data"], sections["update"])


def fresh_head(folder: Path, labels: list[str]) -> Path:
    import torch

    from flipgate.models.classifier import load_classifier, save_classifier

    torch.manual_seed(0)
    model, tok = load_classifier("embedded", labels)
    save_classifier(model, tok, folder, {"labels": labels, "base": "embedded", "head": "fresh, untrained"})
    return folder


def timed(cmd: list[str]) -> tuple[float, str]:
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"exit {done.returncode}:\n{done.stderr[-3000:]}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("flipgate predict")), done.stdout.strip())
    print("  ", line, flush=True)
    return seconds, line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--model", help="a model folder or models:/ URI (default: embedded MiniLM, fresh head)")
    ap.add_argument("--master", default="local[2]", help="Spark master (default local[2]: 2 cores)")
    ap.add_argument("--partitions", type=int, help="part files / scoring tasks (default: Spark's parallelism)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tmp", type=Path, help="work folder (default: a temp folder, removed)")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from flipgate.predictions import logits_matrix, read_predictions

    with tempfile.TemporaryDirectory(prefix="flipgate-bench-spark-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        update = regression_set(args.params)
        regression = update.regression[["id", "text", "label"]]
        data = tmp / "regression.jsonl"
        regression.to_json(data, orient="records", lines=True)
        model = args.model or str(fresh_head(tmp / "model", [str(x) for x in update.labels]))
        common = ["--device", "cpu", "--batch-size", str(args.batch_size)]
        plain_out, spark_out = tmp / "plain.parquet", tmp / "spark"
        plain_s, plain_line = timed([FLIPGATE, "predict", model, str(data), str(plain_out), *common])
        spark_cmd = [FLIPGATE, "predict", "--spark", model, str(data), str(spark_out), *common,
                     "--spark-master", args.master]
        if args.partitions:
            spark_cmd += ["--partitions", str(args.partitions)]
        spark_s, spark_line = timed(spark_cmd)

        plain = read_predictions(plain_out)
        parts = sorted(p for p in spark_out.glob("part-*.parquet"))
        table = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
        got = table.set_index(table["id"].astype(str)).loc[plain["id"].astype(str)]
        same_ids = sorted(table["id"].astype(str)) == sorted(plain["id"].astype(str))
        same_preds = got["pred"].tolist() == plain["pred"].tolist()
        diff = float(np.abs(np.stack(got["logits"].to_numpy()).astype(np.float32) - logits_matrix(plain)).max())
        gate = subprocess.run([FLIPGATE, "gate", "--baseline", str(plain_out), "--candidate", str(spark_out),
                               "--nfr-budget", "0", "--min-gain", "0", "--allow-identical"],
                              capture_output=True, text=True)

        n = len(plain)
        in_cmd = [float(re.search(r"in ([\d.]+) s", line).group(1)) for line in (plain_line, spark_line)]
        scoring = re.search(r"scoring and writing ([\d.]+) s", spark_line)
        print()
        print(f"rows {n:,}; model {'embedded all-MiniLM-L6-v2, fresh head' if not args.model else model}; "
              f"Spark master {args.master}, {len(parts)} part file(s); cpu cores {os.cpu_count()}")
        print(f"plain predict : {plain_s:6.1f} s end to end ({n / plain_s:6.1f} rows/s); in the command {in_cmd[0]:.1f} s "
              f"({n / in_cmd[0]:.1f} rows/s)")
        print(f"predict --spark: {spark_s:6.1f} s end to end ({n / spark_s:6.1f} rows/s); in the command {in_cmd[1]:.1f} s"
              + (f", of which scoring and writing {scoring.group(1)} s ({n / float(scoring.group(1)):.1f} rows/s)"
                 if scoring else ""))
        print(f"throughput ratio spark / plain: {plain_s / spark_s:.2f}x end to end"
              + (f", {in_cmd[0] / float(scoring.group(1)):.2f}x scoring and writing against the whole plain command"
                 if scoring else ""))
        print(f"same ids {same_ids}; same preds {same_preds}; max |logit diff| {diff:.2e} (<= 1e-5: {diff <= 1e-5}); "
              f"gate exit {gate.returncode}: {gate.stdout.splitlines()[0] if gate.stdout else gate.stderr.strip()}")
        print("command:", shlex.join([sys.executable, *sys.argv]))
        ok = same_ids and same_preds and diff <= 1e-5 and gate.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
