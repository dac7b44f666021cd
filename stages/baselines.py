"""Stage `baselines`: the seeds' baselines, each a new model trained from old on D_updated with an extra loss
or regulariser (KD, focal and dynamic focal distillation, prior weight decay, EWC, Mixout), its grid point
chosen on dev by the rule BCWI's alpha uses.

Usage: python stages/baselines.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/old, models/fisher (EWC, when it holds a Fisher), predictions/{old,new} and
reports/train/new.json (new's training time); writes, per method, models/<method>/ and
predictions/<method>/{dev,regression}.parquet (a method that is off: only off.json in both), and
reports/baselines.json.
"""

import sys
import time
from pathlib import Path

from flipgate import stage
from flipgate.data import update
from flipgate.io import atomic_path, read_json, write_json, write_parquet
from flipgate.mitigation.baselines_run import DISTILL, METHODS, OldState, old_train_logits, run_method
from flipgate.mitigation.selection_rule import rule_from
from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.device import get_device
from flipgate.models.train import TrainConfig
from flipgate.params import load_section
from flipgate.predictions import read_predictions

SPLITS = ("dev", "regression")


def old_fisher(run: stage.Run, data_dir: Path, old_dir: Path, max_examples: int, device, max_length: int):
    """Old's Fisher, normalised to mean 1: the fisher stage's when it wrote one, else computed here on D_old.
    Returns (Fisher, seconds spent here)."""
    from safetensors.torch import load_file

    from flipgate.mitigation.bcwi import normalise_fisher
    from flipgate.mitigation.fisher import diagonal_fisher

    start = time.perf_counter()
    cached = run.models / "fisher" / "fisher.safetensors"
    if cached.exists():
        return normalise_fisher(load_file(str(cached))), time.perf_counter() - start
    d_old = update.load_split(data_dir, "old")
    if len(d_old) > max_examples:
        d_old = d_old.sample(n=max_examples, random_state=run.seed)
    model, tok = load_classifier(str(old_dir))
    fisher = diagonal_fisher(model, tok, d_old["text"].tolist(), d_old["label"].to_numpy(), device, max_length)
    return normalise_fisher(fisher), time.perf_counter() - start


def write_off(run: stage.Run, method: str) -> None:
    why = {"method": method, "state": "off", "why": f"baselines.{method}.enabled is false"}
    for folder in (run.models / method, run.predictions / method):
        with atomic_path(folder, folder=True) as tmp:
            tmp.mkdir()
            write_json(why, tmp / "off.json")


def main(run: stage.Run) -> None:
    data_dir = Path(sys.argv[1])
    base, p, hp, gate = (load_section(s) for s in ("base", "baselines", "train_new", "gate"))
    grids = {m: p.grid(m) for m in METHODS}
    for method in (m for m, g in grids.items() if not g):
        write_off(run, method)
    report: dict = {"methods": {}, "off": [m for m, g in grids.items() if not g]}
    if not any(grids.values()):
        write_json(report, run.reports / "baselines.json")
        return
    device = get_device(base.device)
    labels, _ = update.load_labels(data_dir)
    train_df = update.load_split(data_dir, "updated")
    splits = {s: update.load_split(data_dir, s) for s in SPLITS}
    preds = {m: {s: read_predictions(run.predictions / m / f"{s}.parquet") for s in SPLITS} for m in ("old", "new")}
    new_dev = preds["new"]["dev"]
    rule, _ = rule_from(p.objective, gate.nfr_budget, p.confidence, gate.min_gain, p.tolerance, p.ci_level,
                        int((new_dev["pred"] == new_dev["label"]).sum()), len(new_dev))
    new_report = run.reports / "train" / "new.json"
    new_seconds = read_json(new_report).get("train_seconds") if new_report.exists() else None
    if new_seconds is None:
        stage.log.warning("%s has no train_seconds: the training-time ratios are not reported", new_report)
    old_dir = run.models / "old"
    old_model, tok = load_classifier(str(old_dir))
    weights = {k: v.detach().clone() for k, v in old_model.state_dict().items()}
    del old_model
    logits, logits_s = None, 0.0
    if any(grids[m] for m in DISTILL):  # one forward pass of old over D_updated, shared by every distillation
        logits, logits_s = old_train_logits(str(old_dir), train_df["text"].tolist(), device, base.eval_batch_size,
                                            base.max_length)
        report["old_train_logits_seconds"] = round(logits_s, 2)
    fisher, fisher_s = None, 0.0
    if grids["ewc"]:
        fisher, fisher_s = old_fisher(run, data_dir, old_dir, p.ewc.fisher_max_examples, device, base.max_length)
        report["fisher_seconds"] = round(fisher_s, 2)
    old = OldState(logits, weights, fisher)
    cfg = TrainConfig.from_schedule(hp, base.max_length, run.seed)
    report["rule"] = rule.describe()
    for method, grid in grids.items():
        if not grid:
            continue
        setup = logits_s if method in DISTILL else fisher_s if method == "ewc" else 0.0
        res = run_method(method, grid, str(old_dir), labels, train_df, splits, preds["old"], preds["new"], cfg, old,
                         rule, device, base.eval_batch_size, new_seconds, setup)
        model, _ = load_classifier(str(old_dir), labels)
        model.load_state_dict(res.chosen.weights)
        save_classifier(model, tok, run.models / method,
                        {"role": method, "seed": run.seed, "knobs": res.chosen.knobs, "labels": labels})
        with atomic_path(run.predictions / method, folder=True) as tmp:  # replaces an earlier off.json
            tmp.mkdir()
            for split, table in res.chosen.tables.items():
                write_parquet(table, tmp / f"{split}.parquet")
        report["methods"][method] = res.report
    write_json(report, run.reports / "baselines.json")


if __name__ == "__main__":
    stage.run("baselines", main, sections=("base", "baselines", "train_new", "gate"),
              metrics=("reports/baselines.json",), artifacts=("reports/baselines.json",))
