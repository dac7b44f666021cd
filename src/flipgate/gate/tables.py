"""Read two predictions tables and align them by id, fast enough for 10M rows.

Only the columns the gate needs (id, label, pred) are read; `logits` is never loaded. When both tables
list the same ids in the same order (both predicted from one regression file) the ids are only checked
for duplicates; otherwise one Arrow hash lookup (`index_in`) joins them and also proves both id sets are
unique and equal. Slower diagnostics run only when something is wrong. Every problem a user can cause
raises FlipgateError naming the file and what is wrong.
"""

from __future__ import annotations

import filecmp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flipgate.errors import FlipgateError
from flipgate.io import text_ids

GATE_COLUMNS = ("id", "label", "pred")
REGISTRY_SCHEMES = ("models:/", "runs:/")


@dataclass(frozen=True)
class Aligned:
    """Both models' predictions on the same examples, row by row (in the candidate table's order)."""

    ids: pa.ChunkedArray
    labels: np.ndarray
    baseline_pred: np.ndarray
    candidate_pred: np.ndarray


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


def read_predictions(path: Path) -> pa.Table:
    """Read id (string), label and pred (int64) from a parquet, csv or jsonl predictions table."""
    check_predictions_file(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise FlipgateError(f"{path}: unknown format {suffix!r}; use .parquet, .csv or .jsonl")
    try:
        table = _read_raw(path, suffix)
    except FlipgateError:
        raise
    except Exception as exc:  # pyarrow and pandas parsers raise many types
        raise FlipgateError(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    return _normalise(table, path)


def check_predictions_file(path: Path) -> None:
    """Raise FlipgateError unless `path` is an existing file (a folder is named as one)."""
    if path.is_dir():
        raise FlipgateError(f"{path}: is a folder, not a predictions file; name the file, "
                            f"e.g. {path / 'regression.parquet'}")
    if not path.is_file():
        raise FlipgateError(f"{path}: file not found")


def _read_raw(path: Path, suffix: str) -> pa.Table:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        _require_columns(path, pq.read_schema(path).names)
        return pq.read_table(path, columns=list(GATE_COLUMNS))
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        with pcsv.open_csv(path) as reader:  # reads one block, for the header
            _require_columns(path, reader.schema.names)
        convert = pcsv.ConvertOptions(column_types={"id": pa.string()}, include_columns=list(GATE_COLUMNS))
        return pcsv.read_csv(path, convert_options=convert)
    # jsonl: pandas keeps ids that look like numbers as strings; Arrow's reader cannot be told to.
    df = pd.read_json(path, lines=True, dtype={"id": object})
    _require_columns(path, list(df.columns))
    df = df[list(GATE_COLUMNS)].assign(id=text_ids(df["id"], path))  # refuses lists, floats
    return pa.Table.from_pandas(df, preserve_index=False)


def _require_columns(path: Path, names: list[str]) -> None:
    missing = [c for c in GATE_COLUMNS if c not in names]
    if missing:
        raise FlipgateError(
            f"{path}: missing column(s) {missing}; a predictions table needs {list(GATE_COLUMNS)} "
            f"(found {names[:10]})"
        )


def _normalise(table: pa.Table, path: Path) -> pa.Table:
    columns = {"id": _ids(table["id"], path)}
    for col in ("label", "pred"):
        columns[col] = _class_ids(table[col], path, col)
    for col, arr in columns.items():
        if arr.null_count:
            raise FlipgateError(f"{path}: {arr.null_count:,} row(s) have no {col}")
    empty = pc.sum(pc.equal(columns["id"], "")).as_py() or 0
    if empty:
        raise FlipgateError(f"{path}: {empty:,} row(s) have no id (an empty string)")
    return pa.table(columns)


def _ids(ids: pa.ChunkedArray, path: Path) -> pa.ChunkedArray:
    """The id column as large_string (both sides must share one type for the join). Text, UTF-8 bytes
    and integers are ids; floats (a missing id turns integers into floats), lists, structs are refused."""
    if len(ids) == 0:  # an empty table's types are whatever its writer inferred from nothing
        return pa.chunked_array([], pa.large_string())
    if pa.types.is_dictionary(ids.type):
        ids = ids.dictionary_decode()
    t = ids.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
        raise FlipgateError(f"{path}: column 'id' must hold text or integers, one per row; found {t}")
    try:
        return pc.cast(ids, pa.large_string())
    except pa.ArrowInvalid as exc:  # bytes that are not UTF-8
        raise FlipgateError(f"{path}: column 'id' holds bytes that are not UTF-8 text ({exc}); "
                            "ids must be text or integers") from None


def _class_ids(arr: pa.ChunkedArray, path: Path, col: str) -> pa.ChunkedArray:
    if len(arr) == 0:  # a header-only csv has no types to infer
        return pa.chunked_array([], pa.int64())
    if not pa.types.is_integer(arr.type):
        raise FlipgateError(f"{path}: column {col!r} must hold integer class ids, found {arr.type}")
    try:
        return pc.cast(arr, pa.int64())
    except pa.ArrowInvalid:  # uint64 beyond int64
        raise FlipgateError(f"{path}: column {col!r} holds {pc.max(arr).as_py()}, beyond int64; class ids are "
                            "small integers") from None


def same_file(a: Path, b: Path) -> bool:
    """True when both paths are one file, or two files with the same bytes."""
    if a.resolve() == b.resolve():
        return True
    return filecmp.cmp(a, b, shallow=False)  # compares sizes first, so cheap when they differ


def align(baseline: pa.Table, candidate: pa.Table, baseline_name: str, candidate_name: str) -> Aligned:
    """Join the tables on id. Raises FlipgateError when ids are duplicated, missing on either side,
    or the same id has different labels."""
    pos = _positions(baseline["id"], candidate["id"])
    if pos is None:
        _explain_mismatch(baseline, candidate, baseline_name, candidate_name)
        raise AssertionError("unreachable: ids differ but no mismatch was found")  # pragma: no cover

    labels = candidate["label"].to_numpy()
    base_labels = baseline["label"].to_numpy()[pos]
    differ = base_labels != labels
    if differ.any():
        example = candidate["id"][int(np.argmax(differ))].as_py()
        raise FlipgateError(
            f"{candidate_name}: {int(differ.sum()):,} id(s) have a different label than in {baseline_name}, "
            f"e.g. {example!r}; both tables must be predictions on the same regression set"
        )
    return Aligned(
        ids=candidate["id"],
        labels=labels,
        baseline_pred=baseline["pred"].to_numpy()[pos],
        candidate_pred=candidate["pred"].to_numpy(),
    )


def _positions(base_ids: pa.ChunkedArray, cand_ids: pa.ChunkedArray) -> np.ndarray | slice | None:
    """Index of the baseline rows in the candidate's order (a slice of all rows when already aligned);
    None when the id sets differ or either has duplicates.

    pos[i] = baseline row of the candidate's i-th id. If both tables have n rows and pos is a
    permutation of 0..n-1, both id sets are unique and equal: a duplicate on either side would make
    two candidate rows share a baseline row, or leave a baseline row unreachable.
    """
    n = len(base_ids)
    if n != len(cand_ids):
        return None
    if base_ids.equals(cand_ids):  # common case, both predicted from one file: skip the join
        return slice(None) if pc.count_distinct(base_ids).as_py() == n else None
    pos_arr = pc.index_in(cand_ids, value_set=base_ids)
    if pos_arr.null_count:
        return None
    pos = pos_arr.to_numpy().astype(np.int64, copy=False)
    return pos if np.bincount(pos, minlength=n).max() == 1 else None


def _explain_mismatch(baseline: pa.Table, candidate: pa.Table, baseline_name: str, candidate_name: str) -> None:
    """Raise the most useful error for ids that do not match (only runs when something is wrong)."""
    for table, name in ((baseline, baseline_name), (candidate, candidate_name)):
        counts = pc.value_counts(table["id"])
        dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
        if len(dup):
            raise FlipgateError(f"{name}: {len(dup):,} duplicate id(s), e.g. {dup[0]['values'].as_py()!r}")
    only_base = pc.filter(baseline["id"], pc.invert(pc.is_in(baseline["id"], value_set=candidate["id"])))
    only_cand = pc.filter(candidate["id"], pc.invert(pc.is_in(candidate["id"], value_set=baseline["id"])))
    parts = []
    if len(only_base):
        parts.append(f"{len(only_base):,} baseline id(s) missing from the candidate (e.g. {only_base[0].as_py()!r})")
    if len(only_cand):
        parts.append(f"{len(only_cand):,} candidate id(s) missing from the baseline (e.g. {only_cand[0].as_py()!r})")
    raise FlipgateError(
        f"{candidate_name} vs {baseline_name}: ids do not match: {'; '.join(parts)}; "
        "both tables must be predictions on the same regression set"
    )
