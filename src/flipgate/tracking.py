"""The only MLflow tracking code: one parent run per pipeline run, one nested run per stage.

Where runs go (first that is set): the `tracking.uri` param, the MLFLOW_TRACKING_URI environment
variable (leave the param null and set this to point one invocation, e.g. CI, at a server), else
`sqlite:///mlflow.db` in the working directory with artifacts in ./mlartifacts (for any sqlite store:
`mlartifacts/` beside the db file). The param comes first because MLflow itself rewrites the
environment variable whenever a process sets a tracking URI.

Stages are separate processes started by `dvc repro`, so they cannot hand each other a run object.
Each stage finds-or-creates the parent run by the tag `flipgate.pipeline_key`, a hash of what fixes a
pipeline run before it starts (flipgate.run_key: the commit and its uncommitted diff, params.yaml but
`seeds`, the local data files). Re-running the same commit, params and data (`dvc repro -f`) adds nested
runs to the same parent; set FLIPGATE_PIPELINE_KEY to force a key of your own. Every per-seed stage's run
is named `<stage>@<seed>` and has the param `seed`. Stages are assumed to run one at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before mlflow is imported: never phone home
if not sys.stderr.isatty():  # progress bars only for people at a terminal
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID  # noqa: E402

from flipgate.errors import FlipgateError  # noqa: E402
from flipgate.io import frame_hash, read_json  # noqa: E402
from flipgate.locks import sqlite_file, store_lock  # noqa: E402
from flipgate.run_key import git_commit, pipeline_key  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "flipgate"
KEY_TAG = "flipgate.pipeline_key"
ROLE_TAG = "flipgate.role"  # "pipeline" on the parent, "stage" on nested runs
STAGE_TAG = "flipgate.stage"
GIT_COMMIT_TAG = "git_commit"
# The splits the update stage writes; after every stage that sees them, each is fingerprinted (tags) and
# logged as an MLflow dataset input whose context is its name.
DEFAULT_DATASETS = {
    "old": "data/update/old.parquet",
    "new": "data/update/new.parquet",
    "dev": "data/update/dev.parquet",
    "regression": "data/update/regression.parquet",
}
FLIP_TABLE_ROWS = ("negative", "positive")  # the flip ledger's rows the MLflow table shows
TABLES = "tables"  # the artifact folder of the tables a stage logs
_MAX_PARAM_CHARS = 6000  # MLflow refuses longer param values


# ---------------------------------------------------------------- the store


def resolve_uri(uri: str | None = None) -> str:
    """`uri` (the tracking.uri param) if set, else MLFLOW_TRACKING_URI, else the project's sqlite file."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: `mlartifacts/` beside a sqlite file; None (the
    server's own default) for any other store."""
    db = sqlite_file(uri)
    return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()


def connect(uri: str | None = None) -> MlflowClient:
    """Point MLflow at the resolved store and return a client for it (registry = the same store).

    MLflow exports the URI as MLFLOW_TRACKING_URI, so subprocesses started later log there too.
    The first use of a fresh sqlite file creates and migrates it (a few seconds, once per file); two
    processes migrating one file at once break it for good, so opening a sqlite store holds its
    "open" lock (flipgate.locks) until both the tracking and the registry tables are there.
    """
    resolved = resolve_uri(uri)
    mlflow.set_tracking_uri(resolved)  # the fluent API (log_model, models:/ URIs) follows it
    if sqlite_file(resolved) is None:
        return MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    with store_lock(resolved, "open"):
        client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)  # opens the tracking tables
        client.search_registered_models(max_results=1)  # and the registry's, which MLflow opens lazily
    return client


def require_store(uri: str | None, what: str, hint: str = "") -> str:
    """The resolved URI, when its store can hold `what` already: a sqlite file that does not exist is
    refused (MLflow would create and migrate an empty one, seconds, only to find nothing in it).
    Raises FlipgateError naming `what`, the URI, where it came from and what to do (`hint` adds to it);
    creates nothing."""
    resolved = resolve_uri(uri)
    db = sqlite_file(resolved)
    if db is None or db.is_file():
        return resolved
    if uri:
        source = "the tracking.uri param"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        source = "MLFLOW_TRACKING_URI"
    else:
        source = "the default, as MLFLOW_TRACKING_URI is not set"
    raise FlipgateError(
        f"{what}: no MLflow store at {resolved} ({db.resolve()} does not exist; nothing was created). The URI "
        f"is {source}: point MLFLOW_TRACKING_URI (or tracking.uri in params.yaml) at the store that `promote` "
        f"registered the model in{hint}"
    )


