"""The only MLflow Model Registry code: act on a gate decision, never decide.

`promote` registers the candidate folder as a version of the registered model, tagged with the
evidence (verdict, nfr, accuracy, baseline version, regression-set hash, git commit, model hash), and
moves the alias `champion` only when the verdict is "pass". A rejected or inconclusive candidate is
registered too, with its verdict and the alias `challenger`; the champion stays where it was.

Idempotent: a version is identified by the tags `model_hash` (content of the model folder) and
`regression_hash`; promoting the same artifacts again finds that version instead of adding one.
Bootstrap: a registered model without a champion gets the baseline (old) folder as its champion first.

Concurrency: MLflow has no compare-and-set on aliases, so promote holds the store's "promote" lock
(flipgate.locks) from reading the champion to moving it. A promotion that waited finds the champion
another one moved, and (with require_champion_baseline) its pass no longer matches the champion: it
registers the candidate as challenger and its note says so. The lock serialises processes on one machine;
promotions from several machines through one server are not serialised (README, Promotion).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flipgate import tracking
from flipgate.errors import FlipgateError
from flipgate.io import atomic_path, hash_files
from flipgate.locks import store_lock

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
VERDICTS = ("pass", "reject", "inconclusive")
BOOTSTRAP = "bootstrap"  # the verdict tag of a baseline registered because there was no champion


@dataclass(frozen=True)
class Promotion:
    """What promote did. `champion_version` is the champion after it ran."""

    name: str
    version: int
    verdict: str
    aliases: list[str]
    champion_version: int | None
    created: bool  # False when an identical version was already registered
    bootstrap_version: int | None = None
    note: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def folder_hash(folder: str | Path) -> str:
    """sha256 over the folder's relative file names and bytes (sorted), so copies hash alike."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FlipgateError(f"{folder}: model folder not found; run the stage that writes it first")
    h = hashlib.sha256()
    hash_files(h, folder)
    return h.hexdigest()[:16]


def decision_dict(decision: Any) -> dict[str, Any]:
    """The decision as a dict (an object with to_dict() or a mapping); checks its verdict."""
    d = decision.to_dict() if hasattr(decision, "to_dict") else dict(decision)
    if d.get("verdict") not in VERDICTS:
        raise FlipgateError(f"gate decision: verdict {d.get('verdict')!r} is not one of {list(VERDICTS)}")
    return d


def _metric(d: Mapping[str, Any], name: str) -> Any:
    """A candidate metric from the decision: its `metrics` or `counts` (pooled flip counts), else the
    observed value of the check named `name`; None when it has none."""
    for section in ("metrics", "counts"):
        values = d.get(section) or {}
        if name in values:
            return values[name]
    for check in d.get("checks") or []:
        if isinstance(check, Mapping) and check.get("name") == name:
            return check.get("observed")
    return None


def _tag(v: Any) -> str:
    return "n/a" if v is None else str(v)


# ---------------------------------------------------------------- registry queries


