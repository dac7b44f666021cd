"""The seeds' whole comparison from a finished multi-seed run: every method's regression-set accuracy, NFR,
fix and new-fault rates (mean +- sample std over seeds) beside its measured training time as a ratio to
new's and its properties (what it keeps in memory, what inference costs, how its trade-off is tuned).

Run: python benchmarks/comparison.py RUN_DIR [--paper massive|upgrade] [--json OUT]
RUN_DIR is a workspace of benchmarks/run_seeds.py, e.g. after
  python benchmarks/run_seeds.py --config configs/baselines.yaml --seeds 0 1 2 --out runs/baselines
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flipgate.io import write_json
from flipgate.report.aggregate import mean_std

# method -> (extra memory while training, inference cost in forward passes of one model, knob on dev)
PROPERTIES = {
    "old": ("-", "1", "-"),
    "target": ("-", "1", "-"),
    "new": ("-", "1", "-"),
    "bcwi": ("old's weights (1x params)", "1", "alpha (no retraining)"),
    "gated_fusion": ("old frozen beside new + gate", "2 + gate (old's logits cacheable)", "temperature, drop_gate"),
    "gated_fusion_cache75": ("as gated_fusion", "1 + gate for 75% (cache hits)", "as gated_fusion"),
    "gated_fusion_cache50": ("as gated_fusion", "1 + gate for 50% (cache hits)", "as gated_fusion"),
    "gated_fusion_dropped": ("as gated_fusion", "1 (new alone)", "-"),
    "ensemble_prob": ("-", "2 (old + new)", "alpha (no retraining)"),
    "ensemble_logit": ("-", "2 (old + new)", "alpha (no retraining)"),
    "kd": ("old's logits on D_updated (N x C floats)", "1", "lambda, T (one training each)"),
    "focal_distill": ("old's logits on D_updated", "1", "lambda, T (one training each)"),
    "dynamic_distill": ("old's logits on D_updated", "1", "lambda, T (one training each)"),
    "prior_wd": ("old's weights (1x params)", "1", "strength (one training each)"),
    "ewc": ("old's weights + Fisher (2x params)", "1", "strength (one training each)"),
    "mixout": ("old's weights (1x params)", "1", "p (one training each)"),
    "bcwi_stacked": ("old's weights + the distilled model's", "1", "the baseline's knob, then alpha"),
}
METRICS = ("accuracy", "nfr", "fix_rate", "new_fault_rate")

# The papers' own figures, shown beside ours where they exist. Training time over new's: the BCWI talk's
# properties table (`../shared/seeds/bcwi-talk.txt`, "Distillation" for the three distillations).
PAPER_TRAIN_TIME = {"new": 1.0, "bcwi": 1.0, "ewc": 1.9, "prior_wd": 1.1, "mixout": 1.6, "kd": 1.3, "focal_distill": 1.3,
                    "dynamic_distill": 1.3}
# Regression-set accuracy / NFR (%): `massive` is the talk's MASSIVE add_data table (RoBERTa-base, 10 seeds),
# `upgrade` the Gated Fusion paper's Table 1 on SST-2 (BERT-base -> BERT-large; its distillation is Xie et al.'s).
PAPER_FIGURES = {
    "massive": {"old": (81.8, 0.0), "target": (83.4, 3.3), "new": (83.2, 2.8), "bcwi alpha 0.4": (83.4, 1.4),
                "bcwi alpha 0.6": (83.1, 0.8)},
    "upgrade": {"old": (92.00, 0.0), "new": (93.12, 2.18), "dynamic_distill": (93.33, 1.97),
                "ensemble_prob": (93.12, 1.06), "ensemble_logit": (93.12, 1.06), "gated_fusion": (93.05, 0.78)},
}
PAPER_NOTE = {"massive": "the talk's BCWI points are fixed alphas; it gives no baseline figures on MASSIVE", "upgrade": "new-model ensemble (5 seeds, vote): 93.30 / 2.00"}


def read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        sys.exit(f"{path}: not valid JSON ({exc}); rerun the stage that writes it (dvc repro in the run's workspace)")


def train_ratios(reports: Path) -> dict[str, float]:
    """Each method's training time over new's, as its stage measured it (None where not reported)."""
    out = {"new": 1.0}
    methods = read(reports / "baselines.json").get("methods", {})
    for method, rec in methods.items():
        t = rec.get("timing", {})
        out[method] = t.get("ratio_to_new_with_setup", t.get("ratio_to_new"))
    if "bcwi_stacked" in methods:  # no training of its own: the distilled model it interpolates
        out["bcwi_stacked"] = out.get(methods["bcwi_stacked"].get("over"))
    gf = read(reports / "gated_fusion.json").get("train", {})
    if gf.get("ratio_to_new") is not None:
        for name in ("gated_fusion", "gated_fusion_cache75", "gated_fusion_cache50", "gated_fusion_dropped"):
            out[name] = gf["ratio_to_new"]
    for name in ("bcwi", "ensemble_prob", "ensemble_logit"):
        out[name] = 1.0  # new's training and nothing more: a sweep over existing models / predictions
    return out


def epoch_figures(reports: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Per model: seconds per epoch over new's (a method's per-step cost, apart from how many epochs an adaptive
    schedule ran; empty where new's training report is not kept) and the epochs it ran."""
    trains = {role: read(reports / "train" / f"{role}.json") for role in ("old", "target", "new")}
    trains.update({m: rec.get("train", {}) for m, rec in read(reports / "baselines.json").get("methods", {}).items()})
    epochs = {name: t["epochs_run"] for name, t in trains.items() if t.get("epochs_run")}
    gf_curve = read(reports / "gated_fusion.json").get("train", {}).get("epoch_curve", [])
    if gf_curve:
        epochs["gated_fusion"] = len(gf_curve)  # the epochs of its new
    per_epoch = {name: t["train_seconds"] / t["epochs_run"] for name, t in trains.items()
                 if name not in ("old", "target") and t.get("epochs_run") and t.get("train_seconds")}
    new_s = per_epoch.pop("new", None)
    ratios = {"new": 1.0, **{name: s / new_s for name, s in per_epoch.items()}} if new_s else {}
    return ratios, epochs


