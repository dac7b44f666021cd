"""`flipgate predict --spark`: the same predictions as the plain path (same ids and preds, logits within
1e-5), written as parquet part files keyed by id that `flipgate gate` reads; without pyspark, one clear
message saying how to install it.

The Spark tests share one local[2] session (the command uses a running session as it is), so the JVM
starts once per module."""

from __future__ import annotations

import json
import shutil
import sys
from importlib.util import find_spec

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import toy_frame
from flipgate.cli import main
from flipgate.predictions import logits_matrix, read_predictions

needs_pyspark = pytest.mark.skipif(
    find_spec("pyspark") is None,
    reason="pyspark is not installed (pip install 'flipgate[spark]'): the --spark path is not tested here")


@pytest.fixture(scope="module")
def examples() -> pd.DataFrame:
    return toy_frame(150, seed=11, prefix="s")


@pytest.fixture(scope="module")
def spark():
    import os

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (SparkSession.builder.master("local[2]").appName("flipgate tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def read_parts(folder) -> pd.DataFrame:
    """Every part file of a Spark output, as one table (files whose names start with _ or . skipped)."""
    parts = sorted(p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")
    assert parts, f"no part files in {folder}"
    return pd.concat([pq.read_table(p).to_pandas().assign(part=p.name) for p in parts], ignore_index=True)


def assert_same_predictions(spark_table: pd.DataFrame, plain: pd.DataFrame) -> None:
    got = spark_table.set_index(spark_table["id"].astype(str)).loc[plain["id"].astype(str)]
    assert sorted(spark_table["id"].astype(str)) == sorted(plain["id"].astype(str))  # same ids, each once
    assert got["label"].tolist() == plain["label"].tolist()
    assert got["pred"].tolist() == plain["pred"].tolist()
    diff = np.abs(np.stack(got["logits"].to_numpy()).astype(np.float32) - logits_matrix(plain))
    assert diff.max() <= 1e-5, f"logits differ by up to {diff.max():.2e}"


@needs_pyspark
@pytest.mark.slow
def test_spark_predictions_are_the_plain_ones(spark, tiny_bert, examples, tmp_path, capsys):
    data = tmp_path / "regression.jsonl"
    examples.to_json(data, orient="records", lines=True)
    plain, out = tmp_path / "plain.parquet", tmp_path / "spark"
    assert main(["predict", str(tiny_bert), str(data), str(plain), "--device", "cpu", "--batch-size", "16"]) == 0
    assert main(["predict", "--spark", str(tiny_bert), str(data), str(out), "--device", "cpu", "--batch-size", "16",
                 "--partitions", "3"]) == 0
    assert "150 predictions" in capsys.readouterr().out
    table = read_parts(out)
    assert_same_predictions(table, read_predictions(plain))
    # keyed by id: 3 parts, each id in one of them, each part sorted by id; the folder is whole, no temp beside it
    assert table["part"].nunique() == 3 and not table["id"].duplicated().any()
    for _, part in table.groupby("part"):
        assert part["id"].tolist() == sorted(part["id"])
    assert (out / "_SUCCESS").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.parquet", "regression.jsonl", "spark"]
    # the streaming gate reads the folder
    rc = main(["gate", "--baseline", str(plain), "--candidate", str(out), "--nfr-budget", "0", "--min-gain", "0",
               "--allow-identical"])
    assert rc == 0
    assert "n=150" in capsys.readouterr().out


@needs_pyspark
@pytest.mark.slow
def test_csv_class_names_and_a_rerun_into_the_same_folder(spark, tiny_bert, examples, tmp_path, capsys):
    model = tmp_path / "named"
    shutil.copytree(tiny_bert, model)
    (model / "flipgate.json").write_text(json.dumps({"kind": "hf", "labels": ["neg", "pos"]}))
    named = examples.assign(label=examples["label"].map({0: "neg", 1: "pos"}),
                            id=[f"00{i}" for i in range(len(examples))])  # ids that look like numbers stay text
    named.loc[3, "text"] = 'a "quoted", comma\nand a newline'
    named.to_csv(tmp_path / "named.csv", index=False)
    plain, out = tmp_path / "plain.parquet", tmp_path / "preds"
    assert main(["predict", str(model), str(tmp_path / "named.csv"), str(plain), "--device", "cpu"]) == 0
    for _ in range(2):  # the second run replaces the first run's output
        assert main(["predict", "--spark", str(model), str(tmp_path / "named.csv"), str(out), "--device", "cpu"]) == 0
    table = read_parts(out)
    assert_same_predictions(table, read_predictions(plain))
    assert table.set_index("id").loc[named["id"], "label"].tolist() == examples["label"].tolist()


@needs_pyspark
@pytest.mark.parametrize("case, message", [
    ("no_label", "missing column(s) ['label']; flipgate predict needs ['id', 'text', 'label']"),
    ("empty_text", "1 row(s) have no text"),
    ("duplicate_ids", "1 duplicate id(s), e.g. 's1'"),
    ("unknown_name", "labels are names (e.g. 'meh') but the model lists no class names"),
    ("out_is_a_file", "is a file; with --spark OUT is a folder"),
    ("out_not_spark", "is a folder that is not a Spark output (no _SUCCESS)"),
    ("data_missing", "data file not found"),
])
def test_bad_input_exits_3_naming_it(spark, tiny_bert, examples, tmp_path, capsys, case, message):
    data, out = tmp_path / "data.parquet", tmp_path / "out"
    df = examples.copy()
    if case == "no_label":
        df = df.drop(columns="label")
    elif case == "empty_text":
        df.loc[3, "text"] = ""
    elif case == "duplicate_ids":
        df.loc[5, "id"] = "s1"
    elif case == "unknown_name":
        df["label"] = "meh"
    df.to_parquet(data, index=False)
    if case == "out_is_a_file":
        out.write_text("x")
    elif case == "out_not_spark":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "data_missing":
        data = tmp_path / "gone.jsonl"
    assert main(["predict", "--spark", str(tiny_bert), str(data), str(out), "--device", "cpu"]) == 3
    err = capsys.readouterr().err
    assert message in err and err.startswith("flipgate predict: error: ")
    if case == "out_not_spark":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # left alone
    elif case != "out_is_a_file":
        assert not out.exists()


def test_without_pyspark_one_message_says_how_to_install(tiny_bert, examples, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` raises ImportError
    examples.to_parquet(tmp_path / "data.parquet", index=False)
    rc = main(["predict", "--spark", str(tiny_bert), str(tmp_path / "data.parquet"), str(tmp_path / "out")])
    assert rc == 64
    err = capsys.readouterr().err
    assert err.startswith("flipgate predict: error: --spark needs pyspark, which is not installed")
    assert "pip install 'flipgate[spark]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [["--partitions", "2"], ["--spark-master", "local[2]"]])
def test_spark_flags_need_spark(tiny_bert, tmp_path, capsys, flag):
    assert main(["predict", str(tiny_bert), str(tmp_path / "d.jsonl"), str(tmp_path / "o.parquet"), *flag]) == 64
    assert f"{flag[0]} needs --spark" in capsys.readouterr().err
