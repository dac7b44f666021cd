"""Atomic file writes and the predictions table, the currency between stages."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError

PREDICTION_COLUMNS = ("id", "label", "pred")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds.

    Works for files and folders, so a crash never leaves a half-written artifact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(obj: object, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | Path) -> object:
    path = Path(path)
    if not path.exists():
        raise FlipgateError(f"{path}: file not found; run the stage that writes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FlipgateError(f"{path}: not valid JSON ({exc}); delete it and rerun its stage") from exc


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def predictions_frame(ids, labels, logits: np.ndarray) -> pd.DataFrame:
    """Build a predictions table: id, label, pred, logits (one float32 list per row)."""
    logits = np.asarray(logits, dtype=np.float32)
    return pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="string"),
            "label": np.asarray(labels, dtype=np.int64),
            "pred": logits.argmax(axis=1).astype(np.int64) if len(logits) else np.zeros(0, np.int64),
            "logits": list(logits),
        }
    )


def read_table(path: str | Path, columns: tuple[str, ...] = PREDICTION_COLUMNS) -> pd.DataFrame:
    """Read a predictions table (parquet, csv or jsonl) and check its columns.

    Raises FlipgateError naming the file when it is missing, unreadable, lacks a column, or has
    duplicate ids.
    """
    path = Path(path)
    if not path.exists():
        raise FlipgateError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".csv":
            df = pd.read_csv(path, dtype={"id": str})
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=suffix == ".jsonl", dtype={"id": str})
        else:
            raise FlipgateError(f"{path}: unknown format {suffix!r}; use .parquet, .csv or .jsonl")
    except FlipgateError:
        raise
    except Exception as exc:  # pyarrow, csv and json parsers raise many types
        raise FlipgateError(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FlipgateError(f"{path}: missing column(s) {missing}; a predictions table needs {list(columns)}")
    df["id"] = df["id"].astype("string")
    if df["id"].isna().any():
        raise FlipgateError(f"{path}: {int(df['id'].isna().sum())} row(s) have no id")
    dup = df["id"].duplicated()
    if dup.any():
        raise FlipgateError(f"{path}: {int(dup.sum())} duplicate id(s), e.g. {df['id'][dup].iloc[0]!r}")
    for col in ("label", "pred"):
        if col in columns and not pd.api.types.is_integer_dtype(df[col]):
            raise FlipgateError(f"{path}: column {col!r} must hold integer class ids, found {df[col].dtype}")
    return df


def logits_matrix(df: pd.DataFrame) -> np.ndarray:
    """Stack the `logits` column into an (n, classes) float32 array."""
    if len(df) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(df["logits"].to_numpy()).astype(np.float32)


def frame_hash(df: pd.DataFrame, columns: list[str]) -> str:
    """A content hash of some columns, stable across runs (for dataset fingerprints)."""
    h = hashlib.sha256()
    for col in columns:
        h.update(pd.util.hash_pandas_object(df[col].astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]
