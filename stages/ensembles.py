"""Stage `ensembles`: old-new probability and logit ensembles from the predictions tables (no model runs),
alpha (the weight on new) chosen on dev by the rule BCWI's alpha uses.

Usage: python stages/ensembles.py [--run seeds/<seed> --seed <seed>]
Reads the run's predictions/{old,new}; writes its predictions/ensemble_{prob,logit}/ and reports/ensembles.json.
"""

from flipgate import stage
from flipgate.pipeline.ensembles import run_stage


def main(run: stage.Run) -> None:
    run_stage(run, run.section("ensembles"), run.section("gate"))


if __name__ == "__main__":
    stage.run("ensembles", main, sections=("ensembles", "gate"), metrics=("reports/ensembles.json",),
              artifacts=("reports/ensembles.json",), args=())
