"""Stage `baselines`: the seeds' baselines, each a new model trained from old on D_updated with an extra loss
or regulariser (KD, focal and dynamic focal distillation, prior weight decay, EWC, Mixout), its grid point
chosen on dev by the rule BCWI's alpha uses.

Usage: python stages/baselines.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/old, models/fisher (EWC, when it holds a Fisher), predictions/{old,new} and
reports/train/new.json (new's training time); writes, per method, models/<method>/ and
predictions/<method>/{dev,regression}.parquet (a method that is off: only off.json in both), and
reports/baselines.json.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.baselines import run_stage

SECTIONS = ("base", "baselines", "train_new", "gate")


def main(run: stage.Run) -> None:
    (data_dir,) = run.args
    run_stage(run, Path(data_dir), *(run.section(s) for s in SECTIONS))


if __name__ == "__main__":
    stage.run("baselines", main, sections=SECTIONS, metrics=("reports/baselines.json",),
              artifacts=("reports/baselines.json",), args=("DATA_DIR",))
