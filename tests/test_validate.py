"""Data validation: each expectation catches its crafted bad frame, clean data passes, drift warns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from flipgate.data.validate import ROLES, normalised_texts, total_variation, validate_update, write_reports
from flipgate.errors import FlipgateError
from flipgate.params import Validate

ROOT = Path(__file__).resolve().parents[1]
NAMES = {role: f"data/update/{role}.parquet" for role in ROLES}


def frame(prefix: str, n: int, labels=(0, 1)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series([f"{prefix}{i}" for i in range(n)], dtype="string"),
            "text": [f"{prefix} review number {i} was fine" for i in range(n)],
            "label": pd.Series([labels[i % len(labels)] for i in range(n)], dtype="int64"),
        }
    )


def clean() -> dict[str, pd.DataFrame]:
    return {"old": frame("old", 40), "new": frame("new", 20), "dev": frame("dev", 20), "regression": frame("reg", 20)}


def run(frames: dict[str, pd.DataFrame], **kw):
    kw = {"old_labels": [0, 1], "names": NAMES, **kw}
    return validate_update(frames["old"], frames["new"], frames["regression"], dev=frames["dev"], **kw)


def failed(result) -> set[tuple[str, str, str | None]]:
    return {(c.file, c.expectation, c.column) for c in result.failures}


def test_clean_update_passes_every_check():
    result = run(clean())
    assert result.success and result.warnings == []
    assert all(c.success for c in result.checks)
    # 1 row count + 3 columns + 3 not-null + unique + blank + length + label set = 11 per file,
    # plus leakage on old and new, cross-file ids on new, drift on new; dev: leakage against the regression
    # set and the training data, and "dev is not the regression set".
    per_file = {role: sum(c.file == NAMES[role] for c in result.checks) for role in ROLES}
    assert per_file == {"old": 12, "new": 14, "dev": 14, "regression": 11}
    result.raise_for_failures()  # no error


def _set(role, idx, col, value):
    def mutate(frames):
        frames[role].loc[idx, col] = value
    return mutate


def _leak(frames):
    frames["new"].loc[3, "text"] = "  " + frames["regression"].loc[5, "text"].upper().replace(" ", "\t ") + " "


def _shared_id(frames):
    frames["new"].loc[4, "id"] = "old7"


def _dup_id(frames):
    frames["new"].loc[6, "id"] = "new5"


CASES = {
    "null text": (_set("new", 2, "text", None), "new", "expect_column_values_to_not_be_null", "text", ["new2"]),
    "null label": (_set("old", 2, "label", None), "old", "expect_column_values_to_not_be_null", "label", ["old2"]),
    "blank text": (_set("old", 1, "text", " \t "), "old", "expect_column_values_to_not_match_regex", "text", ["old1"]),
    "unknown label": (_set("regression", 4, "label", 7), "regression", "expect_column_values_to_be_in_set", "label", ["reg4"]),
    "duplicate id": (_dup_id, "new", "expect_column_values_to_be_unique", "id", ["new5", "new5"]),
    "id in old and new": (_shared_id, "new", "expect_column_values_to_be_in_set", "id_in_old", ["old7"]),
    "leaked text": (_leak, "new", "expect_column_values_to_be_in_set", "in_regression", ["new3"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_expectation_catches_its_bad_frame(case):
    mutate, role, expectation, column, ids = CASES[case]
    frames = clean()
    mutate(frames)
    result = run(frames)
    assert failed(result) == {(NAMES[role], expectation, column)}
    (check,) = result.failures
    assert [r["id"] for r in check.rows] == ids
    with pytest.raises(FlipgateError) as err:
        result.raise_for_failures()
    msg = str(err.value)
    assert NAMES[role] in msg and expectation in msg and f"id={ids[0]!r}" in msg


def test_leakage_can_be_downgraded_to_a_warning():
    frames = clean()
    _leak(frames)
    result = run(frames, leakage="warn")
    assert result.success
    (check,) = [c for c in result.checks if not c.success]
    assert (check.column, check.severity, check.rows[0]["id"]) == ("in_regression", "warning", "new3")
    assert len(result.warnings) == 1 and "(leakage)) failed: 1 of 20 row(s); kept as a warning" in result.warnings[0]


def test_empty_text_fails_blank_and_length_checks():
    frames = clean()
    frames["old"].loc[1, "text"] = ""
    result = run(frames)
    assert failed(result) == {
        (NAMES["old"], "expect_column_values_to_not_match_regex", "text"),
        (NAMES["old"], "expect_column_value_lengths_to_be_between", "text"),
    }
    assert all(c.rows == [{"id": "old1", "text": ""}] for c in result.failures)


def test_text_longer_than_max_chars_fails_and_is_truncated_in_rows():
    frames = clean()
    frames["regression"].loc[0, "text"] = "x" * 300
    result = run(frames, max_chars=250)
    (check,) = result.failures
    assert (check.expectation, check.kwargs["max_value"], check.observed["unexpected_count"]) == (
        "expect_column_value_lengths_to_be_between", 250, 1)
    assert check.rows[0]["text"] == "x" * 200 + "..."


def test_missing_column_fails_and_skips_its_checks():
    frames = clean()
    frames["old"] = frames["old"].drop(columns="label")
    result = run(frames)
    assert failed(result) == {(NAMES["old"], "expect_column_to_exist", "label")}
    assert "label" not in result.failures[0].observed["columns"]
    with pytest.raises(FlipgateError, match=r"data/update/old.parquet: expect_column_to_exist on column 'label'"):
        result.raise_for_failures()


def test_empty_file_fails_row_count():
    frames = clean()
    frames["new"] = frames["new"].iloc[:0]
    result = run(frames)
    assert (NAMES["new"], "expect_table_row_count_to_be_between", None) in failed(result)


def test_at_most_ten_offending_rows_are_kept_and_counted_all():
    frames = clean()
    frames["old"].loc[:14, "label"] = 9
    (check,) = run(frames).failures
    assert check.observed["unexpected_count"] == 15 and len(check.rows) == 10
    assert check.observed["unexpected_values"] == [9] * 10


def test_add_classes_allows_new_labels_in_new_only():
    frames = clean()
    frames["new"].loc[[0, 1, 2], "label"] = 2
    frames["regression"].loc[0, "label"] = 2
    assert run(frames, added_labels=[2], scenario="add_classes").success
    # The same frames under data_update: the added class is unknown in D_new and D_reg.
    assert failed(run(frames, added_labels=[2], scenario="data_update")) == {
        (NAMES["new"], "expect_column_values_to_be_in_set", "label"),
        (NAMES["regression"], "expect_column_values_to_be_in_set", "label"),
    }
    frames["old"].loc[0, "label"] = 2
    assert failed(run(frames, added_labels=[2], scenario="add_classes")) == {
        (NAMES["old"], "expect_column_values_to_be_in_set", "label")}


def test_add_classes_drift_ignores_added_classes_and_warns_when_none_arrive():
    frames = clean()
    frames["new"].loc[::2, "label"] = 2  # half of D_new is the added class; the rest is all class 1
    result = run(frames, added_labels=[2], scenario="add_classes")
    drift = next(c for c in result.checks if c.expectation == "class_balance_drift")
    assert drift.observed["new"] == {1: 1.0} and drift.observed["tvd"] == 0.5
    none_added = run(clean(), added_labels=[2], scenario="add_classes")
    assert none_added.success and any("no example of the added classes [2]" in w for w in none_added.warnings)


def test_drift_warns_without_failing():
    frames = clean()
    frames["new"]["label"] = 0
    result = run(frames, drift_threshold=0.2)
    assert result.success
    drift = next(c for c in result.checks if c.expectation == "class_balance_drift")
    assert (drift.success, drift.severity, drift.observed["tvd"]) == (False, "warning", 0.5)
    assert len(result.warnings) == 1 and "total variation distance 0.500 > 0.2" in result.warnings[0]
    assert run(frames, drift_threshold=0.5).warnings == []


def test_text_normalisation_and_tvd():
    assert normalised_texts(pd.Series(["  A \t b\nC "])).tolist() == ["a b c"]
    # the cache's sameness (Python's str.lower), not Arrow's: a final sigma stays final, a missing text missing
    assert normalised_texts(pd.Series(["ΣΑΣ", None])).tolist()[0] == "σας"
    assert normalised_texts(pd.Series(["ΣΑΣ", None])).isna().tolist() == [False, True]
    assert total_variation({0: 0.5, 1: 0.5}, {0: 1.0}) == 0.5
    assert total_variation({0: 1.0}, {1: 1.0}) == 1.0


def test_params_section_refuses_bad_bounds():
    assert Validate() == Validate(min_chars=1, max_chars=2000, drift_threshold=0.2)
    with pytest.raises(ValidationError):
        Validate(min_chars=10, max_chars=5)
    with pytest.raises(ValidationError):
        Validate(drift_thresold=0.3)


def test_reports_are_written_and_readable(tmp_path):
    frames = clean()
    frames["new"].loc[2, "text"] = None
    json_path, md_path = write_reports(run(frames), tmp_path)
    report = json.loads(json_path.read_text())
    assert (report["success"], report["n_checks"], report["n_failed"], report["n_warnings"]) == (False, 51, 1, 0)
    assert report["files"]["new"]["success"] is False and report["files"]["old"]["success"] is True
    bad = [c for c in report["files"]["new"]["checks"] if not c["success"]]
    assert [(c["expectation"], c["rows"]) for c in bad] == [
        ("expect_column_values_to_not_be_null", [{"id": "new2", "text": None}])]
    md = md_path.read_text()
    assert md.startswith("# Data validation: FAILED (1 check(s))") and "| no missing values | text | FAIL |" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validation.json", "validation.md"]


def _write_inputs(root: Path, frames: dict[str, pd.DataFrame], scenario: str = "data_update") -> None:
    data = root / "data" / "update"
    data.mkdir(parents=True)
    for role, df in frames.items():
        df.to_parquet(data / f"{role}.parquet", index=False)
    (data / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"], "num_old_labels": 2}))
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {"scenario": scenario}, "validate": {"max_chars": 500}}))


def _stage(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, str(ROOT / "stages" / "validate.py"), "data/update", "reports"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_stage_fails_with_one_clear_message_and_complete_reports(tmp_path):
    frames = clean()
    _leak(frames)
    _write_inputs(tmp_path, frames)
    proc = _stage(tmp_path)
    assert proc.returncode != 0
    err = proc.stderr
    assert "validate: error: 1 data check(s) failed" in err
    assert "data/update/new.parquet: expect_column_values_to_be_in_set on column 'in_regression'" in err
    assert "id='new3'" in err
    assert "Calculating Metrics" not in err and "great_expectations" not in err  # GX's bars and logs stay off
    reports = tmp_path / "reports"
    # Reports are written whole (atomic rename) before the stage fails; no temp files stay behind.
    assert sorted(p.name for p in reports.iterdir()) == ["validation.json", "validation.md"]
    assert json.loads((reports / "validation.json").read_text())["success"] is False


def test_stage_passes_on_clean_files(tmp_path):
    _write_inputs(tmp_path, clean())
    proc = _stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "reports" / "validation.json").read_text())["success"] is True


def test_a_dev_set_that_is_the_regression_set_fails_even_when_leakage_only_warns():
    frames = clean()
    frames["dev"] = frames["regression"].copy()
    result = run(frames, leakage="warn")
    assert failed(result) == {(NAMES["dev"], "dev_is_not_the_regression_set", "text")}
    check = next(c for c in result.failures)
    assert check.observed == {"share": 1.0}
    with pytest.raises(FlipgateError, match=r"dev\.parquet: dev_is_not_the_regression_set"):
        result.raise_for_failures()


def test_dev_texts_shared_with_the_regression_set_or_training_data_are_leakage():
    frames = clean()
    frames["dev"].loc[0, "text"] = frames["regression"].loc[3, "text"].upper()  # normalised before comparing
    frames["dev"].loc[1, "text"] = frames["old"].loc[5, "text"]
    result = run(frames)
    assert failed(result) == {(NAMES["dev"], "expect_column_values_to_be_in_set", "in_regression"),
                              (NAMES["dev"], "expect_column_values_to_be_in_set", "in_training")}
    by_column = {c.column: c for c in result.failures}
    assert by_column["in_regression"].rows[0]["id"] == "dev0"
    assert by_column["in_training"].rows[0]["id"] == "dev1"
    warned = run(frames, leakage="warn")
    assert warned.success and len(warned.warnings) == 2


def test_duplicate_dev_ids_fail_before_any_training():
    frames = clean()
    frames["dev"].loc[3, "id"] = "dev2"
    assert failed(run(frames)) == {(NAMES["dev"], "expect_column_values_to_be_unique", "id")}
