"""Issue 13 (items 1, 3, 7, 8): output paths that are folders, exit codes that cannot read as a verdict,
--allow-identical on byte-identical files, leftovers of killed writes, closed pipes, markdown escaping,
golden ids beside the params file, and the crash inputs that are bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flipgate.cli import main
from flipgate.errors import FlipgateError
from flipgate.gate import render
from flipgate.gate.policy import Policy, decide
from flipgate.io import atomic_path, write_json
from flipgate.markdown import md_code, md_text

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}
N = 50


def table(pred=None, ids=None) -> pd.DataFrame:
    pred = np.zeros(N, dtype=np.int64) if pred is None else pred
    return pd.DataFrame({"id": ids or [f"r{i}" for i in range(N)], "label": np.zeros(N, dtype=np.int64), "pred": pred})


@pytest.fixture
def pair(tmp_path):
    """A baseline and a candidate that breaks r0 and r1 (NFR 0.04: reject at the default budget)."""
    base, cand = tmp_path / "base.parquet", tmp_path / "cand.parquet"
    table().to_parquet(base)
    pred = np.zeros(N, dtype=np.int64)
    pred[:2] = 1
    table(pred).to_parquet(cand)
    return base, cand


def gate(*args) -> int:
    return main(["gate", *map(str, args)])


# 1. a file write never replaces a folder ------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--json", "--markdown"])
def test_gate_output_that_is_a_folder_is_refused_and_the_folder_kept(pair, tmp_path, capsys, flag):
    reports = tmp_path / "reports"
    (reports / "sub").mkdir(parents=True)
    (reports / "keep.txt").write_text("precious")
    assert gate("--baseline", pair[0], "--candidate", pair[1], flag, reports) == 3
    err = capsys.readouterr().err
    assert f"{reports}: is a folder; name a file, e.g. {reports}/gate." in err
    assert (reports / "keep.txt").read_text() == "precious" and (reports / "sub").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_gate_output_dot_and_trailing_slash(pair, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gate("--baseline", pair[0], "--candidate", pair[1], "--json", ".") == 3
    assert ".: is a folder; name a file" in capsys.readouterr().err
    assert gate("--baseline", pair[0], "--candidate", pair[1], "--markdown", "new/") == 3
    assert "new/: is a folder; name a file, e.g. new/gate.md" in capsys.readouterr().err
    assert not Path("new").exists()


def test_atomic_path_file_writes_refuse_a_folder_before_the_block(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    ran = []
    with pytest.raises(FlipgateError, match="out: is a folder; name a file"):
        with atomic_path(folder, folder=False):
            ran.append(True)
    assert not ran and (folder / "a.txt").read_text() == "a"
    with pytest.raises(FlipgateError, match="is a folder"):
        write_json({"x": 1}, folder)
    # the caller that does not say: judged by what the block wrote, still never a folder replaced by a file
    with pytest.raises(FlipgateError, match="is a folder"):
        with atomic_path(folder) as tmp:
            tmp.write_text("file")
    assert (folder / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp left


def test_atomic_path_folder_writes_still_replace_a_folder(tmp_path):
    folder = tmp_path / "model"
    for content in ("one", "two"):
        with atomic_path(folder, folder=True) as tmp:
            tmp.mkdir()
            (tmp / "weights").write_text(content)
    assert (folder / "weights").read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_path(folder) as tmp:  # inferred: a folder
        tmp.mkdir()
        (tmp / "weights").write_text("three")
    assert (folder / "weights").read_text() == "three"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FlipgateError, match="afile: is a file, where a folder is written"):
        with atomic_path(tmp_path / "afile", folder=True) as tmp:
            tmp.mkdir()


# 8. leftovers of a killed write ---------------------------------------------------------------------

def test_temps_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    target = tmp_path / "model"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom flipgate.io import atomic_path\n"
        "with atomic_path(Path(sys.argv[1]), folder=True) as tmp:\n"
        "    tmp.mkdir(); (tmp / 'weights').write_bytes(b'x' * 100_000)\n"
        "    print('writing', flush=True); time.sleep(120)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    writer.stdout.close()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".model.{writer.pid}@")
    host = leftovers[0].name.split("@")[1].split(".")[0]
    live = tmp_path / f".model.{os.getpid()}@{host}.abc123.tmp"  # this process: a live writer
    live.mkdir()
    other_host = tmp_path / f".model.{writer.pid}@elsewhere-host.abc123.tmp"  # cannot ask another host
    other_host.mkdir()
    other_target = tmp_path / f".model.json.{writer.pid}@x.abc.tmp"  # another target's temp
    other_target.mkdir()
    legacy_old, legacy_new = tmp_path / ".model.oldabcde.tmp", tmp_path / ".model.newabcde.tmp"  # no pid
    legacy_old.mkdir()
    legacy_new.mkdir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(legacy_old, (two_days_ago, two_days_ago))

    with atomic_path(target, folder=True) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "model")
    assert left == sorted([live.name, other_host.name, other_target.name, legacy_new.name])


# 3. exit codes that cannot read as a verdict --------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["gate", "--baseline", "b.parquet", "--candidat", "c.parquet"],  # a typo, not an abbreviation
    ["gate", "--candidate", "c.parquet"],
    ["gate", "--baseline", "b", "--candidate", "c", "--nfr-budget", "1%"],
    ["gate", "--baseline", "b", "--candidate", "c", "--ci-level", "1.5"],
    ["gat"],
    [],
])
def test_usage_errors_exit_64_never_2(argv, capsys):
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_percent_budget_is_explained(capsys):
    assert main(["gate", "--baseline", "b", "--candidate", "c", "--nfr-budget", "1%"]) == 64
    assert "argument --nfr-budget: '1%': rates are fractions, not percentages; for 1% write 0.01" in capsys.readouterr().err


def test_help_exits_0_and_documents_the_codes(capsys):
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert main(["gate", "--help"]) == 0
    gate_help = capsys.readouterr().out
    for text in (top, gate_help):
        assert "64  usage error" in text and "70  internal error" in text and "3   bad input" in text


def test_an_internal_error_is_one_line_and_exits_70(pair, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr("flipgate.gate.cli.decide", boom)
    assert gate("--baseline", pair[0], "--candidate", pair[1]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("flipgate gate: internal error: RuntimeError: something broke.")
    assert "rerun with -v" in err and "report it at" in err
    assert main(["-v", "gate", "--baseline", str(pair[0]), "--candidate", str(pair[1])]) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    assert gate("--baseline", pair[0], "--candidate", pair[1], "-v") == 70  # -v after the subcommand too
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_console_script_exit_codes(pair, tmp_path):
    exe = Path(sys.executable).parent / "flipgate"
    typo = subprocess.run([exe, "gate", "--baseline", pair[0], "--candidate", pair[1], "--nfr-budjet", "0.5"],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert typo.returncode == 64 and "unrecognized arguments: --nfr-budjet" in typo.stderr
    bad = tmp_path / "u64.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(N)], "label": pa.array([2**64 - 1] * N, pa.uint64()),
                             "pred": pa.array([0] * N, pa.int64())}), bad)
    crash = subprocess.run([exe, "gate", "--baseline", pair[0], "--candidate", bad],
                           capture_output=True, text=True, env=ENV, timeout=60)
    assert crash.returncode == 3 and "Traceback" not in crash.stderr
    assert f"{bad}: column 'label' holds 18446744073709551615, beyond int64" in crash.stderr


def test_a_stage_crash_is_one_line_and_exits_70(tmp_path):
    (tmp_path / "params.yaml").write_text("tracking: {enabled: false}\n")
    script = tmp_path / "crash.py"  # a stage whose main() crashes, run as dvc runs a stage script
    script.write_text("from flipgate import stage\n\ndef main(run):\n    raise ValueError('boom')\n\n"
                      "stage.run('gate', main)\n")
    cmd = [sys.executable, str(script)]
    quiet = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 70, quiet.stderr
    assert "Traceback" not in quiet.stderr
    assert "gate: internal error: ValueError" in quiet.stderr and "FLIPGATE_VERBOSE=1" in quiet.stderr
    loud = subprocess.run(cmd, cwd=tmp_path, env={**ENV, "FLIPGATE_VERBOSE": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert loud.returncode == 70 and "Traceback (most recent call last)" in loud.stderr
    # a stage script without its arguments is a usage error, named, not a crash
    bare = subprocess.run([sys.executable, str(ROOT / "stages" / "gate.py")], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode == 64 and bare.stderr == (
        "gate: error: expected BASELINE_PREDICTIONS CANDIDATE_PREDICTIONS [TRAIN_REPORTS_DIR], got 0 argument(s)\n")


@pytest.mark.parametrize("make", ["bad_utf8", "list_ids", "uint64_label"])
def test_known_crash_inputs_are_bad_input_naming_the_file(pair, tmp_path, capsys, make):
    ids = [f"r{i}" for i in range(N)]
    zeros = pa.array([0] * N, pa.int64())
    columns = {
        "bad_utf8": {"id": pa.array([b"\xff\xfe" + str(i).encode() for i in range(N)], pa.binary()),
                     "label": zeros, "pred": zeros},
        "list_ids": {"id": pa.array([[i] for i in range(N)]), "label": zeros, "pred": zeros},
        "uint64_label": {"id": ids, "label": pa.array([2**64 - 1] * N, pa.uint64()), "pred": zeros},
    }[make]
    path = tmp_path / f"{make}.parquet"
    pq.write_table(pa.table(columns), path)
    assert gate("--baseline", pair[0], "--candidate", path) == 3
    assert f"{path}: column " in capsys.readouterr().err
    from flipgate.predictions import read_predictions  # the stages' reader

    with pytest.raises(FlipgateError, match=str(path)):
        read_predictions(path)


# 7. --allow-identical judges byte-identical files ----------------------------------------------------

def test_allow_identical_judges_byte_identical_and_empty_files(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    table().to_csv(a, index=False)
    b.write_bytes(a.read_bytes())
    assert gate("--baseline", a, "--candidate", b) == 3  # still refused by default
    assert "baseline's own file" in capsys.readouterr().err
    assert gate("--baseline", a, "--candidate", b, "--allow-identical") == 0
    assert gate("--baseline", a, "--candidate", a, "--allow-identical") == 0
    empty_a, empty_b = tmp_path / "e1.csv", tmp_path / "e2.csv"
    empty_a.write_text("id,label,pred\n")
    empty_b.write_text("id,label,pred\n")
    assert gate("--baseline", empty_a, "--candidate", empty_b, "--allow-identical") == 2  # README: empty -> 2
    assert "the regression set is empty" in capsys.readouterr().out


# 8. the smaller ones ---------------------------------------------------------------------------------

def test_a_folder_given_as_predictions_says_so(pair, tmp_path, capsys):
    folder = tmp_path / "preds"
    folder.mkdir()
    assert gate("--baseline", pair[0], "--candidate", folder) == 3
    assert f"{folder}: is a folder, not a predictions file; name the file" in capsys.readouterr().err


def test_show_into_a_closed_pipe_is_quiet(tmp_path):
    metrics = {"regression": {f"model{i}": {"n": 10, "accuracy": 0.9, "nfr": 0.01, "nfi": 0.1, "pfr": 0.0,
                                            "negative_flips": 1} for i in range(3000)}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: `flipgate show | head` at its worst
    proc = subprocess.run([sys.executable, "-m", "flipgate.cli", "show", "--metrics", "metrics.json"], cwd=tmp_path,
                          env=ENV, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_golden_ids_are_escaped_in_the_markdown(tmp_path):
    ids = ["<img src=x onerror=alert(1)>", "**bold** | cell", "`tick`"] + [f"r{i}" for i in range(N - 3)]
    labels, base = np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64)
    cand = base.copy()
    cand[:3] = 1  # all three golden ids flip
    decision = decide(labels, base, cand, Policy(golden_ids=ids[:3]), ids=ids, baseline="a`b.parquet",
                      candidate="<script>.parquet")
    md = render.markdown(decision)
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "`<script>.parquet`" in md  # a path is a code span: nothing in it is markup or HTML
    assert "\\*\\*bold\\*\\* \\| cell" in md and "\\`tick\\`" in md
    assert "``a`b.parquet``" in md
    assert "<img src=x onerror=alert(1)>" in render.text(decision)  # plain text and JSON keep the ids as they are
    assert md_text("a\nb_c") == "a b\\_c" and md_code("x") == "`x`"


def test_golden_ids_file_is_relative_to_the_params_file(pair, tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "golden.txt").write_text("r0\n")  # r0 flips
    (project / "params.yaml").write_text("gate:\n  nfr_budget: 0.5\n  golden_ids_file: golden.txt\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert gate("--baseline", pair[0], "--candidate", pair[1], "--params", project / "params.yaml") == 1
    assert "golden_ids" in capsys.readouterr().out
    (project / "golden.txt").unlink()
    assert gate("--baseline", pair[0], "--candidate", pair[1], "--params", project / "params.yaml") == 3
    assert f"{project / 'golden.txt'}: golden ids file not found" in capsys.readouterr().err


def test_the_workflow_fails_the_job_on_a_typo_even_when_inconclusive_is_allowed(pair, capsys):
    """The shipped workflow's Verdict step, run on real exit codes with FAIL_ON_INCONCLUSIVE "false"."""
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "flipgate-gate.yml").read_text())
    script = next(s["run"] for s in workflow["jobs"]["gate"]["steps"] if s.get("name") == "Verdict")

    def job(rc: int) -> int:
        env = {**os.environ, "RC": str(rc), "FAIL_ON_INCONCLUSIVE": "false"}
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, timeout=30).returncode

    typo = gate("--baseline", pair[0], "--candidate", pair[1], "--nfr-budjet", "0.5")
    capsys.readouterr()
    assert job(typo) != 0  # was exit 2, "inconclusive", and the pull request passed
    assert [job(rc) for rc in (0, 1, 2, 3, 64, 70, 141)] == [0, 1, 0, 1, 1, 1, 1]
