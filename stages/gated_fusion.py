"""Stage `gated_fusion`: train Gated Fusion (old frozen, new from `gated_fusion.init`), save it as one folder,
predict dev and the regression set live, with old dropped and with the old-logit cache.

Usage: python stages/gated_fusion.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/old, predictions/{old,new}, reports/train/new.json (new's training time); writes its
models/gated_fusion, predictions/gated_fusion{,_dropped,_cache50,_cache75}/ and reports/gated_fusion.json.
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.data import update
from flipgate.io import read_json, write_json
from flipgate.mitigation.gated_fusion import FusionSchedule, GateConfig
from flipgate.pipeline.gated_fusion import fit, predict_splits, score_outputs, train_summary, write_outputs
from flipgate.models.device import get_device
from flipgate.models.train import TrainConfig
from flipgate.params import load_section
from flipgate.predictions import read_predictions

def main() -> None:
    data_dir = Path(sys.argv[1])
    run = stage.current()
    model_root, pred_root, new_train_report = run.models, run.predictions, run.reports / "train" / "new.json"
    base, p = load_section("base"), load_section("gated_fusion")
    labels, _ = update.load_labels(data_dir)
    splits = {s: update.load_split(data_dir, s) for s in ("dev", "regression")}
    old_tables = {s: read_predictions(pred_root / "old" / f"{s}.parquet") for s in splits}
    new_tables = {s: read_predictions(pred_root / "new" / f"{s}.parquet") for s in splits}
    init = {"old": str(model_root / "old"), "base": base.model}.get(p.init, p.init)
    config = GateConfig(variant=p.variant, temperature=p.temperature, hidden=p.gate_hidden, dropout=p.gate_dropout,
                        inputs=p.gate_inputs or ("embedding" if p.variant == "paper" else "both"))
    schedule = FusionSchedule(
        train=TrainConfig.from_schedule(p, base.max_length, run.seed),
        lr2=p.lr2, drop_gate=p.drop_gate, gate_lr=p.gate_lr, gate_epochs=p.gate_epochs,
        heldout_fraction=p.heldout_fraction, refit=p.refit,
    )
    gf, result = fit(str(model_root / "old"), init, labels, update.load_split(data_dir, "updated"), config,
                     schedule, get_device(base.device), base.max_length, base.eval_batch_size, dev=splits["dev"])
    gf.save(model_root / "gated_fusion", {"role": "gated_fusion", "init": p.init, "seed": run.seed, "labels": labels})
    outputs = predict_splits(gf, splits, old_tables, p.cache_fractions, run.seed)
    written = write_outputs(outputs, pred_root)
    new_seconds = read_json(new_train_report).get("train_seconds") if new_train_report.exists() else None
    if new_seconds is None:
        stage.log.warning("%s has no train_seconds: the training-time ratio is not reported", new_train_report)
    write_json({"variant": p.variant, "gate_inputs": config.inputs, "outputs": written,
                "train": train_summary(result, new_seconds), **score_outputs(outputs, old_tables, new_tables),
                "nearest_neighbour": "exact (torch.cdist); see flipgate.mitigation.cache for where it stops scaling"},
               run.reports / "gated_fusion.json")


if __name__ == "__main__":
    stage.run("gated_fusion", main, sections=("base", "gated_fusion"), metrics=("reports/gated_fusion.json",),
              artifacts=("reports/gated_fusion.json", "predictions/gated_fusion"))