def _find_version(client, name: str, **tags: str):
    """The oldest version of `name` whose tags match, or None (also when the model does not exist)."""
    clauses = [f"name = '{name}'"] + [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    found = client.search_model_versions(" and ".join(clauses))
    return min(found, key=lambda v: int(v.version)) if found else None


def _alias_version(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no such model or no such alias
        return None


PREDICTIONS_TAG = "predictions_artifact"  # the version's regression-set predictions, in its run


def _register(client, folder: Path, name: str, tags: dict[str, str], max_length: int | None, experiment: str,
              predictions: str | Path | None = None):
    """Log the folder as a pyfunc (to the active run, if any) and register it as a new version. With
    `predictions` (its regression-set table), log that too, so `flipgate gate --baseline models:/...`
    can judge a candidate against the version without running it."""
    from flipgate.models.pyfunc import log_model

    config = {"max_length": max_length} if max_length else {}
    info = log_model(folder, name="model", experiment=experiment, **config)
    if predictions is not None:
        subdir = f"predictions/{tags['model_hash'][:16]}"
        client.log_artifact(info.run_id, str(predictions), subdir)
        tags = {**tags, PREDICTIONS_TAG: f"{subdir}/{Path(predictions).name}"}
    mv = client.create_model_version(name, source=info.model_uri, run_id=info.run_id, tags=tags,
                                     model_id=info.model_id, description=_summary(tags))
    log.info("registered %s version %s from %s", name, mv.version, folder)
    return mv


def download_predictions(ref: str, dst: str | Path, tracking_uri: str | None = None) -> Path:
    """`models:/<name>@<alias>` or `models:/<name>/<version>` -> its regression-set predictions file,
    downloaded under `dst`. Raises FlipgateError when the version or its predictions are unknown."""
    import mlflow

    body = ref[len("models:/"):]
    name, sep, alias = body.partition("@")
    client = tracking.connect(tracking.require_store(tracking_uri, ref, "; or pass a predictions file"))
    try:
        if sep:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = body.rpartition("/")
            mv = client.get_model_version(name, version)
    except Exception as exc:  # MlflowException for unknown models, versions and aliases
        raise FlipgateError(f"{ref}: no such registered model version at {client.tracking_uri} ({exc})") from exc
    artifact = mv.tags.get(PREDICTIONS_TAG)
    if not artifact:
        raise FlipgateError(f"{ref}: version {mv.version} was registered without its predictions; pass a file")
    uri = tracking.resolve_uri(tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=artifact, dst_path=str(dst),
                                                    tracking_uri=uri))


def _summary(tags: Mapping[str, str]) -> str:
    return (f"{tags['verdict']}: {tags.get('candidate', '')} nfr={tags.get('nfr', 'n/a')} "
            f"accuracy={tags.get('accuracy', 'n/a')} vs version {tags.get('baseline_version', 'none')}")


def _ensure_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="flipgate: champion = the model in production")


# ---------------------------------------------------------------- promote


def bootstrap(
    client,
    baseline_folder: str | Path,
    name: str,
    regression_hash: str,
    commit: str,
    max_length: int | None = None,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
    predictions: str | Path | None = None,
) -> int:
    """Register the baseline as champion (the first pipeline run); reuses a version with its hash."""
    model_hash = folder_hash(baseline_folder)
    mv = _find_version(client, name, model_hash=model_hash)
    if mv is None:
        tags = {"verdict": BOOTSTRAP, "model_hash": model_hash, "regression_hash": regression_hash,
                "git_commit": commit, "candidate": "old"}
        mv = _register(client, Path(baseline_folder), name, tags, max_length, experiment, predictions)
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    log.info("%s had no champion: version %s (%s) is champion now", name, mv.version, baseline_folder)
    return int(mv.version)