CURVE_ALPHAS = (0.4, 0.6)  # the talk's two BCWI points on MASSIVE


def curve_points(reports: Path) -> dict[str, dict]:
    """Plain BCWI's regression-set accuracy / NFR at the talk's alphas, read off the sweep's curve (chosen on the
    regression set itself, so a reference point, not a method a user can run blind)."""
    out = {}
    for row in read(reports / "bcwi_curve.json").get("rows", []):
        if row.get("variant") == "plain" and row.get("split") == "regression" and round(row["alpha"], 2) in CURVE_ALPHAS:
            out[f"bcwi alpha {round(row['alpha'], 2)}"] = row
    return out


def bcwi_sweep_ratio(reports: Path) -> float | None:
    """BCWI's post-training sweep (predicting dev and the regression set at each alpha) over new's training time."""
    predict_s = read(reports / "bcwi.json").get("timing", {}).get("predict_s")
    new_s = next((m.get("timing", {}).get("new_train_seconds") for m in read(reports / "baselines.json").get("methods", {}).values()
                  if m.get("timing", {}).get("new_train_seconds")), None)
    return predict_s / new_s if predict_s and new_s else None


def fmt(values: list[float], scale: float = 100.0) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    s = mean_std([scale * v for v in values])
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def vs_new(nfr: list[float], new_nfr: float | None) -> str:
    """The change of the mean NFR against new's mean NFR, in percent ('' where new flips nothing)."""
    values = [v for v in nfr if v is not None]
    if not values or not new_nfr:
        return ""
    return f"{100 * (mean_std(values)['mean'] / new_nfr - 1):+.0f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--paper", choices=sorted(PAPER_FIGURES), help="show this paper table's accuracy / NFR beside ours")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seeds = sorted((args.run_dir / "seeds").iterdir(), key=lambda p: int(p.name)) if (args.run_dir / "seeds").is_dir() else []
    if not seeds:
        sys.exit(f"{args.run_dir}/seeds: no seed folders; run benchmarks/run_seeds.py first")
    per_method: dict[str, dict[str, list]] = {}
    sweeps = [r for r in (bcwi_sweep_ratio(seed / "reports") for seed in seeds) if r is not None]
    for seed in seeds:
        metrics = {**read(seed / "reports" / "metrics.json").get("regression", {}), **curve_points(seed / "reports")}
        ratios = train_ratios(seed / "reports")
        per_epoch, epochs = epoch_figures(seed / "reports")
        for name, row in metrics.items():
            d = per_method.setdefault(name, {m: [] for m in (*METRICS, "train_ratio", "epoch_ratio", "epochs")})
            for m in METRICS:
                d[m].append(row.get(m))
            d["train_ratio"].append(ratios.get(name))
            d["epoch_ratio"].append(per_epoch.get(name))
            d["epochs"].append(epochs.get(name))
    points = [f"bcwi alpha {a}" for a in CURVE_ALPHAS if f"bcwi alpha {a}" in per_method]
    order = [m for m in PROPERTIES if m in per_method] + sorted(set(per_method) - set(PROPERTIES) - set(points))
    if points:
        at = order.index("bcwi") + 1 if "bcwi" in order else len(order)
        order[at:at] = points
    paper = PAPER_FIGURES.get(args.paper, {})
    new_values = [v for v in per_method.get("new", {}).get("nfr", []) if v is not None]
    new_nfr = mean_std(new_values)["mean"] if new_values else None
    ens = read(args.run_dir / "reports" / "new_ensemble.json")
    print(f"{len(seeds)} seed(s) of {args.run_dir}: regression set, mean ± sample std\n")
    print("| method | acc % | NFR % | NFR vs new | fix % | new-fault % |" + (" paper: acc / NFR |" if paper else ""))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if paper else ""))
    rows = []
    for name in order:
        d = per_method[name]
        theirs = " / ".join(f"{v:.2f}" for v in paper[name]) if name in paper else ""
        print(f"| {name} | {fmt(d['accuracy'])} | {fmt(d['nfr'])} | {'' if name in ('old', 'new') else vs_new(d['nfr'], new_nfr)} | {fmt(d['fix_rate'])} | "
              f"{fmt(d['new_fault_rate'])} |" + (f" {theirs} |" if paper else ""))
        prop = PROPERTIES.get(name, ("", "", ""))
        rows.append({"method": name, **d, "paper": {"acc_nfr": paper.get(name), "train_time": PAPER_TRAIN_TIME.get(name)},
                     "properties": dict(zip(("memory", "inference", "tuned_by"), prop))})
    for kind in (k for k in ens if isinstance(ens[k], dict) and "regression" in ens[k]) if ens.get("k") else ():
        r = ens[kind]["regression"]
        print(f"| new-model ensemble, {ens['k']} seeds, {kind} (one run) | {100 * r['accuracy']:.2f} | {100 * r['nfr']:.2f} | "
              f"{vs_new([r['nfr']], new_nfr)} | {100 * r.get('fix_rate', float('nan')):.2f} | {100 * r.get('new_fault_rate', float('nan')):.2f} |" + (" |" if paper else ""))
    if points or args.paper:
        print()
    if points:
        print("bcwi alpha 0.4 / 0.6: plain BCWI at the talk's fixed alphas, read off the regression-set curve")
    if args.paper:
        print(f"paper ({args.paper}): {PAPER_NOTE[args.paper]}")
    if ens.get("k"):
        print(f"new-model ensemble: the new models of seeds {ens['seeds']}, scored against seed {ens['seeds'][0]}'s old; "
              f"NFR vs new is against the mean of the seeds' new models")
    print("\n| method | extra memory | train time / new | per epoch / new's | epochs run | the talk's | inference (forward passes) | tuned by |")
    print("|---|---|---:|---:|---|---:|---|---|")
    for name in (n for n in order if n not in points):
        prop = PROPERTIES.get(name, ("", "", ""))
        their_time = f"{PAPER_TRAIN_TIME[name]:.1f}x" if name in PAPER_TRAIN_TIME else ""
        ran = ", ".join(str(e) for e in per_method[name]["epochs"] if e is not None)
        print(f"| {name} | {prop[0]} | {fmt(per_method[name]['train_ratio'], 1.0)} | {fmt(per_method[name]['epoch_ratio'], 1.0)} | "
              f"{ran} | {their_time} | {prop[1]} | {prop[2]} |")
    if ens.get("k"):
        print(f"| new-model ensemble | {ens['k'] - 1} more models | {ens['k']} | | | | {ens['k']} | k |")
    if sweeps:
        print(f"\nBCWI's sweep after training (dev and regression set at each alpha): {fmt(sweeps, 1.0)} x new's training time")
    if args.json:
        write_json({"run": str(args.run_dir), "seeds": [s.name for s in seeds], "paper": args.paper, "rows": rows,
                    "new_ensemble": ens}, args.json)
    print(f"\nreproduce: python benchmarks/comparison.py {args.run_dir}" + (f" --paper {args.paper}" if args.paper else ""))


if __name__ == "__main__":
    main()
