"""NFR, NFI, PFR and per-class NFR inside mlflow.models.evaluate, gated by validate_evaluation_results,
on a real sqlite store (and the README's example against a real `mlflow server`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException
from mlflow.tracking import MlflowClient
from mlflow_server import mlflow_server

from flipgate import tracking
from flipgate.metrics.flips import flip_counts, per_class_nfr
from flipgate.mlflow_metrics import class_metric_names, flip_metrics

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tests/test_mlflow_metrics.py runs this block as written"
NFR_GATE = {"nfr": MetricThreshold(threshold=0.05, greater_is_better=False)}


def readme_example() -> str:
    """The python block that follows the marker in README.md."""
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "README.md lost the MLflow example's marker"
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], flags=re.S)
    assert match, "no ```python block after the marker"
    return match.group(1)


def run_example(uri: str, cwd: Path) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", readme_example()], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the example's own lines (MLflow adds "View run ... at: URL" lines for a server)
    return "".join(line for line in done.stdout.splitlines(keepends=True) if line.startswith(("good:", "regressive:")))


def assert_example_logged(uri: str) -> None:
    mlflow.set_tracking_uri(uri)  # a server's mlflow-artifacts:/ URIs resolve against the current tracking URI
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nfr-gate")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert runs["good"].data.metrics["nfr"] == 0.0 and runs["good"].data.metrics["pfr"] == pytest.approx(0.1)
    bad = runs["regressive"].data.metrics
    assert (bad["nfr"], bad["nfi"], bad["pfr"]) == (pytest.approx(0.2), 1.0, pytest.approx(0.3))
    assert bad["accuracy_score"] == runs["good"].data.metrics["accuracy_score"] == pytest.approx(0.8)
    assert bad["per_class_nfr/neg"] == bad["per_class_nfr/pos"] == bad["per_class_nfr/max"] == pytest.approx(0.2)
    table = client.load_table(exp.experiment_id, "eval_results_table.json", run_ids=[runs["regressive"].info.run_id])
    assert table["nfr/score"].tolist() == [0, 1, 0, 1, 0, 0, 0, 0, 0, 0]  # rows 1 and 3 flipped


EXPECTED_OUTPUT = ("good: passes, NFR 0.00\nregressive: fails, Metric nfr value threshold check failed: "
                   "candidate model nfr = 0.2, nfr threshold = 0.05.\n")


def test_readme_example_runs_as_written_on_a_sqlite_store(store, tmp_path):
    assert run_example(store, tmp_path) == EXPECTED_OUTPUT
    assert_example_logged(store)


@pytest.mark.slow
def test_readme_example_runs_as_written_through_a_real_mlflow_server(store, tmp_path):
    with mlflow_server(store, tmp_path) as url:
        assert run_example(url, tmp_path) == EXPECTED_OUTPUT
        assert_example_logged(url)
    assert list((tmp_path / "artifacts").rglob("eval_results_table.json"))  # stored by the server
    assert not (tmp_path / "mlruns").exists()


def _start_run(store: str):
    """A run in an experiment whose artifacts live beside the sqlite file (never ./mlruns here)."""
    return mlflow.start_run(experiment_id=tracking.experiment_id(tracking.connect(store), "flip-metrics"))


def _evaluate(store: str, data: pd.DataFrame, **kwargs):
    with _start_run(store):
        return mlflow.models.evaluate(data=data, targets="label", predictions="prediction",
                                      extra_metrics=flip_metrics(**kwargs))


def test_metrics_equal_the_gates_pooled_counts(store):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 500)
    old = np.where(rng.random(500) < 0.8, labels, (labels + 1) % 4)
    cand = np.where(rng.random(500) < 0.15, (labels + 2) % 4, np.where(rng.random(500) < 0.3, labels, old))
    data = pd.DataFrame({"label": labels, "prediction": cand, "old_pred": old})
    m = _evaluate(store, data, baseline_column="old_pred").metrics

    c = flip_counts(labels, old, cand)
    assert c.negative_flips > 20 and c.positive_flips > 20  # a test with flips both ways
    assert (m["nfr"], m["nfi"], m["pfr"]) == (c.nfr, c.nfi, c.pfr)
    per_class = per_class_nfr(labels, old, cand)
    assert {k: v for k, v in m.items() if k.startswith("per_class_nfr/") and k != "per_class_nfr/max"} == {
        f"per_class_nfr/{k}": v["nfr"] for k, v in per_class.items()}
    assert m["per_class_nfr/max"] == max(v["nfr"] for v in per_class.values()) > c.nfr


def test_validation_gates_on_nfr_and_the_worst_class(store):
    # 40 examples of class a, 10 of b; the candidate breaks 2 of b: NFR 4%, but b's NFR 20%
    labels = ["a"] * 40 + ["b"] * 10
    old = list(labels)
    cand = labels[:40] + ["a", "a"] + ["b"] * 8
    result = _evaluate(store, pd.DataFrame({"label": labels, "prediction": cand, "baseline_prediction": old}))
    assert (result.metrics["nfr"], result.metrics["per_class_nfr/b"]) == (0.04, 0.2)
    mlflow.validate_evaluation_results(NFR_GATE, result)  # within 5% overall
    worst = {"per_class_nfr/max": MetricThreshold(threshold=0.1, greater_is_better=False)}
    with pytest.raises(ModelValidationFailedException, match=r"per_class_nfr/max value threshold check failed"):
        mlflow.validate_evaluation_results({**NFR_GATE, **worst}, result)


def test_a_model_sees_the_baseline_column_and_the_metrics_still_count(store):
    """model= instead of predictions=: the baseline column travels with the features; the model ignores it."""
    data = pd.DataFrame({"text": ["good", "bad", "fine", "dull"], "label": [1, 0, 1, 0],
                         "baseline_prediction": [1, 0, 0, 0]})
    seen = []

    def model(frame: pd.DataFrame) -> np.ndarray:
        seen.append(list(frame.columns))
        return np.array([1 if t in ("fine", "dull") else 0 for t in frame["text"]])  # breaks 2, fixes 1

    with _start_run(store):
        result = mlflow.models.evaluate(model=model, data=data, targets="label", extra_metrics=flip_metrics())
    assert ["text", "baseline_prediction"] in seen
    assert (result.metrics["nfr"], result.metrics["pfr"]) == (0.5, 0.25)
    with pytest.raises(ModelValidationFailedException, match="nfr"):
        mlflow.validate_evaluation_results(NFR_GATE, result)


def test_bad_input_is_refused_with_a_clear_message(store):
    data = pd.DataFrame({"label": [0, 1, 1], "prediction": [0, 1, 0]})
    with pytest.raises(mlflow.MlflowException, match=r"missing columns \['baseline_prediction'\]"):
        _evaluate(store, data)
    with pytest.raises(ValueError, match="baseline_prediction: 1 of 3 rows have no baseline prediction"):
        _evaluate(store, data.assign(baseline_prediction=[0, None, 1]))
    for bad in ("old pred", "predictions", 3):
        with pytest.raises(ValueError, match="baseline_column must name a column"):
            flip_metrics(baseline_column=bad)
    assert class_metric_names(["pos", "a/b", "é?"]) == {"pos": "pos", "a/b": "a_b", "é?": "é_"}
    with pytest.raises(ValueError, match=r"class 'a:b' would be logged as per_class_nfr/a_b, the name of class 'a/b'"):
        class_metric_names(["a/b", "a:b"])
    with pytest.raises(ValueError, match="the worst class's NFR"):
        class_metric_names(["max"])


def test_a_prediction_outside_the_gold_labels_counts_as_wrong(store):
    """A prediction no gold label has (a class the baseline invented) still counts as wrong."""
    data = pd.DataFrame({"label": ["x", "y"], "prediction": ["z", "y"], "baseline_prediction": ["x", "z"]})
    m = _evaluate(store, data).metrics
    assert (m["nfr"], m["pfr"], m["per_class_nfr/x"], m["per_class_nfr/y"]) == (0.5, 0.5, 1.0, 0.0)
    assert "per_class_nfr/z" not in m
