"""Stage `bcwi`: interpolate old and new over the alpha grid, select alpha on dev, save the pick.

Usage: python stages/bcwi.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/{old,new,fisher,soup}, predictions/{old,new}; writes its models/bcwi, predictions/bcwi,
reports/bcwi.json, reports/bcwi_curve.json (DVC plot) and reports/bcwi_curve.png.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.bcwi import run_stage


def main(run: stage.Run) -> None:
    (data_dir,) = run.args
    run_stage(run, Path(data_dir), run.section("base"), run.section("bcwi"), run.section("gate"))


if __name__ == "__main__":
    stage.run("bcwi", main, sections=("base", "bcwi", "gate"), metrics=("reports/bcwi.json",),
              artifacts=("reports/bcwi_curve.json", "reports/bcwi_curve.png", "predictions/bcwi"), args=("DATA_DIR",))
