"""Compare dev selection rules on finished pipeline runs: which BCWI alpha and which candidate each rule
picks on dev, what that pick scores on the regression set, and whether the gate would promote it.

Run: python benchmarks/compare_rules.py runs/massive [runs/embedded ...] [--budget 0.01 --min-gain 0]
Each argument is a workspace of benchmarks/run_seeds.py (its seeds/<seed>/ folders are read: the BCWI
sweep's dev predictions, old's, new's and Gated Fusion's predictions, bcwi_curve.json, metrics.json).
Nothing is trained or predicted: the rules are the pipeline's own (flipgate.mitigation.selection_rule) applied
to what the bcwi stage saw. Regression-set figures are only reported, never used to choose.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.io import read_json
from flipgate.mitigation.selection_rule import Options, Rule, choose, tolerance_and_halfwidth
from flipgate.predictions import read_predictions

RULES = {
    "tolerance 0.5 pt": ("tolerance", 0.5, 0.5),
    "budget, point": ("budget", 0.5, 0.5),
    "budget, 0.65 bound": ("budget", 0.65, 0.5),
    "budget, 0.8 bound": ("budget", 0.8, 0.5),
    "budget, 0.9 bound": ("budget", 0.9, 0.5),
    "budget, 0.95 bound": ("budget", 0.95, 0.5),
}


def seed_case(run: Path) -> dict:
    preds, reports = run / "predictions", run / "reports"
    old, new = read_predictions(preds / "old" / "dev.parquet"), read_predictions(preds / "new" / "dev.parquet")
    target = read_predictions(preds / "target" / "dev.parquet")
    sweep = pd.read_parquet(reports / "bcwi_sweep_dev.parquet")
    sweep = sweep[sweep["variant"] == "plain"]
    order = old["id"].astype(str)
    grid = {a: g.set_index("id").loc[order].reset_index() for a, g in sweep.groupby("alpha") if a < 1.0}
    curve = pd.DataFrame(read_json(reports / "bcwi_curve.json")["rows"])
    reg_curve = curve[(curve["variant"] == "plain") & (curve["split"] == "regression")].set_index("alpha")
    metrics = read_json(reports / "metrics.json")["regression"]
    gf = preds / "gated_fusion" / "dev.parquet"
    return {"old": old, "new": new, "target": target, "grid": grid, "reg_curve": reg_curve, "metrics": metrics,
            "gated_fusion": read_predictions(gf) if gf.exists() else None}


def apply(case: dict, objective: str, confidence: float, tol_points: float, budget: float, min_gain: float) -> dict:
    old, new = case["old"], case["new"]
    correct = int((new["pred"] == new["label"]).sum())
    tol, _ = tolerance_and_halfwidth(tol_points, correct, len(new))
    rule = Rule(objective, budget, confidence, min_gain, tol)
    alpha = choose(Options.from_tables(case["grid"], old, new, trend="down"), rule)
    reg = case["reg_curve"].loc[alpha.key]
    tables = {"new": new, "bcwi": case["grid"][alpha.key]}
    reg_of = {"new": case["metrics"]["new"], "bcwi": {"accuracy": reg["accuracy"], "nfr": reg["nfr"]}}
    if case["gated_fusion"] is not None:
        tables["gated_fusion"] = case["gated_fusion"]
        reg_of["gated_fusion"] = case["metrics"]["gated_fusion"]
    target = case["target"]
    t_tol, _ = tolerance_and_halfwidth(tol_points, int((target["pred"] == target["label"]).sum()), len(target))
    pick = choose(Options.from_tables(tables, old, target), Rule(objective, budget, confidence, min_gain, t_tol))
    cand = reg_of[pick.key]
    old_acc = case["metrics"]["old"]["accuracy"]
    passed = pick.admissible and cand["nfr"] <= budget and cand["accuracy"] - old_acc >= min_gain - 1e-12
    return {"alpha": alpha.key, "alpha_stability": alpha.stability, "bcwi_acc": reg["accuracy"], "bcwi_nfr": reg["nfr"],
            "candidate": pick.key, "cand_acc": cand["accuracy"], "cand_nfr": cand["nfr"], "promoted": passed,
            "champion_acc": cand["accuracy"] if passed else old_acc}


def oracle(case: dict, budget: float) -> bool:
    """Does the regression-set BCWI curve hold a point more accurate than old and within budget?"""
    c = case["reg_curve"]
    old_acc = case["metrics"]["old"]["accuracy"]
    return bool(((c.index < 1.0) & (c["accuracy"] > old_acc) & (c["nfr"] <= budget)).any())


def frontier(case: dict, ratio: float) -> tuple[float, float, float]:
    """The most accurate point of the regression-set BCWI curve (alpha 1.0, old itself, included) whose NFR
    is at most `ratio` x new's: the best any dev rule could pick at that NFR cut. (alpha, accuracy, NFR)."""
    c = case["reg_curve"]
    ok = c[c["nfr"] <= ratio * case["metrics"]["new"]["nfr"] + 1e-12]
    best = ok.sort_values(["accuracy", "nfr"], ascending=[False, True]).iloc[0]
    return float(best.name), float(best["accuracy"]), float(best["nfr"])


