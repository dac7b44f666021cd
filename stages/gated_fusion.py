"""Stage `gated_fusion`: train Gated Fusion (old frozen, new from `gated_fusion.init`), save it as one folder,
predict dev and the regression set live, with old dropped and with the old-logit cache.

Usage: python stages/gated_fusion.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/old, predictions/{old,new}, reports/train/new.json (new's training time); writes its
models/gated_fusion, predictions/gated_fusion{,_dropped,_cache50,_cache75}/ and reports/gated_fusion.json.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.gated_fusion import run_stage


def main(run: stage.Run) -> None:
    (data_dir,) = run.args
    run_stage(run, Path(data_dir), run.section("base"), run.section("gated_fusion"))


if __name__ == "__main__":
    stage.run("gated_fusion", main, sections=("base", "gated_fusion"), metrics=("reports/gated_fusion.json",),
              artifacts=("reports/gated_fusion.json", "predictions/gated_fusion"), args=("DATA_DIR",))
