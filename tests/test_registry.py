"""Promotion through a real MLflow Model Registry (sqlite store in a temp dir, and one real server)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import build_tiny_bert, toy_frame
from mlflow_server import mlflow_server
from promote_race import race

from flipgate import tracking
from flipgate.errors import FlipgateError
from flipgate.gate import registry
from flipgate.gate.policy import Check, Decision, Policy
from flipgate.io import frame_hash
from flipgate.metrics.flips import FlipCounts
from flipgate.models import pyfunc

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the movie was good", "an awful boring plot", "quite a film", "", "superb acting and a lovely story"]

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Three tiny BERTs with different weights: old (the baseline), better and worse candidates."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for seed, name in enumerate(("old", "better", "worse")):
        torch.manual_seed(seed)
        out[name] = build_tiny_bert(root / name)
    return out


def decision(verdict: str, candidate: str = "bcwi", nfr: float = 0.005, accuracy: float = 0.9) -> Decision:
    """A real gate Decision object (the registry acts on its to_dict())."""
    counts = FlipCounts(n=1000, old_correct=880, cand_correct=int(accuracy * 1000),
                        negative_flips=int(nfr * 1000), positive_flips=30)
    check = Check("nfr", nfr, "<=", 0.01, "pass" if verdict == "pass" else "fail")
    return Decision(verdict, (check,), counts, Policy(), baseline="old", candidate=candidate)


def versions(uri: str, name: str) -> list[int]:
    return sorted(int(v.version) for v in tracking.connect(uri).search_model_versions(f"name = '{name}'"))


def test_bootstrap_then_pass_moves_champion(store, models):
    p = registry.promote(models["better"], decision("pass"), "m-pass", regression_hash="r1",
                         baseline_folder=models["old"], tracking_uri=store)
    assert (p.bootstrap_version, p.version, p.champion_version, p.created) == (1, 2, 2, True)
    assert p.aliases == ["champion"]
    assert p.tags["verdict"] == "pass" and p.tags["candidate"] == "bcwi"
    assert (p.tags["nfr"], p.tags["accuracy"], p.tags["baseline_version"]) == ("0.005", "0.9", "1")
    assert p.tags["regression_hash"] == "r1"
    assert p.tags["model_hash"] == registry.folder_hash(models["better"])
    assert p.tags["git_commit"] == tracking.git_commit()
    old = tracking.connect(store).get_model_version("m-pass", "1")
    assert old.tags["verdict"] == "bootstrap" and old.aliases == []
    assert registry.champion_version("m-pass", tracking_uri=store) == 2


def test_rejected_and_inconclusive_do_not_move_champion(store, models):
    rej = registry.promote(models["worse"], decision("reject", nfr=0.08), "m-reject", regression_hash="r1",
                           baseline_folder=models["old"], tracking_uri=store)
    assert (rej.bootstrap_version, rej.version, rej.champion_version) == (1, 2, 1)
    assert rej.aliases == ["challenger"] and rej.tags["verdict"] == "reject" and rej.tags["nfr"] == "0.08"
    inc = registry.promote(models["better"], {"verdict": "inconclusive", "candidate": "soup"}, "m-reject",
                           regression_hash="r1", baseline_folder=models["old"], tracking_uri=store)
    assert (inc.bootstrap_version, inc.version, inc.champion_version) == (None, 3, 1)
    assert inc.aliases == ["challenger"] and inc.tags["verdict"] == "inconclusive"
    assert inc.tags["nfr"] == "n/a"  # a decision without metrics is still registered
    client = tracking.connect(store)
    assert client.get_model_version("m-reject", "2").aliases == []  # challenger moved on to version 3
    assert client.get_model_version_by_alias("m-reject", "champion").tags["model_hash"] == registry.folder_hash(
        models["old"])


def test_promote_is_idempotent(store, models):
    args = dict(regression_hash="r1", baseline_folder=models["old"], tracking_uri=store)
    first = registry.promote(models["worse"], decision("reject"), "m-idem", **args)
    again = registry.promote(models["worse"], decision("reject"), "m-idem", **args)
    assert (first.version, first.created) == (2, True)
    assert (again.version, again.created, again.bootstrap_version) == (2, False, None)
    assert versions(store, "m-idem") == [1, 2]
    # The same weights judged on another regression set are new evidence: a new version.
    other = registry.promote(models["worse"], decision("reject"), "m-idem", **{**args, "regression_hash": "r2"})
    assert (other.version, versions(store, "m-idem")) == (3, [1, 2, 3])
    # The champion itself as a candidate changes nothing.
    same = registry.promote(models["old"], decision("pass"), "m-idem", **args)
    assert (same.version, same.created, same.champion_version) == (1, False, 1)


def test_pass_against_a_baseline_that_is_not_the_champion_does_not_promote(store, models):
    registry.promote(models["worse"], decision("reject"), "m-base", regression_hash="r1",
                     baseline_folder=models["old"], tracking_uri=store)
    p = registry.promote(models["better"], decision("pass"), "m-base", regression_hash="r1",
                         baseline_folder=models["worse"], tracking_uri=store)
    assert (p.champion_version, p.aliases) == (1, ["challenger"])
    assert "not champion version 1" in p.note and p.tags["note"] == p.note
    relaxed = registry.promote(models["better"], decision("pass"), "m-base", regression_hash="r1",
                               baseline_folder=models["worse"], require_champion_baseline=False,
                               tracking_uri=store)
    assert (relaxed.version, relaxed.champion_version, relaxed.aliases) == (p.version, p.version, ["champion"])


def test_champion_loads_back_and_predicts_like_its_folder(store, models, tmp_path):
    p = registry.promote(models["better"], decision("pass"), "m-serve", regression_hash="r1",
                         tracking_uri=store, max_length=32)
    assert (p.bootstrap_version, p.version, p.champion_version) == (None, 1, 1)  # no baseline: no bootstrap

    folder = registry.load_champion("m-serve", tmp_path / "old", tracking_uri=store)
    assert registry.folder_hash(folder) == registry.folder_hash(models["better"])

    served = mlflow.pyfunc.load_model("models:/m-serve@champion")
    assert served.model_config["max_length"] == 32
    out = served.predict(pd.DataFrame({"text": TEXTS}))
    expected = pyfunc.load_any(models["better"], max_length=32).predict_logits(TEXTS)
    got = np.stack(out["logits"].to_numpy())
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected))
    assert out["pred"].tolist() == expected.argmax(axis=1).tolist()
    assert out["pred"].dtype == np.int64 and got.dtype == np.float32


def test_load_champion_without_a_champion_says_what_to_do(store, models, tmp_path):
    registry.promote(models["worse"], decision("reject"), "m-none", regression_hash="r1", tracking_uri=store)
    with pytest.raises(FlipgateError, match="no 'champion' alias.*old.source: train"):
        registry.load_champion("m-none", tmp_path / "old", tracking_uri=store)
    assert not (tmp_path / "old").exists()


def test_bad_inputs_raise_flipgate_errors(store, models, tmp_path, monkeypatch):
    with pytest.raises(FlipgateError, match="verdict 'maybe'"):
        registry.promote(models["better"], {"verdict": "maybe"}, "m-bad", regression_hash="r1", tracking_uri=store)
    with pytest.raises(FlipgateError, match="model folder not found"):
        registry.promote(tmp_path / "nope", decision("pass"), "m-bad", regression_hash="r1", tracking_uri=store)
    gf = tmp_path / "gf"
    gf.mkdir()
    (gf / "config.json").write_text("{}")
    (gf / "gate.pt").write_bytes(b"")
    assert pyfunc.model_kind(gf) == "hf"  # no manifest: config.json says "hf"; a gate.pt (nothing writes one) does not
    (gf / "flipgate.json").write_text(json.dumps({"kind": "gated_fusion"}))
    assert pyfunc.model_kind(gf) == "gated_fusion"
    monkeypatch.setitem(pyfunc.LOADERS, "gated_fusion", "flipgate.mitigation.not_there:load_predictor")
    with pytest.raises(FlipgateError, match="kind .gated_fusion. needs flipgate.mitigation.not_there.*not wired"):
        pyfunc.load_any(gf)
    (gf / "flipgate.json").write_text(json.dumps({"kind": "onnx"}))
    with pytest.raises(FlipgateError, match="unknown kind 'onnx'"):
        pyfunc.model_kind(gf)


def test_promote_stage_writes_promotion_json_from_a_nested_run(store, models, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("stage_promote", ROOT / "stages" / "promote.py")
    stage_promote = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage_promote)

    shutil.copytree(models["old"], tmp_path / "models" / "old")
    shutil.copytree(models["better"], tmp_path / "models" / "bcwi")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"base": {"max_length": 32}, "promote": {"registered_name": "m-stage"}, "tracking": {"uri": store}}))
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "gate.json").write_text(json.dumps(decision("pass").to_dict()))
    reg = toy_frame(40, 3)
    (tmp_path / "data" / "update").mkdir(parents=True)
    reg.to_parquet(tmp_path / "data" / "update" / "regression.parquet")
    monkeypatch.chdir(tmp_path)
    from flipgate.params_file import check_all
    from flipgate.stage import parse_run

    stage_promote.main(parse_run(["reports/gate.json", "models/{candidate}", "models/old",
                                  "data/update/regression.parquet", "reports/promotion.json"], check_all()))

    out = json.loads((reports / "promotion.json").read_text())
    assert (out["name"], out["verdict"], out["version"], out["aliases"]) == ("m-stage", "pass", 2, ["champion"])
    assert out["tags"]["regression_hash"] == frame_hash(reg, ["id", "text", "label"])
    client = tracking.connect(store)
    mv = client.get_model_version("m-stage", "2")
    run = client.get_run(mv.run_id)  # the version links to the promote stage's nested run
    assert run.data.tags["flipgate.stage"] == "promote" and run.data.params["promote.registered_name"] == "m-stage"
    assert run.data.tags["mlflow.parentRunId"] == tracking.find_or_create_parent(
        client, run.info.experiment_id, run.data.tags["flipgate.pipeline_key"], "none")
    assert run.data.tags["dataset.regression.rows"] == "40"
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"gate.json", "promotion.json"} <= logged


@pytest.mark.slow
def test_promote_through_a_real_mlflow_server(store, models, tmp_path):
    """Promote and load over HTTP; the artifacts are stored by the server, nothing goes to the sqlite store.
    Then two processes on this machine race promotions through the server: the lock is keyed by the
    tracking URI, so they serialise too (across machines nothing does: README, Promotion)."""
    with mlflow_server(store, tmp_path) as url:
        p = registry.promote(models["better"], decision("pass"), "m-http", regression_hash="r1",
                             baseline_folder=models["old"], tracking_uri=url)
        assert (p.bootstrap_version, p.version, p.champion_version) == (1, 2, 2)
        folder = registry.load_champion("m-http", tmp_path / "champion", tracking_uri=url)
        assert registry.folder_hash(folder) == registry.folder_hash(models["better"])
        assert len(list((tmp_path / "artifacts").rglob("model.safetensors"))) == 2  # stored by the server
        assert versions(store, "m-http") == []  # and nothing went to the sqlite store

        _assert_one_move_per_race(url, models, tmp_path, races=2)


# ---------------------------------------------------------------- concurrency: two real processes

RACES = 20


def _assert_one_move_per_race(uri: str, models: dict[str, Path], tmp_path: Path, races: int) -> None:
    """`races` registered models, each raced by two processes promoting different passing candidates
    against old on an empty model, then one more raced with the same candidate. Exactly one champion move
    per race, no duplicate versions, and the loser's result says what happened."""
    different = [f"race-{i}" for i in range(races)]
    same = ["same"]
    jobs_a = [(n, models["better"], models["old"]) for n in different + same]
    jobs_b = [(n, models["worse"], models["old"]) for n in different] + [(n, models["better"], models["old"])
                                                                         for n in same]
    a, b = race(uri, jobs_a, jobs_b, tmp_path)
    assert "crash" not in a and "crash" not in b, (a.get("crash"), b.get("crash"))
    assert (a["open"], b["open"]) == ("ok", "ok")
    pairs = list(zip(a["promotions"], b["promotions"], strict=True))
    assert len(pairs) == races + len(same)
    errors = [p for pair in pairs for p in pair if "error" in p]
    assert errors == [], errors
    client = tracking.connect(uri)
    for name, pair in zip(different, pairs, strict=False):
        won = [p for p in pair if "champion" in p["aliases"]]
        assert len(won) == 1, (name, pair)  # exactly one champion move
        winner, loser = won[0], pair[1 - pair.index(won[0])]
        assert int(client.get_model_version_by_alias(name, "champion").version) == winner["version"]
        assert (winner["bootstrap_version"], loser["bootstrap_version"]) == (1, None)  # old registered once
        assert (loser["aliases"], loser["champion_version"]) == (["challenger"], winner["version"])
        assert f"former champion, but the champion is version {winner['version']} now" in loser["note"], loser["note"]
        mvs = client.search_model_versions(f"name = '{name}'")
        assert sorted(int(v.version) for v in mvs) == [1, 2, 3], name
        assert len({v.tags["model_hash"] for v in mvs}) == 3, name
    for name, pair in zip(same, pairs[races:], strict=True):
        assert versions(uri, name) == [1, 2]  # old once, the candidate once
        assert [(p["version"], p["champion_version"]) for p in pair] == [(2, 2), (2, 2)]
        assert sorted(p["created"] for p in pair) == [False, True]


