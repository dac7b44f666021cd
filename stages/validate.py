"""Stage `validate`: check D_old, D_new and the regression set with a Great Expectations suite.

Usage: python stages/validate.py DATA_DIR REPORTS_DIR
Reads DATA_DIR/{old,new,regression}.parquet and labels.json; writes REPORTS_DIR/validation.json and
validation.md (also when a check fails, so the report shows why); exits non-zero on any failed check,
else writes REPORTS_DIR/validation_passed.json, the marker training stages depend on.
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.data import update
from flipgate.data.validate import ROLES, validate_update, write_reports
from flipgate.io import write_json
from flipgate.params import load_section


def main() -> None:
    data_dir, reports_dir = Path(sys.argv[1]), Path(sys.argv[2])
    passed = reports_dir / "validation_passed.json"
    passed.unlink(missing_ok=True)  # never leave a stale "passed" behind a failing run
    data, params = load_section("data"), load_section("validate")
    frames = {role: update.load_split(data_dir, role) for role in ROLES}
    labels, num_old = update.load_labels(data_dir)
    result = validate_update(
        **frames,
        old_labels=range(num_old),
        added_labels=range(num_old, len(labels)),
        scenario=data.scenario,
        min_chars=params.min_chars,
        max_chars=params.max_chars,
        drift_threshold=params.drift_threshold,
        leakage=params.leakage,
        names={role: str(data_dir / f"{role}.parquet") for role in ROLES},
    )
    _, md_path = write_reports(result, reports_dir)
    result.raise_for_failures(report=str(md_path))
    # Training depends on this marker, not on validation.json: its content does not change when only
    # D_new grows, so an update does not retrain old.
    write_json({"passed": True}, passed)


if __name__ == "__main__":
    stage.run("validate", main, sections=("data", "validate"), metrics=(), artifacts=("reports/validation.json", "reports/validation.md"))
