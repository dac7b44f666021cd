"""Stage `gate`: judge the candidate against old (the champion) on the regression set.

Usage: python stages/gate.py BASELINE_PREDICTIONS CANDIDATE_PREDICTIONS [TRAIN_REPORTS_DIR]
Writes reports/gate.json and reports/gate.md. A reject is a result, not a failure: the stage exits 0 so
`promote` can register the candidate as a challenger; `flipgate gate` is the command that fails CI.
Beyond `flipgate gate`'s checks: a candidate that `select` gated only as the safe fallback fails
`dev_selection`; models of TRAIN_REPORTS_DIR (<role>.json) that are not fit to judge are named, and an
unfit old model makes the verdict inconclusive.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.gate import run_stage


def main(run: stage.Run) -> None:
    baseline, candidate, *train_reports = run.args
    run_stage(baseline, candidate, Path(train_reports[0]) if train_reports else None, run.section("gate"))


if __name__ == "__main__":
    stage.run("gate", main, sections=("gate",), metrics=("reports/gate.json",),
              artifacts=("reports/gate.json", "reports/gate.md"), tables=("reports/gate.json",),
              args=("BASELINE_PREDICTIONS", "CANDIDATE_PREDICTIONS", "[TRAIN_REPORTS_DIR]"))
