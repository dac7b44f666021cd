import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flipgate.data import sources, update
from flipgate.errors import FlipgateError
from flipgate.params_file import check_all, load_section, load_seeds

from conftest import toy_frame


def test_pool_splits_are_disjoint_deterministic_and_updated_contains_old():
    pool = toy_frame(400, seed=1)
    a = update.from_pool(pool, n_old=100, n_new=50, n_dev=60, n_regression=80, seed=3)
    b = update.from_pool(pool, n_old=100, n_new=50, n_dev=60, n_regression=80, seed=3)
    c = update.from_pool(pool, n_old=100, n_new=50, n_dev=60, n_regression=80, seed=4)
    ids = {name: set(a.split(name)["id"]) for name in ("old", "new", "dev", "regression")}
    assert [len(ids[k]) for k in ("old", "new", "dev", "regression")] == [100, 50, 60, 80]
    names = list(ids)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            assert not ids[x] & ids[y], f"{x} and {y} overlap"
    updated = a.updated
    assert set(updated["id"]) == ids["old"] | ids["new"]
    assert updated[updated["part"] == "old"]["id"].tolist() == a.old["id"].tolist()
    for name in update.SPLITS:
        pd.testing.assert_frame_equal(a.split(name), b.split(name))
    assert a.regression["id"].tolist() != c.regression["id"].tolist()


def test_too_many_examples_requested():
    with pytest.raises(FlipgateError, match="exceeds the 50 examples"):
        update.from_pool(toy_frame(50, 0), 40, 10, 10, 10, seed=0)


def test_label_map_is_stable_when_classes_are_added():
    pool = pd.DataFrame({"id": [str(i) for i in range(60)], "text": [f"t{i}" for i in range(60)],
                         "label": ["b", "a", "c"] * 20})
    u = update.from_pool(pool, n_old=20, n_new=10, n_dev=10, n_regression=10, seed=0, new_classes=["a"])
    assert u.labels == ["b", "c", "a"]  # old labels keep ids 0 and 1; the added class comes last
    assert u.num_old_labels == 2
    assert set(u.old["label"]) == {0, 1}
    plain = update.label_map(["b", "c"], [], allow_new=False, where="x")
    assert plain == u.labels[:2]


def test_numeric_labels_keep_their_value():
    assert update.label_map([10, 2, 1, 0], [], False, "x") == ["0", "1", "2", "10"]


def test_unseen_label_without_add_classes_names_the_scenario():
    with pytest.raises(FlipgateError, match="data.scenario: add_classes"):
        update.label_map(["0", "1"], ["2"], allow_new=False, where="data.files")


def test_files_source_reads_jsonl_csv_parquet_and_folders(tmp_path):
    df = toy_frame(30, 2)
    df.iloc[:10].to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    (tmp_path / "upd").mkdir()
    df.iloc[10:20].to_csv(tmp_path / "upd" / "b.csv", index=False)
    df.iloc[20:].drop(columns="id").to_parquet(tmp_path / "upd" / "c.parquet")
    got = sources.load_files([str(tmp_path / "a.jsonl"), str(tmp_path / "upd")], "data.files.new", "text", "label", "id")
    assert len(got) == 30
    assert got["id"].tolist()[:10] == df["id"].tolist()[:10]
    assert got["id"].tolist()[20] == "c:0"  # no id column: file stem and row


