"""Stage `update`: compose D_old, D_new, D_updated, dev and the regression set.

Usage: python stages/update.py OUT_DIR
"""

from flipgate import stage
from flipgate.data import sources, update


def main(run: stage.Run) -> None:
    (out,) = run.args
    # stage.run checked the whole params file first (params_file.check_all), as compose_update expects
    result = sources.compose_update(run.section("data"), run.section("update"))
    update.save(result, out)
    stage.log.info(
        "D_old %d, D_new %d, dev %d, regression %d, %d labels (%d old)",
        len(result.old), len(result.new), len(result.dev), len(result.regression), len(result.labels), result.num_old_labels,
    )


if __name__ == "__main__":
    stage.run("update", main, sections=("data", "update"), metrics=(), artifacts=("data/update/labels.json",),
              args=("OUT_DIR",))
