"""MLflow tracking on a real sqlite store: one parent run per pipeline key, one nested run per stage."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import toy_frame

from flipgate import tracking
from flipgate.io import frame_hash
from flipgate.params import Base, Tracking, Update
from flipgate.params_file import load_section



@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder with the update splits written and a params.yaml."""
    splits = tmp_path / "data" / "update"
    splits.mkdir(parents=True)
    for i, name in enumerate(("old", "new", "regression")):
        toy_frame(20 + 10 * i, seed=i, prefix=name).to_parquet(splits / f"{name}.parquet")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seeds": [3], "base": {"max_length": 64}}))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text('{"nfr": 0.01}\n')
    return tmp_path


def children(client, parent_id: str) -> dict[str, object]:
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return {r.data.tags["flipgate.stage"]: r for r in runs}


def test_stages_with_one_key_nest_under_one_parent(store, project):
    with tracking.stage_run("update", {"seed": 3, "base": Base(max_length=64), "update": Update(n_old=10)}, uri=store,
                            root=project, key="pipeline-a") as update:
        update.log_metrics({"rows": 60, "by_split": {"old": 20, "new": 30}, "name": "skipped", "nan": float("nan"),
                            "distribution": {"lambda=1,T=0.5": 0.25}})  # a grid point's key, as baselines writes
        update.log_artifact(project / "reports")
        update.log_artifact(project / "reports" / "plots", missing_ok=True)
    with tracking.stage_run("train_old", {"base": {"seed": 3}}, uri=store, root=project, key="pipeline-a") as train:
        train.log_metrics({"loss": 0.5}, step=1)
    with tracking.stage_run("evaluate", {}, uri=store, root=project, key="pipeline-b") as other:
        pass

    assert update.parent_run_id == train.parent_run_id != other.parent_run_id
    client = tracking.connect(store)
    parent = client.get_run(update.parent_run_id)
    assert parent.data.tags["flipgate.pipeline_key"] == "pipeline-a" and parent.info.status == "FINISHED"
    assert parent.info.run_name == "pipeline-pipeline"  # pipeline-<first 8 chars of the key>
    runs = children(client, update.parent_run_id)
    assert set(runs) == {"update", "train_old"}

    u = runs["update"]
    assert u.info.status == "FINISHED" and u.info.run_name == "update"
    assert u.data.params["seed"] == "3" and u.data.params["update.n_old"] == "10"
    assert u.data.params["base.max_length"] == "64"
    assert u.data.params["base.model"] == "embedded"  # every field of a section, defaults included
    assert u.data.metrics == {"rows": 60.0, "by_split.old": 20.0, "by_split.new": 30.0,
                              "distribution.lambda_1_T_0.5": 0.25}
    reg = toy_frame(40, seed=2, prefix="regression")
    assert u.data.tags["dataset.regression.hash"] == frame_hash(reg, ["id", "text", "label"])
    assert (u.data.tags["dataset.old.rows"], u.data.tags["dataset.new.rows"]) == ("20", "30")
    assert parent.data.tags["dataset.regression.hash"] == u.data.tags["dataset.regression.hash"]
    assert u.data.tags["mlflow.source.git.commit"] == tracking.git_commit(project)
    assert [a.path for a in client.list_artifacts(u.info.run_id, "reports")] == ["reports/metrics.json"]
    assert client.get_run(train.run_id).data.metrics == {"loss": 0.5}
    assert client.get_experiment(u.info.experiment_id).artifact_location.endswith("/mlartifacts")


def test_a_failing_stage_marks_its_run_and_the_parent_failed(store, project):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.stage_run("train_new", {}, uri=store, root=project, key="pipeline-fail") as run:
            raise RuntimeError("boom")
    client = tracking.connect(store)
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert client.get_run(run.parent_run_id).info.status == "FAILED"
    assert "dataset.old.hash" not in client.get_run(run.run_id).data.tags  # fingerprints only on success
    with tracking.stage_run("train_new", {}, uri=store, root=project, key="pipeline-fail") as retry:
        pass
    assert retry.parent_run_id == run.parent_run_id
    assert client.get_run(run.parent_run_id).info.status == "FINISHED"  # the parent follows its last stage


def test_pipeline_key_follows_commit_params_and_input_data(tmp_path, monkeypatch):
    monkeypatch.delenv("FLIPGATE_PIPELINE_KEY", raising=False)
    for name in ("old", "new", "dev", "reg"):
        toy_frame(5, seed=1, prefix=name).to_json(tmp_path / f"{name}.jsonl", orient="records", lines=True)
    files = {"old": "old.jsonl", "new": "new.jsonl", "dev": "dev.jsonl", "regression": "reg.jsonl"}
    params = {"data": {"source": "files", "files": files}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    key = tracking.pipeline_key(tmp_path)
    assert tracking.git_commit(tmp_path) == "none" and key == tracking.pipeline_key(tmp_path)

    (tmp_path / "reg.jsonl").write_text((tmp_path / "reg.jsonl").read_text().replace("x", "y") + "\n")
    key_data = tracking.pipeline_key(tmp_path)  # the regression set changed, nothing else
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": [0, 1]}) + "# a comment\n")
    assert tracking.pipeline_key(tmp_path) == key_data  # a seed added later nests under the same parent
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "base": {"max_length": 64}}))
    key_params = tracking.pipeline_key(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], check=True)
    key_git = tracking.pipeline_key(tmp_path)
    assert len({key, key_data, key_params, key_git}) == 4
    assert len(tracking.git_commit(tmp_path)) == 40

    monkeypatch.setenv("FLIPGATE_PIPELINE_KEY", "ci-1234")
    assert tracking.pipeline_key(tmp_path) == "ci-1234"


def test_uri_resolution_and_params_section(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_uri(None) == "http://127.0.0.1:5000"
    assert tracking.resolve_uri("sqlite:////srv/m.db") == "sqlite:////srv/m.db"  # the param wins
    assert tracking.artifact_root("sqlite:////srv/m.db") == "file:///srv/mlartifacts"
    assert tracking.artifact_root("sqlite:///mlflow.db") == (Path.cwd() / "mlartifacts").as_uri()
    assert tracking.artifact_root("http://127.0.0.1:5000") is None  # the server decides
    assert Tracking() == Tracking(uri=None, experiment="flipgate")
    assert load_section("tracking", raw={"tracking": {"uri": "http://x"}}).uri == "http://x"


def test_flatten_dumps_sections_and_nests_keys():
    flat = tracking.flatten({"base": Base(), "bcwi": {"alphas": [0.0, 0.5], "fisher": {"n": 3}}})
    assert flat["base.max_length"] == 128 and flat["bcwi.alphas"] == [0.0, 0.5] and flat["bcwi.fisher.n"] == 3
