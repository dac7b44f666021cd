import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flipgate.errors import FlipgateError
from flipgate.io import read_json, write_parquet
from flipgate.mitigation.selection_rule import Rule, rule_from
from flipgate.mitigation.ensemble import ensemble, logit_ensemble, pad_old_logits, prob_ensemble, softmax
from flipgate.predictions import logits_matrix, predictions_frame, read_predictions

ROOT = Path(__file__).resolve().parents[1]


def table(prefix: str, labels, logits) -> pd.DataFrame:
    return predictions_frame([f"{prefix}{i}" for i in range(len(labels))], labels, np.asarray(logits, np.float32))


def test_logit_and_prob_ensembles_are_the_weighted_mixtures():
    old = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
    new = np.array([[0.0, 3.0], [1.0, 0.0]], np.float32)
    np.testing.assert_allclose(logit_ensemble(old, new, 0.7), 0.3 * old + 0.7 * new, rtol=1e-6)
    np.testing.assert_allclose(logit_ensemble(old, new, 1.0), new)
    np.testing.assert_allclose(logit_ensemble(old, new, 0.0), old)
    p = np.exp(prob_ensemble(old, new, 0.6))
    np.testing.assert_allclose(p, 0.4 * softmax(old) + 0.6 * softmax(new), rtol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    # The two can disagree: old's large logits outvote new in logit space but not in probability space.
    old2, new2 = np.array([[10.0, 0.0]], np.float32), np.array([[0.0, 3.0]], np.float32)
    assert logit_ensemble(old2, new2, 0.6).argmax() == 0 and prob_ensemble(old2, new2, 0.6).argmax() == 1


def test_added_classes_get_no_vote_from_old():
    old = np.array([[1.0, -2.0]], np.float32)
    padded = pad_old_logits(old, 3)
    np.testing.assert_array_equal(padded, [[1.0, -2.0, -2.0]])
    p = np.exp(prob_ensemble(old, np.zeros((1, 3), np.float32), 0.0))
    assert p[0, 2] == pytest.approx(0.0, abs=1e-12) and p.sum() == pytest.approx(1.0)
    with pytest.raises(FlipgateError, match="only grow"):
        pad_old_logits(np.zeros((1, 3), np.float32), 2)


def dev_case():
    """Dev set of 10: new is right on 8 and flips 2 of old's correct; old is right on 6."""
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    old_right = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    new_right = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], bool)

    def logits(right, strength):
        pred = np.where(right, labels, 1 - labels)
        out = np.zeros((len(labels), 2), np.float32)
        out[np.arange(len(labels)), pred] = strength
        return out

    old = table("d", labels, logits(old_right, np.array([3, 3, 1, 1, 1, 1, 1, 1, 1, 1.0])))
    new = table("d", labels, logits(new_right, np.array([1, 1, 2, 2, 2, 2, 2, 2, 2, 2.0])))
    return old, new


def test_alpha_is_chosen_on_dev_and_the_regression_set_only_scored():
    old_dev, new_dev = dev_case()
    rng = np.random.default_rng(0)
    reg_labels = rng.integers(0, 2, 50)
    picks = []
    for seed in (1, 2):  # two unrelated regression sets
        r = np.random.default_rng(seed)
        old_reg = table("r", reg_labels, r.normal(size=(50, 2)))
        new_reg = table("r", reg_labels, r.normal(size=(50, 2)))
        res = ensemble("logit", {"dev": old_dev, "regression": old_reg}, {"dev": new_dev, "regression": new_reg},
                       [0.5, 0.6, 0.7, 0.8, 0.9], Rule("tolerance", tolerance=0.10))
        picks.append((res.alpha, res.reason))
        assert set(res.tables) == {"dev", "regression"} and len(res.tables["regression"]) == 50
        assert res.metrics["regression"]["n"] == 50
    assert picks[0] == picks[1]
    # Below alpha 0.6 old's strong logits win the two flipped examples back: lowest dev NFR at 0.5
    # (accuracy 8/10 = new's, inside a 10-point tolerance).
    assert picks[0][0] == 0.5
    dev = [r for r in res.curve if r["split"] == "dev"]
    assert {r["alpha"]: r["nfr"] for r in dev}[0.5] == 0.0


