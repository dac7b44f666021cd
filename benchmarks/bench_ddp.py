"""Distributed training (HF Accelerate, DDP): the embedded default's old model trained by 1 process and by
N processes on this machine at the same global batch (params.yaml's train_old, batch_size 32), compared:
wall time, training time (evaluation excluded) per epoch, epochs run and kept, dev and regression
accuracy, and whether the two predictions tables hold exactly the same ids, each once.

Run (the split is data/update after `dvc repro -s update`; without it the update stage's code builds it
from params.yaml's data and update sections into --out):
  nice -n 19 python benchmarks/bench_ddp.py --processes 2 --seeds 0 1 2 --out runs/bench_ddp --json reports/bench_ddp.json
Two runs of one seed differ by more than the processes do (dropout masks and float sums differ, and the
adaptive schedule's kept epoch follows dev's noise), so with several seeds the comparison is of the
means, beside the spread of one process over seeds.
--epochs N trains exactly N epochs instead of train_old's schedule (`epochs: auto`: up to max_epochs,
best dev epoch kept). On CPU the N processes get cores / N threads each (one process gets them all); on
GPUs, one GPU each. The N-process run is started with `accelerate launch` (flipgate.models.device.launch_argv),
as `train_old.processes: N` starts it in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.data import sources, update
from flipgate.io import write_json
from flipgate.models.device import get_device, is_main_process, launch_argv, launched_processes
from flipgate.models.run import EVAL_SPLITS, fine_tune
from flipgate.models.train import TrainConfig
from flipgate.params_file import check_all



def split_folder(data: Path, out: Path) -> Path:
    """data/update when it is there, else the update stage's split built into <out>/data."""
    if (data / "labels.json").exists():
        return data
    built = out / "data"
    if not (built / "labels.json").exists():
        params = check_all()
        update.save(sources.compose_update(params["data"], params["update"]), built)
    return built


def worker(data: Path, out: Path, epochs: int | None, seed: int) -> None:
    """One training of old (this process's share under a launch); the main process writes summary.json."""
    params = check_all()
    base, hp = params["base"], params["train_old"]
    cfg = TrainConfig.from_schedule(hp, base.max_length, seed)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs, patience=None)
    import torch

    labels, _ = update.load_labels(data)
    start = time.perf_counter()
    summary = fine_tune(base.model, labels, update.load_split(data, "old"),
                        {s: update.load_split(data, s) for s in EVAL_SPLITS}, cfg, get_device(base.device),
                        out / "model", out / "predictions", base.eval_batch_size, {"role": "old", "seed": seed})
    if is_main_process():
        write_json({**summary, "processes": launched_processes(), "torch_threads": torch.get_num_threads(),
                    "fine_tune_seconds": round(time.perf_counter() - start, 2)}, out / "summary.json")


def train(processes: int, data: Path, out: Path, epochs: int | None, cpu: bool, seed: int) -> float:
    """Run the worker with `processes` processes; its wall time in seconds (start-up and model load included)."""
    args = ["--worker", "--data", str(data), "--out", str(out), "--seeds", str(seed)]
    args += ["--epochs", str(epochs)] if epochs else []
    script = str(Path(__file__).resolve())
    argv = [sys.executable, script, *args] if processes == 1 else launch_argv(script, args, processes, cpu)
    start = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, "CI": "true"}, check=False)
    if done.returncode:
        sys.exit(f"{processes} process(es): exit {done.returncode}")
    return time.perf_counter() - start


def compare(runs: dict[int, dict], out: Path) -> dict:
    one, many = sorted(runs)
    tables = {p: {s: pd.read_parquet(out / f"p{p}" / "predictions" / f"{s}.parquet") for s in EVAL_SPLITS} for p in runs}
    ids = {}
    for s in EVAL_SPLITS:
        a, b = tables[one][s], tables[many][s]
        ids[s] = {"rows": [len(a), len(b)], "unique": bool(a["id"].is_unique and b["id"].is_unique),
                  "same_ids": set(a["id"]) == set(b["id"]), "same_order": list(a["id"]) == list(b["id"]),
                  "prediction_agreement": round(float(np.mean(a["pred"].to_numpy() == b["pred"].to_numpy())), 4)}
    return ids


