"""Stage `new_ensemble`: the new models of the first k `seeds` as one ensemble (majority vote and mean
probability), from their predictions tables, scored against the first seed's old and new.

Usage: python stages/new_ensemble.py OUT_DIR
Reads seeds/<s>/predictions/new for the first new_ensemble.k seeds and seeds/<first>/predictions/old; writes
OUT_DIR/{vote,prob}/{dev,regression}.parquet and reports/new_ensemble.json (only `off` when not enabled).
"""

from pathlib import Path

from flipgate import stage
from flipgate.params_file import load_seeds
from flipgate.pipeline.new_ensemble import run_stage


def main(run: stage.Run) -> None:
    (out,) = run.args
    run_stage(Path(out), run.section("new_ensemble"), load_seeds())


if __name__ == "__main__":
    stage.run("new_ensemble", main, sections=("new_ensemble",), metrics=("reports/new_ensemble.json",),
              artifacts=("reports/new_ensemble.json",), args=("OUT_DIR",))
