"""Stage `gate`: judge the candidate against old (the champion) on the regression set.

Usage: python stages/gate.py BASELINE_PREDICTIONS CANDIDATE_PREDICTIONS
Writes reports/gate.json and reports/gate.md. A reject is a result, not a failure: the stage exits 0 so
`promote` can register the candidate as a challenger; `flipgate gate` is the command that fails CI.
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.gate.cli import gate_files, read_golden_ids, write_markdown
from flipgate.gate.policy import Policy
from flipgate.io import read_json, write_json
from flipgate.params import load_section


def main() -> None:
    baseline, candidate = sys.argv[1:3]
    g = load_section("gate")
    golden = read_golden_ids(Path(g.golden_ids_file)) if g.golden_ids_file else frozenset()
    policy = Policy(nfr_budget=g.nfr_budget, upper_bound=g.upper_bound, ci_level=g.ci_level, min_gain=g.min_gain,
                    per_class_budget=g.per_class_budget, golden_ids=golden)
    decision = gate_files(baseline, candidate, policy, allow_identical=True)
    record = decision.to_dict()
    meta = Path(candidate).parent / "candidate.json"
    if meta.exists():
        record["candidate"] = read_json(meta)["candidate"]
    write_json(record, "reports/gate.json")
    write_markdown(decision.to_markdown(), Path("reports/gate.md"))
    stage.log.info("gate: %s\n%s", decision.verdict, decision.to_text())


if __name__ == "__main__":
    stage.run("gate", main, sections=("gate",), metrics=("reports/gate.json",), artifacts=("reports/gate.json", "reports/gate.md"))