def promote(
    candidate_folder: str | Path,
    decision: Any,
    registered_name: str,
    *,
    regression_hash: str,
    baseline_folder: str | Path | None = None,
    require_champion_baseline: bool = True,
    tracking_uri: str | None = None,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
    max_length: int | None = None,
    tags: Mapping[str, Any] | None = None,
    candidate_predictions: str | Path | None = None,
    baseline_predictions: str | Path | None = None,
) -> Promotion:
    """Register `candidate_folder` and move `champion` to it only if the decision's verdict is "pass".

    baseline_folder: the old model the gate compared against. With no champion yet it becomes the
    champion (bootstrap). With require_champion_baseline, a pass whose baseline is not the champion's
    content does not move the champion (the gate did not compare against production); the candidate
    gets `challenger` and the note says why. A candidate identical to the champion changes nothing.
    The model is logged to the active MLflow run (the promote stage's), else to a short run in `experiment`.
    Raises FlipgateError for a missing folder or a decision without a known verdict.
    """
    d = decision_dict(decision)
    verdict = d["verdict"]
    client = tracking.connect(tracking_uri)
    commit = tracking.git_commit()
    model_hash = folder_hash(candidate_folder)
    with store_lock(client.tracking_uri, "promote"):  # read the champion, decide, register, move: one step
        _ensure_model(client, registered_name)
        boot = None
        champion = _alias_version(client, registered_name, CHAMPION)
        if champion is None and baseline_folder is not None:
            boot = bootstrap(client, baseline_folder, registered_name, regression_hash, commit, max_length,
                             experiment, baseline_predictions)
            champion = _alias_version(client, registered_name, CHAMPION)
        if champion is not None and champion.tags.get("model_hash") == model_hash:
            return _result(client, registered_name, champion, verdict, False, boot,
                           "the candidate is the champion already; nothing to do")

        note = ""
        if verdict == "pass" and require_champion_baseline:
            note = _baseline_mismatch(client, registered_name, champion, baseline_folder)
        move = verdict == "pass" and not note

        version_tags = {
            "verdict": verdict,
            "candidate": str(d.get("candidate", "")),
            "nfr": _tag(_metric(d, "nfr")),
            "accuracy": _tag(_metric(d, "accuracy")),
            "baseline_version": str(champion.version) if champion is not None else "none",
            "regression_hash": regression_hash,
            "git_commit": commit,
            "model_hash": model_hash,
            **{k: str(v) for k, v in (tags or {}).items()},
        }
        mv = _find_version(client, registered_name, model_hash=model_hash, regression_hash=regression_hash)
        created = mv is None
        if created:
            mv = _register(client, Path(candidate_folder), registered_name, version_tags, max_length, experiment,
                           candidate_predictions)
        else:  # same artifacts again: refresh the evidence, keep the version
            for k, v in version_tags.items():
                client.set_model_version_tag(registered_name, mv.version, k, v)
            log.info("%s version %s already holds this candidate; not registering it again", registered_name,
                     mv.version)
        if note:
            client.set_model_version_tag(registered_name, mv.version, "note", note)

        _set_alias(client, registered_name, mv.version, CHAMPION if move else CHALLENGER)
        return _result(client, registered_name, mv, verdict, created, boot, note)


def _baseline_mismatch(client, name: str, champion, baseline_folder: str | Path | None) -> str:
    """Why a pass must not move the champion (the gate compared against another model), or "".
    A baseline that is a former champion means the champion moved since: another promotion won.

    A promotion rule that stays here, outside the gate's Decision: it reads the champion under the
    promote lock, after the gate has decided (the champion can move in between), and asks the registry
    for the baseline's version only when the hashes differ; a pure half in gate/policy.py would split
    the rule in two or add a registry call to every promotion."""
    if champion is None or baseline_folder is None:
        return ""
    baseline_hash = folder_hash(baseline_folder)
    if baseline_hash == champion.tags.get("model_hash"):
        return ""
    earlier = _find_version(client, name, model_hash=baseline_hash)
    if earlier is not None and _was_champion(earlier):
        note = (f"passed against version {earlier.version} ({baseline_folder}), a former champion, but the "
                f"champion is version {champion.version} now (another promotion moved it since); run the gate "
                "again against the champion (old.source: registry)")
    else:
        note = (f"passed against {baseline_folder}, which is not champion version {champion.version}; "
                "set old.source: registry so the gate compares against the champion")
    log.warning("champion not moved: %s", note)
    return note


def _was_champion(mv) -> bool:
    """Whether promote made this version champion once: the bootstrap, or a pass that was not held back."""
    return mv.tags.get("verdict") == BOOTSTRAP or (mv.tags.get("verdict") == "pass" and "note" not in mv.tags)


def _set_alias(client, name: str, version: str, alias: str) -> None:
    """Point `alias` at `version`; a version that becomes champion stops being the challenger.
    The challenger alias goes first: a promotion killed between the two writes leaves the champion where
    it was (the rerun moves it), never one version as both (the rerun would find it champion already)."""
    if alias == CHAMPION:
        challenger = _alias_version(client, name, CHALLENGER)
        if challenger is not None and challenger.version == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    client.set_registered_model_alias(name, alias, version)


