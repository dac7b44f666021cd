"""Stage `promote`: act on the gate's decision in the MLflow Model Registry.

Usage: python stages/promote.py GATE_JSON CANDIDATE_DIR BASELINE_DIR REGRESSION_PARQUET OUT_JSON
                                [CANDIDATE_PREDICTIONS BASELINE_PREDICTIONS]
  CANDIDATE_DIR may contain `{candidate}`, filled with the decision's candidate name (models/{candidate}).
  The predictions tables (regression set) are logged with the versions, for `flipgate gate models:/...`.
Params: base.max_length, promote, tracking. The champion alias moves only on a "pass"; the stage
succeeds whatever the verdict (blocking a merge is the gate's job) and writes version, aliases, verdict.
"""

import sys
from pathlib import Path

from flipgate import stage, tracking
from flipgate.gate import registry
from flipgate.io import read_json, write_json
from flipgate.params import load_section


def main() -> None:
    if len(sys.argv) not in (6, 8):
        raise stage.FlipgateError(f"expected 5 or 7 paths, got {len(sys.argv) - 1}; {__doc__.splitlines()[2].strip()}")
    gate_json, candidate_dir, baseline_dir, regression, out = sys.argv[1:6]
    cand_preds, base_preds = sys.argv[6:8] if len(sys.argv) == 8 else (None, None)
    base, promote, trk = (load_section(s) for s in ("base", "promote", "tracking"))
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
            candidate_predictions=cand_preds,
            baseline_predictions=base_preds,
        )
        write_json(result.to_dict(), out)
        run.set_tags({"promotion.version": result.version, "promotion.verdict": result.verdict,
                      "promotion.champion_version": result.champion_version})
        run.log_artifact(out)
    stage.log.info("%s: %s version %s, aliases %s, champion version %s", result.verdict, result.name,
                   result.version, result.aliases or "none", result.champion_version)


if __name__ == "__main__":
    stage.run("promote", main, track=False)