def ms(values) -> str:
    v = 100 * np.asarray(values, dtype=float)
    return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspaces", type=Path, nargs="+")
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--min-gain", type=float, default=0.0)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.4],
                    help="NFR cuts (x new's) at which to report the regression curve's most accurate point")
    args = ap.parse_args()
    for ws in args.workspaces:
        runs = sorted((p for p in (ws / "seeds").iterdir() if (p / "reports" / "bcwi_sweep_dev.parquet").exists()),
                      key=lambda p: int(p.name))
        cases = [seed_case(r) for r in runs]
        new = [c["metrics"]["new"] for c in cases]
        old = [c["metrics"]["old"] for c in cases]
        print(f"\n{ws}: seeds {[r.name for r in runs]}, dev n={len(cases[0]['old'])}; old {ms([m['accuracy'] for m in old])}; "
              f"new {ms([m['accuracy'] for m in new])} / NFR {ms([m['nfr'] for m in new])}; budget {100 * args.budget:g}%")
        print(f"seeds whose regression BCWI curve holds a point > old and within budget: "
              f"{sum(oracle(c, args.budget) for c in cases)} of {len(cases)}")
        for ratio in args.ratios:
            best = [frontier(c, ratio) for c in cases]
            print(f"regression curve at NFR <= {ratio:g} x new's: best alpha per seed "
                  f"{', '.join(f'{a:.1f}' for a, _, _ in best)}: {ms([b[1] for b in best])} / NFR {ms([b[2] for b in best])} "
                  f"(new - 0.5 points: {100 * np.mean([m['accuracy'] for m in new]) - 0.5:.2f})")
        print("| rule | BCWI alpha per seed (stability) | BCWI acc % | BCWI NFR % | candidate per seed | cand. acc % | "
              "cand. NFR % | promoted | champion acc % |")
        print("|---|---|---:|---:|---|---:|---:|---:|---:|")
        for name, (objective, confidence, tol) in RULES.items():
            rows = [apply(c, objective, confidence, tol, args.budget, args.min_gain) for c in cases]
            alphas = ", ".join(f"{r['alpha']:.1f} ({100 * r['alpha_stability']:.0f}%)" for r in rows)
            print(f"| {name} | {alphas} | {ms([r['bcwi_acc'] for r in rows])} | {ms([r['bcwi_nfr'] for r in rows])} | "
                  f"{', '.join(r['candidate'] for r in rows)} | {ms([r['cand_acc'] for r in rows])} | "
                  f"{ms([r['cand_nfr'] for r in rows])} | {sum(r['promoted'] for r in rows)}/{len(rows)} | "
                  f"{ms([r['champion_acc'] for r in rows])} |")
    print(f"\nreproduce: python benchmarks/compare_rules.py {' '.join(map(str, args.workspaces))} --budget {args.budget} "
          f"--min-gain {args.min_gain} --ratios {' '.join(f'{r:g}' for r in args.ratios)}")


if __name__ == "__main__":
    main()
