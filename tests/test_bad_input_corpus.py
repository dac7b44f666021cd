"""The bad-input corpus (issue 13): hostile or mistaken inputs through the real `flipgate` entry point.

Every case asserts its exit code, that the message names the file, flag or key at fault, and that no
traceback reaches the user. Exit codes: 3 bad input (a file or params key), 64 usage error (the command
line); never 0/1/2 (a verdict) for a mistake, never 70 (internal error) for anything a user can cause.
A few cases also run through the installed console script in a subprocess. No models; tables of 50 rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flipgate.cli import main

N = 50
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def ids(n: int = N) -> list[str]:
    return [f"r{i}" for i in range(n)]


def zeros(n: int = N) -> pa.Array:
    return pa.array([0] * n, pa.int64())


def good_frame(wrong: int = 0) -> pd.DataFrame:
    """All labels 0; the last `wrong` rows predicted 1."""
    pred = np.zeros(N, np.int64)
    pred[N - wrong:] = 1
    return pd.DataFrame({"id": ids(), "label": np.zeros(N, np.int64), "pred": pred})


def parquet(d: Path, name: str, columns: dict) -> Path:
    path = d / name
    pq.write_table(pa.table(columns), path)
    return path


def text(d: Path, name: str, content: str | bytes) -> Path:
    path = d / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def folder(d: Path, name: str) -> Path:
    path = d / name
    path.mkdir()
    (path / "keep.txt").write_text("precious")
    return path


@dataclass(frozen=True)
class Case:
    code: int
    build: Callable[[Path], tuple[list, str]]  # tmp dir -> (argv after `flipgate`, text the message must hold)
    subprocess: bool = False  # also run through the console script


def gate_with(candidate: Path | str, *extra) -> list:
    return ["gate", "--baseline", "base.parquet", "--candidate", candidate, *extra]


def candidate_case(make: Callable[[Path], Path], needle: str = "", code: int = 3, subproc: bool = False) -> Case:
    """A bad candidate table; the message must name it (and hold `needle`)."""
    def build(d: Path):
        path = make(d)
        return gate_with(path), f"{path}: {needle}" if needle else str(path)
    return Case(code, build, subproc)


def params_case(content: str, needle: str, code: int = 3, subproc: bool = False) -> Case:
    def build(d: Path):
        path = text(d, "params.yaml", content)
        return gate_with("cand.parquet", "--params", path), f"{path}: {needle}"
    return Case(code, build, subproc)


def flag_case(extra: list, needle: str, subproc: bool = False) -> Case:
    return Case(64, lambda d: (gate_with("cand.parquet", *extra), needle), subproc)


def golden_case(make: Callable[[Path], Path], needle: str) -> Case:
    def build(d: Path):
        path = make(d)
        return gate_with("cand.parquet", "--golden-ids", path), f"{path}: {needle}"
    return Case(3, build)


def output_case(flag: str, make: Callable[[Path], str], needle: str, subproc: bool = False) -> Case:
    def build(d: Path):
        target = make(d)
        return gate_with("cand.parquet", flag, target), needle.format(target=target)
    return Case(3, build, subproc)


CASES: dict[str, Case] = {
    # --- predictions tables: columns -----------------------------------------------------------------
    "missing_pred_column": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ids(), "label": zeros()}), "missing column(s) ['pred']"),
    "missing_id_column_csv": candidate_case(
        lambda d: text(d, "c.csv", "label,pred\n0,0\n"), "missing column(s) ['id']"),
    "missing_label_column_jsonl": candidate_case(
        lambda d: text(d, "c.jsonl", '{"id": "r0", "pred": 0}\n'), "missing column(s) ['label']"),
    "header_only_wrong_names_csv": candidate_case(
        lambda d: text(d, "c.csv", "ID,Label,Pred\n"), "missing column(s) ['id', 'label', 'pred']"),
    "extra_columns_are_ignored": Case(0, lambda d: (gate_with(text(
        d, "c.csv", "id,label,pred,score,note\n" + "".join(f"r{i},0,0,0.5,x\n" for i in range(N)))), "PASS")),
    # --- predictions tables: types -------------------------------------------------------------------
    "float_pred_csv": candidate_case(
        lambda d: text(d, "c.csv", "id,label,pred\n" + "".join(f"r{i},0,0.5\n" for i in range(N))),
        "column 'pred' must hold integer class ids"),
    "string_label_csv": candidate_case(
        lambda d: text(d, "c.csv", "id,label,pred\n" + "".join(f"r{i},pos,0\n" for i in range(N))),
        "column 'label' must hold integer class ids"),
    "bool_label_parquet": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ids(), "label": pa.array([False] * N), "pred": zeros()}),
        "column 'label' must hold integer class ids"),
    "uint64_label_overflow": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ids(), "label": pa.array([2**64 - 1] * N, pa.uint64()),
                                           "pred": zeros()}), "column 'label' holds 18446744073709551615", subproc=True),
    "uint64_pred_overflow": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ids(), "label": zeros(), "pred": pa.array([2**63] * N, pa.uint64())}),
        "column 'pred' holds 9223372036854775808, beyond int64"),
    "invalid_utf8_ids": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": pa.array([b"\xff" + bytes([i]) for i in range(N)], pa.binary()),
                                           "label": zeros(), "pred": zeros()}),
        "column 'id' holds bytes that are not UTF-8 text", subproc=True),
    "list_typed_ids": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": pa.array([[i] for i in range(N)]), "label": zeros(), "pred": zeros()}),
        "column 'id' must hold text or integers"),
    "struct_typed_ids": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": pa.array([{"k": i} for i in range(N)]), "label": zeros(),
                                           "pred": zeros()}), "column 'id' must hold text or integers"),
    "list_ids_jsonl": candidate_case(
        lambda d: text(d, "c.jsonl", "".join(f'{{"id": [{i}], "label": 0, "pred": 0}}\n' for i in range(N))),
        "id in row 0 is a list"),
    "float_ids_with_nan": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": pa.array([float("nan")] + [float(i) for i in range(1, N)]),
                                           "label": zeros(), "pred": zeros()}), "column 'id' must hold text or integers"),
    # --- predictions tables: ids ---------------------------------------------------------------------
    "duplicate_ids": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ["r1"] + ids()[1:], "label": zeros(), "pred": zeros()}),
        "1 duplicate id(s), e.g. 'r1'"),
    "null_ids_parquet": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": [None] + ids()[1:], "label": zeros(), "pred": zeros()}),
        "1 row(s) have no id"),
    "empty_ids_csv": candidate_case(
        lambda d: text(d, "c.csv", "id,label,pred\n,0,0\n" + "".join(f"r{i},0,0\n" for i in range(1, N))),
        "1 row(s) have no id"),
    "null_ids_jsonl": candidate_case(
        lambda d: text(d, "c.jsonl", '{"id": null, "label": 0, "pred": 0}\n'), "1 row(s) have no id"),
    "null_label": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ids(), "label": pa.array([None] + [0] * (N - 1), pa.int64()),
                                           "pred": zeros()}), "1 row(s) have no label"),
    "ids_do_not_match": Case(3, lambda d: (gate_with(parquet(
        d, "c.parquet", {"id": ids(N - 1) + ["zz"], "label": zeros(), "pred": zeros()})),
        "1 candidate id(s) missing from the baseline (e.g. 'zz')")),
    "fewer_rows": Case(3, lambda d: (gate_with(parquet(
        d, "c.parquet", {"id": ids(N - 5), "label": zeros(N - 5), "pred": zeros(N - 5)})),
        "5 baseline id(s) missing from the candidate")),
    "labels_differ": candidate_case(
        lambda d: parquet(d, "c.parquet", {"id": ids(), "label": pa.array([1] * N, pa.int64()), "pred": zeros()}),
        f"{N} id(s) have a different label"),
    # --- predictions tables: files -------------------------------------------------------------------
    "empty_parquet_file": candidate_case(lambda d: text(d, "c.parquet", b""), "cannot read it as parquet"),
    "empty_csv_file": candidate_case(lambda d: text(d, "c.csv", b""), "cannot read it as csv"),
    "empty_jsonl_file": candidate_case(lambda d: text(d, "c.jsonl", b""), "missing column(s)"),
    "corrupt_parquet": candidate_case(lambda d: text(d, "c.parquet", b"PAR1 not parquet PAR1"),
                                      "cannot read it as parquet"),
    "parquet_named_csv": candidate_case(lambda d: text(d, "c.csv", (d / "cand.parquet").read_bytes()),
                                        "cannot read it as csv"),
    "ragged_csv": candidate_case(lambda d: text(d, "c.csv", "id,label,pred\nr0,0,0\nr1,0\n"), "cannot read it as csv"),
    "corrupt_jsonl": candidate_case(lambda d: text(d, "c.jsonl", "not json\n"), "cannot read it as jsonl"),
    "unknown_suffix": candidate_case(lambda d: text(d, "c.txt", "id,label,pred\n"), "unknown format '.txt'"),
    "no_suffix": candidate_case(lambda d: text(d, "predictions", "id,label,pred\n"), "unknown format ''"),
    "candidate_is_a_folder": candidate_case(lambda d: folder(d, "preds"), "is a folder, not a predictions file"),
    "candidate_missing": candidate_case(lambda d: d / "nope.parquet", "file not found"),
    "baseline_missing": Case(3, lambda d: (["gate", "--baseline", d / "gone.parquet", "--candidate", "cand.parquet"],
                                           f"{d / 'gone.parquet'}: file not found")),
    "baseline_is_a_folder": Case(3, lambda d: (["gate", "--baseline", folder(d, "old"), "--candidate", "cand.parquet"],
                                               f"{d / 'old'}: is a folder")),
    "self_comparison": Case(3, lambda d: (gate_with("base.parquet"), "the candidate is the baseline's own file")),
    "byte_identical_copy": candidate_case(lambda d: text(d, "copy.parquet", (d / "base.parquet").read_bytes()),
                                          "the candidate is the baseline's own file"),
    "runs_reference": Case(3, lambda d: (gate_with("runs:/abc/model"), "runs:/abc/model: only models:/")),
    # --- flags ----------------------------------------------------------------------------------------
    "misspelled_flag": flag_case(["--nfr-budjet", "0.01"], "unrecognized arguments: --nfr-budjet", subproc=True),
    "abbreviated_flag": flag_case(["--nfr", "0.01"], "unrecognized arguments: --nfr"),
    "missing_baseline": Case(64, lambda d: (["gate", "--candidate", "cand.parquet"],
                                            "the following arguments are required: --baseline")),
    "missing_value": Case(64, lambda d: (["gate", "--baseline", "base.parquet", "--candidate"],
                                         "argument --candidate: expected one argument")),
    "percent_budget": flag_case(["--nfr-budget", "1%"], "argument --nfr-budget: '1%': rates are fractions"),
    "word_budget": flag_case(["--nfr-budget", "one"], "argument --nfr-budget: 'one' is not a number"),
    "negative_budget": flag_case(["--nfr-budget", "-0.01"], "argument --nfr-budget: '-0.01' is outside [0, 1]"),
    "budget_above_one": flag_case(["--nfr-budget", "5"], "argument --nfr-budget: '5' is outside [0, 1]"),
    "nan_budget": flag_case(["--nfr-budget", "nan"], "argument --nfr-budget: 'nan' is outside [0, 1]"),
    "negative_per_class_budget": flag_case(["--per-class-budget", "-1"], "argument --per-class-budget"),
    "min_gain_out_of_range": flag_case(["--min-gain", "-2"], "argument --min-gain: '-2' is outside [-1, 1]"),
    "ci_level_above_one": flag_case(["--ci-level", "1.5"], "argument --ci-level: '1.5' is outside (0, 1)"),
    "ci_level_zero": flag_case(["--ci-level", "0"], "argument --ci-level: '0' is outside (0, 1)"),
    "ci_level_percent": flag_case(["--ci-level", "95%"], "for 95% write 0.95"),
    "unknown_subcommand": Case(64, lambda d: (["gat"], "invalid choice: 'gat'")),
    "no_subcommand": Case(64, lambda d: ([], "the following arguments are required: command")),
    # --- golden ids -----------------------------------------------------------------------------------
    "golden_missing": golden_case(lambda d: d / "golden.txt", "golden ids file not found"),
    "golden_is_a_folder": golden_case(lambda d: folder(d, "golden"), "is a folder"),
    "golden_empty": golden_case(lambda d: text(d, "golden.txt", "# nothing\n\n"), "golden ids file lists no id"),
    "golden_not_text": golden_case(lambda d: text(d, "golden.txt", b"\xff\xfe\x00r1"), "golden ids file is not text"),
    "golden_id_not_in_set": golden_case(lambda d: text(d, "golden.txt", "r1\nabsent\n"),
                                        "1 golden id(s) are not in the regression set, e.g. 'absent'"),
    # --- params files ---------------------------------------------------------------------------------
    "params_unknown_key": params_case("gate:\n  nfr_budgit: 0.05\n", "gate.nfr_budgit", subproc=True),
    "params_wrong_type": params_case("gate:\n  nfr_budget: lots\n", "gate.nfr_budget"),
    "params_out_of_range": params_case("gate:\n  nfr_budget: 5\n", "gate.nfr_budget"),
    "params_ci_level_out_of_range": params_case("gate:\n  ci_level: 1.0\n", "gate.ci_level"),
    "params_bool_as_word": params_case("gate:\n  upper_bound: maybe\n", "gate.upper_bound"),
    "params_golden_file_is_a_number": params_case("gate:\n  golden_ids_file: [a, b]\n", "gate.golden_ids_file"),
    "params_unknown_section": params_case("gaet:\n  nfr_budget: 0.05\n", "unknown section(s) ['gaet']"),
    "params_section_not_a_mapping": params_case("gate: 0.05\n", "gate"),
    "params_not_yaml": params_case("gate: [unclosed\n", "not valid YAML"),
    "params_top_level_list": params_case("- gate\n", "expected a mapping of sections"),
    "params_missing": Case(3, lambda d: (gate_with("cand.parquet", "--params", d / "nope.yaml"),
                                         f"{d / 'nope.yaml'}: params file not found")),
    "params_is_a_folder": Case(3, lambda d: (gate_with("cand.parquet", "--params", folder(d, "conf")),
                                             f"{d / 'conf'}: is a folder")),
    "params_not_text": Case(3, lambda d: (gate_with("cand.parquet", "--params", text(d, "p.yaml", b"\xff\xfe\x00")),
                                          f"{d / 'p.yaml'}: cannot read the params file")),
    "params_golden_file_missing": Case(3, lambda d: (gate_with("cand.parquet", "--params", text(
        d, "params.yaml", "gate:\n  golden_ids_file: golden.txt\n")), f"{d / 'golden.txt'}: golden ids file not found")),
    # --- output paths ---------------------------------------------------------------------------------
    "json_into_a_folder": output_case("--json", lambda d: str(folder(d, "reports")),
                                      "{target}: is a folder; name a file, e.g. {target}/gate.json", subproc=True),
    "markdown_into_a_folder": output_case("--markdown", lambda d: str(folder(d, "reports")),
                                          "{target}: is a folder; name a file, e.g. {target}/gate.md"),
    "json_dot": output_case("--json", lambda d: ".", "{target}: is a folder; name a file"),
    "json_trailing_slash": output_case("--json", lambda d: "out/", "out/: is a folder; name a file, e.g. out/gate.json"),
    "json_under_a_file": output_case("--json", lambda d: str(text(d, "taken", "x") / "gate.json"),
                                     "{target}: cannot create its folder"),
    # --- show ----------------------------------------------------------------------------------------
    "show_metrics_is_a_folder": Case(3, lambda d: (["show", "--metrics", folder(d, "m")], f"{d / 'm'}: is a folder")),
    "show_metrics_missing": Case(3, lambda d: (["show", "--metrics", d / "m.json"], f"{d / 'm.json'}: file not found")),
    "show_metrics_not_json": Case(3, lambda d: (["show", "--metrics", text(d, "m.json", "{oops")],
                                                f"{d / 'm.json'}: not valid JSON")),
    "show_metrics_not_text": Case(3, lambda d: (["show", "--metrics", text(d, "m.json", b"\xff\xfe")],
                                                f"{d / 'm.json'}: not valid JSON")),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """base.parquet (wrong on 5 rows) and cand.parquet (right on all: it passes)."""
    good_frame(wrong=5).to_parquet(tmp_path / "base.parquet")
    good_frame().iloc[::-1].to_parquet(tmp_path / "cand.parquet")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check(case: Case, rc: int, out: str, err: str, needle: str, d: Path) -> None:
    shown = out + err
    assert rc == case.code, shown
    assert needle in (out if case.code == 0 else err), shown
    assert "Traceback" not in shown and "internal error" not in shown, shown
    for kept in d.rglob("keep.txt"):  # a folder named on the command line is never touched
        assert kept.read_text() == "precious"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40
    assert {c.code for c in CASES.values()} == {0, 3, 64}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, workdir, capsys):
    case = CASES[name]
    argv, needle = case.build(workdir)
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    check(case, rc, out, err, needle, workdir)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.subprocess])
def test_bad_input_through_the_console_script(name, workdir):
    case = CASES[name]
    argv, needle = case.build(workdir)
    exe = Path(sys.executable).parent / "flipgate"
    proc = subprocess.run([str(exe), *map(str, argv)], cwd=workdir, env=ENV, capture_output=True, text=True, timeout=120)
    check(case, proc.returncode, proc.stdout, proc.stderr, needle, workdir)
