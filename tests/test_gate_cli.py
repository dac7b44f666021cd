"""`flipgate gate` on real predictions files: exit codes, refusals, outputs, and no torch import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flipgate.cli import main

ROOT = Path(__file__).resolve().parents[1]
N = 400  # enough for the upper bound at budget 0.01 / 95% to pass with zero flips (needs 299)


def frame(pred, labels=None, ids=None, logits=True) -> pd.DataFrame:
    labels = np.zeros(N, dtype=np.int64) if labels is None else labels
    df = pd.DataFrame({"id": ids or [f"r{i}" for i in range(len(pred))], "label": labels, "pred": pred})
    if logits:
        df["logits"] = list(np.eye(3, dtype=np.float32)[pred])
    return df


def base_pred() -> np.ndarray:
    pred = np.zeros(N, dtype=np.int64)
    pred[-20:] = 1  # baseline wrong on the last 20
    return pred


@pytest.fixture
def files(tmp_path):
    """baseline.parquet plus candidates: good (fixes 10 errors), bad (breaks 10), meh (breaks 2, fixes 3)."""
    paths = {"baseline": tmp_path / "baseline.parquet"}
    frame(base_pred()).to_parquet(paths["baseline"])
    good, bad, meh = base_pred(), base_pred(), base_pred()
    good[-10:] = 0
    bad[:10] = 2
    meh[:2], meh[-3:] = 2, 0
    for name, pred in (("good", good), ("bad", bad), ("meh", meh)):
        paths[name] = tmp_path / f"{name}.parquet"
        # shuffled rows: the gate joins on id, not on row order
        frame(pred).sample(frac=1, random_state=1).to_parquet(paths[name])
    return paths


def gate(*args) -> int:
    return main(["gate", *map(str, args)])


def test_pass_reject_inconclusive(files, tmp_path):
    assert gate("--baseline", files["baseline"], "--candidate", files["good"]) == 0
    assert gate("--baseline", files["baseline"], "--candidate", files["bad"]) == 1  # NFR 0.025
    # meh: NFR 0.005 passes, its 95% upper bound (~0.016) cannot show <= 0.01 on 400 examples
    assert gate("--baseline", files["baseline"], "--candidate", files["meh"]) == 0
    assert gate("--baseline", files["baseline"], "--candidate", files["meh"], "--upper-bound") == 2
    meh = ("--baseline", files["baseline"], "--candidate", files["meh"])
    assert gate(*meh, "--upper-bound", "--nfr-budget", 0.02) == 0


def test_empty_regression_set_is_inconclusive(tmp_path):
    empty = frame(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), logits=False)
    empty.to_parquet(tmp_path / "old.parquet")
    empty.to_csv(tmp_path / "new.csv", index=False)
    assert gate("--baseline", tmp_path / "old.parquet", "--candidate", tmp_path / "new.csv") == 2


def test_writes_json_and_markdown(files, tmp_path, capsys):
    out_json, out_md = tmp_path / "out" / "gate.json", tmp_path / "out" / "gate.md"
    rc = gate("--baseline", files["baseline"], "--candidate", files["bad"], "--json", out_json, "--markdown", out_md)
    assert rc == 1
    d = json.loads(out_json.read_text())
    assert d["verdict"] == "reject"
    assert d["counts"]["negative_flips"] == 10 and d["counts"]["n"] == N
    assert d["checks"][0] == {
        "name": "nfr", "observed": 10 / N, "op": "<=", "threshold": 0.01, "verdict": "fail",
        "detail": "10 negative flips of 400",
    }
    assert "| nfr | 0.0250 | <= 0.0100 | fail |" in out_md.read_text()
    assert "flipgate gate: REJECT" in capsys.readouterr().out


def test_csv_and_jsonl_inputs(files, tmp_path):
    df = pd.read_parquet(files["good"]).drop(columns="logits")
    df.to_csv(tmp_path / "good.csv", index=False)
    df.to_json(tmp_path / "good.jsonl", orient="records", lines=True)
    assert gate("--baseline", files["baseline"], "--candidate", tmp_path / "good.csv") == 0
    assert gate("--baseline", tmp_path / "good.jsonl", "--candidate", files["bad"]) == 1


def test_params_section_and_flag_override(files, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("gate:\n  nfr_budget: 0.05\n  min_gain: -0.05\n")
    bad = ("--baseline", files["baseline"], "--candidate", files["bad"], "--params", params)
    assert gate(*bad) == 0
    assert gate(*bad, "--nfr-budget", 0.01) == 1
    params.write_text("gate:\n  nfr_budgit: 0.05\n")
    assert gate(*bad) == 3


def test_golden_ids(files, tmp_path, capsys):
    golden = tmp_path / "golden.txt"
    golden.write_text("# must never flip\nr0\nr100\n")  # meh breaks r0 and r1
    assert gate("--baseline", files["baseline"], "--candidate", files["meh"], "--golden-ids", golden) == 1
    assert "golden_ids" in capsys.readouterr().out
    golden.write_text("r100\nr101\n")
    assert gate("--baseline", files["baseline"], "--candidate", files["meh"], "--golden-ids", golden) == 0
    golden.write_text("r100\nnot-in-the-set\n")
    assert gate("--baseline", files["baseline"], "--candidate", files["meh"], "--golden-ids", golden) == 3
    assert "'not-in-the-set'" in capsys.readouterr().err


def test_per_class_budget(files):
    labels = np.zeros(N, dtype=np.int64)
    labels[-20:] = 1
    # relabel so the baseline's wrong rows form class 1 and the candidate breaks 2 of its 20
    base, cand = labels.copy(), labels.copy()
    cand[-2:] = 0
    d = files["baseline"].parent
    frame(base, labels).to_parquet(d / "b.parquet")
    frame(cand, labels).to_parquet(d / "c.parquet")
    args = ("--baseline", d / "b.parquet", "--candidate", d / "c.parquet", "--min-gain", -0.01)
    assert gate(*args) == 0  # pooled NFR 2/400 = 0.005
    assert gate(*args, "--per-class-budget", 0.05) == 1  # class 1: 2/20 = 0.1


def err_of(capsys, *args) -> str:
    assert gate(*args) == 3
    return capsys.readouterr().err


def test_malformed_files(files, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    assert "cannot read it as parquet" in err_of(capsys, "--baseline", files["baseline"], "--candidate", corrupt)
    no_pred = tmp_path / "no_pred.parquet"
    pd.read_parquet(files["good"]).drop(columns="pred").to_parquet(no_pred)
    assert "missing column(s) ['pred']" in err_of(capsys, "--baseline", files["baseline"], "--candidate", no_pred)
    float_pred = tmp_path / "float_pred.csv"
    pd.read_parquet(files["good"]).assign(pred=0.5).drop(columns="logits").to_csv(float_pred, index=False)
    assert "integer class ids" in err_of(capsys, "--baseline", files["baseline"], "--candidate", float_pred)
    txt = tmp_path / "preds.txt"
    txt.write_text("id,label,pred\n")
    assert "unknown format" in err_of(capsys, "--baseline", files["baseline"], "--candidate", txt)
    assert "file not found" in err_of(capsys, "--baseline", files["baseline"], "--candidate", tmp_path / "nope.parquet")


def test_mismatched_ids(files, tmp_path, capsys):
    df = pd.read_parquet(files["good"])
    df = df[~df["id"].isin(["r3", "r4"])]
    extra = df.iloc[:1].assign(id="zz")
    pd.concat([df, extra]).to_parquet(tmp_path / "ids.parquet")
    err = err_of(capsys, "--baseline", files["baseline"], "--candidate", tmp_path / "ids.parquet")
    assert "2 baseline id(s) missing from the candidate (e.g. 'r3')" in err
    assert "1 candidate id(s) missing from the baseline (e.g. 'zz')" in err


def test_duplicate_ids_and_label_disagreement(files, tmp_path, capsys):
    df = pd.read_parquet(files["good"])
    dup = df.copy()
    dup.loc[dup["id"] == "r5", "id"] = "r6"
    dup.to_parquet(tmp_path / "dup.parquet")
    err = err_of(capsys, "--baseline", files["baseline"], "--candidate", tmp_path / "dup.parquet")
    assert "1 duplicate id(s), e.g. 'r6'" in err
    # same ids in the same row order on both sides: the fast path must still see the duplicate
    same_order = frame(base_pred())
    same_order.loc[same_order["id"] == "r5", "id"] = "r6"
    same_order.to_parquet(tmp_path / "dup_base.parquet")
    same_order.assign(pred=2).to_parquet(tmp_path / "dup_cand.parquet")
    err = err_of(capsys, "--baseline", tmp_path / "dup_base.parquet", "--candidate", tmp_path / "dup_cand.parquet")
    assert "dup_base.parquet: 1 duplicate id(s), e.g. 'r6'" in err
    relabel = df.copy()
    relabel.loc[relabel["id"].isin(["r1", "r2", "r3"]), "label"] = 2
    relabel.to_parquet(tmp_path / "relabel.parquet")
    err = err_of(capsys, "--baseline", files["baseline"], "--candidate", tmp_path / "relabel.parquet")
    assert "3 id(s) have a different label" in err


def test_refuses_self_comparison(files, tmp_path, capsys):
    assert "baseline's own file" in err_of(capsys, "--baseline", files["baseline"], "--candidate", files["baseline"])
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(files["baseline"].read_bytes())
    assert "baseline's own file" in err_of(capsys, "--baseline", files["baseline"], "--candidate", copy)
    # same predictions, other bytes (other row order, no logits, csv)
    same = tmp_path / "same.csv"
    pd.read_parquet(files["baseline"]).drop(columns="logits").iloc[::-1].to_csv(same, index=False)
    err = err_of(capsys, "--baseline", files["baseline"], "--candidate", same)
    assert "every prediction equals the baseline's" in err
    assert gate("--baseline", files["baseline"], "--candidate", same, "--allow-identical") == 0


def test_run_references_are_refused(files, capsys):
    # models:/ references are resolved through the registry (tests/test_pipeline_e2e.py); runs:/ are not.
    err = err_of(capsys, "--baseline", "runs:/abc/model", "--candidate", files["good"])
    assert "only models:/<name>@<alias> or models:/<name>/<version> references are supported" in err


def test_console_script_and_no_torch(files):
    exe = ROOT / ".venv" / "bin" / "flipgate"
    if not exe.exists():
        exe = Path(sys.executable).parent / "flipgate"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [exe, "gate", "--baseline", files["baseline"], "--candidate", files["bad"]],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "flipgate gate: REJECT" in proc.stdout
    code = (
        "import sys; from flipgate.cli import main\n"
        f"rc = main(['gate', '--baseline', {str(files['baseline'])!r}, '--candidate', {str(files['good'])!r},"
        " '--upper-bound', '--json', " + repr(str(files["good"].parent / "d.json")) + "])\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'dvc', 'great_expectations') if m in sys.modules]\n"
        "print('RESULT', rc, heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "RESULT 0 []", proc.stdout + proc.stderr