def test_files_source_errors_name_the_file(tmp_path):
    with pytest.raises(FlipgateError, match="data.files.old: .*missing.jsonl not found"):
        sources.load_files([str(tmp_path / "missing.jsonl")], "data.files.old", "text", "label", "id")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{not json\n')
    with pytest.raises(FlipgateError, match="bad.jsonl: cannot read"):
        sources.load_files([str(bad)], "k", "text", "label", "id")
    nolabel = tmp_path / "nolabel.csv"
    pd.DataFrame({"text": ["a"]}).to_csv(nolabel, index=False)
    with pytest.raises(FlipgateError, match=r"nolabel.csv: missing column\(s\) \['label'\]"):
        sources.load_files([str(nolabel)], "k", "text", "label", "id")


def test_embedded_source_is_rotten_tomatoes():
    df = sources.load_embedded()
    assert len(df) == 8530 and set(df["label"]) == {0, 1} and df["id"].is_unique


def test_hf_source_offline_names_the_param(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlipgateError, match="data.hf.dataset"):
        sources.load_hf("no-such-user/no-such-dataset", None, "train", "text", "label")


def test_params_refuse_unknown_keys(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train_old:\n  epoch: 3\n")
    with pytest.raises(FlipgateError, match="train_old.epoch: Extra inputs"):
        load_section("train_old", p)
    p.write_text("trian_old:\n  epochs: 3\n")
    with pytest.raises(FlipgateError, match=r"unknown section\(s\) \['trian_old'\]"):
        load_section("train_old", p)


def test_seeds_default_order_and_bad_values(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("base: {}\n")
    assert load_seeds(p) == [0]
    p.write_text("seeds: [2, 0, 1]\n")
    assert load_seeds(p) == [2, 0, 1]  # order kept: the first is the primary run
    for bad in ("[]", "[1, 1]", "[-1]", "'0'", "[0.5]", "[true]", "[4294967296]"):
        p.write_text(f"seeds: {bad}\n")
        with pytest.raises(FlipgateError, match=r"seeds: expected a non-empty list of distinct integers in \[0, 2\*\*32\)"):
            load_seeds(p)


def test_a_stage_refuses_a_repeated_seed_before_writing(tmp_path):
    """DVC expands `seeds: [1, 1]` without a word; the first stage to run names the key and stops."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text("seeds: [1, 1]\ntracking: {enabled: false}\n")
    run = subprocess.run([sys.executable, str(root / "stages" / "update.py"), "data/update"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert run.returncode == 3  # bad input
    assert run.stderr.strip().endswith("params.yaml: seeds: expected a non-empty list of distinct integers in "
                                       "[0, 2**32), e.g. [0, 1, 2]; got [1, 1]")
    assert not (tmp_path / "data").exists()


def test_whole_params_file_is_checked_at_once_with_every_bad_key_named(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("seeds: [4294967296]\nbcwi: {alphas: []}\ntrain_new: {epochs: true}\n"
                 "data: {source: files, files: {old: a.jsonl, new: [], dev: d.jsonl, regression: r.jsonl}}\n")
    with pytest.raises(FlipgateError) as err:
        check_all(p)
    msg = str(err.value)
    for key in ("data.files.new", "train_new.epochs", "bcwi.alphas", "seeds"):
        assert key in msg, key
    p.write_text("data: {source: files}\nupdate: {new_classes: [a]}\n")
    with pytest.raises(FlipgateError, match=r"data.files: required .*; update.new_classes: set data.scenario: add_classes"):
        check_all(p)
    p.write_text("base: {}\n")
    assert set(check_all(p)) >= {"base", "bcwi", "gate"}


def test_a_bad_key_of_a_later_stage_stops_the_first_stage_before_it_writes(tmp_path):
    """`bcwi.alphas: []` used to pass `update`, `validate` and three trainings before bcwi refused it."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text("bcwi: {alphas: []}\ntracking: {enabled: false}\n")
    run = subprocess.run([sys.executable, str(root / "stages" / "update.py"), "data/update"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert run.returncode != 0
    assert "bcwi.alphas: Value error, alphas must be a non-empty list" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "data").exists()


def test_labels_1_and_1_0_are_one_class_and_a_missing_label_names_the_file(tmp_path):
    pd.DataFrame({"text": ["a", "b"], "label": [1, 0]}).to_json(tmp_path / "int.jsonl", orient="records", lines=True)
    (tmp_path / "float.csv").write_text("text,label\nc,1.0\nd,0.0\n")
    got = sources.load_files([str(tmp_path / "int.jsonl"), str(tmp_path / "float.csv")], "data.files.old", "text", "label", None)
    assert got["label"].tolist() == ["1", "0", "1", "0"]
    assert update.label_map(got["label"], got["label"], allow_new=True, where="x") == ["0", "1"]
    (tmp_path / "hole.csv").write_text("text,label\ne,1\nf,\ng,0\n")
    with pytest.raises(FlipgateError, match=r"hole.csv: column 'label': 1 row\(s\) have no label \(first at row 1\)"):
        sources.load_files([str(tmp_path / "hole.csv")], "data.files.old", "text", "label", None)
    (tmp_path / "names.jsonl").write_text('{"text": "h", "label": "alarm_set"}\n{"text": "i", "label": "1.5"}\n')
    got = sources.load_files([str(tmp_path / "names.jsonl")], "k", "text", "label", None)
    assert got["label"].tolist() == ["alarm_set", "1.5"]


def _run_seeds_module():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "run_seeds.py"
    spec = importlib.util.spec_from_file_location("run_seeds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_merges_into_a_valid_params_file(config, tmp_path):
    """A config is merged into params.yaml by benchmarks/run_seeds.py before an hour of training: a typo
    in it must fail here, not when its stage starts."""
    import yaml
    run_seeds = _run_seeds_module()
    root = Path(__file__).resolve().parents[1]
    params = run_seeds.merge(yaml.safe_load((root / "params.yaml").read_text()), yaml.safe_load(config.read_text()))
    params["seeds"] = [0, 1, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sections = check_all(tmp_path / "params.yaml")
    assert set(sections) >= {"base", "baselines", "new_ensemble"}
    params = run_seeds.merge(params, {"baselines": {"kd": {"enabeld": True}}})  # the check can fail
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(FlipgateError, match=r"baselines.kd.enabeld"):
        check_all(tmp_path / "params.yaml")
