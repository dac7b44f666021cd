"""Stages `train_old`, `train_target`, `train_new`: fine-tune one model role, then predict dev and D_reg.

Usage: python stages/train.py ROLE DATA_DIR [--run seeds/<seed> --seed <seed>]
  ROLE  old | target | new      (params: base + train_<ROLE>)
old and target start from base.model, new from the run's models/old. Writes the run's models/<ROLE>,
predictions/<ROLE> and reports/train/<ROLE>.json.
With `old.source: registry`, train_old trains nothing: old is `models:/<promote.registered_name>@champion`.

Distributed (README, Distributed training): with `train_<ROLE>.processes: N` > 1 the script re-runs itself
as N processes with `accelerate launch` (DDP on this machine); it may also be started under
`accelerate launch` directly (several machines). Every process trains; process 0 alone writes the model,
the tables, the report, the timing and the stage's MLflow run.
"""

import logging
import os
import sys
from pathlib import Path

from flipgate import stage
from flipgate.data import update
from flipgate.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_USAGE, FlipgateError
from flipgate.io import write_json
from flipgate.models.device import get_device, is_main_process, launch_argv, launched_processes
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
    device = get_device(base.device)
    if launched_processes() != hp.processes:
        stage.log.warning("train_%s.processes is %d but %d processes were launched: training with %d", role,
                          hp.processes, launched_processes(), launched_processes())
    summary = fine_tune(
        init=str(run.models / "old") if role == "new" else base.model,
        labels=labels,
        train_df=update.load_split(data_dir, TRAIN_SPLIT[role]),
        eval_splits=eval_splits,
        cfg=cfg,
        device=device,
        model_dir=model_dir,
        predictions_dir=pred_dir,
        eval_batch_size=base.eval_batch_size,
        meta={"role": role, "seed": run.seed},
    )
    if is_main_process():
        write_json(summary, report)


def relaunch(role: str, data_dir: str) -> None:
    """With train_<role>.processes > 1, outside a launch: become `accelerate launch` of this script with
    that many processes (same arguments). Bad params or data are left to stage.run, in this one process,
    to report as always (one line, exit 3): the launcher would bury them in its own traceback."""
    from flipgate.params import check_all

    try:
        params = check_all()
        processes, device = params[f"train_{role}"].processes, params["base"].device
        trains = not (role == "old" and params["old"].source == "registry")
        update.load_labels(data_dir)
        for split in (*EVAL_SPLITS, TRAIN_SPLIT[role]):
            update.load_split(data_dir, split)
    except FlipgateError:
        return
    if processes > 1 and trains:
        import torch

        cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        argv = launch_argv(str(Path(__file__).resolve()), sys.argv[1:], processes, cpu)
        logging.getLogger("flipgate.stage").warning("train_%s: %d processes: %s", role, processes, " ".join(argv))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)


def worker() -> None:
    """A process other than 0 under a launch: train, write nothing, no timing, no MLflow run; on an error
    one line (process 0 reports the same error in full)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from flipgate.params import check_all

    try:
        main(stage.parse_run(sys.argv[1:], check_all()))
    except FlipgateError as exc:
        print(f"train (process {os.environ.get('RANK')}): error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        print(f"train (process {os.environ.get('RANK')}): internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in TRAIN_SPLIT:
        print(__doc__, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    role = sys.argv[1]
    if launched_processes() == 1:
        relaunch(role, sys.argv[2])  # returns only when one process trains
    if not is_main_process():
        worker()
        sys.exit(0)
    stage.run(f"train_{role}", main, sections=("base", f"train_{role}"), metrics=(f"reports/train/{role}.json",),
              artifacts=(f"reports/train/{role}.json", f"predictions/{role}"))
