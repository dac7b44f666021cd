"""Stage `validate`: the Great Expectations suite over the update's splits (flipgate.data.validate), its
report, and the marker the training stages depend on, written only when every check passed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.data import update
from flipgate.data.validate import ROLES, validate_update, write_reports
from flipgate.io import write_json

if TYPE_CHECKING:
    from flipgate.params import Data, Validate

PASSED = "validation_passed.json"


def run_stage(data_dir: Path, reports_dir: Path, data: Data, params: Validate) -> None:
    """Reads DATA_DIR/{old,new,regression,dev}.parquet and labels.json; writes REPORTS_DIR/validation.json
    and validation.md (also when a check fails, so the report shows why); raises FlipgateError on any failed
    check, else writes REPORTS_DIR/validation_passed.json."""
    passed = reports_dir / PASSED
    passed.unlink(missing_ok=True)  # never leave a stale "passed" behind a failing run
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