@pytest.mark.slow
def test_two_processes_opening_a_fresh_sqlite_store_both_work(tmp_path, monkeypatch):
    """MLflow migrates a new sqlite file on first use; two processes doing it at once used to leave it
    broken (`table _alembic_tmp_tags already exists`)."""
    import sqlite3

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # restored after: connect() exports it
    uri = f"sqlite:///{tmp_path}/fresh.db"
    a, b = race(uri, [], [], tmp_path)
    assert (a.get("crash"), b.get("crash")) == (None, None)
    assert (a["open"], b["open"]) == ("ok", "ok")
    client = tracking.connect(uri)
    assert tracking.experiment_id(client, "after-the-race")  # usable by a third process-like client
    assert client.search_registered_models() == []
    with sqlite3.connect(tmp_path / "fresh.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
    assert [t for t in tables if t.startswith("_alembic_tmp")] == []


@pytest.mark.slow
def test_concurrent_promotions_move_the_champion_once(store, models, tmp_path):
    db = tmp_path / "race.db"
    shutil.copy(Path(store[len("sqlite:///"):]).with_name("pristine.db"), db)
    _assert_one_move_per_race(f"sqlite:///{db}", models, tmp_path, RACES)


# ---------------------------------------------------------------- no store, no pickle


def test_a_registry_baseline_without_a_store_is_refused_and_creates_nothing(tmp_path, monkeypatch):
    from flipgate.gate.tables import resolve_predictions

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(FlipgateError, match=r"no MLflow store at sqlite:///mlflow\.db.*MLFLOW_TRACKING_URI"):
        resolve_predictions("models:/flipgate-classifier@champion")
    missing = f"sqlite:///{tmp_path}/elsewhere/none.db"
    with pytest.raises(FlipgateError, match="none.db does not exist"):
        registry.load_champion("m", tmp_path / "old", tracking_uri=missing)
    with pytest.raises(FlipgateError, match="none.db does not exist"):
        registry.champion_version("m", tracking_uri=missing)
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlartifacts, no lock file, no folder


def test_the_logged_pyfunc_is_code_not_a_pickle(store, models, tmp_path, monkeypatch):
    """Models from code: the pyfunc folder holds no .pkl, and it loads and predicts with MLflow's pickle
    deserialisation switched off."""
    registry.promote(models["better"], decision("pass"), "m-code", regression_hash="r1", tracking_uri=store,
                     max_length=32)
    local = Path(mlflow.artifacts.download_artifacts("models:/m-code@champion", dst_path=str(tmp_path / "pyfunc")))
    assert [p.name for p in local.rglob("*.pkl")] == []
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("pyfunc_model.py")

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    served = mlflow.pyfunc.load_model(str(local))
    out = served.predict(pd.DataFrame({"text": TEXTS}))
    expected = pyfunc.load_any(models["better"], max_length=32).predict_logits(TEXTS)
    torch.testing.assert_close(torch.from_numpy(np.stack(out["logits"].to_numpy())), torch.from_numpy(expected))


def test_a_held_lock_times_out_naming_its_file(tmp_path):
    from filelock import FileLock

    from flipgate import locks

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert locks.lock_file(uri, "promote") == tmp_path / "mlflow.db.promote.lock"
    server = locks.lock_file("http://127.0.0.1:5000/", "promote")  # keyed by the URI, in the temp folder
    assert server == locks.lock_file("http://127.0.0.1:5000", "promote") != locks.lock_file("http://b:5000", "promote")
    with FileLock(locks.lock_file(uri, "promote")):  # another holder (its own file descriptor)
        with pytest.raises(FlipgateError, match=r"mlflow\.db\.promote\.lock: another process has held the promote"):
            with locks.store_lock(uri, "promote", timeout=0.2):
                pass
