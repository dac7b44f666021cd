"""Stage `gate`: judge the candidate against old (the champion) on the regression set.

Usage: python stages/gate.py BASELINE_PREDICTIONS CANDIDATE_PREDICTIONS [TRAIN_REPORTS_DIR]
Writes reports/gate.json and reports/gate.md. A reject is a result, not a failure: the stage exits 0 so
`promote` can register the candidate as a challenger; `flipgate gate` is the command that fails CI.
Beyond `flipgate gate`'s checks: a candidate that `select` gated only as the safe fallback fails
`dev_selection`; models of TRAIN_REPORTS_DIR (<role>.json) that are not fit to judge are named, and an
unfit old model makes the verdict inconclusive.
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.gate import render
from flipgate.gate.cli import gate_files, golden_ids_path, read_golden_ids, write_markdown
from flipgate.gate.policy import Policy
from flipgate.io import read_json, write_json
from flipgate.models.fit import unfit_models
from flipgate.params import load_section


def main() -> None:
    baseline, candidate = sys.argv[1:3]
    train_reports = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    g = load_section("gate")
    golden_file = golden_ids_path(g.golden_ids_file, "params.yaml")  # relative to params.yaml, as in the CLI
    golden = read_golden_ids(golden_file) if golden_file else frozenset()
    policy = Policy(nfr_budget=g.nfr_budget, upper_bound=g.upper_bound, ci_level=g.ci_level, min_gain=g.min_gain,
                    per_class_budget=g.per_class_budget, golden_ids=golden)
    decision = gate_files(baseline, candidate, policy, allow_identical=True, golden_source=golden_file)
    meta_path = Path(candidate).parent / "candidate.json"
    meta = read_json(meta_path) if meta_path.exists() else {}
    if meta:
        decision = decision.with_selection(meta.get("admissible", True), meta.get("reason", ""))
    decision = decision.with_fit(unfit_models(train_reports) if train_reports else {})
    record = decision.to_dict()
    if meta:
        record["candidate"] = meta["candidate"]
    write_json(record, "reports/gate.json")
    write_markdown(render.markdown(decision), Path("reports/gate.md"))
    stage.log.info("gate: %s\n%s", decision.verdict, render.text(decision))


if __name__ == "__main__":
    stage.run("gate", main, sections=("gate",), metrics=("reports/gate.json",), artifacts=("reports/gate.json", "reports/gate.md"),
              tables=("reports/gate.json",))