def experiment_id(client: MlflowClient, name: str = DEFAULT_EXPERIMENT) -> str:
    """Find or create the experiment; a sqlite store gets its artifacts under mlartifacts/."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(client.tracking_uri))


def read_split(path: str | Path) -> pd.DataFrame:
    if not Path(path).exists():
        raise FlipgateError(f"{path}: data split not found; run `dvc repro update` to write it")
    return pd.read_parquet(path)


def dataset_fingerprint(path: str | Path, frame: pd.DataFrame | None = None) -> dict[str, str | int]:
    """Content hash (id, text, label columns that exist) and row count of a parquet split (`frame`: the
    split already read)."""
    df = read_split(path) if frame is None else frame
    cols = [c for c in ("id", "text", "label") if c in df.columns] or list(df.columns)
    return {"hash": frame_hash(df, cols), "rows": len(df)}


def dataset_input(frame: pd.DataFrame, path: str | Path, name: str) -> DatasetInput:
    """The split as an MLflow dataset (name, digest, schema, rows, its file as source) used in context
    `name` (old, new, dev, regression): what the MLflow UI lists under a run's datasets."""
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice and says so on every local path; harmless.
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*integer column.*", category=UserWarning)
        ds = mlflow.data.from_pandas(frame, source=str(Path(path).resolve()), name=name,
                                     targets="label" if "label" in frame.columns else None)
        entity = ds._to_mlflow_entity()  # infers the schema: the integer-column hint comes from here
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, name)])


def decision_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """A gate decision (gate.json) as one row per check (name, observed, op, threshold, verdict, detail),
    then the overall verdict as the row `verdict`."""
    checks = record.get("checks")
    if not isinstance(checks, list) or "verdict" not in record:
        raise FlipgateError('gate decision: expected {"verdict": ..., "checks": [...]} as the gate stage writes it')
    rows = [{k: c.get(k) for k in ("name", "observed", "op", "threshold", "verdict", "detail")} for c in checks]
    rows.append({"name": "verdict", "observed": None, "op": None, "threshold": None, "verdict": record["verdict"],
                 "detail": f"candidate {record.get('candidate', '')} against {record.get('baseline', '')}"})
    return pd.DataFrame(rows, columns=["name", "observed", "op", "threshold", "verdict", "detail"])


def flip_table(ledger: pd.DataFrame) -> pd.DataFrame:
    """The flip ledger's rows that flipped (negative or positive), for the MLflow UI; the whole ledger stays
    in flips.parquet."""
    if "flip" not in ledger.columns:
        raise FlipgateError("flip ledger: no `flip` column; rebuild it with `flipgate report`")
    return ledger[ledger["flip"].isin(FLIP_TABLE_ROWS)].reset_index(drop=True)


# ---------------------------------------------------------------- logging helpers


def metric_name(key: str) -> str:
    """`key` with every character MLflow does not allow in a metric name (it allows letters, digits, `_`,
    `-`, `.`, space, `:` and `/`) replaced by `_`."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", key)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; pydantic models are dumped first; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if hasattr(v, "model_dump"):
            v = v.model_dump()
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _present(path: Path, there: bool, missing_ok: bool, problem: str) -> bool:
    """Whether `path` is there to log; when not: False with missing_ok (logged at info), else FlipgateError."""
    if there:
        return True
    if missing_ok:
        log.info("%s: not there, not logged", path)
        return False
    raise FlipgateError(f"{path}: {problem}; run the stage that writes it")


@dataclass
class StageRun:
    """The nested run of one stage; the methods log to it (never to the parent)."""

    client: MlflowClient
    run_id: str
    parent_run_id: str
    experiment_id: str
    pipeline_key: str

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Log the numeric leaves of a (nested) mapping as `a.b`; other leaves and NaN are skipped. A
        character MLflow refuses in a metric name (e.g. a grid point's `lambda=1,T=1`) becomes `_`."""
        flat = {metric_name(k): v for k, v in flatten(metrics).items() if _is_number(v)}
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in flat.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None, missing_ok: bool = False) -> None:
        """Log a file or a folder (reports, plots, predictions). A missing path raises unless missing_ok."""
        path = Path(path)
        if not _present(path, path.exists(), missing_ok, "cannot log it to MLflow, it does not exist"):
            return
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_table(self, data: pd.DataFrame, artifact_file: str) -> None:
        """A frame as an MLflow table (a JSON artifact the UI shows as a table, e.g. in the Evaluation view)."""
        data = data.astype({c: object for c in data.columns if pd.api.types.is_string_dtype(data[c])})
        self.client.log_table(self.run_id, data, artifact_file)

    def log_table_file(self, path: str | Path, missing_ok: bool = False) -> None:
        """Log a pipeline output as the table tables/<its stem>.json (apart from the file itself, which a
        stage may log too, and MLflow would append a table to): a flip ledger (parquet with a `flip`
        column) as its flipped rows, a gate decision (JSON with `checks`) as its checks, any other
        parquet whole."""
        path = Path(path)
        if not _present(path, path.is_file(), missing_ok, "cannot log it as an MLflow table, it is not a file"):
            return
        if path.suffix == ".json":
            record = read_json(path)
            if not isinstance(record, Mapping):
                raise FlipgateError(f"{path}: expected a gate decision (a JSON object), got {type(record).__name__}")
            self.log_table(decision_table(record), f"{TABLES}/{path.stem}.json")
            return
        frame = pd.read_parquet(path)
        self.log_table(flip_table(frame) if "flip" in frame.columns else frame, f"{TABLES}/{path.stem}.json")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _MAX_PARAM_CHARS else s[: _MAX_PARAM_CHARS - 3] + "..."


