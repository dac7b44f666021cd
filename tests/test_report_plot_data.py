"""The tables dvc.yaml's `plots` draw, written by the report beside its PNGs (reports/plots/*.csv);
hand-computed on test_report's 8-example case."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from test_report import project  # noqa: F401  (the fixture)

from flipgate.errors import FlipgateError
from flipgate.report.build import build_report
from flipgate.report.figures import bcwi_curve_frame


def _csv(project, name: str) -> pd.DataFrame:  # noqa: F811  (project: the path)
    return pd.read_csv(io.BytesIO((project / "reports" / "plots" / name).read_bytes()))


def test_per_class_nfr_of_new_and_the_candidate(project):  # noqa: F811
    build_report(project / "predictions", project / "data" / "update", project / "reports")
    table = _csv(project, "per_class_nfr.csv")
    # new breaks r1 (neutral) and r4 (positive); bcwi, gate.json's candidate, breaks only r4
    assert table.to_dict("list") == {
        "class": ["negative", "neutral", "positive"], "n": [3, 3, 2],
        "nfr_new": [0.0, pytest.approx(1 / 3), 0.5], "nfr_candidate": [0.0, 0.0, 0.5],
        "candidate": ["bcwi"] * 3,
    }
    assert not (project / "reports" / "plots" / "bcwi_curve.csv").exists()  # no bcwi_curve.json: no curve


def test_bcwi_curve_table_from_the_bcwi_stage_rows(project):  # noqa: F811
    rows = [{"variant": v, "alpha": a, "split": s, "accuracy": acc, "nfr": nfr, "pfr": 0.01, "nfi": 0.1,
             "negative_flips": 1, "n": 10}
            for v, a, s, acc, nfr in [("plain", 0.0, "dev", 0.8, 0.04), ("plain", 0.0, "regression", 0.81, 0.05),
                                      ("plain", 0.5, "dev", 0.79, 0.01), ("plain", 0.5, "regression", 0.8, 0.02),
                                      ("fisher", 0.5, "dev", 0.5, 0.5)]]
    (project / "reports" / "bcwi_curve.json").write_text(json.dumps({"rows": rows}))
    build_report(project / "predictions", project / "data" / "update", project / "reports")
    assert _csv(project, "bcwi_curve.csv").to_dict("list") == {
        "alpha": [0.0, 0.5], "accuracy_dev": [0.8, 0.79], "nfr_dev": [0.04, 0.01], "pfr_dev": [0.01, 0.01],
        "accuracy_regression": [0.81, 0.8], "nfr_regression": [0.05, 0.02], "pfr_regression": [0.01, 0.01],
    }  # the plain variant only
    assert list(bcwi_curve_frame({"rows": []}).columns) == ["alpha"]
    (project / "reports" / "bcwi_curve.json").write_text("[1, 2]")
    with pytest.raises(FlipgateError, match=r'bcwi_curve.json: expected \{"rows": \[...\]\}'):
        build_report(project / "predictions", project / "data" / "update", project / "reports")
