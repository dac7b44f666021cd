"""Stage `update`: compose D_old, D_new, D_updated, dev and the regression set.

Usage: python stages/update.py OUT_DIR
"""

import sys

from flipgate import stage
from flipgate.data import sources, update
from flipgate.params import load_section


def main() -> None:
    out = sys.argv[1]
    data, sizes = load_section("data"), load_section("update")
    add_classes = data.scenario == "add_classes"
    # stage.run checked the whole params file first (params.check_all): data.files / data.hf are present
    # for their source, and update.new_classes implies add_classes.
    if data.source == "files":
        cols = (data.text_column, data.label_column, data.id_column)
        f = data.files
        result = update.from_files(
            old=sources.load_files([f.old], "data.files.old", *cols),
            new=sources.load_files(f.new, "data.files.new", *cols),
            dev=sources.load_files([f.dev], "data.files.dev", *cols),
            regression=sources.load_files([f.regression], "data.files.regression", *cols),
            add_classes=add_classes,
        )
    else:
        if data.source == "hf":
            pool = sources.load_hf(data.hf.dataset, data.hf.config, data.hf.split, data.text_column, data.label_column)
        else:
            pool = sources.load_embedded()
        result = update.from_pool(pool, sizes.n_old, sizes.n_new, sizes.n_dev, sizes.n_regression, sizes.seed, sizes.new_classes)
    update.save(result, out)
    stage.log.info(
        "D_old %d, D_new %d, dev %d, regression %d, %d labels (%d old)",
        len(result.old), len(result.new), len(result.dev), len(result.regression), len(result.labels), result.num_old_labels,
    )


if __name__ == "__main__":
    stage.run("update", main, sections=("data", "update"), metrics=(), artifacts=("data/update/labels.json",))
