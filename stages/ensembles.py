"""Stage `ensembles`: old-new probability and logit ensembles from the predictions tables (no model runs),
alpha (the weight on new) chosen on dev under the BCWI tolerance rule.

Usage: python stages/ensembles.py [--run seeds/<seed> --seed <seed>]
Reads the run's predictions/{old,new}; writes its predictions/ensemble_{prob,logit}/ and reports/ensembles.json.
"""

import sys

from flipgate import stage
from flipgate.io import read_table, write_json, write_parquet
from flipgate.mitigation.ensemble import KINDS, ensemble
from flipgate.params import load_section

SPLITS = ("dev", "regression")


def main() -> None:
    root = stage.current().predictions
    p = load_section("ensembles")
    old, new = ({s: read_table(root / m / f"{s}.parquet") for s in SPLITS} for m in ("old", "new"))
    report = {"tolerance": p.tolerance, "ci_level": p.ci_level, "alphas": p.alphas}
    for kind in KINDS:
        res = ensemble(kind, old, new, p.alphas, p.tolerance, p.ci_level)
        for split, table in res.tables.items():
            write_parquet(table, root / f"ensemble_{kind}" / f"{split}.parquet")
        report[kind] = {"alpha": res.alpha, "reason": res.reason, "metrics": res.metrics, "curve": res.curve}
    write_json(report, stage.current().reports / "ensembles.json")


if __name__ == "__main__":
    stage.run("ensembles", main, sections=("ensembles",), metrics=("reports/ensembles.json",),
              artifacts=("reports/ensembles.json",))
