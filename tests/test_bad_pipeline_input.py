"""The bad-input corpus, pipeline side (issue 13): bad params.yaml files and bad data files through the
`update` and `validate` stages.

Each case edits a small project (toy files of 40/20/20/20 rows, `data.source: files`) and runs the stage
script in-process (stage.run: the whole params file checked first, one line on error, exit code), as DVC
would run it. It asserts the exit code (3: bad input), that the message names the file or key at fault,
that no traceback reaches the user, and that no output artifact was written: no `data/update/` after a
refused update, no `reports/validation_passed.json` (the marker training depends on) after a refused
validation. A few cases also run as `python stages/update.py` / `stages/validate.py` subprocesses. No
models.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml


from conftest import toy_frame

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
FILES = {"old": "userdata/old.jsonl", "new": ["userdata/updates"], "dev": "userdata/dev.jsonl",
         "regression": "userdata/reg.jsonl"}
UPDATE, VALIDATE = ("update.py", "data/update"), ("validate.py", "data/update", "reports")
PASSED = Path("reports/validation_passed.json")


def params() -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update(source="files", files=dict(FILES))
    p["tracking"]["enabled"] = False
    return p


def write_params(d: Path, p: dict) -> None:
    (d / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def edit_params(d: Path, change: Callable[[dict], None]) -> None:
    p = yaml.safe_load((d / "params.yaml").read_text())
    change(p)
    write_params(d, p)


def jsonl(d: Path, name: str, df: pd.DataFrame) -> Path:
    path = d / "userdata" / name
    df.to_json(path, orient="records", lines=True)
    return path


def frame(name: str) -> pd.DataFrame:
    n, seed, prefix = {"old": (40, 0, "o"), "new": (20, 1, "n"), "dev": (20, 2, "d"), "reg": (20, 3, "r")}[name]
    return toy_frame(n, seed, prefix)


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], str]  # edits the project; returns the text the message must hold
    stage: tuple[str, ...] = UPDATE  # the stage that must refuse (VALIDATE: update runs first and passes)
    code: int = 3
    subprocess: bool = False  # also run as a real `python stages/...` process


# --- params.yaml --------------------------------------------------------------------------------------

def set_key(path: str, value: object) -> Callable[[dict], None]:
    """A params edit: `a.b.c` set to value (sections and keys created as needed)."""
    def change(p: dict) -> None:
        *parents, last = path.split(".")
        node = p
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


def params_case(path: str, value: object, needle: str, stage: tuple[str, ...] = UPDATE, subproc: bool = False) -> Case:
    def make(d: Path) -> str:
        edit_params(d, set_key(path, value))
        return f"params.yaml: {needle}"
    return Case(make, stage, subprocess=subproc)


def raw_params_case(content: str | bytes, needle: str) -> Case:
    def make(d: Path) -> str:
        target = d / "params.yaml"
        (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)
        return f"params.yaml: {needle}"
    return Case(make)


def without_files(d: Path) -> str:
    edit_params(d, lambda p: p["data"].pop("files"))
    return "params.yaml: data.files: required when data.source is files"


def params_folder(d: Path) -> str:
    (d / "params.yaml").unlink()
    (d / "params.yaml").mkdir()
    return "params.yaml: is a folder; name the params file"


def params_missing(d: Path) -> str:
    (d / "params.yaml").unlink()
    return "params.yaml: params file not found"


PARAMS_CASES: dict[str, Case] = {
    "unknown_section": raw_params_case("trian_old:\n  epochs: 3\n", "unknown section(s) ['trian_old']"),
    "unknown_key": params_case("train_old.epoch", 3, "train_old.epoch: Extra inputs are not permitted"),
    "unknown_key_seen_by_validate": params_case("gate.nfr_budgit", 0.05, "gate.nfr_budgit: Extra inputs", VALIDATE),
    "wrong_type_int": params_case("base.max_length", "long", "base.max_length: Input should be a valid integer"),
    "wrong_type_float": params_case("gate.nfr_budget", "lots", "gate.nfr_budget: Input should be a valid number"),
    "wrong_type_list": params_case("select.candidates", "bcwi", "select.candidates: Input should be a valid list"),
    "out_of_range": params_case("gate.nfr_budget", 5, "gate.nfr_budget: Input should be less than or equal to 1"),
    "bcwi_alphas_empty": params_case("bcwi.alphas", [], "bcwi.alphas: Value error, alphas must be a non-empty list",
                                     subproc=True),
    "ensemble_alpha_above_one": params_case("ensembles.alphas", [0.5, 1.5], "ensembles.alphas: Value error"),
    "files_new_empty": params_case("data.files.new", [], "data.files.new: List should have at least 1 item"),
    "files_new_blank_path": params_case("data.files.new", [""], "data.files.new.0: String should have at least 1"),
    "seed_beyond_uint32": params_case("seeds", [4294967296], "seeds: expected a non-empty list of distinct integers"),
    "seeds_repeated": params_case("seeds", [1, 1], "seeds: expected a non-empty list of distinct integers"),
    "seeds_bool": params_case("seeds", [True], "seeds: expected a non-empty list of distinct integers"),
    "seeds_not_a_list": params_case("seeds", "0", "seeds: expected a non-empty list of distinct integers"),
    "update_seed_negative": params_case("update.seed", -1, "update.seed: Input should be greater than or equal to 0"),
    "epochs_true": params_case("train_new.epochs", True, "train_new.epochs"),
    "epochs_zero": params_case("train_old.epochs", 0, "train_old.epochs"),
    "epochs_fraction": params_case("gated_fusion.epochs", 2.5, "gated_fusion.epochs"),
    "epochs_word": params_case("train_target.epochs", "all", "train_target.epochs"),
    "scenario_typo": params_case("data.scenario", "add_class", "data.scenario: Input should be 'data_update' or"),
    "source_typo": params_case("data.source", "file", "data.source: Input should be 'embedded', 'files' or 'hf'"),
    "device_typo": params_case("base.device", "gpu", "base.device"),
    "max_below_min_chars": params_case("validate.min_chars", 3000, "validate.max_chars: Value error, max_chars must be"),
    "section_a_list": params_case("bcwi", [0.5], "bcwi: Input should be a valid dictionary"),
    "section_a_zero": params_case("bcwi", 0, "bcwi: Input should be a valid dictionary"),
    "section_a_word": params_case("gate", "strict", "gate: Input should be a valid dictionary"),
    "files_source_without_files": Case(without_files),
    "hf_source_without_hf": params_case("data.source", "hf", "data.hf: required when data.source is hf"),
    "new_classes_without_add_classes": params_case(
        "update.new_classes", ["1"], "update.new_classes: set data.scenario: add_classes"),
    "params_is_a_folder": Case(params_folder),
    "params_missing": Case(params_missing),
    "params_not_utf8": raw_params_case(b"base:\n  model: caf\xe9\n", "not a UTF-8 text file"),
    "params_not_yaml": raw_params_case("base: [unclosed\n", "not valid YAML"),
    "params_top_level_list": raw_params_case("- base\n", "expected a mapping of sections"),
}


# --- data files through the update stage ----------------------------------------------------------------

def data_case(make: Callable[[Path], str], stage: tuple[str, ...] = UPDATE, code: int = 3, subproc: bool = False) -> Case:
    return Case(make, stage, code, subproc)


def missing_text_column(d: Path) -> str:
    jsonl(d, "old.jsonl", frame("old").rename(columns={"text": "sentence"}))
    return "userdata/old.jsonl: missing column(s) ['text'] (found ['id', 'sentence', 'label'])"


def missing_label_column(d: Path) -> str:
    frame("new").drop(columns="label").to_csv(d / "userdata" / "updates" / "new.csv", index=False)
    (d / "userdata" / "updates" / "new.jsonl").unlink()
    return "userdata/updates/new.csv: missing column(s) ['label']"


def null_label_jsonl(d: Path) -> str:
    df = frame("old").astype({"label": object})
    df.loc[7, "label"] = None
    jsonl(d, "old.jsonl", df)
    return "userdata/old.jsonl: column 'label': 1 row(s) have no label (first at row 7)"


def nan_label_csv(d: Path) -> str:
    df = frame("reg").astype({"label": float})
    df.loc[3, "label"] = float("nan")
    df.to_csv(d / "userdata" / "reg.csv", index=False)
    edit_params(d, set_key("data.files.regression", "userdata/reg.csv"))
    return "userdata/reg.csv: column 'label': 1 row(s) have no label (first at row 3)"


def labels_1_and_1_0(d: Path) -> str:
    """Not bad input: 1 and 1.0 name one class (the update succeeds with two classes)."""
    df = frame("new").astype({"label": float})
    df.to_csv(d / "userdata" / "updates" / "floats.csv", index=False)  # 0.0, 1.0 beside old's 0, 1
    (d / "userdata" / "updates" / "new.jsonl").unlink()
    return ""


def unseen_label(split: str, file: str) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        df = frame("reg" if split == "regression" else split)
        df.loc[2, "label"] = 7
        jsonl(d, file, df)
        return f"data.files.{split}: label(s) ['7'] not in D_old's label set"
    return make


def label_in_no_training_file(d: Path) -> str:
    edit_params(d, set_key("data.scenario", "add_classes"))
    df = frame("reg")
    df.loc[2, "label"] = 7
    jsonl(d, "reg.jsonl", df)
    return "data.files.regression: label(s) ['7'] in no training file"


def empty_file(name: str, content: bytes, needle: str) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        (d / "userdata" / name).write_bytes(content)
        edit_params(d, set_key("data.files.dev", f"userdata/{name}"))
        return f"userdata/{name}: {needle}"
    return make


def header_only_csv(d: Path) -> str:
    (d / "userdata" / "old.csv").write_text("id,text,label\n")
    edit_params(d, set_key("data.files.old", "userdata/old.csv"))
    return "data.files.old: userdata/old.csv: no rows"


def corrupt(name: str, content: bytes, needle: str, key: str = "data.files.regression") -> Callable[[Path], str]:
    def make(d: Path) -> str:
        (d / "userdata" / name).write_bytes(content)
        edit_params(d, set_key(key, f"userdata/{name}"))
        return f"userdata/{name}: {needle}"
    return make


def truncated_parquet(d: Path) -> str:
    path = d / "userdata" / "reg.parquet"
    frame("reg").to_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    edit_params(d, set_key("data.files.regression", "userdata/reg.parquet"))
    return "userdata/reg.parquet: cannot read it as parquet"


def folder_without_data(d: Path) -> str:
    (d / "userdata" / "empty").mkdir()
    (d / "userdata" / "empty" / "README.txt").write_text("updates go here\n")
    edit_params(d, set_key("data.files.new", ["userdata/empty"]))
    return "data.files.new: folder userdata/empty holds no .jsonl/.csv/.parquet file"


def missing_path(d: Path) -> str:
    edit_params(d, set_key("data.files.dev", "userdata/nope.jsonl"))
    return "data.files.dev: userdata/nope.jsonl not found; fix the path in params.yaml"


def unknown_suffix(d: Path) -> str:
    (d / "userdata" / "dev.txt").write_text("id,text,label\nd0,good,1\n")
    edit_params(d, set_key("data.files.dev", "userdata/dev.txt"))
    return "userdata/dev.txt: unknown format '.txt'"


def latin1_csv(d: Path) -> str:
    (d / "userdata" / "dev.csv").write_bytes(b"id,text,label\nd0,caf\xe9 good,1\nd1,bad,0\n")
    edit_params(d, set_key("data.files.dev", "userdata/dev.csv"))
    return "userdata/dev.csv: cannot read it as csv (UnicodeDecodeError"


def null_text(d: Path) -> str:
    df = frame("new")
    df.loc[4, "text"] = None
    jsonl(d, "updates/new.jsonl", df)
    return "data.files.new: 1 row(s) have no text, e.g. id 'n4'"


def null_id(d: Path) -> str:
    df = frame("dev")
    df.loc[5, "id"] = None
    jsonl(d, "dev.jsonl", df)
    return "userdata/dev.jsonl: column 'id': 1 row(s) have no id (first at row 5)"


def list_ids(d: Path) -> str:
    df = frame("dev")
    df["id"] = [[i] for i in range(len(df))]
    jsonl(d, "dev.jsonl", df)
    return "userdata/dev.jsonl: id in row 0 is a list"


def label_a_list(d: Path) -> str:
    df = frame("new").astype({"label": object})
    df.at[0, "label"] = [1]
    jsonl(d, "updates/new.jsonl", df)
    return "userdata/updates/new.jsonl: column 'label': row 0 holds a list"


# --- data files that pass the update and fail validation ---------------------------------------------

def duplicate_dev_ids(d: Path) -> str:
    df = frame("dev")
    df.loc[3, "id"] = "d2"
    jsonl(d, "dev.jsonl", df)
    return "data/update/dev.parquet: expect_column_values_to_be_unique on column 'id'"


def dev_is_regression(d: Path) -> str:
    edit_params(d, set_key("data.files.dev", FILES["regression"]))
    return "data/update/dev.parquet: dev_is_not_the_regression_set"


def ids_shared_by_old_and_new(d: Path) -> str:
    df = frame("new")
    df.loc[0, "id"] = "o1"
    jsonl(d, "updates/new.jsonl", df)
    return "data/update/new.parquet: expect_column_values_to_be_in_set on column 'id_in_old'"


def blank_text(d: Path) -> str:
    df = frame("old")
    df.loc[9, "text"] = "   "
    jsonl(d, "old.jsonl", df)
    return "data/update/old.parquet: expect_column_values_to_not_match_regex on column 'text'"


def regression_in_training(d: Path) -> str:
    df = frame("old")
    df.loc[0, "text"] = frame("reg").loc[4, "text"]
    jsonl(d, "old.jsonl", df)
    return "data/update/old.parquet: expect_column_values_to_be_in_set on column 'in_regression'"


def split_missing(d: Path) -> str:
    (d / "data" / "update" / "regression.parquet").unlink()
    return "data/update/regression.parquet: not found; run the `update` stage first"


def split_corrupt(d: Path) -> str:
    (d / "data" / "update" / "dev.parquet").write_bytes(b"PAR1 garbage")
    return "data/update/dev.parquet: cannot read it as parquet"


def split_without_column(d: Path) -> str:
    pd.read_parquet(d / "data" / "update" / "new.parquet").drop(columns="label").to_parquet(
        d / "data" / "update" / "new.parquet")
    return "data/update/new.parquet: expect_column_to_exist on column 'label'"


def labels_json_missing(d: Path) -> str:
    (d / "data" / "update" / "labels.json").unlink()
    return "data/update/labels.json: file not found"


def labels_json_malformed(d: Path) -> str:
    (d / "data" / "update" / "labels.json").write_text('{"labels": "0,1"}\n')
    return "data/update/labels.json: expected {\"labels\": [names in id order], \"num_old_labels\": N}"


def data_dir_missing(d: Path) -> str:
    import shutil

    shutil.rmtree(d / "data" / "update")
    return "data/update/"


DATA_CASES: dict[str, Case] = {
    "missing_text_column": data_case(missing_text_column),
    "missing_label_column_csv": data_case(missing_label_column),
    "null_label_jsonl": data_case(null_label_jsonl, subproc=True),
    "nan_label_csv": data_case(nan_label_csv),
    "unseen_label_in_new": data_case(unseen_label("new", "updates/new.jsonl")),
    "unseen_label_in_dev": data_case(unseen_label("dev", "dev.jsonl")),
    "unseen_label_in_regression": data_case(unseen_label("regression", "reg.jsonl")),
    "add_classes_label_in_no_training_file": data_case(label_in_no_training_file),
    "empty_jsonl": data_case(empty_file("dev.jsonl", b"", "no rows")),
    "empty_csv": data_case(empty_file("dev.csv", b"", "cannot read it as csv")),
    "empty_parquet": data_case(empty_file("dev.parquet", b"", "cannot read it as parquet")),
    "header_only_csv": data_case(header_only_csv),
    "corrupt_jsonl": data_case(corrupt("reg.jsonl", b'{"id": "r0", "text": "good", "label": 1}\n{not json\n',
                                       "cannot read it as jsonl")),
    "corrupt_parquet": data_case(corrupt("reg.parquet", b"PAR1 not parquet PAR1", "cannot read it as parquet")),
    "truncated_parquet": data_case(truncated_parquet),
    "folder_without_data_file": data_case(folder_without_data),
    "missing_path": data_case(missing_path),
    "unknown_suffix": data_case(unknown_suffix),
    "not_utf8_csv": data_case(latin1_csv),
    "null_text": data_case(null_text),
    "null_id": data_case(null_id),
    "list_ids": data_case(list_ids),
    "label_a_list": data_case(label_a_list),
    "duplicate_dev_ids": data_case(duplicate_dev_ids, VALIDATE),
    "dev_identical_to_regression": data_case(dev_is_regression, VALIDATE, subproc=True),
    "ids_shared_by_old_and_new": data_case(ids_shared_by_old_and_new, VALIDATE),
    "blank_text": data_case(blank_text, VALIDATE),
    "regression_text_in_training": data_case(regression_in_training, VALIDATE),
}

# Cases that break the update stage's output before validate reads it (a split deleted, corrupt or edited
# by hand): the update runs first, then `make` edits data/update.
BROKEN_SPLIT_CASES: dict[str, Callable[[Path], str]] = {
    "split_missing": split_missing,
    "split_corrupt": split_corrupt,
    "split_without_label_column": split_without_column,
    "labels_json_missing": labels_json_missing,
    "labels_json_malformed": labels_json_malformed,
    "data_dir_missing": data_dir_missing,
}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    (tmp_path / "userdata" / "updates").mkdir(parents=True)
    for name, file in (("old", "old.jsonl"), ("new", "updates/new.jsonl"), ("dev", "dev.jsonl"), ("reg", "reg.jsonl")):
        jsonl(tmp_path, file, frame(name))
    write_params(tmp_path, params())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_stage(args: tuple[str, ...], capsys, monkeypatch) -> tuple[int, str]:
    """Run stages/<script> in this process as DVC would start it; return (exit code, stdout + stderr)."""
    script = str(ROOT / "stages" / args[0])
    monkeypatch.setattr(sys, "argv", [script, *args[1:]])
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out + err


def run_script(args: tuple[str, ...], d: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / args[0]), *args[1:]], cwd=d, env=ENV,
                          capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout + proc.stderr


def check(code: int, shown: str, case: Case, needle: str, d: Path) -> None:
    assert code == case.code, shown
    assert "Traceback" not in shown and "internal error" not in shown, shown
    if case.code == 0:
        return
    assert needle in shown, shown
    assert f"{case.stage[0].removesuffix('.py')}: error: " in shown, shown  # one line from stage.run
    if case.stage == UPDATE:
        assert not (d / "data").exists(), "a refused update wrote data/"
    assert not (d / PASSED).exists(), "a refused run left the marker training depends on"
    leftovers = [p for p in d.rglob(".*.tmp")]
    assert not leftovers, leftovers


def test_the_corpus_is_big_enough():
    assert len(PARAMS_CASES) + len(DATA_CASES) + len(BROKEN_SPLIT_CASES) >= 60
    assert sum(c.subprocess for c in (*PARAMS_CASES.values(), *DATA_CASES.values())) <= 3  # seconds of imports each


@pytest.mark.parametrize("name", list(PARAMS_CASES))
def test_bad_params(name, project, capsys, monkeypatch):
    case = PARAMS_CASES[name]
    needle = case.make(project)
    code, shown = run_stage(case.stage, capsys, monkeypatch)
    check(code, shown, case, needle, project)


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_bad_data(name, project, capsys, monkeypatch):
    case = DATA_CASES[name]
    needle = case.make(project)
    if case.stage == VALIDATE:
        code, shown = run_stage(UPDATE, capsys, monkeypatch)
        assert code == 0, shown
    code, shown = run_stage(case.stage, capsys, monkeypatch)
    check(code, shown, case, needle, project)
    if case.stage == VALIDATE:  # the report says why, the marker stays away
        assert json.loads((project / "reports" / "validation.json").read_text())["success"] is False


def test_labels_1_and_1_0_are_one_class(project, capsys, monkeypatch):
    labels_1_and_1_0(project)
    code, shown = run_stage(UPDATE, capsys, monkeypatch)
    assert code == 0, shown
    assert json.loads((project / "data" / "update" / "labels.json").read_text())["labels"] == ["0", "1"]


@pytest.mark.parametrize("name", list(BROKEN_SPLIT_CASES))
def test_broken_update_output_is_refused_by_validate(name, project, capsys, monkeypatch):
    code, shown = run_stage(UPDATE, capsys, monkeypatch)
    assert code == 0, shown
    needle = BROKEN_SPLIT_CASES[name](project)
    code, shown = run_stage(VALIDATE, capsys, monkeypatch)
    check(code, shown, Case(lambda d: needle, VALIDATE), needle, project)


@pytest.mark.parametrize("name", [n for n, c in {**PARAMS_CASES, **DATA_CASES}.items() if c.subprocess])
def test_bad_input_through_the_stage_script(name, project, capsys, monkeypatch):
    case = {**PARAMS_CASES, **DATA_CASES}[name]
    needle = case.make(project)
    if case.stage == VALIDATE:
        code, shown = run_stage(UPDATE, capsys, monkeypatch)
        assert code == 0, shown
    code, shown = run_script(case.stage, project)
    check(code, shown, case, needle, project)
