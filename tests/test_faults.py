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
no temp anywhere. Promotion (the MLflow registry, a real sqlite store) is killed at registry calls
instead (fault_runner's CALL_POINTS) and at promotion.json's write: see the section at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

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
    seen: Any = None  # what `paused` returned while the process was alive at its fault


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

    def run(self, cwd: Path, *argv: str, fault: tuple[str, str] | None = None,
            paused: Callable[[], Any] | None = None, tmpdir: Path | None = None) -> Run:
        """Run stages/<argv[0]> in `cwd`; with fault (target, point), SIGKILL it paused there (after
        calling `paused`, which may look at what the live process holds; its value is Run.seen).
        tmpdir: the process's system temp folder (TMPDIR), to see what a kill leaves there."""
        if not self.started:
            assert self._message(300) == {"ready": True}
            self.started = True
        self.n += 1
        log, ready = self.logs / f"{self.n}.log", self.logs / f"{self.n}.ready"
        if tmpdir is not None:
            tmpdir.mkdir(parents=True, exist_ok=True)
        request = {"cwd": str(cwd), "argv": [str(ROOT / "stages" / argv[0]), *argv[1:]], "log": str(log),
                   "fault": fault and {"target": fault[0], "point": fault[1], "ready": str(ready)},
                   "tmpdir": tmpdir and str(tmpdir)}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        pid = self._message(60)["started"]
        temp = seen = None
        if fault:
            deadline = time.monotonic() + 180
            while not ready.exists():
                early = self._message(0.02)
                assert early is None, f"{argv} ended before {fault}: rc {early}\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{argv} never reached {fault}\n{log.read_text()[-3000:]}"
            try:  # paused: whatever fails here, the child must not stay paused
                at = json.loads(ready.read_text())
                if "temp" in at:  # paused at a write, not at a call
                    temp = Path(at["temp"])
                    assert temp.is_dir() and temp.name.startswith(f".{Path(fault[0]).name}.{pid}@"), temp  # pid@host
                seen = paused() if paused is not None else None
            finally:
                os.kill(pid, signal.SIGKILL)
        ended = self._message(300)
        assert ended and ended["ended"] == pid, ended
        return Run(pid, ended["rc"], log.read_text(), temp, seen)

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
    from flipgate.predictions import read_predictions
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
    assert len(read_predictions(preds / "dev.parquet")) == 20 and len(read_predictions(preds / "regression.parquet")) == 20
    assert temps_of(preds / "regression.parquet", predicting.pid) == [predicting.temp]

    rerun = zygote.run(p, *run)
    assert rerun.rc == 0, rerun.log
    assert no_temps(p) == []
    assert len(read_predictions(preds / "regression.parquet")) == 20
    assert json.loads((p / "seeds/0/reports/train/old.json").read_text())["lr"] == 3e-3


def write_predictions(p: Path, flips: int) -> None:
    """Hand-made predictions of old and new on the update's splits: new flips `flips` of old's rights."""
    from flipgate.data import update
    from flipgate.io import write_parquet
    from flipgate.predictions import predictions_frame

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
    pngs = [k for k in plots if k.endswith(".png")]
    assert pngs and all((reports / "plots" / Path(k).name).read_bytes()[:4] == b"\x89PNG" for k in pngs)
    assert all(not pd.read_csv(reports / "plots" / Path(k).name).empty for k in plots if k.endswith(".csv"))

    rerun = zygote.run(p, "report.py", "data/update")
    assert rerun.rc == 0, rerun.log
    assert no_temps(p) == []
    md = (reports / "report.md").read_text()
    assert md != v1_md.decode() and md.rstrip().endswith("`flipgate report`.") and (reports / "report.html").is_file()


# ---------------------------------------------------------------- promotion (the MLflow registry)
#
# The promote stage writes one file (promotion.json, atomically) and otherwise calls the registry, so its
# kill points are calls (fault_runner's before_call/after_call): holding the store's promote lock with
# nothing registered, a version registered without its alias, the champion alias moved, the model logged
# but not registered, the model copied to the store from MLflow's staging folder; then promotion.json's
# write. After every kill: the lock is free again, no model hash is registered twice, every version is
# whole (its tags, its predictions) and never both champion and challenger, promotion.json is absent, the
# old one or the new one, each whole; the next run finishes what the killed one began and removes its
# temps (promotion.json's, and the staging folder in the system temp folder, here a folder of the test),
# and the champion's artifacts load as the folder that was promoted. The stage runs in the zygote too.

NAME = "m-kill"
PROMOTE = ("promote.py", "reports/gate.json", "models/{candidate}", "models/old", "data/update/regression.parquet",
           "reports/promotion.json", "predictions/candidate.parquet", "predictions/old.parquet")
CLIENT = "mlflow.tracking.MlflowClient"


@pytest.fixture(scope="module")
def promo_models(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    """old, better and worse: the tiny BERT with three classifier biases (different hashes, all load)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("promo-models")
    out = {}
    for shift, name in enumerate(("old", "better", "worse")):
        folder = Path(shutil.copytree(tiny_bert, root / name))
        weights = load_file(folder / "model.safetensors")
        weights["classifier.bias"] = weights["classifier.bias"] + shift
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        out[name] = folder
    return out


def make_promote_project(d: Path, store: str, models: dict[str, Path]) -> str:
    """A project the promote stage runs in, with its own copy of a migrated, empty sqlite store; its URI."""
    from flipgate.io import write_parquet
    from flipgate.predictions import predictions_frame

    for name, folder in models.items():
        shutil.copytree(folder, d / "models" / name)
    shutil.copy(Path(store[len("sqlite:///"):]).with_name("pristine.db"), d / "mlflow.db")
    uri = f"sqlite:///{d}/mlflow.db"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"]["max_length"] = 32
    params["promote"]["registered_name"] = NAME
    params["tracking"].update(enabled=True, uri=uri)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    reg = toy_frame(20, 3, "r")
    (d / "data" / "update").mkdir(parents=True)
    reg.to_parquet(d / "data" / "update" / "regression.parquet")
    logits = np.eye(2, dtype=np.float32)[reg["label"].to_numpy()]
    for name in ("candidate", "old"):
        write_parquet(predictions_frame(reg["id"], reg["label"], logits), d / "predictions" / f"{name}.parquet")
    return uri


def write_gate(p: Path, verdict: str, candidate: str) -> None:
    (p / "reports").mkdir(exist_ok=True)
    (p / "reports" / "gate.json").write_text(json.dumps(
        {"verdict": verdict, "candidate": candidate, "metrics": {"nfr": 0.0, "accuracy": 0.9}}))


def lock_held(uri: str) -> bool:
    """Whether a process holds the store's promote lock."""
    from flipgate.errors import FlipgateError
    from flipgate.locks import store_lock

    try:
        with store_lock(uri, "promote", timeout=0.2):
            return False
    except FlipgateError:
        return True


def versions_of(uri: str, models: dict[str, Path]) -> dict[int, tuple[str, str, list[str]]]:
    """{version: (model folder name, verdict, aliases)} of NAME, after checking what must hold at any time:
    each model hash registered once, every version READY with its evidence and its predictions, no
    version both champion and challenger, and the promote lock free."""
    from flipgate import tracking
    from flipgate.gate.registry import PREDICTIONS_TAG, folder_hash

    assert not lock_held(uri), "the promote lock outlived its holder"
    names = {folder_hash(folder): name for name, folder in models.items()}
    client = tracking.connect(uri)
    mvs = [client.get_model_version(NAME, mv.version)  # search leaves the aliases out
           for mv in client.search_model_versions(f"name = '{NAME}'")]
    hashes = [mv.tags["model_hash"] for mv in mvs]
    assert len(hashes) == len(set(hashes)), f"a model registered twice: {sorted(hashes)}"
    state = {}
    for mv in mvs:
        assert mv.status == "READY" and {"verdict", "regression_hash", "git_commit"} <= mv.tags.keys(), mv
        artifacts = [a.path for a in client.list_artifacts(mv.run_id, str(Path(mv.tags[PREDICTIONS_TAG]).parent))]
        assert artifacts == [mv.tags[PREDICTIONS_TAG]], (mv.version, artifacts)
        assert not {"champion", "challenger"} <= set(mv.aliases), f"version {mv.version} is both: {mv.aliases}"
        state[int(mv.version)] = (names[mv.tags["model_hash"]], mv.tags["verdict"], sorted(mv.aliases))
    return state


def promotion_json(p: Path) -> dict | None:
    out = p / "reports" / "promotion.json"
    return json.loads(out.read_text()) if out.exists() else None  # raises on a half-written file


def assert_champion_loads(uri: str, models: dict[str, Path], name: str, dst: Path) -> None:
    from flipgate.gate.registry import folder_hash, load_champion
    from flipgate.models.classifier import load_classifier

    folder = load_champion(NAME, dst, tracking_uri=uri)
    assert folder_hash(folder) == folder_hash(models[name])
    load_classifier(str(folder), ["0", "1"])


def test_first_promotion_killed_at_each_step_is_finished_by_the_rerun(zygote, tmp_path, store, promo_models):
    p, systmp = tmp_path / "project", tmp_path / "systmp"
    uri = make_promote_project(p, store, promo_models)
    write_gate(p, "pass", "better")
    promote = partial(zygote.run, p, *PROMOTE, tmpdir=systmp)

    locked = promote(fault=("flipgate.gate.registry._ensure_model", "after_call"), paused=lambda: lock_held(uri))
    assert locked.rc == KILLED and locked.seen is True  # killed holding the lock: the kernel released it
    assert versions_of(uri, promo_models) == {} and promotion_json(p) is None

    boot = promote(fault=(f"{CLIENT}.create_model_version", "after_call"))
    assert boot.rc == KILLED  # the baseline registered, not yet champion
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", [])}

    cand = promote(fault=(f"{CLIENT}.create_model_version", "after_call"))
    assert cand.rc == KILLED  # the rerun found version 1 by its hash: this is the candidate's registration
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", ["champion"]), 2: ("better", "pass", [])}

    cut = promote(fault=("reports/promotion.json", "partial"))
    assert cut.rc == KILLED  # the champion moved, promotion.json half written in its temp
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", []), 2: ("better", "pass", ["champion"])}
    assert promotion_json(p) is None and temps_of(p / "reports" / "promotion.json", cut.pid) == [cut.temp]

    rerun = promote()
    assert rerun.rc == 0, rerun.log
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", []), 2: ("better", "pass", ["champion"])}
    out = promotion_json(p)
    assert (out["version"], out["champion_version"], out["aliases"], out["created"]) == (2, 2, ["champion"], False)
    assert no_temps(p) == [] and list(systmp.iterdir()) == []
    assert_champion_loads(uri, promo_models, "better", tmp_path / "champion")


def test_promotion_killed_moving_the_alias_or_logging_the_model_leaves_one_version_each(
        zygote, tmp_path, store, promo_models):
    from flipgate import tracking

    p, systmp = tmp_path / "project", tmp_path / "systmp"
    uri = make_promote_project(p, store, promo_models)
    promote = partial(zygote.run, p, *PROMOTE, tmpdir=systmp)
    write_gate(p, "reject", "worse")
    assert promote().rc == 0
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", ["champion"]),
                                              2: ("worse", "reject", ["challenger"])}
    rejected = (p / "reports" / "promotion.json").read_bytes()

    write_gate(p, "pass", "worse")  # the same candidate passes a later gate: the challenger becomes champion
    moved = promote(fault=(f"{CLIENT}.set_registered_model_alias", "after_call"))
    assert moved.rc == KILLED
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", []), 2: ("worse", "pass", ["champion"])}
    assert (p / "reports" / "promotion.json").read_bytes() == rejected  # the old one, whole
    again = promote()
    assert again.rc == 0, again.log
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", []), 2: ("worse", "pass", ["champion"])}
    assert promotion_json(p)["aliases"] == ["champion"]

    shutil.rmtree(p / "models" / "old")  # the champion is the baseline of the next gate
    shutil.copytree(promo_models["worse"], p / "models" / "old")
    write_gate(p, "pass", "better")
    logged = promote(fault=(f"{CLIENT}.create_model_version", "before_call"))
    assert logged.rc == KILLED  # the model and its predictions logged to the run, not registered
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", []), 2: ("worse", "pass", ["champion"])}

    staged = promote(fault=(f"{CLIENT}.log_model_artifacts", "after_call"))
    assert staged.rc == KILLED  # the model copied to the store from MLflow's staging folder, still there
    left = list(systmp.iterdir())  # MLflow's staging copy of the model, in the killed process's folder
    assert len(left) == 1 and left[0].name.startswith(f".flipgate-mlflow.{staged.pid}@"), left
    assert list(left[0].rglob("model.safetensors")) != []
    assert versions_of(uri, promo_models) == {1: ("old", "bootstrap", []), 2: ("worse", "pass", ["champion"])}

    renamed = promote(fault=("reports/promotion.json", "after_rename"))
    assert renamed.rc == KILLED
    assert list(systmp.iterdir()) == []  # the killed run's staging folder: removed by the next one
    new = {1: ("old", "bootstrap", []), 2: ("worse", "pass", []), 3: ("better", "pass", ["champion"])}
    assert versions_of(uri, promo_models) == new
    out = promotion_json(p)  # the new one, whole
    assert (out["version"], out["aliases"], out["created"]) == (3, ["champion"], True)
    assert out["tags"]["baseline_version"] == "2"

    rerun = promote()
    assert rerun.rc == 0, rerun.log
    assert versions_of(uri, promo_models) == new and promotion_json(p)["champion_version"] == 3
    assert no_temps(p) == [] and list(systmp.iterdir()) == []
    assert_champion_loads(uri, promo_models, "better", tmp_path / "champion")
    # What a kill does leave: the killed runs stay RUNNING, and what they logged before registering stays
    # in the artifact store, unregistered (MLflow has no transaction across logging and registering): 5
    # logged copies of a model for 3 versions.
    client = tracking.connect(uri)
    runs = client.search_runs([tracking.experiment_id(client)], "tags.`flipgate.stage` = 'promote'")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3 + ["RUNNING"] * 4
    assert len(list((p / "mlartifacts").rglob("model.safetensors"))) == 5