# ---------------------------------------------------------------- runs


def find_or_create_parent(client: MlflowClient, exp_id: str, key: str, commit: str) -> str:
    """The parent run tagged with `key`, created (named pipeline-<key>) when there is none."""
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'pipeline'",
        max_results=1,
        order_by=["attributes.start_time ASC"],  # two racing creators: everyone picks the oldest
    )
    if found:
        return found[0].info.run_id
    tags = {KEY_TAG: key, ROLE_TAG: "pipeline", MLFLOW_GIT_COMMIT: commit, GIT_COMMIT_TAG: commit}
    run = client.create_run(exp_id, tags=tags, run_name=f"pipeline-{key[:8]}")
    log.info("MLflow: new pipeline run %s (key %s)", run.info.run_id, key)
    return run.info.run_id


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any] | None = None,
    *,
    uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    root: str | Path = ".",
    datasets: Mapping[str, str | Path] | None = None,
    key: str | None = None,
) -> Iterator[StageRun]:
    """Run a stage's body inside a nested MLflow run under its pipeline's parent run.

    params: the stage's params.yaml sections ({"base": Base(...), "train_old": {...}}), logged flattened.
    datasets: name -> parquet path, fingerprinted (hash + rows) as tags and logged as MLflow dataset inputs
    (context: the name) on the stage's run and the parent when the body succeeds, so a stage that writes
    them logs what it wrote; default: the update splits that exist under `root`.
    The nested run ends FINISHED or FAILED with the body; the parent's status follows its last stage.
    """
    root = Path(root)
    client = connect(uri)
    exp_id = experiment_id(client, experiment)
    commit = git_commit(root)
    key = key or pipeline_key(root)
    parent_id = find_or_create_parent(client, exp_id, key, commit)
    client.update_run(parent_id, status="RUNNING")
    tags = {MLFLOW_PARENT_RUN_ID: parent_id, KEY_TAG: key, ROLE_TAG: "stage", STAGE_TAG: stage,
            MLFLOW_GIT_COMMIT: commit, GIT_COMMIT_TAG: commit}
    status = "FAILED"
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=stage, tags=tags) as active:
            run = StageRun(client, active.info.run_id, parent_id, exp_id, key)
            params = flatten(params or {})
            client.log_batch(run.run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
            yield run
            _log_datasets(run, root, DEFAULT_DATASETS if datasets is None else datasets)
        status = "FINISHED"
    finally:
        client.set_terminated(parent_id, status=status)


def _log_datasets(run: StageRun, root: Path, datasets: Mapping[str, str | Path]) -> None:
    tags: dict[str, Any] = {}
    inputs: list[DatasetInput] = []
    for name, path in datasets.items():
        path = Path(path) if Path(path).is_absolute() else root / path
        if path.exists():
            frame = read_split(path)
            fp = dataset_fingerprint(path, frame)
            tags[f"dataset.{name}.hash"], tags[f"dataset.{name}.rows"] = fp["hash"], fp["rows"]
            inputs.append(dataset_input(frame, path, name))
    if tags:
        run.set_tags(tags)
        run.client.log_batch(run.parent_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    if inputs:  # the store keeps one input per dataset and run: the parent lists each split once
        run.client.log_inputs(run.run_id, datasets=inputs)
        run.client.log_inputs(run.parent_run_id, datasets=inputs)
