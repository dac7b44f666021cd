"""Fit-to-judge checks on hand-made training curves and dev predictions."""

import math

import numpy as np

from flipgate.models.fit import fit_checks

DEV = np.array([0] * 50 + [1] * 30 + [2] * 20)  # majority class 0: 50% of dev


def verdicts(result: dict) -> dict:
    return {c["name"]: c["verdict"] for c in result["checks"]}


def test_an_underfit_many_class_model_fails_and_says_what_to_change():
    k = 77
    loss = [4.29, 4.10, 3.87, 3.66]  # ln 77 = 4.34: barely moved, still falling steeply
    labels = np.arange(100) % k
    pred = np.where(np.arange(100) < 35, labels, (labels + 1) % k)
    result = fit_checks(loss, kept_epoch=4, stopped_on_dev=False, train_labels=np.arange(1000) % k,
                        dev_labels=labels, dev_pred=pred, num_classes=k)
    assert not result["fit"]
    v = verdicts(result)
    assert v["train_loss"] == "fail" and v["converged"] == "fail" and v["beats_trivial"] == "pass"
    assert result["checks"][1]["threshold"] == 0.75 * math.log(k)
    assert "max_epochs" in result["advice"]


def test_a_trained_model_passes():
    loss = [0.60, 0.38, 0.27, 0.22]  # last drop 0.05 = 0.23x the first
    pred = DEV.copy()
    pred[:15] = 1  # 85% right
    result = fit_checks(loss, 4, False, np.array([0, 1, 2] * 10), DEV, pred, 3)
    assert result["fit"] and result["failed"] == []


def test_majority_class_predictor_fails_beats_trivial():
    pred = np.zeros_like(DEV)  # always the majority class: 50%
    result = fit_checks([0.9, 0.4, 0.3], 3, True, np.array([0] * 60 + [1] * 40), DEV, pred, 3)
    assert verdicts(result)["beats_trivial"] == "fail" and not result["fit"]


def test_early_stop_on_dev_is_not_called_unconverged():
    loss = [2.0, 1.0, 0.5, 0.25]  # still falling, but dev accuracy had stopped improving
    pred = DEV.copy()
    result = fit_checks(loss, 2, True, DEV, DEV, pred, 3)
    assert verdicts(result)["converged"] == "pass"
