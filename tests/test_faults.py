"""The fault suite (issue 13): kill -9 a stage in the middle of writing an artifact, rerun it, and check
that nothing is half-written and that the rerun cleans the killed writer's leftovers.

Stages: update (the data/update folder), validate (its reports and the marker training depends on),
train_old (a tiny BERT: the model folder, then a predictions table written after it) and report (the
plots folder, then report.md). Each stage runs as a real process, forked from tests/fault_runner.py (which pays the imports
once), paused at one point of one atomic write (see fault_runner's POINTS) and killed with SIGKILL there
once the test has seen the writer's temp `.NAME.<pid>@<host>.XXXX.tmp` beside the target. After each
kill: the target is absent or a complete version (the old one until the rename, the new one after it)
that loads; the temp is the killed pid's; the next writer of that target removes it. Kills are chained
(the second killed run must have removed the first one's temp), then a clean rerun must succeed and leave
no temp anywhere. Promotion (the MLflow registry) is not covered here: it belongs with the promotion
concurrency tests (tests/test_registry.py, tests/promote_race.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import toy_frame

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("fault_runner.py")
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "CI": "true", "PYTHONPATH": str(ROOT / "src")}
KILLED = -signal.SIGKILL
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Run:
    pid: int
    rc: int
    log: str
    temp: Path | None  # the killed writer's temp, as it reported it


class Zygote:
    """tests/fault_runner.py: runs stage scripts in forked children, pausing one where told."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.n, self.buf = logs, 0, b""
        self.proc = subprocess.Popen([sys.executable, str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=ENV, cwd=ROOT, bufsize=0)
        self.started = False

    def _message(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, f"fault_runner exited ({self.proc.poll()})"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def run(self, cwd: Path, *argv: str, fault: tuple[str, str] | None = None) -> Run:
        """Run stages/<argv[0]> in `cwd`; with fault (target, point), SIGKILL it paused there."""
        if not self.started:
            assert self._message(300) == {"ready": True}
            self.started = True
        self.n += 1
        log, ready = self.logs / f"{self.n}.log", self.logs / f"{self.n}.ready"
        request = {"cwd": str(cwd), "argv": [str(ROOT / "stages" / argv[0]), *argv[1:]], "log": str(log),
                   "fault": fault and {"target": fault[0], "point": fault[1], "ready": str(ready)}}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        pid = self._message(60)["started"]
        temp = None
        if fault:
            deadline = time.monotonic() + 180
            while not ready.exists():
                early = self._message(0.02)
                assert early is None, f"{argv} ended before {fault}: rc {early}\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{argv} never reached {fault}\n{log.read_text()[-3000:]}"
            temp = Path(json.loads(ready.read_text())["temp"])
            assert temp.is_dir() and temp.name.startswith(f".{Path(fault[0]).name}.{pid}@"), temp  # pid@host
            os.kill(pid, signal.SIGKILL)
        ended = self._message(300)
        assert ended and ended["ended"] == pid, ended
        return Run(pid, ended["rc"], log.read_text(), temp)

    def close(self) -> None:
        self.proc.kill()  # idle between requests: nothing of it to keep
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("fault-logs"))  # imports in the background while projects are built
    yield z
    z.close()


def temps_of(target: Path, pid: int) -> list[Path]:
    """The temps a writer with this pid left beside `target`."""
    return sorted(target.parent.glob(f".{target.name}.{pid}@*.tmp"))


def no_temps(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


def digest(path: Path) -> dict[str, str]:
    """{relative file: sha256} of a file or a folder, to tell versions apart."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def make_project(d: Path, model: Path | None = None) -> Path:
    (d / "userdata" / "updates").mkdir(parents=True)
    for name, (n, seed, prefix) in {"old": (60, 0, "o"), "updates/new": (20, 1, "n"), "dev": (20, 2, "d"),
                                    "reg": (20, 3, "r")}.items():
        toy_frame(n, seed, prefix).to_json(d / "userdata" / f"{name}.jsonl", orient="records", lines=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="files", files={"old": "userdata/old.jsonl", "new": ["userdata/updates"],
                                                 "dev": "userdata/dev.jsonl", "regression": "userdata/reg.jsonl"})
    params["tracking"]["enabled"] = False
    if model is not None:
        params["base"].update(model=str(model), max_length=32, eval_batch_size=32)
        params["train_old"].update(epochs=1, lr=1e-3, batch_size=16)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return d


def edit_params(d: Path, section: str, **values) -> None:
    params = yaml.safe_load((d / "params.yaml").read_text())
    params[section].update(values)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def load_update(folder: Path) -> int:
    """Every split and the label map load; returns D_new's size."""
    from flipgate.data import update

    splits = {name: update.load_split(folder, name) for name in update.SPLITS}
    labels, num_old = update.load_labels(folder)
    assert labels == ["0", "1"] and num_old == 2
    return len(splits["new"])


def test_update_killed_mid_write_keeps_the_old_splits_and_the_rerun_cleans_up(zygote, tmp_path):
    p = make_project(tmp_path)
    target = p / "data" / "update"
    assert zygote.run(p, "update.py", "data/update").rc == 0
    v1 = digest(target)
    toy_frame(10, 9, "m").to_json(p / "userdata" / "updates" / "more.jsonl", orient="records", lines=True)

    cut = zygote.run(p, "update.py", "data/update", fault=("data/update", "partial"))
    assert cut.rc == KILLED
    assert digest(target) == v1 and load_update(target) == 20  # the old version, whole
    assert temps_of(target, cut.pid) == [cut.temp]

    swapped = zygote.run(p, "update.py", "data/update", fault=("data/update", "swapped"))
    assert swapped.rc == KILLED
    assert temps_of(target, cut.pid) == []  # removed by the next writer of data/update
    assert not target.exists()  # between the two renames: absent, never a mix
    assert digest(swapped.temp / ".replaced") == {k.replace("update", ".replaced", 1): v for k, v in v1.items()}

    renamed = zygote.run(p, "update.py", "data/update", fault=("data/update", "after_rename"))
    assert renamed.rc == KILLED
    assert temps_of(target, swapped.pid) == [] and temps_of(target, renamed.pid) == [renamed.temp]
    assert load_update(target) == 30  # the new version, whole

    rerun = zygote.run(p, "update.py", "data/update")
    assert rerun.rc == 0, rerun.log
    assert no_temps(p) == [] and load_update(target) == 30


def test_validate_killed_never_leaves_a_pass_and_the_rerun_cleans_up(zygote, tmp_path):
    p = make_project(tmp_path)
    reports, md = p / "reports", p / "reports" / "validation.md"
    assert zygote.run(p, "update.py", "data/update").rc == 0
    assert zygote.run(p, "validate.py", "data/update", "reports").rc == 0
    assert (reports / "validation_passed.json").exists()
    v1 = md.read_bytes()
    edit_params(p, "validate", drift_threshold=0.35)  # the reports change with it

    killed = zygote.run(p, "validate.py", "data/update", "reports", fault=("reports/validation.md", "partial"))
    assert killed.rc == KILLED
    assert not (reports / "validation_passed.json").exists()  # a killed validation is never a pass
    assert md.read_bytes() == v1  # the old report, whole
    assert json.loads((reports / "validation.json").read_text())["params"]["drift_threshold"] == 0.35  # new, whole
    assert temps_of(md, killed.pid) == [killed.temp]

    rerun = zygote.run(p, "validate.py", "data/update", "reports")
    assert rerun.rc == 0, rerun.log
    assert no_temps(p) == [] and (reports / "validation_passed.json").exists()
    assert "<= 0.35" in md.read_text()


def test_training_killed_while_saving_or_predicting_keeps_whole_artifacts(zygote, tmp_path, tiny_bert):
    from flipgate.io import read_table
    from flipgate.models.classifier import load_classifier

    p = make_project(tmp_path, tiny_bert)
    run = ("train.py", "old", "data/update", "--run", "seeds/0", "--seed", "0")
    model, preds = p / "seeds/0/models/old", p / "seeds/0/predictions/old"
    assert zygote.run(p, "update.py", "data/update").rc == 0
    first = zygote.run(p, *run)
    assert first.rc == 0, first.log
    v1_model, v1_reg = digest(model), (preds / "regression.parquet").read_bytes()
    edit_params(p, "train_old", lr=3e-3)  # other weights

    cut = zygote.run(p, *run, fault=("seeds/0/models/old", "partial"))
    assert cut.rc == KILLED
    assert digest(model) == v1_model and temps_of(model, cut.pid) == [cut.temp]
    load_classifier(str(model), ["0", "1"])  # the old model, whole: it loads

    predicting = zygote.run(p, *run, fault=("seeds/0/predictions/old/regression.parquet", "partial"))
    assert predicting.rc == KILLED
    assert temps_of(model, cut.pid) == []  # removed when the model was saved again
    assert digest(model) != v1_model
    load_classifier(str(model), ["0", "1"])  # the new model, whole
    assert (preds / "regression.parquet").read_bytes() == v1_reg  # the old table, whole
    assert len(read_table(preds / "dev.parquet")) == 20 and len(read_table(preds / "regression.parquet")) == 20
    assert temps_of(preds / "regression.parquet", predicting.pid) == [predicting.temp]

    rerun = zygote.run(p, *run)
    assert rerun.rc == 0, rerun.log
    assert no_temps(p) == []
    assert len(read_table(preds / "regression.parquet")) == 20
    assert json.loads((p / "seeds/0/reports/train/old.json").read_text())["lr"] == 3e-3


def write_predictions(p: Path, flips: int) -> None:
    """Hand-made predictions of old and new on the update's splits: new flips `flips` of old's rights."""
    from flipgate.data import update
    from flipgate.io import predictions_frame, write_parquet

    for split in ("dev", "regression"):
        df = update.load_split(p / "data" / "update", split)
        y = df["label"].to_numpy()
        for model, pred in (("old", y.copy()), ("new", np.where(np.arange(len(y)) < flips, 1 - y, y))):
            logits = np.full((len(y), 2), -1.0, np.float32)
            logits[np.arange(len(y)), pred] = 1.0
            write_parquet(predictions_frame(df["id"], pd.Series(y), logits), p / "seeds/0/predictions" / model / f"{split}.parquet")


def test_report_killed_mid_write_keeps_whole_reports_and_the_rerun_cleans_up(zygote, tmp_path):
    p = make_project(tmp_path)
    reports = p / "reports"
    assert zygote.run(p, "update.py", "data/update").rc == 0
    write_predictions(p, flips=2)
    assert zygote.run(p, "report.py", "data/update").rc == 0
    v1_md, v1_plots = (reports / "report.md").read_bytes(), digest(reports / "plots")
    write_predictions(p, flips=5)

    swapped = zygote.run(p, "report.py", "data/update", fault=("reports/plots", "swapped"))
    assert swapped.rc == KILLED
    assert not (reports / "plots").exists() and (reports / "report.md").read_bytes() == v1_md
    assert len(pd.read_parquet(reports / "flips.parquet")) == 20  # written before the kill: the new ledger, whole

    cut = zygote.run(p, "report.py", "data/update", fault=("reports/report.md", "partial"))
    assert cut.rc == KILLED
    assert temps_of(reports / "plots", swapped.pid) == [] and temps_of(reports / "report.md", cut.pid) == [cut.temp]
    assert (reports / "report.md").read_bytes() == v1_md  # the old report, whole
    plots = digest(reports / "plots")
    assert plots.keys() == v1_plots.keys() and plots != v1_plots  # the new plots, every one
    assert all((reports / "plots" / Path(k).name).read_bytes()[:4] == b"\x89PNG" for k in plots)

    rerun = zygote.run(p, "report.py", "data/update")
    assert rerun.rc == 0, rerun.log
    assert no_temps(p) == []
    md = (reports / "report.md").read_text()
    assert md != v1_md.decode() and md.rstrip().endswith("`flipgate report`.") and (reports / "report.html").is_file()
