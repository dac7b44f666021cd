"""Run the whole pipeline once per seed, each in its own workspace, then aggregate a report.

Run: python benchmarks/run_seeds.py --seeds 0 1 2 [--config configs/massive.yaml] [--out runs/NAME]
Each workspace (OUT/seed-N) is a copy of dvc.yaml, stages/ and params.yaml (with --config merged in and
base.seed = N) in its own git + DVC repo; `dvc repro` runs there, so runs never overwrite each other and
each stays reproducible. Prints the mean +- std table and the wall time per seed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def absolutise(params: dict) -> dict:
    files = (params.get("data") or {}).get("files")
    if files:
        for key, value in files.items():
            files[key] = [str((ROOT / v).resolve()) for v in value] if isinstance(value, list) else str((ROOT / value).resolve())
    return params


def workspace(out: Path, params: dict, seed: int) -> Path:
    ws = out / f"seed-{seed}"
    ws.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", ws / "dvc.yaml")
    shutil.copytree(ROOT / "stages", ws / "stages", dirs_exist_ok=True)
    shutil.copytree(ROOT / "userdata", ws / "userdata", dirs_exist_ok=True)
    shutil.copytree(ROOT / "src", ws / "src", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    params = merge(params, {"base": {"seed": seed}})
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (ws / ".git").exists():
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
            subprocess.run(cmd, cwd=ws, check=True)
    return ws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", type=Path, help="params overrides (e.g. configs/massive.yaml)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "default")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.config:
        params = absolutise(merge(params, yaml.safe_load(args.config.read_text())))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    walls = {}
    for seed in args.seeds:
        ws = workspace(args.out, params, seed)
        start = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=ws, env=env, check=True)
        walls[seed] = time.perf_counter() - start
        print(f"seed {seed}: dvc repro {walls[seed]:.0f} s", flush=True)
    runs = [args.out / f"seed-{s}" for s in args.seeds]
    subprocess.run([sys.executable, "-m", "flipgate.cli", "report", "--runs", *map(str, runs),
                    "--reports", str(args.out / "reports")], check=True, env=env)
    (args.out / "walls.json").write_text(json.dumps(walls, indent=2))
    cfg = f" --config {args.config}" if args.config else ""
    print(f"reproduce: python benchmarks/run_seeds.py --seeds {' '.join(map(str, args.seeds))}{cfg} --out {args.out}")


if __name__ == "__main__":
    main()
