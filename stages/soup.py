"""Stage `soup`: SoupBCWI's soup, new models from k seeds (models/new is one) averaged into one.

Usage: python stages/soup.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/{old,new}; writes the averaged model to its models/soup, or only models/soup/off.json
when bcwi.variants has no `soup`. Members: new (the run's seed) and k - 1 more from seeds seed+1 ... seed+k-1.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.soup import run_stage


def main(run: stage.Run) -> None:
    (data_dir,) = run.args
    run_stage(run, Path(data_dir), run.section("base"), run.section("bcwi"), run.section("train_new"))


if __name__ == "__main__":
    stage.run("soup", main, sections=("base", "bcwi", "train_new"), metrics=(), artifacts=(), args=("DATA_DIR",))
