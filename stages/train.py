"""Stages `train_old`, `train_target`, `train_new`: fine-tune one model role, then predict dev and D_reg.

Usage: python stages/train.py ROLE DATA_DIR [--run seeds/<seed> --seed <seed>]
  ROLE  old | target | new      (params: base + train_<ROLE>)
old and target start from base.model, new from the run's models/old. Writes the run's models/<ROLE>,
predictions/<ROLE> and reports/train/<ROLE>.json.
With `old.source: registry`, train_old trains nothing: old is `models:/<promote.registered_name>@champion`.
"""

import sys

from flipgate import stage
from flipgate.data import update
from flipgate.errors import EXIT_USAGE
from flipgate.io import write_json
from flipgate.models.device import get_device
from flipgate.models.run import EVAL_SPLITS, fine_tune
from flipgate.models.train import TrainConfig
from flipgate.params import load_section

TRAIN_SPLIT = {"old": "old", "target": "updated", "new": "updated"}


def main(run: stage.Run) -> None:
    role, data_dir = run.args
    model_dir, pred_dir, report = run.models / role, run.predictions / role, run.reports / "train" / f"{role}.json"
    base, hp = load_section("base"), load_section(f"train_{role}")
    labels, _ = update.load_labels(data_dir)
    eval_splits = {s: update.load_split(data_dir, s) for s in EVAL_SPLITS}
    if role == "old" and load_section("old").source == "registry":
        from flipgate.gate.champion import from_registry  # mlflow's import, only when old is the champion

        trk = load_section("tracking")
        summary = from_registry(load_section("promote").registered_name, trk.uri, eval_splits, get_device(base.device),
                                model_dir, pred_dir, base.eval_batch_size, base.max_length)
        write_json(summary, report)
        return
    cfg = TrainConfig.from_schedule(hp, base.max_length, run.seed)
    summary = fine_tune(
        init=str(run.models / "old") if role == "new" else base.model,
        labels=labels,
        train_df=update.load_split(data_dir, TRAIN_SPLIT[role]),
        eval_splits=eval_splits,
        cfg=cfg,
        device=get_device(base.device),
        model_dir=model_dir,
        predictions_dir=pred_dir,
        eval_batch_size=base.eval_batch_size,
        meta={"role": role, "seed": run.seed},
    )
    write_json(summary, report)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in TRAIN_SPLIT:
        print(__doc__, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    role = sys.argv[1]
    stage.run(f"train_{role}", main, sections=("base", f"train_{role}"), metrics=(f"reports/train/{role}.json",),
              artifacts=(f"reports/train/{role}.json", f"predictions/{role}"))
