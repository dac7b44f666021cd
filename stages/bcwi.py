"""Stage `bcwi`: interpolate old and new over the alpha grid, select alpha on dev, save the pick.

Usage: python stages/bcwi.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/{old,new,fisher,soup}, predictions/{old,new}; writes its models/bcwi, predictions/bcwi,
reports/bcwi.json, reports/bcwi_curve.json (DVC plot) and reports/bcwi_curve.png.
"""

import sys
from pathlib import Path

from safetensors.torch import load_file

from flipgate import stage
from flipgate.data import update
from flipgate.io import atomic_path
from flipgate.mitigation.bcwi import normalise_fisher
from flipgate.pipeline.bcwi import run_bcwi, save_selected, write_reports
from flipgate.mitigation.select import rule_from
from flipgate.models.device import get_device
from flipgate.params import load_section
from flipgate.predictions import read_predictions
from flipgate.report.plots import bcwi_curve_png


def main() -> None:
    data_dir = Path(sys.argv[1])
    run = stage.current()
    pred_root, model_root = run.predictions, run.models
    fisher_dir, soup_dir = model_root / "fisher", model_root / "soup"
    base, bcwi, gate = load_section("base"), load_section("bcwi"), load_section("gate")
    labels, _ = update.load_labels(data_dir)
    splits = {s: update.load_split(data_dir, s) for s in ("dev", "regression")}
    preds = {m: {s: read_predictions(pred_root / m / f"{s}.parquet") for s in splits} for m in ("old", "new")}
    new_dirs = {"plain": str(model_root / "new")}
    if "soup" in bcwi.variants:
        new_dirs["soup"] = str(soup_dir)
    fisher = None
    if "fisher" in bcwi.variants:
        if not (fisher_dir / "fisher.safetensors").exists():
            raise stage.FlipgateError(f"{fisher_dir}: no fisher.safetensors; run `dvc repro` (stage fisher)")
        fisher = normalise_fisher(load_file(str(fisher_dir / "fisher.safetensors")))
    if "plain" not in bcwi.variants:
        raise stage.FlipgateError("bcwi.variants: must include plain (the other variants are compared with it)")
    new_dev = preds["new"]["dev"]
    rule, half = rule_from(bcwi.objective, gate.nfr_budget, bcwi.confidence, gate.min_gain, bcwi.tolerance,
                           bcwi.ci_level, int((new_dev["pred"] == new_dev["label"]).sum()), len(new_dev))
    result = run_bcwi(
        str(model_root / "old"), new_dirs, labels, splits, preds["old"], preds["new"], bcwi.alphas, fisher,
        rule, get_device(base.device), base.eval_batch_size, base.max_length,
    )
    result["new_dev_ci_halfwidth"] = half
    save_selected(result, labels, fisher, model_root / "bcwi", pred_root / "bcwi")
    write_reports(result, run.reports)
    with atomic_path(run.reports / "bcwi_curve.png", folder=False) as tmp:
        tmp.write_bytes(bcwi_curve_png(result["curves"], result["selected"]))


if __name__ == "__main__":
    stage.run("bcwi", main, sections=("base", "bcwi", "gate"), metrics=("reports/bcwi.json",), artifacts=("reports/bcwi_curve.json", "reports/bcwi_curve.png", "predictions/bcwi"))
