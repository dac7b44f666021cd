"""The predictions table, the currency between stages, and the one place it is built, read and aligned.

A predictions table holds one row per example: `id` (text, each id once), `label` and `pred` (int64 class
ids) and, from the model stages, `logits` (one float32 list per row). It is a pandas DataFrame in the
stages and an Arrow table in `flipgate gate` (10M rows, no pandas copy, `logits` never loaded); both are
read by `read_arrow` and lined up by `align`, so every caller refuses the same problems with the same
message naming the file.

`align` is also how a table is checked against the data it was predicted on (a split has id and label).
A table stored as a parquet dataset (many files, read batch by batch) is flipgate.prediction_datasets'.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flipgate.errors import FlipgateError

COLUMNS = ("id", "label", "pred")
FORMATS = (".parquet", ".csv", ".jsonl")
SAME_SET = "both tables must be predictions on the same regression set"

Table = TypeVar("Table", pd.DataFrame, pa.Table)


def predictions_frame(ids, labels, logits: np.ndarray) -> pd.DataFrame:
    """Build a predictions table: id, label, pred (the logits' argmax), logits (one float32 list per row)."""
    logits = np.asarray(logits, dtype=np.float32)
    return pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="string"),
            "label": np.asarray(labels, dtype=np.int64),
            "pred": logits.argmax(axis=1).astype(np.int64) if len(logits) else np.zeros(0, np.int64),
            "logits": list(logits),
        }
    )


def logits_matrix(df: pd.DataFrame) -> np.ndarray:
    """Stack the `logits` column into an (n, classes) float32 array; (0, 0) for an empty table."""
    if len(df) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(df["logits"].to_numpy()).astype(np.float32)


# --- reading ------------------------------------------------------------------------------------------

