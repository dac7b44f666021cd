"""`dvc exp run -S gate.nfr_budget=...`, `dvc exp show` and `dvc plots diff` on the real dvc.yaml's
evaluate, select, gate and report stages and its `plots`, in a temporary git repo. Nothing trains: the
upstream stages' outputs (the update's splits, every model's predictions, the train reports and the BCWI
curve) are written here as plain committed files, so only the stages under test run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import toy_frame

from flipgate import tracking
from flipgate.predictions import predictions_frame

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # runs dvc (about a minute, no training)
STAGES = ("evaluate", "select", "gate", "report")
RUN = Path("seeds/0")
N = 1000  # examples in dev and in the regression set
# Negative / positive flips against old per model, on dev and on the regression set. BCWI's dev NFR (0.8%)
# has an 80% upper bound above 1% and below 2%: `select` admits it under a 2% budget only; its regression
# NFR (1.5%) fails a 1% budget and passes 2%. New and the rest flip 5%.
FLIPS = {"bcwi": {"dev": (8, 30), "regression": (15, 30)}}
DEFAULT_FLIPS = {"dev": (50, 70), "regression": (50, 70)}


def sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


def _preds(labels: np.ndarray, old_ok: np.ndarray, negative: int, positive: int, seed: int) -> np.ndarray:
    """Predictions that break `negative` of old's right answers and fix `positive` of its errors."""
    rng = np.random.default_rng(seed)
    broken = rng.choice(np.flatnonzero(old_ok), negative, replace=False)
    fixed = rng.choice(np.flatnonzero(~old_ok), positive, replace=False)
    pred = np.where(old_ok, labels, 1 - labels)
    pred[broken], pred[fixed] = 1 - labels[broken], labels[fixed]
    return pred


def write_upstream(root: Path, models: list[str]) -> None:
    """What update, the training and the mitigation stages would have written."""
    data = root / "data" / "update"
    data.mkdir(parents=True)
    frames = {"old": toy_frame(200, 0, "o"), "new": toy_frame(60, 1, "n"), "dev": toy_frame(N, 2, "d"),
              "regression": toy_frame(N, 3, "r")}
    frames["updated"] = pd.concat([frames["old"], frames["new"]], ignore_index=True)
    for name, frame in frames.items():
        frame.to_parquet(data / f"{name}.parquet")
    (data / "labels.json").write_text(json.dumps({"labels": ["0", "1"], "num_old_labels": 2}))
    for split in ("dev", "regression"):
        labels = frames[split]["label"].to_numpy()
        old_ok = np.random.default_rng(10).random(N) < 0.8
        for i, model in enumerate(models):
            if model == "old":
                pred = np.where(old_ok, labels, 1 - labels)
            else:
                pred = _preds(labels, old_ok, *FLIPS.get(model, DEFAULT_FLIPS)[split], seed=i)
            folder = root / RUN / "predictions" / model
            folder.mkdir(parents=True, exist_ok=True)
            logits = np.eye(2, dtype=np.float32)[pred] * 2.0
            predictions_frame(frames[split]["id"], labels, logits).to_parquet(folder / f"{split}.parquet")
    reports = root / RUN / "reports"
    (reports / "train").mkdir(parents=True)
    for role in ("old", "new", "target"):
        (reports / "train" / f"{role}.json").write_text(json.dumps({"epochs": 1}))
    curve = [{"variant": "plain", "alpha": a / 10, "split": s, "accuracy": 0.80 + a / 500, "nfr": 0.05 * (1 - a / 10),
              "pfr": 0.07 * (1 - a / 10), "nfi": 0.2, "negative_flips": 0, "n": N}
             for a in range(11) for s in ("dev", "regression")]
    (reports / "bcwi_curve.json").write_text(json.dumps({"rows": curve}))
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([r["alpha"] for r in curve[::2]], [r["nfr"] for r in curve[::2]])
    fig.savefig(reports / "bcwi_curve.png")  # the bcwi stage's drawing, which the report copies into plots/
    plt.close(fig)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, store):
    tmp = tmp_path_factory.mktemp("experiments")
    for item in ("stages", "src"):
        shutil.copytree(ROOT / item, tmp / item, ignore=shutil.ignore_patterns("__pycache__"))
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    kept = {name: pipeline["stages"][name] for name in STAGES}  # the project's own declarations
    (tmp / "dvc.yaml").write_text(yaml.safe_dump({"stages": kept, "plots": pipeline["plots"]}, sort_keys=False))
    models = pipeline["stages"]["evaluate"]["do"]["cmd"].split("data/update ")[1].split(" --run")[0].split()
    write_upstream(tmp, models)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(seeds=[0], tracking={"enabled": True, "uri": store, "experiment": "flipgate"})
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "CI": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("FLIPGATE_PIPELINE_KEY", None)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "inputs"]):
        sh(cmd, tmp, env)
    ran = {}
    for name, budget in (("budget-1pct", 0.01), ("budget-2pct", 0.02)):  # the README's sweep, one at a time
        out = sh(["dvc", "exp", "run", "-n", name, "-S", f"gate.nfr_budget={budget}"], tmp, env).stdout
        ran[name] = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    return tmp, env, ran


