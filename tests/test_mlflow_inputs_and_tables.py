"""What the MLflow UI shows of a stage run, on a real sqlite store: the update splits as dataset inputs
(contexts old, new, dev, regression), the flip ledger and the gate decision as tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import toy_frame

from flipgate import stage, tracking
from flipgate.errors import FlipgateError
from flipgate.io import frame_hash

SPLITS = {"old": 20, "new": 10, "dev": 15, "regression": 30}
GATE = {
    "verdict": "reject", "baseline": "seeds/0/predictions/old/regression.parquet", "candidate": "new",
    "checks": [
        {"name": "nfr", "observed": 0.045, "op": "<=", "threshold": 0.01, "verdict": "fail",
         "detail": "90 negative flips of 2,000"},
        {"name": "accuracy_gain", "observed": 0.004, "op": ">=", "threshold": 0.0, "verdict": "pass",
         "detail": "candidate 0.8010 vs baseline 0.7970"},
    ],
}


@pytest.fixture
def project(tmp_path) -> Path:
    splits = tmp_path / "data" / "update"
    splits.mkdir(parents=True)
    for i, (name, n) in enumerate(SPLITS.items()):
        toy_frame(n, seed=i, prefix=name).to_parquet(splits / f"{name}.parquet")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "gate.json").write_text(json.dumps(GATE))
    ledger = pd.DataFrame({
        "model": ["new", "new", "new", "bcwi"], "id": ["a", "b", "c", "a"], "text": ["t a", "t b", "t c", "t a"],
        "label": [1, 0, 1, 1], "old_pred": [1, 1, 1, 1], "old_confidence": [0.9, 0.6, 0.8, 0.9],
        "pred": [0, 0, 1, 1], "confidence": [0.7, 0.55, 0.9, 0.8],
        "flip": pd.array(["negative", "positive", "both_right", "both_right"], dtype="string"),
    })
    ledger.to_parquet(tmp_path / "reports" / "flips.parquet")
    return tmp_path


def inputs(run) -> dict[str, object]:
    """context -> dataset of a run's dataset inputs."""
    out = {}
    for di in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in di.tags}
        out[tags["mlflow.data.context"]] = di.dataset
    return out


def test_every_split_is_a_dataset_input_of_the_stage_and_its_parent(store, project):
    with tracking.stage_run("train_old", {}, uri=store, root=project, key="inputs-a") as first:
        pass
    with tracking.stage_run("train_new", {}, uri=store, root=project, key="inputs-a") as second:
        pass
    client = tracking.connect(store)
    for run_id in (first.run_id, second.run_id, first.parent_run_id):
        got = inputs(client.get_run(run_id))
        assert set(got) == set(SPLITS)
        for name, n in SPLITS.items():
            ds = got[name]
            assert ds.name == name and ds.source_type == "local"
            assert json.loads(ds.source)["uri"] == str((project / "data" / "update" / f"{name}.parquet").resolve())
            assert json.loads(ds.profile)["num_rows"] == n
            assert [c["name"] for c in json.loads(ds.schema)["mlflow_colspec"]] == ["id", "text", "label"]
    assert len(client.get_run(first.parent_run_id).inputs.dataset_inputs) == 4  # one per split, not per stage
    tags = client.get_run(first.run_id).data.tags  # the fingerprint tags stay, dev included now
    assert tags["dataset.dev.rows"] == "15"
    assert tags["dataset.dev.hash"] == frame_hash(toy_frame(15, seed=2, prefix="dev"), ["id", "text", "label"])


def test_a_changed_split_is_a_new_dataset(store, project):
    with tracking.stage_run("update", {}, uri=store, root=project, key="inputs-b") as before:
        pass
    toy_frame(31, seed=9, prefix="regression").to_parquet(project / "data" / "update" / "regression.parquet")
    with tracking.stage_run("update", {}, uri=store, root=project, key="inputs-c") as after:
        pass
    client = tracking.connect(store)
    old, new = (inputs(client.get_run(r.run_id))["regression"] for r in (before, after))
    assert old.digest != new.digest and json.loads(new.profile)["num_rows"] == 31
    assert inputs(client.get_run(before.run_id))["dev"].digest == inputs(client.get_run(after.run_id))["dev"].digest