def check_file(path: Path) -> None:
    """Raise FlipgateError unless `path` is an existing file (a folder is named as one)."""
    if path.is_dir():
        raise FlipgateError(f"{path}: is a folder, not a predictions file; name the file, "
                            f"e.g. {path / 'regression.parquet'}")
    if not path.is_file():
        raise FlipgateError(f"{path}: file not found")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions table as a DataFrame (id as pandas "string"), with `logits` when the file has them.

    Raises what `read_arrow` raises, and FlipgateError for duplicate ids."""
    path = Path(path)
    table = read_arrow(path, with_logits=True)
    _refuse_duplicates(table["id"], path)
    df = table.to_pandas()
    df["id"] = df["id"].astype("string")
    return df


def read_arrow(path: str | Path, with_logits: bool = False) -> pa.Table:
    """Read id (large_string), label and pred (int64), and `logits` if asked for and present, from a
    parquet, csv or jsonl predictions table; other columns are ignored.

    Raises FlipgateError naming the file when it is missing (or a folder), of an unknown format,
    unreadable, lacks a column, has ids that are not text or integers (floats, lists, bytes that are
    not UTF-8), rows without an id, label or pred, or labels/preds that are not int64 class ids.
    Duplicate ids are left to `align` (its join proves ids unique at no extra cost) and
    `read_predictions`.
    """
    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FlipgateError(f"{path}: unknown format {suffix!r}; use .parquet, .csv or .jsonl")
    try:
        table = _read_raw(path, suffix, with_logits)
    except FlipgateError:
        raise
    except Exception as exc:  # pyarrow and pandas parsers raise many types
        raise FlipgateError(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    return normalise(table, path)


def _read_raw(path: Path, suffix: str, with_logits: bool) -> pa.Table:
    def wanted(names: list[str]) -> list[str]:
        require_columns(path, names)
        return [*COLUMNS, "logits"] if with_logits and "logits" in names else list(COLUMNS)

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=wanted(pq.read_schema(path).names))
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        with pcsv.open_csv(path) as reader:  # reads one block, for the header
            columns = wanted(reader.schema.names)
        convert = pcsv.ConvertOptions(column_types={"id": pa.string()}, include_columns=columns)
        return pcsv.read_csv(path, convert_options=convert)
    # jsonl: pandas keeps ids that look like numbers as strings; Arrow's reader cannot be told to.
    df = pd.read_json(path, lines=True, dtype={"id": object})
    df = df[wanted(list(df.columns))]
    return pa.Table.from_pandas(df.assign(id=text_ids(df["id"], path)), preserve_index=False)  # refuses lists, floats


def require_columns(path: Path | str, names: list[str]) -> None:
    """Raise FlipgateError naming `path` unless `names` (a file's columns) hold id, label and pred."""
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise FlipgateError(
            f"{path}: missing column(s) {missing}; a predictions table needs {list(COLUMNS)} "
            f"(found {names[:10]})"
        )


def normalise(table: pa.Table, path: Path | str) -> pa.Table:
    """id as large_string, label and pred as int64 class ids (and logits as they are), each checked:
    FlipgateError naming `path` for ids that are not text or integers, missing values or empty ids."""
    columns = {"id": _arrow_ids(table["id"], path)}
    for col in ("label", "pred"):
        columns[col] = _class_ids(table[col], path, col)
    for col, arr in columns.items():
        if arr.null_count:
            raise FlipgateError(f"{path}: {arr.null_count:,} row(s) have no {col}")
    empty = pc.sum(pc.equal(columns["id"], "")).as_py() or 0
    if empty:
        raise FlipgateError(f"{path}: {empty:,} row(s) have no id (an empty string)")
    if "logits" in table.column_names:
        columns["logits"] = table["logits"]
    return pa.table(columns)


def _arrow_ids(ids: pa.ChunkedArray, path: Path) -> pa.ChunkedArray:
    """The id column as large_string (both sides of a join must share one type). Text, UTF-8 bytes and
    integers are ids; floats (a missing id turns integers into floats), lists, structs are refused."""
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


def text_ids(ids: pd.Series, path: Path) -> pd.Series:
    """An id column of a pandas frame as strings. Integers and text are ids; UTF-8 bytes are decoded;
    anything else (floats: a missing id turns an integer column into floats; lists; bytes that are not
    text) is refused. Missing ids stay missing (pd.NA): the caller says what that means."""
    if pd.api.types.is_float_dtype(ids) and len(ids):
        raise FlipgateError(f"{path}: column 'id' holds floats ({ids.dtype}); ids must be text or integers "
                            "(a missing id turns an integer column into floats)")
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=True) not in ("string", "integer", "empty"):
        for i, value in enumerate(ids):  # slow path, only for unusual columns: find the first bad row
            if isinstance(value, bytes):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    raise FlipgateError(f"{path}: id in row {i} is bytes that are not UTF-8 text ({value[:20]!r}); "
                                        "ids must be text or integers") from None
            elif not (isinstance(value, (str, int, np.integer)) or value is None or value is pd.NA
                      or (isinstance(value, float) and value != value)):
                raise FlipgateError(f"{path}: id in row {i} is a {type(value).__name__} ({str(value)[:40]}); "
                                    "ids must be text or integers, one per row")
        ids = ids.map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
    return ids.astype("string")


# --- aligning -----------------------------------------------------------------------------------------

def align(baseline: Table, candidate: Table, baseline_name: str, candidate_name: str, hint: str = SAME_SET) -> Table:
    """`candidate`'s rows in `baseline`'s row order (a DataFrame with a fresh index, or an Arrow table).

    Both must hold the same ids, each once, with the same label per id. Raises FlipgateError naming the
    table at fault (duplicates: how many ids and one of them), both tables (ids on one side only: how
    many on each side, one example each) or the candidate (labels that differ: how many, one id), each
    message ending in `hint`. A baseline may be any table with `id` and `label` (a data split).
    When both list the same ids in the same order (both predicted from one file) no join is done.
    """
    base_ids, cand_ids = _id_array(baseline), _id_array(candidate)
    pos = _positions(base_ids, cand_ids)
    if pos is None:
        _explain_mismatch(base_ids, cand_ids, baseline_name, candidate_name, hint)
    if isinstance(candidate, pd.DataFrame):
        candidate = candidate.iloc[pos].reset_index(drop=True)
    elif isinstance(pos, np.ndarray):
        candidate = candidate.take(pa.array(pos))
    differ = np.asarray(baseline["label"]) != np.asarray(candidate["label"])
    if differ.any():
        example = base_ids[int(np.argmax(differ))].as_py()
        raise FlipgateError(label_message(candidate_name, baseline_name, int(differ.sum()), example, hint))
    return candidate


