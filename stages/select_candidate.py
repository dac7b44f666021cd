"""Stage `select`: choose the candidate on dev and copy its predictions to CANDIDATE_DIR.

Usage: python stages/select_candidate.py PREDICTIONS_DIR MODELS_DIR CANDIDATE_DIR
Writes CANDIDATE_DIR/{dev,regression}.parquet and candidate.json (name, model folder, why).
"""

import shutil
import sys
from pathlib import Path

from flipgate import stage
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.select import rule_from
from flipgate.params import load_section
from flipgate.predictions import read_predictions
from flipgate.select import choose_candidate


def main() -> None:
    pred_root, model_root, out = map(Path, sys.argv[1:4])
    sel, gate = load_section("select"), load_section("gate")
    ref = read_predictions(pred_root / sel.reference / "dev.parquet")
    rule, _ = rule_from(sel.objective, gate.nfr_budget, sel.confidence, gate.min_gain, sel.tolerance, sel.ci_level,
                        int((ref["pred"] == ref["label"]).sum()), len(ref))
    result = choose_candidate(pred_root, sel.candidates, sel.reference, rule)
    name = result["candidate"]
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        for split in ("dev", "regression"):
            shutil.copyfile(pred_root / name / f"{split}.parquet", tmp / f"{split}.parquet")
        write_json({**result, "model_dir": str(model_root / name)}, tmp / "candidate.json")
    write_json(result, "reports/select.json")
    log = stage.log.info if result["admissible"] else stage.log.warning
    log("candidate: %s, chosen in %.0f%% of dev resamples (%s)", name, 100 * result["stability"], result["reason"])


if __name__ == "__main__":
    stage.run("select", main, sections=("select", "gate"), metrics=("reports/select.json",), artifacts=("reports/select.json",))
