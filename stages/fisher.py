"""Stage `fisher`: the old model's diagonal Fisher information on D_old (for FisherBCWI).

Usage: python stages/fisher.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/old; writes its models/fisher/fisher.safetensors, or only models/fisher/off.json
when bcwi.variants has no `fisher`.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.fisher import run_stage


def main(run: stage.Run) -> None:
    (data_dir,) = run.args
    run_stage(run, Path(data_dir), run.section("base"), run.section("bcwi"))


if __name__ == "__main__":
    stage.run("fisher", main, sections=("base", "bcwi"), metrics=(), artifacts=(), args=("DATA_DIR",))
