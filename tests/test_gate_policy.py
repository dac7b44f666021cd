"""The gate's pure decision on hand-computed cases."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from flipgate.gate import render
from flipgate.gate.policy import Policy, decide
from flipgate.metrics.flips import per_class_nfr

# 10 examples. Baseline right on 0-7, wrong on 8-9. Candidate breaks 0 and 1 (2 negative flips),
# fixes 8 (1 positive flip): NFR 2/10 = 0.2, accuracy 7/10 vs baseline 8/10.
IDS = [f"e{i}" for i in range(10)]
LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
BASE = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 0])
CAND = np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 0])


def check(decision, name):
    (c,) = [c for c in decision.checks if c.name == name]
    return c


def test_hand_computed_nfr_and_gain():
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=0.01))
    assert d.counts.negative_flips == 2 and d.counts.positive_flips == 1
    assert check(d, "nfr").observed == pytest.approx(0.2)
    assert check(d, "nfr").verdict == "fail"
    assert check(d, "accuracy_gain").observed == pytest.approx(-0.1)
    assert check(d, "accuracy_gain").verdict == "fail"
    assert d.verdict == "reject" and not d.passed


def test_budget_is_inclusive_and_negative_min_gain_allows_a_loss():
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=0.2, min_gain=-0.1))
    assert [c.verdict for c in d.checks] == ["pass", "pass"]
    assert d.verdict == "pass" and d.passed
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=0.2, min_gain=-0.09))
    assert d.verdict == "reject"


def test_equal_accuracy_passes_default_min_gain():
    cand = BASE.copy()
    cand[[0, 8]] = [1, 1]  # one negative, one positive flip: gain exactly 0
    d = decide(LABELS, BASE, cand, Policy(nfr_budget=0.1))
    assert check(d, "accuracy_gain").observed == 0.0
    assert d.verdict == "pass"


def perfect(n):
    y = np.zeros(n, dtype=np.int64)
    return y, y.copy(), y.copy()


def test_upper_bound_inconclusive_when_set_too_small():
    p = Policy(nfr_budget=0.01, upper_bound=True)
    d = decide(*perfect(298), p)
    c = check(d, "nfr_upper_bound")
    assert c.verdict == "inconclusive" and c.observed > 0.01
    assert "299" in c.detail
    assert check(d, "nfr").verdict == "pass"
    assert d.verdict == "inconclusive"
    assert decide(*perfect(299), p).verdict == "pass"


def test_upper_bound_inconclusive_when_point_passes_on_a_larger_set():
    y, base, cand = perfect(1000)
    cand[:9] = 1  # NFR 0.009 <= 0.01, bound ~0.016 > 0.01
    d = decide(y, base, cand, Policy(nfr_budget=0.01, upper_bound=True, min_gain=-0.01))
    assert check(d, "nfr").verdict == "pass"
    assert check(d, "nfr_upper_bound").verdict == "inconclusive"
    assert d.verdict == "inconclusive"


def test_upper_bound_fails_with_the_point_estimate():
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=0.1, upper_bound=True, min_gain=-1))
    assert check(d, "nfr_upper_bound").verdict == "fail"
    assert d.verdict == "reject"


def test_a_failure_beats_inconclusive():
    y, base, cand = perfect(100)
    cand[:5] = 1  # NFR 0.05 > budget and the bound cannot pass either
    d = decide(y, base, cand, Policy(nfr_budget=0.01, upper_bound=True, min_gain=-1))
    assert d.verdict == "reject"


def test_empty_set_is_inconclusive():
    empty = np.zeros(0, dtype=np.int64)
    d = decide(empty, empty, empty, Policy(upper_bound=True, per_class_budget=0.1))
    assert d.verdict == "inconclusive"
    assert all(c.verdict == "inconclusive" and c.observed is None for c in d.checks)
    assert d.counts.n == 0


def test_per_class_budget():
    # class 0: 2 flips of 5 (0.4); class 1: 0 of 5.
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=1, min_gain=-1, per_class_budget=0.3))
    c = check(d, "per_class_nfr")
    assert c.observed == pytest.approx(0.4) and c.verdict == "fail"
    assert "1 class(es) over budget: 0 (2/5)" in c.detail
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=1, min_gain=-1, per_class_budget=0.4))
    assert check(d, "per_class_nfr").verdict == "pass"


def test_per_class_matches_metrics_module():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 5000)
    base = np.where(rng.random(5000) < 0.8, y, rng.integers(0, 7, 5000))
    cand = np.where(rng.random(5000) < 0.85, y, rng.integers(0, 7, 5000))
    ref = per_class_nfr(y, base, cand)
    d = decide(y, base, cand, Policy(per_class_budget=0.5))
    assert check(d, "per_class_nfr").observed == max(v["nfr"] for v in ref.values())


def test_golden_ids():
    # e0 flips negatively; e9 is wrong for both models (not a flip); e5 stays right.
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=1, min_gain=-1, golden_ids={"e5", "e9"}), ids=IDS)
    assert check(d, "golden_ids").verdict == "pass" and check(d, "golden_ids").observed == 0
    d = decide(LABELS, BASE, CAND, Policy(nfr_budget=1, min_gain=-1, golden_ids={"e0", "e5"}), ids=IDS)
    c = check(d, "golden_ids")
    assert (c.verdict, c.observed, c.threshold) == ("fail", 1, 0)
    assert "'e0'" in c.detail and d.verdict == "reject"


def test_golden_id_outside_the_set_is_an_error():
    with pytest.raises(ValueError, match="1 golden id.*'nope'"):
        decide(LABELS, BASE, CAND, Policy(golden_ids={"e0", "nope"}), ids=IDS)
    with pytest.raises(ValueError, match="need the examples' ids"):
        decide(LABELS, BASE, CAND, Policy(golden_ids={"e0"}))


def test_policy_validation():
    for bad in (dict(nfr_budget=1.5), dict(ci_level=1.0), dict(min_gain=-2), dict(per_class_budget=-0.1)):
        with pytest.raises(ValueError):
            Policy(**bad)


def test_decision_is_frozen_data():
    d = decide(LABELS, BASE, CAND, Policy(upper_bound=True, golden_ids={"e0"}), ids=IDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.verdict = "pass"
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.checks[0].verdict = "pass"
    payload = json.loads(json.dumps(d.to_dict()))
    assert payload["verdict"] == "reject"
    assert [c["name"] for c in payload["checks"]] == ["nfr", "nfr_upper_bound", "accuracy_gain", "golden_ids"]
    assert payload["counts"]["negative_flips"] == 2
    assert payload["policy"]["golden_ids"] == 1
    assert set(payload["checks"][0]) == {"name", "observed", "op", "threshold", "verdict", "detail"}


def test_markdown_summary():
    md = render.markdown(decide(LABELS, BASE, CAND, Policy(), baseline="old.parquet", candidate="new.parquet"))
    assert md.startswith("### flipgate gate: ❌ REJECT")
    assert "`new.parquet` vs `old.parquet` on 10 regression examples: NFR 20.00% (2 negative flips)" in md
    assert "| nfr | 0.2000 | <= 0.0100 | fail |" in md
    assert "| accuracy_gain | -0.1000 | >= 0.0000 | fail |" in md


def test_an_unfit_baseline_makes_a_pass_inconclusive_and_is_named():
    labels = np.array([0, 1] * 50)
    passing = decide(labels, labels, labels, Policy(nfr_budget=0.01))
    assert passing.verdict == "pass"
    why = "old is not fit to judge (failed: train_loss): train longer"
    judged = passing.with_fit({"old": why, "target": "target is not fit to judge (failed: converged): ..."})
    assert judged.verdict == "inconclusive"
    check = next(c for c in judged.checks if c.name == "baseline_fit")
    assert check.verdict == "inconclusive" and check.detail == why
    assert judged.to_dict()["unfit"]["target"].startswith("target is not fit")
    assert "not fit to judge" in render.markdown(judged) and "target is not fit" in render.text(judged)
    # a candidate-side model that is unfit is named, but does not change the verdict
    assert passing.with_fit({"target": "target is not fit to judge"}).verdict == "pass"
    # a reject stays a reject
    wrong = decide(labels, labels, 1 - labels, Policy(nfr_budget=0.01)).with_fit({"old": why})
    assert wrong.verdict == "reject"


def test_a_fallback_candidate_fails_dev_selection():
    labels = np.array([0, 1] * 50)
    passing = decide(labels, labels, labels, Policy(nfr_budget=0.01))
    assert passing.with_selection(True, "fine").verdict == "pass"
    fallback = passing.with_selection(False, "no option met the rule")
    assert fallback.verdict == "reject"
    assert [c.name for c in fallback.checks if c.verdict == "fail"] == ["dev_selection"]
