"""Stage `ensembles`: old-new probability and logit ensembles from the predictions tables (no model runs),
alpha (the weight on new) chosen on dev by the rule BCWI's alpha uses.

Usage: python stages/ensembles.py [--run seeds/<seed> --seed <seed>]
Reads the run's predictions/{old,new}; writes its predictions/ensemble_{prob,logit}/ and reports/ensembles.json.
"""

import sys

from flipgate import stage
from flipgate.io import write_json, write_parquet
from flipgate.mitigation.ensemble import KINDS, ensemble
from flipgate.mitigation.select import rule_from
from flipgate.params import load_section
from flipgate.predictions import read_predictions

SPLITS = ("dev", "regression")


def main() -> None:
    root = stage.current().predictions
    p, gate = load_section("ensembles"), load_section("gate")
    old, new = ({s: read_predictions(root / m / f"{s}.parquet") for s in SPLITS} for m in ("old", "new"))
    rule, half = rule_from(p.objective, gate.nfr_budget, p.confidence, gate.min_gain, p.tolerance, p.ci_level,
                           int((new["dev"]["pred"] == new["dev"]["label"]).sum()), len(new["dev"]))
    report = {"rule": rule.describe(), "objective": p.objective, "tolerance": rule.tolerance, "alphas": p.alphas}
    for kind in KINDS:
        res = ensemble(kind, old, new, p.alphas, rule)
        for split, table in res.tables.items():
            write_parquet(table, root / f"ensemble_{kind}" / f"{split}.parquet")
        report[kind] = {"alpha": res.alpha, "reason": res.reason, "metrics": res.metrics, "curve": res.curve,
                        "stability": res.choice["stability"], "admissible": res.choice["admissible"],
                        "distribution": res.choice["distribution"]}
    write_json(report, stage.current().reports / "ensembles.json")


if __name__ == "__main__":
    stage.run("ensembles", main, sections=("ensembles", "gate"), metrics=("reports/ensembles.json",),
              artifacts=("reports/ensembles.json",))