def test_tolerance_excludes_alphas_that_lose_too_much_dev_accuracy():
    old_dev, new_dev = dev_case()
    # Old three times as loud: at alpha 0.5 old wins every disagreement (no flips, old's 6/10 accuracy);
    # at 0.95 new wins every one (new's 8/10, 2 flips).
    old_dev = old_dev.assign(logits=list(logits_matrix(old_dev) * 3))
    loose = ensemble("logit", {"dev": old_dev}, {"dev": new_dev}, [0.5, 0.95], Rule("tolerance", tolerance=0.5))
    tight = ensemble("logit", {"dev": old_dev}, {"dev": new_dev}, [0.5, 0.95], Rule("tolerance", tolerance=0.005))
    assert loose.alpha == 0.5 and loose.metrics["dev"]["accuracy"] == pytest.approx(0.6)
    assert loose.metrics["dev"]["nfr"] == 0.0
    assert tight.alpha == 0.95 and tight.metrics["dev"]["accuracy"] == pytest.approx(0.8)
    assert "0.95 (80.00%, NFR 20.00%)" in tight.reason
    half_rule, half = rule_from("tolerance", 0.01, 0.8, 0.0, "ci", 0.95, 8, 10)
    assert half == pytest.approx(0.2266, abs=1e-3)  # the Wilson 95% interval of 8/10 is [0.490, 0.943]
    assert ensemble("logit", {"dev": old_dev}, {"dev": new_dev}, [0.5, 0.95], half_rule).alpha == 0.5
    # the gate's own objective: at a 10% budget only alpha 0.5 (no flips) is admissible
    budget = ensemble("logit", {"dev": old_dev}, {"dev": new_dev}, [0.5, 0.95], Rule("budget", nfr_budget=0.1, confidence=0.5))
    assert budget.alpha == 0.5 and budget.choice["admissible"]


def test_tables_are_aligned_by_id_and_mismatches_are_named():
    old_dev, new_dev = dev_case()
    shuffled = new_dev.iloc[::-1].reset_index(drop=True)
    a = ensemble("prob", {"dev": old_dev}, {"dev": new_dev}, [0.7])
    b = ensemble("prob", {"dev": old_dev}, {"dev": shuffled}, [0.7])
    pd.testing.assert_frame_equal(a.tables["dev"], b.tables["dev"])
    with pytest.raises(FlipgateError, match=r"predictions/new/dev vs predictions/old/dev: ids do not match: "
                                            r"1 baseline id\(s\) missing from the candidate \(e.g. 'd9'\)"):
        ensemble("prob", {"dev": old_dev}, {"dev": new_dev.iloc[:-1]}, [0.7])
    with pytest.raises(FlipgateError, match="dev predictions"):
        ensemble("prob", {"regression": old_dev}, {"regression": new_dev}, [0.7])


def test_stage_writes_tables_and_report_into_its_seed_run_folder(tmp_path):
    old_dev, new_dev = dev_case()
    run_dir = tmp_path / "seeds" / "3"
    for split in ("dev", "regression"):
        write_parquet(old_dev, run_dir / "predictions" / "old" / f"{split}.parquet")
        write_parquet(new_dev, run_dir / "predictions" / "new" / f"{split}.parquet")
    params = {"seeds": [3], "ensembles": {"alphas": [0.5, 0.9], "tolerance": 10}, "tracking": {"enabled": False}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    stage = [sys.executable, str(ROOT / "stages" / "ensembles.py")]
    start = time.perf_counter()
    run = subprocess.run([*stage, "--run", "seeds/3", "--seed", "3"], cwd=tmp_path, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert run.returncode == 0, run.stderr
    report = read_json(run_dir / "reports" / "ensembles.json")
    # By hand (dev_case): at alpha 0.5 old's confident 3s win back d0, d1 (prob 0.5 * 0.953 + 0.5 * 0.269 =
    # 0.611 on the gold class; logit 1.5 vs 0.5) and new's 2s fix d6..d9 (prob 0.575; logit 1 vs 0.5):
    # 10 of 10 right, no flip. At alpha 0.9 new wins d0, d1 (prob 0.337; logit 0.3 vs 0.9): 8 of 10, NFR 0.2.
    for kind in ("prob", "logit"):
        assert report[kind]["alpha"] == 0.5
        dev = {r["alpha"]: r for r in report[kind]["curve"] if r["split"] == "dev"}
        assert (dev[0.5]["accuracy"], dev[0.5]["nfr"], dev[0.9]["accuracy"], dev[0.9]["nfr"]) == (1.0, 0.0, 0.8, 0.2)
        t = read_predictions(run_dir / "predictions" / f"ensemble_{kind}" / "regression.parquet")
        assert list(t["id"]) == list(old_dev["id"]) and list(t["pred"]) == list(old_dev["label"])
        reg = report[kind]["metrics"]["regression"]
        # new's 2 negative flips (d0, d1) are both fixed and none is added
        assert (reg["accuracy"], reg["nfr"], reg["fix_rate"], reg["new_fault_rate"]) == (1.0, 0.0, 1.0, 0.0)
    timing = read_json(run_dir / "reports" / "timings" / "ensembles.json")
    assert timing["seed"] == 3 and 0 < timing["wall_time_s"] < elapsed  # the stage's own part of the run
    assert not (tmp_path / "reports").exists() and not (tmp_path / "predictions").exists()

    bad = subprocess.run([*stage, "--run", "seeds/4", "--seed", "four"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode == 64 and bad.stderr.strip() == (  # a usage error
        "ensembles: error: argument --seed: invalid int value: 'four' (per-seed stages take --run seeds/<seed> --seed <seed>)")
    assert not (tmp_path / "seeds" / "4").exists()
    unseeded = subprocess.run([*stage, "--run", "seeds/4"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert unseeded.returncode == 64 and "--run seeds/4 without --seed" in unseeded.stderr
    assert not (tmp_path / "seeds" / "4").exists()
