"""Where the gate's two tables come from: a predictions file, or a registered model's logged predictions,
and whether the candidate is the baseline's own file. Reading and aligning is flipgate.predictions."""

from __future__ import annotations

import filecmp
from pathlib import Path

from flipgate.errors import FlipgateError

REGISTRY_SCHEMES = ("models:/", "runs:/")


def resolve_predictions(ref: str | Path, tracking_uri: str | None = None) -> Path:
    """Turn a predictions reference into a local file path.

    `models:/<name>@<alias>` or `models:/<name>/<version>`: the regression-set predictions that `promote`
    logged with that registered version, downloaded to a temporary folder (this imports MLflow, never
    torch; the tracking store is MLFLOW_TRACKING_URI, else the project's sqlite file).
    """
    text = str(ref)
    if text.startswith("models:/"):
        import tempfile

        from flipgate.gate.registry import download_predictions

        return download_predictions(text, tempfile.mkdtemp(prefix="flipgate-gate-"), tracking_uri)
    if text.startswith(REGISTRY_SCHEMES):
        raise FlipgateError(f"{text}: only models:/<name>@<alias> or models:/<name>/<version> references are "
                            "supported; or pass a predictions file (parquet, csv or jsonl with id, label, pred)")
    return Path(text)


def same_file(a: Path, b: Path) -> bool:
    """True when both paths are one file, or two files with the same bytes."""
    if a.resolve() == b.resolve():
        return True
    return filecmp.cmp(a, b, shallow=False)  # compares sizes first, so cheap when they differ
