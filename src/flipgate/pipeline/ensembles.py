"""Stage `ensembles`: old-new probability and logit ensembles from the predictions tables (no model runs),
alpha (the weight on new) chosen on dev by the rule BCWI's alpha uses (flipgate.mitigation.ensemble)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flipgate.io import write_json, write_parquet
from flipgate.mitigation.ensemble import KINDS, ensemble
from flipgate.mitigation.selection_rule import rule_for
from flipgate.predictions import read_predictions

if TYPE_CHECKING:
    from flipgate.params import Ensembles, Gate
    from flipgate.stage import Run

SPLITS = ("dev", "regression")


def run_stage(run: Run, p: Ensembles, gate: Gate) -> None:
    """Reads the run's predictions/{old,new}; writes its predictions/ensemble_{prob,logit}/ and
    reports/ensembles.json (each kind's alpha, why, dev and regression figures, the curve, the choice's
    stability)."""
    root = run.predictions
    old, new = ({s: read_predictions(root / m / f"{s}.parquet") for s in SPLITS} for m in ("old", "new"))
    rule, _ = rule_for(p, gate, new["dev"])
    report = {"rule": rule.describe(), "objective": p.objective, "tolerance": rule.tolerance, "alphas": p.alphas}
    for kind in KINDS:
        res = ensemble(kind, old, new, p.alphas, rule)
        for split, table in res.tables.items():
            write_parquet(table, root / f"ensemble_{kind}" / f"{split}.parquet")
        report[kind] = {"alpha": res.alpha, "reason": res.reason, "metrics": res.metrics, "curve": res.curve,
                        "stability": res.choice["stability"], "admissible": res.choice["admissible"],
                        "distribution": res.choice["distribution"]}
    write_json(report, run.reports / "ensembles.json")
