"""The `train_old` / `train_target` / `train_new` stages' body: fine-tune one model role (or, with
`old.source: registry`, fetch the champion as old), predict dev and the regression set, write the report;
and the multi-process path: `relaunch` re-runs the stage under `accelerate launch`, `worker` is a process
other than 0 under it (it trains and writes nothing).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.data import update
from flipgate.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, FlipgateError
from flipgate.io import write_json
from flipgate.models.device import get_device, is_main_process, launch_argv, launched_processes
from flipgate.models.run import EVAL_SPLITS, fine_tune
from flipgate.models.train import TrainConfig

if TYPE_CHECKING:
    from flipgate.stage import Run

log = logging.getLogger("flipgate.stage")

ROLES = ("old", "target", "new")
TRAIN_SPLIT = {"old": "old", "target": "updated", "new": "updated"}  # role -> the split it trains on


def run_stage(run: Run, role: str, data_dir: str | Path) -> None:
    """Writes the run's models/<role>, predictions/<role> and reports/train/<role>.json (process 0 only).
    old and target start from base.model, new from the run's models/old; in a model upgrade (base.old_model /
    base.old_layers) old starts from base.old_model cut to base.old_layers and new from base.model."""
    model_dir, pred_dir, report = run.models / role, run.predictions / role, run.reports / "train" / f"{role}.json"
    base, hp = run.section("base"), run.section(f"train_{role}")
    labels, _ = update.load_labels(data_dir)
    eval_splits = {s: update.load_split(data_dir, s) for s in EVAL_SPLITS}
    if role == "old" and run.section("old").source == "registry":
        from flipgate.gate.champion import from_registry  # mlflow's import, only when old is the champion

        summary = from_registry(run.section("promote").registered_name, run.section("tracking").uri, eval_splits,
                                get_device(base.device), model_dir, pred_dir, base.eval_batch_size, base.max_length)
        write_json(summary, report)
        return
    cfg = TrainConfig.from_schedule(hp, base.max_length, run.seed)
    if launched_processes() != hp.processes:
        log.warning("train_%s.processes is %d but %d processes were launched: training with %d", role,
                    hp.processes, launched_processes(), launched_processes())
    # a data update: new starts from old's weights; a model upgrade: from base.model (old is another model)
    init = {"old": base.old_init, "new": base.model if base.upgrade else str(run.models / "old")}.get(role, base.model)
    summary = fine_tune(
        init=init,
        labels=labels,
        train_df=update.load_split(data_dir, TRAIN_SPLIT[role]),
        eval_splits=eval_splits,
        cfg=cfg,
        device=get_device(base.device),
        model_dir=model_dir,
        predictions_dir=pred_dir,
        eval_batch_size=base.eval_batch_size,
        meta={"role": role, "seed": run.seed},
        layers=base.old_layers if role == "old" else None,
    )
    if is_main_process():
        write_json(summary, report)


def relaunch(script: str | Path, role: str, data_dir: str, argv: list[str]) -> None:
    """With train_<role>.processes > 1, outside a launch: become `accelerate launch` of `script` with that
    many processes (same arguments `argv`). Bad params or data are left to stage.run, in this one process,
    to report as always (one line, exit 3): the launcher would bury them in its own traceback."""
    from flipgate.params_file import check_all

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
        launch = launch_argv(str(Path(script).resolve()), argv, processes, cpu)
        log.warning("train_%s: %d processes: %s", role, processes, " ".join(launch))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(launch[0], launch)


def worker(main: Callable[[Run], None], argv: list[str]) -> None:
    """A process other than 0 under a launch: run `main`, write nothing, no timing, no MLflow run; on an
    error one line and exit 3 or 70 (process 0 reports the same error in full)."""
    from flipgate.params_file import check_all
    from flipgate.stage import parse_run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main(parse_run(argv, check_all()))
    except FlipgateError as exc:
        print(f"train (process {os.environ.get('RANK')}): error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        print(f"train (process {os.environ.get('RANK')}): internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