def _table(client, run_id: str, name: str) -> pd.DataFrame:
    exp_id = client.get_run(run_id).info.experiment_id
    return client.load_table(exp_id, name, run_ids=[run_id])


def test_flip_ledger_and_gate_decision_are_tables(store, project):
    with tracking.stage_run("report", {}, uri=store, root=project, key="tables") as run:
        run.log_table_file(project / "reports" / "flips.parquet")
        run.log_table_file(project / "reports" / "gate.json")
        run.log_table_file(project / "reports" / "absent.parquet", missing_ok=True)
    client = tracking.connect(store)
    flips = _table(client, run.run_id, "tables/flips.json")
    assert flips[["model", "id", "flip", "old_pred", "pred"]].values.tolist() == [
        ["new", "a", "negative", 1, 0], ["new", "b", "positive", 1, 0]]  # only the rows that flipped
    gate = _table(client, run.run_id, "tables/gate.json")
    assert gate["name"].tolist() == ["nfr", "accuracy_gain", "verdict"]
    assert gate["verdict"].tolist() == ["fail", "pass", "reject"]
    assert gate["observed"].tolist()[:2] == [0.045, 0.004] and gate["threshold"].tolist()[:2] == [0.01, 0.0]
    assert gate["detail"].tolist()[2] == "candidate new against seeds/0/predictions/old/regression.parquet"
    logged = json.loads(client.get_run(run.run_id).data.tags["mlflow.loggedArtifacts"])  # what the UI lists
    assert {"path": "tables/flips.json", "type": "table"} in logged
    assert {"path": "tables/gate.json", "type": "table"} in logged


def test_bad_table_inputs_are_refused(store, project):
    (project / "reports" / "list.json").write_text("[1, 2]")
    (project / "reports" / "odd.json").write_text('{"verdict": "pass"}')
    pd.DataFrame({"x": [1]}).to_parquet(project / "reports" / "plain.parquet")
    with tracking.stage_run("report", {}, uri=store, root=project, key="bad-tables") as run:
        with pytest.raises(FlipgateError, match="absent.parquet: cannot log it as an MLflow table, it is not a file"):
            run.log_table_file(project / "reports" / "absent.parquet")
        with pytest.raises(FlipgateError, match="list.json: expected a gate decision .a JSON object., got list"):
            run.log_table_file(project / "reports" / "list.json")
        with pytest.raises(FlipgateError, match=r'expected \{"verdict": ..., "checks": \[...\]\}'):
            run.log_table_file(project / "reports" / "odd.json")
        run.log_table_file(project / "reports" / "plain.parquet")  # any other parquet: the whole frame
    assert _table(tracking.connect(store), run.run_id, "tables/plain.json")["x"].tolist() == [1]


def test_a_stage_script_logs_its_tables(store, project, monkeypatch):
    """stage.run(..., tables=...) as stages/gate.py and stages/report.py call it."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", ["gate.py"])
    monkeypatch.setenv("FLIPGATE_PIPELINE_KEY", "stage-tables")
    (project / "params.yaml").write_text(yaml.safe_dump({"tracking": {"uri": store}}))
    stage.run("gate", lambda run: None, sections=("gate",), artifacts=("reports/gate.json",),  # the file, and
              tables=("reports/gate.json", "reports/flips.parquet"))  # its table beside it, as stages/gate.py does
    client = tracking.connect(store)
    exp = client.get_experiment_by_name("flipgate")
    (run,) = client.search_runs([exp.experiment_id], "tags.`flipgate.pipeline_key` = 'stage-tables' "
                                                     "and tags.`flipgate.role` = 'stage'")
    assert _table(client, run.info.run_id, "tables/gate.json")["verdict"].tolist()[-1] == "reject"
    assert len(_table(client, run.info.run_id, "tables/flips.json")) == 2
    assert "gate.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert set(inputs(run)) == set(SPLITS)
