"""Stage `select`: choose the candidate on dev and copy its predictions to CANDIDATE_DIR.

Usage: python stages/select_candidate.py PREDICTIONS_DIR MODELS_DIR CANDIDATE_DIR
Writes CANDIDATE_DIR/{dev,regression}.parquet and candidate.json (name, model folder, why), and
reports/select.json. (The script is not stages/select.py: that name would shadow Python's `select` module.)
"""

from pathlib import Path

from flipgate import stage
from flipgate.candidate import select_candidate


def main(run: stage.Run) -> None:
    pred_root, model_root, out = map(Path, run.args)
    select_candidate(pred_root, model_root, out, run.section("select"), run.section("gate"))


if __name__ == "__main__":
    stage.run("select", main, sections=("select", "gate"), metrics=("reports/select.json",),
              artifacts=("reports/select.json",), args=("PREDICTIONS_DIR", "MODELS_DIR", "CANDIDATE_DIR"))
