"""`flipgate predict MODEL DATA OUT`: the table it writes is the one the pipeline's predict step writes, and
the gate reads it; bad input exits 3 naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import toy_frame
from flipgate.cli import main
from flipgate.predictions import logits_matrix, read_predictions


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    return toy_frame(40, seed=7, prefix="p")


def pipeline_table(model_dir, df: pd.DataFrame, tmp_path, max_length: int = 128) -> pd.DataFrame:
    """What the pipeline's own predict step (models.run.write_predictions) writes for these texts."""
    from flipgate.models.classifier import load_classifier
    from flipgate.models.device import get_device
    from flipgate.models.run import write_predictions

    model, tokenizer = load_classifier(str(model_dir))
    write_predictions(model, tokenizer, {"split": df}, tmp_path / "pipeline", get_device("cpu"), 64, max_length)
    return read_predictions(tmp_path / "pipeline" / "split.parquet")


def assert_same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["id"].tolist() == want["id"].tolist()
    assert got["label"].tolist() == want["label"].tolist()
    assert got["pred"].tolist() == want["pred"].tolist()
    torch.testing.assert_close(torch.from_numpy(logits_matrix(got)), torch.from_numpy(logits_matrix(want)),
                               rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_written_table_is_the_pipelines(tiny_bert, examples, tmp_path, suffix, capsys):
    data = tmp_path / f"data{suffix}"
    {".jsonl": lambda p: examples.to_json(p, orient="records", lines=True),
     ".csv": lambda p: examples.to_csv(p, index=False),
     ".parquet": lambda p: examples.to_parquet(p, index=False)}[suffix](data)
    out = tmp_path / "out" / "regression.parquet"
    assert main(["predict", str(tiny_bert), str(data), str(out), "--device", "cpu"]) == 0
    assert "40 predictions" in capsys.readouterr().out
    assert_same_table(read_predictions(out), pipeline_table(tiny_bert, examples, tmp_path))
    assert sorted(p.name for p in out.parent.iterdir()) == ["regression.parquet"]  # no temp left


def test_the_gate_reads_what_predict_writes(tiny_bert, tiny_bert_wide, examples, tmp_path, capsys):
    data = tmp_path / "data.parquet"
    examples.to_parquet(data, index=False)
    for name, model in (("old", tiny_bert), ("new", tiny_bert_wide)):
        assert main(["predict", str(model), str(data), str(tmp_path / f"{name}.parquet"), "--device", "cpu"]) == 0
    rc = main(["gate", "--baseline", str(tmp_path / "old.parquet"), "--candidate", str(tmp_path / "new.parquet"),
               "--nfr-budget", "1", "--min-gain", "-1", "--allow-identical"])
    assert rc == 0
    assert "n=40" in capsys.readouterr().out


def test_class_names_map_through_the_models_labels(tiny_bert, examples, tmp_path):
    model = tmp_path / "named"
    shutil.copytree(tiny_bert, model)
    (model / "flipgate.json").write_text(json.dumps({"kind": "hf", "labels": ["neg", "pos"]}))
    named = examples.assign(label=examples["label"].map({0: "neg", 1: "pos"}))
    named.to_json(tmp_path / "named.jsonl", orient="records", lines=True)
    assert main(["predict", str(model), str(tmp_path / "named.jsonl"), str(tmp_path / "p.parquet")]) == 0
    assert read_predictions(tmp_path / "p.parquet")["label"].tolist() == examples["label"].tolist()
    named.assign(label="meh").to_json(tmp_path / "meh.jsonl", orient="records", lines=True)
    assert main(["predict", str(model), str(tmp_path / "meh.jsonl"), str(tmp_path / "q.parquet")]) == 3


@pytest.mark.parametrize("case, message", [
    ("no_label", "missing column(s) ['label']; flipgate predict needs ['id', 'text', 'label']"),
    ("no_text", "missing column(s) ['text']"),
    ("missing_model", "model folder not found"),
    ("not_a_model", "not a model folder (no flipgate.json and no config.json)"),
    ("model_is_a_file", "is a file; MODEL is a model folder"),
    ("data_missing", "data file not found"),
    ("empty_text", "1 row(s) have no text (first at row 3)"),
    ("duplicate_ids", "1 duplicate id(s), e.g. 'p1'"),
    ("out_not_parquet", "OUT is a .parquet file"),
    ("out_is_a_folder", "is a folder; name a file"),
    ("runs_uri", "only a model folder, models:/"),
])
def test_bad_input_exits_3_naming_it(tiny_bert, examples, tmp_path, capsys, case, message):
    data, model, out = tmp_path / "data.parquet", str(tiny_bert), tmp_path / "out.parquet"
    df = examples.copy()
    if case == "no_label":
        df = df.drop(columns="label")
    elif case == "no_text":
        df = df.drop(columns="text")
    elif case == "empty_text":
        df.loc[3, "text"] = None
    elif case == "duplicate_ids":
        df.loc[5, "id"] = "p1"
    df.to_parquet(data, index=False)
    if case == "missing_model":
        model = str(tmp_path / "nope")
    elif case == "not_a_model":
        (tmp_path / "empty").mkdir()
        model = str(tmp_path / "empty")
    elif case == "model_is_a_file":
        model = str(data)
    elif case == "data_missing":
        data = tmp_path / "gone.csv"
    elif case == "out_not_parquet":
        out = tmp_path / "out.csv"
    elif case == "out_is_a_folder":
        out.mkdir()
    elif case == "runs_uri":
        model = "runs:/abc/model"
    assert main(["predict", model, str(data), str(out)]) == 3
    err = capsys.readouterr().err
    assert message in err and err.startswith("flipgate predict: error: ")
    assert not out.is_file()


def test_a_registered_model_by_alias(tiny_bert, examples, store, tmp_path, monkeypatch):
    from flipgate import tracking
    from flipgate.gate import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = tracking.connect(store)
    registry._ensure_model(client, "predict-test")
    mv = registry._register(client, tiny_bert, "predict-test", {"model_hash": "x" * 16, "verdict": "pass"}, 32, "predict-test")
    client.set_registered_model_alias("predict-test", "champion", mv.version)
    data = tmp_path / "data.parquet"
    examples.to_parquet(data, index=False)
    out = tmp_path / "champion.parquet"
    assert main(["predict", "models:/predict-test@champion", str(data), str(out), "--device", "cpu"]) == 0
    # the registered max_length (32) is used, as the pyfunc would use it
    assert_same_table(read_predictions(out), pipeline_table(tiny_bert, examples, tmp_path, max_length=32))
    assert main(["predict", "models:/predict-test@nobody", str(data), str(out)]) == 3


def test_ids_stay_text(tiny_bert, tmp_path):
    df = pd.DataFrame({"id": ["007", "10", "x"], "text": ["good film", "bad plot", "fine"], "label": [1, 0, 1]})
    df.to_csv(tmp_path / "d.csv", index=False)
    assert main(["predict", str(tiny_bert), str(tmp_path / "d.csv"), str(tmp_path / "p.parquet")]) == 0
    got = read_predictions(tmp_path / "p.parquet")
    assert got["id"].tolist() == ["007", "10", "x"]
    assert np.isfinite(logits_matrix(got)).all()