def _result(client, name: str, mv, verdict: str, created: bool, boot: int | None, note: str) -> Promotion:
    fresh = client.get_model_version(name, mv.version)
    champion = _alias_version(client, name, CHAMPION)
    return Promotion(
        name=name,
        version=int(fresh.version),
        verdict=verdict,
        aliases=sorted(fresh.aliases),
        champion_version=int(champion.version) if champion is not None else None,
        created=created,
        bootstrap_version=boot,
        note=note,
        tags=dict(fresh.tags),
    )


# ---------------------------------------------------------------- champion as the old model


def load_champion(name: str, dst: str | Path, tracking_uri: str | None = None) -> Path:
    """Download `models:/<name>@champion` and put its model folder at `dst` (atomically).

    The folder is the one that was promoted, byte for byte (same folder_hash), so the pipeline can use
    it as the old model. Raises FlipgateError when the model or its champion does not exist.
    """
    import mlflow

    client = tracking.connect(tracking.require_store(tracking_uri, f"registered model {name!r}"))
    champion = _alias_version(client, name, CHAMPION)
    if champion is None:
        raise FlipgateError(
            f"registered model {name!r} has no '{CHAMPION}' alias at {client.tracking_uri}; run the pipeline "
            "once with old.source: train (promote registers old as champion) or point tracking.uri at the "
            "right server"
        )
    with tempfile.TemporaryDirectory(prefix="flipgate-champion-") as tmp:
        uri = tracking.resolve_uri(tracking_uri)
        local = Path(mlflow.artifacts.download_artifacts(
            f"models:/{name}@{CHAMPION}", dst_path=tmp, tracking_uri=uri, registry_uri=uri))
        inner = local / _artifact_subpath(local)
        with atomic_path(dst) as out:
            shutil.copytree(inner, out)
    log.info("champion of %s is version %s; its model folder is at %s", name, champion.version, dst)
    return Path(dst)


def download_model(ref: str, dst: str | Path, tracking_uri: str | None = None) -> tuple[Path, dict[str, Any]]:
    """`models:/<name>@<alias>` or `models:/<name>/<version>` -> (its model folder, downloaded under `dst`,
    and the model_config it was logged with: max_length and the like). Raises FlipgateError when the
    store, the model or the version is unknown."""
    import mlflow

    uri = tracking.require_store(tracking_uri, ref, "; or pass a model folder")
    try:
        local = Path(mlflow.artifacts.download_artifacts(ref, dst_path=str(dst), tracking_uri=uri, registry_uri=uri))
    except Exception as exc:  # MlflowException for unknown models, versions and aliases
        raise FlipgateError(f"{ref}: no such registered model version at {uri} ({type(exc).__name__}: {exc})") from exc
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    config = mlmodel["flavors"]["python_function"].get("model_config") or {}
    return local / _artifact_subpath(local), dict(config)


def champion_version(name: str, tracking_uri: str | None = None) -> int | None:
    """The champion's version number, or None when there is none."""
    client = tracking.connect(tracking.require_store(tracking_uri, f"registered model {name!r}"))
    mv = _alias_version(client, name, CHAMPION)
    return int(mv.version) if mv is not None else None


def _artifact_subpath(local: Path) -> str:
    """Where the model folder sits inside a downloaded pyfunc (from its MLmodel file)."""
    from flipgate.models.pyfunc import ARTIFACT_KEY

    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    artifacts = mlmodel["flavors"]["python_function"].get("artifacts") or {}
    if ARTIFACT_KEY not in artifacts:
        raise FlipgateError(f"{local}/MLmodel: not a flipgate pyfunc (no artifact {ARTIFACT_KEY!r})")
    return artifacts[ARTIFACT_KEY]["path"]
