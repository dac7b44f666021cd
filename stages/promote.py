"""Stage `promote`: act on the gate's decision in the MLflow Model Registry.

Usage: python stages/promote.py GATE_JSON CANDIDATE_DIR BASELINE_DIR REGRESSION_PARQUET OUT_JSON
                                [CANDIDATE_PREDICTIONS BASELINE_PREDICTIONS]
  CANDIDATE_DIR may contain `{candidate}`, filled with the decision's candidate name (models/{candidate}).
  The predictions tables (regression set) are logged with the versions, for `flipgate gate models:/...`.
Params: base.max_length, promote, tracking. The champion alias moves only on a "pass"; the stage
succeeds whatever the verdict (blocking a merge is the gate's job) and writes version, aliases, verdict.
"""

from flipgate import stage
from flipgate.pipeline.promote import run_stage


def main(run: stage.Run) -> None:
    if len(run.args) not in (5, 7):
        raise stage.FlipgateError(f"expected 5 or 7 paths, got {len(run.args)}; {__doc__.splitlines()[2].strip()}")
    gate_json, candidate_dir, baseline_dir, regression, out = run.args[:5]
    cand_preds, base_preds = run.args[5:7] if len(run.args) == 7 else (None, None)
    run_stage(gate_json, candidate_dir, baseline_dir, regression, out, cand_preds, base_preds,
              run.section("base"), run.section("promote"), run.section("tracking"))


if __name__ == "__main__":
    stage.run("promote", main, track=False)
