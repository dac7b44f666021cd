"""Stage `gate`: judge the candidate against old (the champion) on the regression set.

Beyond `flipgate gate`'s checks (flipgate.gate.cli.gate_files, the policy from params.yaml's `gate`): a
candidate that `select` gated only as the safe fallback fails `dev_selection`; models whose train reports
say they are not fit to judge are named, and an unfit old model makes the verdict inconclusive. A reject
is a result, not a failure: `promote` registers the candidate as a challenger.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.gate import render
from flipgate.gate.cli import gate_files, golden_ids_path, read_golden_ids, write_markdown
from flipgate.gate.policy import Decision, Policy
from flipgate.io import read_json, write_json
from flipgate.models.fit import unfit_models

if TYPE_CHECKING:
    from flipgate.params import Gate

log = logging.getLogger(__name__)


def run_stage(baseline: str, candidate: str, train_reports: Path | None, g: Gate, params_file: str = "params.yaml",
              reports: Path = Path("reports")) -> Decision:
    """Reads both predictions tables, candidate.json beside the candidate's (select's choice) and the train
    reports (<role>.json); writes reports/gate.json and reports/gate.md. Returns the decision."""
    golden_file = golden_ids_path(g.golden_ids_file, params_file)  # relative to params.yaml, as in the CLI
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
    write_json(record, reports / "gate.json")
    write_markdown(render.markdown(decision), reports / "gate.md")
    log.info("gate: %s\n%s", decision.verdict, render.text(decision))
    return decision
