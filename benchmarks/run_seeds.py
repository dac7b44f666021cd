"""Run the whole comparison over several seeds in a workspace of its own and print the mean +- std table.

Run: python benchmarks/run_seeds.py --seeds 0 1 2 [--config configs/massive.yaml] [--out runs/NAME]
The workspace OUT is a copy of dvc.yaml, stages/, src/ and params.yaml (with --config merged in and
`seeds` set) in its own git + DVC repo; `dvc repro` runs there (every seed through dvc.yaml's foreach
stages, then the report over all of them), so the project's own outputs are untouched and the run stays
reproducible. Rerunning with more seeds trains only the new ones. Prints the tables (`flipgate show`)
and the wall time: the repro's and, per seed, the sum of its stages'.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from flipgate.evaluate import wall_times
from flipgate.report.aggregate import mean_std

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


def workspace(ws: Path, params: dict) -> Path:
    ws.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", ws / "dvc.yaml")
    for folder in ("stages", "userdata", "src"):
        shutil.copytree(ROOT / folder, ws / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
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
    ap.add_argument("--only", nargs="+", metavar="STAGE", help="repro only these stages (and what they need), e.g. train_old@0")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.config:
        params = absolutise(merge(params, yaml.safe_load(args.config.read_text())))
    params["seeds"] = args.seeds
    ws = workspace(args.out, params)
    # The workspace's own copy of src/ is imported, so editing the project meanwhile changes nothing here.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str((ws / "src").resolve()),
           "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", *(args.only or [])], cwd=ws, env=env, check=True)
    wall = time.perf_counter() - start
    if args.only:
        print(f"dvc repro {' '.join(args.only)}: {wall:.0f} s in {ws}")
        return
    subprocess.run([sys.executable, "-m", "flipgate.cli", "show"], cwd=ws, env=env, check=True)
    per_seed = {s: sum(wall_times(ws / "seeds" / str(s) / "reports" / "timings").values()) for s in args.seeds}
    spread = mean_std(list(per_seed.values()))
    print(f"\ndvc repro: {wall:.0f} s; per seed (sum of its stages): "
          + ", ".join(f"seed {s} {t:.0f} s" for s, t in per_seed.items())
          + f"; mean {spread['mean']:.0f} ± {spread['std']:.0f} s")
    print(f"report: {ws / 'reports' / 'report.html'}")
    cfg = f" --config {args.config}" if args.config else ""
    print(f"reproduce: python benchmarks/run_seeds.py --seeds {' '.join(map(str, args.seeds))}{cfg} --out {args.out}")


if __name__ == "__main__":
    main()