def summarise(s: dict, p: int, wall: float, default_batch: int) -> dict:
    epochs = s["epochs_run"]
    per_process = s["distributed"]["per_process_batch_size"] if "distributed" in s else default_batch
    return {"processes": p, "per_process_batch": per_process, "torch_threads": s["torch_threads"],
            "wall_s": round(wall, 1), "train_s": s["train_seconds"], "train_s_per_epoch": round(s["train_seconds"] / epochs, 1),
            "epochs_run": epochs, "kept_epoch": s["best_epoch"], "dev_acc": round(100 * s["dev_accuracy"], 2),
            "regression_acc": round(100 * s["regression_accuracy"], 2)}


def mean_std(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 2), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    ap.add_argument("--epochs", type=int, default=None, help="exactly N epochs (default: train_old's schedule)")
    ap.add_argument("--data", type=Path, default=Path("data/update"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench_ddp"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reuse-one", type=Path, default=None, metavar="JSON",
                    help="take the 1-process runs from an earlier result JSON (and their tables from --out) "
                         "instead of training them again: a change to the multi-process path only")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.data, a.out, a.epochs, a.seeds[0])
        return
    import torch

    params = check_all()
    device = params["base"].device
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    data = split_folder(a.data, a.out)
    batch = params["train_old"].batch_size
    per_seed = []
    for seed in a.seeds:
        out = a.out / f"seed{seed}" if len(a.seeds) > 1 else a.out
        runs, rows = {}, []
        for p in (1, a.processes):
            if p == 1 and a.reuse_one:
                earlier = {r["seed"]: r for r in json.loads(a.reuse_one.read_text())["seeds"]}
                runs[p] = json.loads((out / f"p{p}" / "summary.json").read_text())
                rows.append({**earlier[seed]["runs"][0], "reused_from": str(a.reuse_one)})
                continue
            wall = train(p, data, out / f"p{p}", a.epochs, cpu, seed)
            runs[p] = json.loads((out / f"p{p}" / "summary.json").read_text())
            rows.append(summarise(runs[p], p, wall, batch))
        one, many = rows
        per_seed.append({"seed": seed, "runs": rows, "ids": compare(runs, out),
                         "regression_acc_diff_points": round(many["regression_acc"] - one["regression_acc"], 2)})
        print(f"seed {seed}: " + "; ".join(f"{r['processes']} process(es) {r['regression_acc']} % "
                                          f"(kept epoch {r['kept_epoch']}, {r['wall_s']} s)" for r in rows), flush=True)
    across = {}
    for i, p in enumerate((1, a.processes)):
        across[str(p)] = {k: mean_std([s["runs"][i][k] for s in per_seed]) for k in ("regression_acc", "dev_acc", "wall_s", "train_s_per_epoch")}
    result = {
        "date": date.today().isoformat(), "command": " ".join(["python", "benchmarks/bench_ddp.py", *sys.argv[1:]]),
        "hardware": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
                    + (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if not cpu else ", no GPU used"),
        "global_batch": batch, "schedule": f"{a.epochs} epochs" if a.epochs else "train_old (auto)",
        "data": str(data), "seeds": per_seed, "across_seeds": across,
        "mean_regression_acc_diff_points": round(across[str(a.processes)]["regression_acc"]["mean"]
                                                 - across["1"]["regression_acc"]["mean"], 2),
    }
    cols = ["seed", *per_seed[0]["runs"][0]]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for s in per_seed:
        for r in s["runs"]:
            print("| " + " | ".join(str(s["seed"] if c == "seed" else r.get(c, "")) for c in cols) + " |")
        for split, v in s["ids"].items():
            print(f"seed {s['seed']} {split}: {v}")
    for p, figures in across.items():
        print(f"{p} process(es) over seeds {a.seeds}: " + ", ".join(f"{k} {v['mean']} +- {v['std']}" for k, v in figures.items()))
    print(f"mean regression accuracy, {a.processes} - 1 processes: {result['mean_regression_acc_diff_points']:+.2f} points")
    if a.json:
        write_json(result, a.json)


if __name__ == "__main__":
    main()