def test_a_budget_change_reruns_only_the_stages_that_read_it(repo):
    _, _, ran = repo
    assert ran["budget-1pct"] == {"evaluate@0", "select", "gate", "report"}
    assert ran["budget-2pct"] == {"select", "gate", "report"}  # evaluate does not read gate.nfr_budget


def _experiments(tmp: Path, env: dict) -> dict[str, dict]:
    """name -> {"params": params.yaml's data, "metrics": {file: data}} from `dvc exp show --json`."""
    out = {}
    for commit in json.loads(sh(["dvc", "exp", "show", "--json"], tmp, env).stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                out[rev.get("name")] = {"params": data["params"]["params.yaml"]["data"],
                                        "metrics": {f: m["data"] for f, m in data["metrics"].items()}}
    return out


def test_exp_show_lists_both_budgets_with_the_gates_verdict(repo):
    tmp, env, _ = repo
    exps = _experiments(tmp, env)
    assert {"budget-1pct", "budget-2pct"} <= set(exps)
    strict, loose = exps["budget-1pct"], exps["budget-2pct"]
    assert (strict["params"]["gate"]["nfr_budget"], loose["params"]["gate"]["nfr_budget"]) == (0.01, 0.02)
    g1, g2 = strict["metrics"]["reports/gate.json"], loose["metrics"]["reports/gate.json"]
    assert (g1["candidate"], g2["candidate"]) == ("bcwi", "bcwi")
    assert g1["counts"]["nfr"] == g2["counts"]["nfr"] == 0.015
    assert (g1["verdict"], g2["verdict"]) == ("reject", "pass")
    assert strict["metrics"]["reports/select.json"]["admissible"] is False  # 0.8% on dev: not surely <= 1%
    assert loose["metrics"]["reports/select.json"]["admissible"] is True
    table = sh(["dvc", "exp", "show", "--csv"], tmp, env).stdout  # what a person reads
    assert "budget-1pct" in table and "budget-2pct" in table


def test_plots_diff_draws_every_declared_plot_for_both_experiments(repo):
    tmp, env, _ = repo
    out = json.loads(sh(["dvc", "plots", "diff", "budget-1pct", "budget-2pct", "--json", "-o", str(tmp / "plots_out")],
                        tmp, env).stdout)
    assert not out.get("errors"), out.get("errors")
    data = out["data"]
    for plot in ("BCWI NFR by alpha", "BCWI accuracy by alpha", "NFR per class"):
        (rendered,) = data[plot]
        assert set(rendered["revisions"]) == {"budget-1pct", "budget-2pct"}, plot
        values = rendered["content"]["data"]["values"]
        assert {v["rev"] for v in values} == {"budget-1pct", "budget-2pct"}, plot
    nfr = [v for v in data["BCWI NFR by alpha"][0]["content"]["data"]["values"] if v["rev"] == "budget-1pct"]
    assert len(nfr) == 22  # 11 alphas, dev and regression
    per_class = [v for v in data["NFR per class"][0]["content"]["data"]["values"] if v["rev"] == "budget-2pct"]
    assert sorted(v["class"] for v in per_class) == ["0", "1"]
    assert sum(float(v["nfr_candidate"]) * float(v["n"]) for v in per_class) == pytest.approx(15)  # bcwi's flips
    for image in ("reports/plots/bcwi_curve.png", "reports/plots/per_class_nfr.png"):
        assert {r for d in data[image] for r in d["revisions"]} == {"budget-1pct", "budget-2pct"}, image


def test_the_stage_runs_log_datasets_and_tables(repo, store):
    client = tracking.connect(store)
    exp = client.get_experiment_by_name("flipgate")
    runs = client.search_runs([exp.experiment_id], "tags.`flipgate.role` = 'stage'")
    gates = [r for r in runs if r.data.tags.get("flipgate.stage") == "gate"]
    assert len(gates) == 2
    for run in gates:
        contexts = {t.value for di in run.inputs.dataset_inputs for t in di.tags if t.key == "mlflow.data.context"}
        assert contexts == {"old", "new", "dev", "regression"}
        table = client.load_table(exp.experiment_id, "tables/gate.json", run_ids=[run.info.run_id])
        assert table["verdict"].tolist()[-1] in ("pass", "reject")
    reports = [r for r in runs if r.data.tags.get("flipgate.stage") == "report"]
    table = client.load_table(exp.experiment_id, "tables/flips.json", run_ids=[reports[0].info.run_id])
    assert set(table["flip"]) == {"negative", "positive"} and len(table) > 0