def label_message(candidate_name: str, baseline_name: str, count: int, example: str, hint: str = SAME_SET) -> str:
    """What `align` says of ids whose label differs between the two tables."""
    return (f"{candidate_name}: {count:,} id(s) have a different label than in {baseline_name}, "
            f"e.g. {example!r}; {hint}")


def duplicate_message(name: object, count: int, example: str) -> str:
    """What `align` says of a table that holds ids more than once: how many ids, and one of them."""
    return f"{name}: {count:,} duplicate id(s), e.g. {example!r}"


def mismatch_message(baseline_name: str, candidate_name: str, only_base: tuple[int, str | None],
                     only_cand: tuple[int, str | None], hint: str = SAME_SET) -> str:
    """What `align` says of ids on one side only: (how many, one of them) for each side."""
    parts = []
    if only_base[0]:
        parts.append(f"{only_base[0]:,} baseline id(s) missing from the candidate (e.g. {only_base[1]!r})")
    if only_cand[0]:
        parts.append(f"{only_cand[0]:,} candidate id(s) missing from the baseline (e.g. {only_cand[1]!r})")
    return f"{candidate_name} vs {baseline_name}: ids do not match: {'; '.join(parts)}; {hint}"


def _id_array(table: pd.DataFrame | pa.Table) -> pa.ChunkedArray:
    """The id column as one Arrow type, so a DataFrame and an Arrow table compare alike."""
    ids = table["id"]
    if isinstance(table, pd.DataFrame):
        ids = pa.chunked_array([pa.array(ids.astype("string"))])
    return pc.cast(ids, pa.large_string())


def _positions(base_ids: pa.ChunkedArray, cand_ids: pa.ChunkedArray) -> np.ndarray | slice | None:
    """pos[i] = the candidate row of the baseline's i-th id (a slice of all rows when already in order);
    None when the id sets differ or either has duplicates (or a missing id).

    If both tables have n rows and pos is a permutation of 0..n-1, both id sets are unique and equal: a
    duplicate on either side would make two baseline rows share a candidate row, or leave a candidate row
    unreachable.
    """
    n = len(base_ids)
    if n != len(cand_ids) or base_ids.null_count or cand_ids.null_count:
        return None
    if base_ids.equals(cand_ids):  # common case, both predicted from one file: skip the join
        return slice(None) if pc.count_distinct(base_ids).as_py() == n else None
    pos_arr = pc.index_in(base_ids, value_set=cand_ids)
    if pos_arr.null_count:
        return None
    pos = pos_arr.to_numpy().astype(np.int64, copy=False)
    return pos if np.bincount(pos, minlength=n).max() == 1 else None


def _refuse_duplicates(ids: pa.ChunkedArray, name: object) -> None:
    """Raise FlipgateError naming `name` when an id occurs more than once: how many ids, and one of them."""
    counts = pc.value_counts(ids)
    dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(dup):
        raise FlipgateError(duplicate_message(name, len(dup), dup[0]["values"].as_py()))


def _explain_mismatch(base_ids: pa.ChunkedArray, cand_ids: pa.ChunkedArray, baseline_name: str,
                      candidate_name: str, hint: str) -> None:
    """Raise the most useful error for ids that do not match (only runs when something is wrong)."""
    for ids, name in ((base_ids, baseline_name), (cand_ids, candidate_name)):
        if ids.null_count:
            raise FlipgateError(f"{name}: {ids.null_count:,} row(s) have no id")
        _refuse_duplicates(ids, name)
    only_base = pc.filter(base_ids, pc.invert(pc.is_in(base_ids, value_set=cand_ids)))
    only_cand = pc.filter(cand_ids, pc.invert(pc.is_in(cand_ids, value_set=base_ids)))
    first = lambda ids: ids[0].as_py() if len(ids) else None  # noqa: E731
    raise FlipgateError(mismatch_message(baseline_name, candidate_name, (len(only_base), first(only_base)),
                                         (len(only_cand), first(only_cand)), hint))
