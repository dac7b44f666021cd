"""Stage `bcwi`: sweep every variant (plain, Fisher, soup) over the alpha grid, select alpha on dev, save
the pick as a model folder with its predictions, and write the curves (tables and PNG).

`run_stage` is the stage's body; `run_bcwi` the sweep and selection alone (no file written).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from flipgate.data import update
from flipgate.errors import FlipgateError
from flipgate.io import atomic_path, write_json, write_parquet
from flipgate.mitigation.bcwi import interpolate_into, normalise_fisher
from flipgate.mitigation.selection_rule import Options, Rule, choose, rule_for
from flipgate.mitigation.bcwi_sweep import correct_count, sweep
from flipgate.models.classifier import classifier_head, load_classifier, save_classifier
from flipgate.models.device import get_device
from flipgate.predictions import align, read_predictions
from flipgate.report.plots import bcwi_curve_png, note_png

if TYPE_CHECKING:
    from flipgate.params import Base, Bcwi, Gate
    from flipgate.stage import Run

log = logging.getLogger(__name__)

SPLITS = ("dev", "regression")


def run_stage(run: Run, data_dir: Path, base: Base, bcwi: Bcwi, gate: Gate) -> None:
    """Reads the run's models/{old,new,fisher,soup} and predictions/{old,new}; writes its models/bcwi,
    predictions/bcwi and reports/bcwi.json, bcwi_curve.{json,png}, bcwi_sweep_dev.parquet. In a model upgrade
    every one of them says only why BCWI skipped (off.json in the folders, `skipped` in the JSON)."""
    if base.no_weight_mixing:
        write_skipped(run, base.no_weight_mixing)
        return
    model_root, fisher_dir = run.models, run.models / "fisher"
    labels, _ = update.load_labels(data_dir)
    splits = {s: update.load_split(data_dir, s) for s in SPLITS}
    preds = {m: {s: read_predictions(run.predictions / m / f"{s}.parquet") for s in splits} for m in ("old", "new")}
    new_dirs = {"plain": str(model_root / "new")}
    if "soup" in bcwi.variants:
        new_dirs["soup"] = str(model_root / "soup")
    fisher = None
    if "fisher" in bcwi.variants:
        if not (fisher_dir / "fisher.safetensors").exists():
            raise FlipgateError(f"{fisher_dir}: no fisher.safetensors; run `dvc repro` (stage fisher)")
        from safetensors.torch import load_file

        fisher = normalise_fisher(load_file(str(fisher_dir / "fisher.safetensors")))
    if "plain" not in bcwi.variants:
        raise FlipgateError("bcwi.variants: must include plain (the other variants are compared with it)")
    rule, half = rule_for(bcwi, gate, preds["new"]["dev"])
    result = run_bcwi(str(model_root / "old"), new_dirs, labels, splits, preds["old"], preds["new"], bcwi.alphas,
                      fisher, rule, get_device(base.device), base.eval_batch_size, base.max_length)
    result["new_dev_ci_halfwidth"] = half
    save_selected(result, labels, fisher, model_root / "bcwi", run.predictions / "bcwi")
    write_reports(result, run.reports)


def write_skipped(run: Run, why: str) -> None:
    log.warning("bcwi: skipped: %s", why)
    for folder in (run.models / "bcwi", run.predictions / "bcwi"):
        with atomic_path(folder, folder=True) as tmp:
            tmp.mkdir()
            write_json({"method": "bcwi", "state": "off", "why": why}, tmp / "off.json")
    write_json({"rows": [], "skipped": why}, run.reports / "bcwi_curve.json")
    write_parquet(pd.DataFrame(columns=["id", "label", "pred", "variant", "alpha"]), run.reports / "bcwi_sweep_dev.parquet")
    write_json({"skipped": why}, run.reports / "bcwi.json")
    with atomic_path(run.reports / "bcwi_curve.png", folder=False) as tmp:
        tmp.write_bytes(note_png("BCWI: skipped", why))


def head_keys(model: torch.nn.Module) -> frozenset[str]:
    """State-dict keys of the classification head's last layer: the rows that grow when classes are added."""
    head = classifier_head(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    return frozenset(f"{prefix}.{p}" for p, _ in head.named_parameters())


def run_bcwi(
    old_dir: str,
    new_dirs: dict[str, str],
    labels: list[str],
    splits: dict[str, pd.DataFrame],
    old_preds: dict[str, pd.DataFrame],
    new_preds: dict[str, pd.DataFrame],
    alphas: list[float],
    fisher: dict[str, torch.Tensor] | None,
    rule: Rule,
    device: torch.device,
    batch_size: int,
    max_length: int,
) -> dict:
    """`new_dirs` maps a variant ("plain", "soup") to the model interpolated with old; with `fisher`,
    "fisher" reuses plain's new model. Returns curves, per-variant picks, the overall pick and its tables.
    alpha is chosen by `rule` on dev (new is the tolerance rule's reference); alpha 1 (old) never is."""
    # the sweep compares row by row: every table in its split's row order, with the split's ids and labels
    old_preds, new_preds = ({s: align(df, preds[s], f"split {s}", f"predictions/{m}/{s}", "rerun its stage")
                             for s, df in splits.items()} for m, preds in (("old", old_preds), ("new", new_preds)))
    old_model, _ = load_classifier(old_dir)
    old_sd = {k: v.detach().clone() for k, v in old_model.state_dict().items()}
    del old_model
    ref_acc = correct_count(new_preds["dev"]) / max(len(new_preds["dev"]), 1)
    variants = dict(new_dirs)
    if fisher is not None:
        variants["fisher"] = new_dirs["plain"]
    curves, picks, tables, sweep_dev = [], {}, {}, []
    timing = {"interpolate_s": 0.0, "predict_s": 0.0, "alphas_run": 0}
    for variant, new_dir in variants.items():
        model, tokenizer = load_classifier(new_dir, labels)
        new_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        # Predictions that exist already are reused: alpha 1 is old (unless classes were added: then it
        # is old plus new's added rows), alpha 0 is new for plain and Fisher (a soup is a new model).
        known = {}
        if len(labels) == len(old_preds["dev"]["logits"].iloc[0]):
            known[1.0] = old_preds
        if variant in ("plain", "fisher"):
            known[0.0] = new_preds
        res = sweep(model, tokenizer, old_sd, new_sd, alphas, splits, old_preds, device, batch_size, max_length,
                    fisher=fisher if variant == "fisher" else None, grow_keys=head_keys(model), known=known)
        timing["interpolate_s"] += res.interpolate_s
        timing["predict_s"] += res.predict_s
        timing["alphas_run"] += sum(a not in known for a in alphas)
        curves += [{"variant": variant, **r} for r in res.rows]
        # alpha 1 is old itself (no update to ship): it stays on the curve but is never the pick.
        sweep_dev += [t["dev"][["id", "label", "pred"]].assign(variant=variant, alpha=a) for a, t in res.predictions.items()]
        grid = {a: t["dev"] for a, t in res.predictions.items() if a < 1.0} or {a: t["dev"] for a, t in res.predictions.items()}
        choice = choose(Options.from_tables(grid, old_preds["dev"], new_preds["dev"], trend="down",
                                            where=f"bcwi {variant} sweep"), rule)
        picks[variant] = {"alpha": choice.key, "dev_accuracy": choice.accuracy, "dev_nfr": choice.nfr,
                          "reason": choice.reason, "choice": choice.as_dict()}
        tables[variant] = (res.predictions[choice.key], new_dir, choice.key)
        log.info("%s: alpha %.2f selected, in %.0f%% of dev resamples (%s)", variant, choice.key,
                 100 * choice.stability, choice.reason)
    best = choose(Options.from_tables({v: tables[v][0]["dev"] for v in picks}, old_preds["dev"], new_preds["dev"],
                                      where="bcwi picks"), rule)
    # with no admissible variant, choose() returns the safest (lowest dev NFR) pick
    selected = {"variant": best.key, **picks[best.key], "admissible": best.admissible, "variant_reason": best.reason}
    return {
        "curves": curves, "picks": picks, "selected": selected, "rule": rule.describe(),
        "objective": rule.objective, "tolerance": rule.tolerance, "new_dev_accuracy": ref_acc,
        "timing": timing, "tables": tables, "old_sd": old_sd, "sweep_dev": pd.concat(sweep_dev, ignore_index=True),
    }


def save_selected(result: dict, labels: list[str], fisher, model_dir: str | Path, pred_dir: str | Path) -> None:
    """Materialise the selected variant/alpha as an HF folder and write its predictions."""
    variant = result["selected"]["variant"]
    tables, new_dir, alpha = result["tables"][variant]
    model, tokenizer = load_classifier(new_dir, labels)
    new_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    interpolate_into(model, result["old_sd"], new_sd, alpha, fisher if variant == "fisher" else None, head_keys(model))
    save_classifier(model, tokenizer, model_dir, {"role": "bcwi", "variant": variant, "alpha": alpha})
    for split, table in tables.items():
        write_parquet(table, Path(pred_dir) / f"{split}.parquet")


def write_reports(result: dict, reports: str | Path) -> None:
    reports = Path(reports)
    write_json({"rows": result["curves"]}, reports / "bcwi_curve.json")
    # every alpha's dev predictions: what the selection saw, for re-running other rules offline
    write_parquet(result["sweep_dev"], reports / "bcwi_sweep_dev.parquet")
    summary = {k: result[k] for k in ("selected", "picks", "rule", "objective", "tolerance", "new_dev_accuracy", "timing")}
    summary["new_dev_ci_halfwidth"] = result.get("new_dev_ci_halfwidth")
    write_json(summary, reports / "bcwi.json")
    with atomic_path(reports / "bcwi_curve.png", folder=False) as tmp:
        tmp.write_bytes(bcwi_curve_png(result["curves"], result["selected"]))
