"""Compose a data update: D_old, D_new, D_updated = D_old + D_new, a dev split and the regression set.

Splits carry stable ids. Labels are encoded through a label map that only ever grows: old labels keep
their ids when an update adds classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.io import atomic_path, read_json, write_json, write_parquet

SPLITS = ("old", "new", "updated", "dev", "regression")


@dataclass(frozen=True)
class Update:
    old: pd.DataFrame
    new: pd.DataFrame
    dev: pd.DataFrame
    regression: pd.DataFrame
    labels: list[str]
    num_old_labels: int

    @property
    def updated(self) -> pd.DataFrame:
        """D_old followed by D_new, with a `part` column saying which."""
        return pd.concat([self.old.assign(part="old"), self.new.assign(part="new")], ignore_index=True)

    def split(self, name: str) -> pd.DataFrame:
        return self.updated if name == "updated" else getattr(self, name)


def _sort_labels(values) -> list[str]:
    """Numeric labels sort as numbers (so ids 0..K-1 keep their value), others as strings."""
    vals = {str(v) for v in values}
    try:
        return sorted(vals, key=lambda s: (0, float(s)))
    except ValueError:
        return sorted(vals)


def label_map(old_labels, new_labels, allow_new: bool, where: str) -> list[str]:
    """The label list: D_old's labels first, then (add_classes only) labels D_old never had.

    Raises FlipgateError for labels outside D_old's set unless `allow_new`.
    """
    base = _sort_labels(old_labels)
    extra = [lab for lab in _sort_labels(new_labels) if lab not in set(base)]
    if extra and not allow_new:
        raise FlipgateError(
            f"{where}: label(s) {extra[:10]} not in D_old's label set; "
            "if the update adds classes, set data.scenario: add_classes in params.yaml"
        )
    return base + extra


def _refuse_unknown(values: pd.Series, known: set[str], where: str, add_classes: bool) -> None:
    extra = [lab for lab in _sort_labels(values) if lab not in known]
    if not extra:
        return
    if add_classes:
        raise FlipgateError(f"{where}: label(s) {extra[:10]} in no training file (data.files.old, data.files.new); "
                            "no model can learn them: add examples to D_new or drop those rows")
    raise FlipgateError(f"{where}: label(s) {extra[:10]} not in D_old's label set; "
                        "if the update adds classes, set data.scenario: add_classes in params.yaml")


def encode(df: pd.DataFrame, labels: list[str], where: str) -> pd.DataFrame:
    """Map raw labels to ids, checking ids, texts and labels on the way."""
    index = {lab: i for i, lab in enumerate(labels)}
    raw = df["label"].astype(str)
    unknown = sorted(set(raw[~raw.isin(index)]))
    if unknown:
        raise FlipgateError(f"{where}: label(s) {unknown[:10]} unseen in training data; drop those rows or add them to D_new")
    if df["text"].isna().any():
        raise FlipgateError(f"{where}: {int(df['text'].isna().sum())} row(s) have no text, e.g. id {df['id'][df['text'].isna()].iloc[0]!r}")
    return pd.DataFrame(
        {"id": df["id"].astype(str).to_numpy(), "text": df["text"].astype(str).to_numpy(), "label": raw.map(index).astype(np.int64).to_numpy()}
    )


def from_files(old: pd.DataFrame, new: pd.DataFrame, dev: pd.DataFrame, regression: pd.DataFrame, add_classes: bool) -> Update:
    """An update whose splits are given as files (e.g. MASSIVE add_data). A label outside D_old's set is
    refused naming the split's key, unless `add_classes`; even then dev and the regression set may only
    hold labels that some training file (D_old or D_new) has."""
    known = set(_sort_labels(old["label"])) | (set(_sort_labels(new["label"])) if add_classes else set())
    checked = {"dev": dev, "regression": regression} if add_classes else {"new": new, "dev": dev, "regression": regression}
    for name, df in checked.items():
        _refuse_unknown(df["label"], known, f"data.files.{name}", add_classes)
    labels = label_map(old["label"], pd.concat([new["label"], dev["label"], regression["label"]]), add_classes, "data.files")
    num_old = len(_sort_labels(old["label"]))
    enc = {name: encode(df, labels, f"data.files.{name}") for name, df in
           (("old", old), ("new", new), ("dev", dev), ("regression", regression))}
    return Update(**enc, labels=labels, num_old_labels=num_old)


def from_pool(pool: pd.DataFrame, n_old: int, n_new: int, n_dev: int, n_regression: int, seed: int,
              new_classes: list[str] | None = None) -> Update:
    """Split one pool of examples into disjoint regression, dev, D_old and D_new sets.

    Deterministic for a seed. With `new_classes` (add_classes scenario), D_old excludes those classes;
    D_new, dev and the regression set draw from all classes.
    """
    need = n_old + n_new + n_dev + n_regression
    if need > len(pool):
        raise FlipgateError(
            f"update: n_old + n_new + n_dev + n_regression = {need} exceeds the {len(pool)} examples available; lower them"
        )
    new_classes = [str(c) for c in (new_classes or [])]
    unknown = set(new_classes) - set(pool["label"].astype(str))
    if unknown:
        raise FlipgateError(f"update.new_classes: {sorted(unknown)} not among the data's labels")
    order = np.random.default_rng(seed).permutation(len(pool))
    shuffled = pool.iloc[order].reset_index(drop=True)
    regression = shuffled.iloc[:n_regression]
    dev = shuffled.iloc[n_regression:n_regression + n_dev]
    rest = shuffled.iloc[n_regression + n_dev:]
    is_new_class = rest["label"].astype(str).isin(new_classes)
    old = rest[~is_new_class].iloc[:n_old]
    if len(old) < n_old:
        raise FlipgateError(f"update.n_old: only {len(old)} examples outside update.new_classes; lower n_old")
    new = rest.drop(index=old.index).iloc[:n_new]
    old_labels = old["label"]
    labels = label_map(old_labels, pool["label"], bool(new_classes), "update")
    num_old = len(_sort_labels(old_labels))
    return Update(
        old=encode(old, labels, "update D_old"),
        new=encode(new, labels, "update D_new"),
        dev=encode(dev, labels, "update dev"),
        regression=encode(regression, labels, "update regression"),
        labels=labels,
        num_old_labels=num_old,
    )


def save(update: Update, folder: str | Path) -> None:
    """Write every split as parquet plus labels.json; the folder appears whole or not at all."""
    with atomic_path(folder, folder=True) as tmp:
        for name in SPLITS:
            write_parquet(update.split(name), tmp / f"{name}.parquet")
        write_json({"labels": update.labels, "num_old_labels": update.num_old_labels}, tmp / "labels.json")


def load_split(folder: str | Path, name: str) -> pd.DataFrame:
    path = Path(folder) / f"{name}.parquet"
    if not path.exists():
        raise FlipgateError(f"{path}: not found; run the `update` stage first (`dvc repro update`)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise FlipgateError(f"{path}: cannot read it as parquet ({type(exc).__name__}: {exc}); "
                            "rerun the `update` stage (`dvc repro -f update`)") from exc


def load_labels(folder: str | Path) -> tuple[list[str], int]:
    """(label names in id order, how many of them D_old has), as `save` wrote them."""
    path = Path(folder) / "labels.json"
    meta = read_json(path)
    labels = meta.get("labels") if isinstance(meta, dict) else None
    num_old = meta.get("num_old_labels") if isinstance(meta, dict) else None
    if (not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels)
            or isinstance(num_old, bool) or not isinstance(num_old, int) or not 0 < num_old <= len(labels)):
        raise FlipgateError(f'{path}: expected {{"labels": [names in id order], "num_old_labels": N}}; '
                            "rerun the `update` stage (`dvc repro -f update`)")
    return labels, num_old
