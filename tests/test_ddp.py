"""Distributed training with HF Accelerate, 2 CPU processes (gloo) against 1, on a tiny BERT built here.

The training loop and Gated Fusion's run unchanged under `accelerate launch`: each process trains
global batch / processes rows per step (measured by a forward hook in tests/ddp_worker.py), the
processes end with the same weights, the predictions (gathered with gather_for_metrics) hold every id
exactly once, and the figures match one process at the same global batch. The train stage re-launches
itself with `train_<role>.processes: 2`; only process 0 writes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import toy_frame
from flipgate.io import write_json, write_parquet
from flipgate.models.device import launch_argv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
GLOBAL_BATCH = 16  # ddp_worker.GLOBAL_BATCH
ENV = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}


def run(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def worker(model: Path, out: Path, mode: str, processes: int) -> list[dict]:
    """The worker alone (1) or under accelerate launch; each process's rank<r>.json."""
    args = [str(model), str(out), mode]
    run([sys.executable, str(WORKER), *args] if processes == 1 else launch_argv(str(WORKER), args, processes, cpu=True))
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def check_shards(ranks: list[dict], alone: dict) -> None:
    """Every process trained global batch / processes rows a step, in as many steps as one process; the
    processes' rows add up to one process's; and DDP kept their weights equal."""
    n = len(ranks)
    assert max(alone["batch_rows"]) == GLOBAL_BATCH
    for r in ranks:
        assert max(r["batch_rows"]) == GLOBAL_BATCH // n
        assert len(r["batch_rows"]) == len(alone["batch_rows"])
    assert sum(sum(r["batch_rows"]) for r in ranks) == sum(alone["batch_rows"])
    assert len({json.dumps(r["weights"]) for r in ranks}) == 1


def same_ids(one: pd.DataFrame, two: pd.DataFrame, split: pd.DataFrame) -> None:
    assert two["id"].is_unique and len(two) == len(split)
    assert set(two["id"]) == set(one["id"]) == set(split["id"])


@pytest.fixture(scope="module")
def classifier_runs(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return tmp, {p: worker(tiny_bert, tmp / f"p{p}", "classifier", p) for p in (1, 2)}


def test_two_processes_train_as_one_at_the_same_global_batch(classifier_runs):
    tmp, ranks = classifier_runs
    check_shards(ranks[2], ranks[1][0])
    one, two = (json.loads((tmp / f"p{p}" / "summary.json").read_text()) for p in (1, 2))
    assert "distributed" not in one
    assert two["distributed"] == {"processes": 2, "global_batch_size": GLOBAL_BATCH, "per_process_batch_size": GLOBAL_BATCH // 2}
    # The loss of each step is the global batch's mean (shard weights): the same curve and schedule decisions.
    np.testing.assert_allclose(two["epoch_loss"], one["epoch_loss"], atol=2e-3)
    assert (two["epochs_run"], two["best_epoch"]) == (one["epochs_run"], one["best_epoch"])
    assert abs(two["regression_accuracy"] - one["regression_accuracy"]) <= 0.03
    splits = {"dev": toy_frame(60, 1, "d"), "regression": toy_frame(77, 2, "r")}  # ddp_worker's
    for name, split in splits.items():
        a, b = (pd.read_parquet(tmp / f"p{p}" / "predictions" / f"{name}.parquet") for p in (1, 2))
        same_ids(a, b, split)
        assert list(b["id"]) == list(split["id"])  # in the split's order, as one process writes them
    assert (tmp / "p2" / "model" / "model.safetensors").exists()
    assert not list((tmp / "p2").glob("*.tmp*"))


def test_gated_fusion_trains_under_two_processes(classifier_runs):
    tmp, _ = classifier_runs
    old = tmp / "p1" / "model"  # a fine-tuned old: new starts from it
    ranks = {p: worker(old, tmp / f"gf{p}", "gated_fusion", p) for p in (1, 2)}
    check_shards(ranks[2], ranks[1][0])  # heldout's new trains on 96 of the 120 rows, paper's on 120
    reg = toy_frame(77, 2, "r")
    for variant in ("heldout", "paper"):
        a, b = (pd.read_parquet(tmp / f"gf{p}" / f"gated_fusion_{variant}.parquet") for p in (1, 2))
        same_ids(a, b, reg)
        assert np.mean(a["pred"].to_numpy() == b["pred"].to_numpy()) >= 0.9


def stage_project(tmp: Path, model: Path, processes: int) -> Path:
    data = tmp / "data" / "update"
    frames = {"old": toy_frame(300, 0), "updated": toy_frame(300, 0), "dev": toy_frame(60, 1, "d"),
              "regression": toy_frame(77, 2, "r")}
    for name, df in frames.items():
        write_parquet(df, data / f"{name}.parquet")
    write_json({"labels": ["0", "1"], "num_old_labels": 2}, data / "labels.json")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(model=str(model), max_length=32, eval_batch_size=16)
    params["train_old"].update(epochs=5, lr=2e-3, head_lr=None, batch_size=GLOBAL_BATCH, processes=processes)
    params["tracking"]["enabled"] = False
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp


def test_the_train_stage_relaunches_itself_with_processes(tiny_bert, tmp_path):
    reports = {}
    for p in (1, 2):
        project = stage_project(tmp_path / f"p{p}", tiny_bert, p)
        done = run([sys.executable, str(ROOT / "stages" / "train.py"), "old", "data/update"], cwd=project)
        assert ("accelerate.commands.launch" in done.stderr) == (p == 2)
        reports[p] = json.loads((project / "reports" / "train" / "old.json").read_text())
        assert json.loads((project / "reports" / "timings" / "train_old.json").read_text())["wall_time_s"] > 0
    assert reports[2]["distributed"]["per_process_batch_size"] == GLOBAL_BATCH // 2 and "distributed" not in reports[1]
    assert abs(reports[2]["regression_accuracy"] - reports[1]["regression_accuracy"]) <= 0.03
    for split in ("dev", "regression"):
        a, b = (pd.read_parquet(tmp_path / f"p{p}" / "predictions" / "old" / f"{split}.parquet") for p in (1, 2))
        same_ids(a, b, pd.read_parquet(tmp_path / "p1" / "data" / "update" / f"{split}.parquet"))
