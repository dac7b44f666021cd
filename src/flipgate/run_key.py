"""What fixes a pipeline run before it starts, as one key: the parent MLflow run every stage of that run
nests under is found by it (flipgate.tracking), and the git commit it was made from. No MLflow here.

The key (`pipeline_key`) is a hash of:
- the git HEAD commit and the uncommitted diff of src/, stages/ and dvc.yaml,
- the values of params.yaml except `seeds` (so a seed added later nests under the same parent),
- the content of the local data files that `data.files` names (D_old, D_new, dev and the regression
  set; embedded and HF sources are fixed by params.yaml already).
Outputs written during the run (data/update/*.parquet, dvc.lock) are deliberately left out: the first
stage writes them, so a key that read them would differ between the first stage and the others.
FLIPGATE_PIPELINE_KEY overrides the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import yaml

from flipgate.io import hash_files


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def git_commit(root: str | Path = ".") -> str:
    """HEAD's sha, or "none" outside a repository or before the first commit."""
    out = _git("rev-parse", "HEAD", cwd=Path(root))
    return out.strip() if out else "none"


def _data_files(params_path: Path) -> list[Path]:
    """The local input files params.yaml's `data.files` names (empty for embedded and HF sources)."""
    from flipgate.params_file import load_section

    data = load_section("data", params_path)
    if data.source != "files" or data.files is None:
        return []
    f = data.files
    return [Path(p) for p in (f.old, *f.new, f.dev, f.regression)]


def pipeline_key(root: str | Path = ".", params_file: str = "params.yaml") -> str:
    """The parent run's key (see the module docstring); FLIPGATE_PIPELINE_KEY overrides it."""
    if os.environ.get("FLIPGATE_PIPELINE_KEY"):
        return os.environ["FLIPGATE_PIPELINE_KEY"]
    root = Path(root)
    h = hashlib.sha256()
    commit = git_commit(root)
    h.update(commit.encode())
    if commit != "none":
        h.update((_git("diff", "HEAD", "--", "src", "stages", "dvc.yaml", cwd=root) or "").encode())
    params_path = root / params_file
    if params_path.exists():
        h.update(_params_fingerprint(params_path))
        for path in _data_files(params_path):
            path = path if path.is_absolute() else root / path
            if path.exists():  # a missing input fails its stage with a clearer message than ours
                hash_files(h, path)
    return h.hexdigest()[:16]


def _params_fingerprint(path: Path) -> bytes:
    """params.yaml's values without `seeds`: every seed of one pipeline shares its parent run (and
    comments or key order do not start a new one)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return path.read_bytes()  # the stage that reads it reports the error
    if isinstance(raw, dict):
        raw.pop("seeds", None)
    return json.dumps(raw, sort_keys=True, default=str).encode()
