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

import sys

from flipgate import stage
from flipgate.errors import EXIT_USAGE
from flipgate.models.device import is_main_process, launched_processes
from flipgate.pipeline.train import ROLES, relaunch, run_stage, worker


def main(run: stage.Run) -> None:
    role, data_dir = run.args
    run_stage(run, role, data_dir)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ROLES:
        print(__doc__, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    role = sys.argv[1]
    if launched_processes() == 1:
        relaunch(__file__, role, sys.argv[2], sys.argv[1:])  # returns only when one process trains
    if not is_main_process():
        worker(main, sys.argv[1:])
        sys.exit(0)
    stage.run(f"train_{role}", main, sections=("base", f"train_{role}"), metrics=(f"reports/train/{role}.json",),
              artifacts=(f"reports/train/{role}.json", f"predictions/{role}"))
