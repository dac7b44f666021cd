"""Stage `promote`: act on the gate's decision in the MLflow Model Registry (flipgate.gate.registry), inside
the stage's own MLflow run. The champion alias moves only on a "pass"; the stage succeeds whatever the
verdict (blocking a merge is the gate's job) and writes version, aliases, verdict."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flipgate import tracking
from flipgate.gate import registry
from flipgate.io import read_json, write_json

if TYPE_CHECKING:
    from flipgate.params import Base, Promote, Tracking

log = logging.getLogger(__name__)


def run_stage(gate_json: str, candidate_dir: str, baseline_dir: str, regression: str, out: str,
              candidate_predictions: str | None, baseline_predictions: str | None,
              base: Base, promote: Promote, trk: Tracking) -> registry.Promotion:
    """`candidate_dir` may hold `{candidate}`, filled with the decision's candidate name; the predictions
    tables (regression set) are logged with the version, for `flipgate gate models:/...`."""
    decision = registry.decision_dict(read_json(gate_json))
    candidate = Path(candidate_dir.format(candidate=decision.get("candidate", "")))
    regression_hash = tracking.dataset_fingerprint(regression)["hash"]
    sections = {"base": base, "promote": promote}
    with tracking.stage_run("promote", sections, uri=trk.uri, experiment=trk.experiment) as run:
        run.log_artifact(gate_json)
        result = registry.promote(
            candidate,
            decision,
            promote.registered_name,
            regression_hash=regression_hash,
            baseline_folder=baseline_dir,
            require_champion_baseline=promote.require_champion_baseline,
            tracking_uri=trk.uri,
            experiment=trk.experiment,
            max_length=base.max_length,
            candidate_predictions=candidate_predictions,
            baseline_predictions=baseline_predictions,
        )
        write_json(result.to_dict(), out)
        run.set_tags({"promotion.version": result.version, "promotion.verdict": result.verdict,
                      "promotion.champion_version": result.champion_version})
        run.log_artifact(out)
    log.info("%s: %s version %s, aliases %s, champion version %s", result.verdict, result.name,
             result.version, result.aliases or "none", result.champion_version)
    return result
