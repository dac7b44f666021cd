"""stage.run hands main its Run (run folder, seed, positional arguments, params) as an argument: no module
state, sys.argv only read; a wrong command line is a usage error (64), one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from flipgate import stage
from flipgate.errors import UsageError
from flipgate.params_file import check_all


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seeds": [7, 8], "tracking": {"enabled": False},
                                                          "gate": {"nfr_budget": 0.02}}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_parse_run_takes_out_run_and_seed_and_keeps_the_rest(project):
    params = check_all()
    run = stage.parse_run(["data/update", "--run", "seeds/8", "--seed", "8", "old"], params)
    assert (run.root, run.seed, run.args, run.per_seed) == (Path("seeds/8"), 8, ("data/update", "old"), True)
    assert run.reports == Path("seeds/8/reports") and run.section("gate").nfr_budget == 0.02
    here = stage.parse_run(["a"], params)  # no --seed: the project root and the first seed
    assert (here.root, here.seed, here.per_seed) == (Path("."), 7, False)


@pytest.mark.parametrize("argv,names,why", [
    (["--run", "seeds/0"], None, "without --seed"),
    (["--seed", "x"], None, "invalid int value"),
    ([], ("DATA_DIR",), "expected DATA_DIR, got 0"),
    (["a", "b"], ("DATA_DIR",), "expected DATA_DIR, got 2"),
    (["a", "--flag"], ("DATA_DIR", "..."), "unknown option --flag"),
])
def test_a_wrong_command_line_is_a_usage_error(project, argv, names, why):
    with pytest.raises(UsageError, match=why):
        stage.parse_run(argv, check_all(), names)


@pytest.mark.parametrize("argv", [["a"], ["a", "b"], ["a", "b", "c", "d"]])
def test_optional_and_repeated_arguments(project, argv):
    assert stage.parse_run(argv, check_all(), ("A", "[B]", "...")).args == tuple(argv)
    if len(argv) <= 2:
        assert stage.parse_run(argv, check_all(), ("A", "[B]")).args == tuple(argv)


def test_run_calls_main_with_its_run_and_leaves_sys_argv_alone(project, monkeypatch):
    argv = ["stages/x.py", "data/update", "--run", "seeds/8", "--seed", "8"]
    monkeypatch.setattr(sys, "argv", list(argv))
    seen = []
    stage.run("x", seen.append, args=("DATA_DIR",))
    (run,) = seen
    assert (run.seed, run.args, sys.argv) == (8, ("data/update",), argv)
    assert (project / "seeds/8/reports/timings/x.json").is_file()
    stage.run("x", seen.append, argv=["other"])  # another run in the same process knows nothing of the first
    assert (seen[1].seed, seen[1].root, seen[1].args) == (7, Path("."), ("other",))
    assert not hasattr(stage, "current") and not hasattr(stage, "_current")


def test_a_usage_error_exits_64_with_one_line(project, capsys):
    with pytest.raises(SystemExit) as exc:
        stage.run("x", lambda run: None, args=("DATA_DIR",), argv=[])
    assert exc.value.code == 64
    assert capsys.readouterr().err == "x: error: expected DATA_DIR, got 0 argument(s)\n"
