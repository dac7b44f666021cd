"""Stage `validate`: check D_old, D_new and the regression set with a Great Expectations suite.

Usage: python stages/validate.py DATA_DIR REPORTS_DIR
Reads DATA_DIR/{old,new,regression}.parquet and labels.json; writes REPORTS_DIR/validation.json and
validation.md (also when a check fails, so the report shows why); exits non-zero on any failed check,
else writes REPORTS_DIR/validation_passed.json, the marker training stages depend on.
"""

from pathlib import Path

from flipgate import stage
from flipgate.pipeline.validate import run_stage


def main(run: stage.Run) -> None:
    data_dir, reports_dir = map(Path, run.args)
    run_stage(data_dir, reports_dir, run.section("data"), run.section("validate"))


if __name__ == "__main__":
    stage.run("validate", main, sections=("data", "validate"), metrics=(),
              artifacts=("reports/validation.json", "reports/validation.md"), args=("DATA_DIR", "REPORTS_DIR"))
