"""A predictions table stored as a parquet dataset: many files (Spark's part files, Hive-partitioned
folders, a glob's matches), local or behind any fsspec URL, listed once and read batch by batch, each batch
checked and typed as flipgate.predictions reads one file. `flipgate gate` streams such tables
(flipgate.gate.stream); one file is read whole by flipgate.predictions.read_arrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from flipgate.errors import FlipgateError
from flipgate.predictions import COLUMNS, normalise, require_columns

BATCH_ROWS = 1 << 18  # rows per batch read from a dataset's file: bounds the reader's memory
_GLOB = ("*", "?", "[")


@dataclass(frozen=True)
class Dataset:
    """A predictions table stored as parquet files (Spark's, Hive-partitioned folders, a glob's matches),
    local or behind any fsspec URL. `files` are the filesystem's paths, in sorted order; `name` is the
    reference as given, for messages."""

    name: str
    files: tuple[str, ...]
    filesystem: object  # a pyarrow FileSystem (an fsspec one wrapped)
    protocol: str = ""  # "s3" for s3://..., "" for local paths

    def file_name(self, index: int) -> str:
        """The file as a user would name it (with its URL scheme when it has one)."""
        return f"{self.protocol}://{self.files[index]}" if self.protocol else self.files[index]


def is_dataset(ref: str | Path) -> bool:
    """True when `ref` names a parquet dataset rather than one predictions file: an existing folder, a glob
    (``preds/*/part-*.parquet``) or a URL (``s3://bucket/preds/``, ``file://``, ``memory://``: any fsspec
    scheme). An existing file is a file even when its name has glob characters."""
    text = str(ref)
    if text.startswith(("models:/", "runs:/")) or Path(text).is_file():
        return False
    return "://" in text or any(c in text for c in _GLOB) or Path(text).is_dir()


def open_dataset(ref: str | Path) -> Dataset:
    """List a dataset's parquet files: under a folder (recursively; names starting with '_' or '.', such
    as Spark's _SUCCESS and .crc files, are skipped, as are files not ending in .parquet), or a glob's
    matches. Raises FlipgateError when nothing is found, naming the reference."""
    text = str(ref)
    if "://" in text:
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(text)
        except (ImportError, ValueError) as exc:  # an unknown scheme, or its package is not installed
            raise FlipgateError(f"{text}: cannot open this URL ({type(exc).__name__}: {exc})") from exc
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        protocol = text.split("://", 1)[0]
        files, fs = _fsspec_files(fs, root), PyFileSystem(FSSpecHandler(fs))
    else:
        import glob

        from pyarrow import fs as pafs

        fs, protocol = pafs.LocalFileSystem(), ""
        if Path(text).is_dir():
            files = [str(f) for f in Path(text).rglob("*") if f.is_file()]
            files = [f for f in files if _is_data_file(f, root=text)]
        else:
            files = [f for f in glob.glob(text, recursive=True) if Path(f).is_file()]
    if not files:
        if Path(text).is_dir():
            raise FlipgateError(f"{text}: is a folder, not a predictions file; name the file, e.g. "
                                f"{Path(text) / 'regression.parquet'}, or a folder of .parquet files "
                                "(it holds none)")
        raise FlipgateError(f"{text}: no parquet files found (not found, or nothing matches)")
    return Dataset(text, tuple(sorted(files)), fs, protocol)


def _fsspec_files(fs, root: str) -> list[str]:
    if any(c in root for c in _GLOB):
        return [f for f in fs.glob(root) if fs.isfile(f)]
    if fs.isfile(root):
        return [root]
    if not fs.isdir(root):
        return []
    return [f for f in fs.find(root) if _is_data_file(f, root)]


def _is_data_file(path: str, root: str) -> bool:
    parts = Path(path).relative_to(root).parts if path.startswith(str(root)) else Path(path).parts[-1:]
    return path.endswith(".parquet") and not any(part.startswith(("_", ".")) for part in parts)


def dataset_rows(dataset: Dataset) -> int:
    """Rows over all files, from the parquet footers (no data read)."""
    return sum(_fragment(dataset, i).count_rows() for i in range(len(dataset.files)))


def dataset_batches(dataset: Dataset, batch_rows: int = BATCH_ROWS):
    """Yield (file index, table) for every batch of every file: id, label, pred checked and typed as
    `read_arrow` does. A column that a Hive-style folder holds (``label=3/``) is taken from the path.
    Raises FlipgateError naming the file: unreadable, a missing column, or the problems `read_arrow` refuses."""
    for index in range(len(dataset.files)):
        name = dataset.file_name(index)
        try:
            fragment = _fragment(dataset, index)
            names = fragment.physical_schema.names
            from_path = _partition_keys(dataset.files[index], names)
            require_columns(name, [*names, *from_path])
            columns = [c for c in COLUMNS if c in names]
            batches = fragment.to_batches(schema=fragment.physical_schema, columns=columns, batch_size=batch_rows)
            for batch in batches:
                table = pa.Table.from_batches([batch])
                for col, value in from_path.items():
                    table = table.append_column(col, pa.array(np.full(len(table), value, np.int64)))
                yield index, normalise(table, name)
        except FlipgateError:
            raise
        except Exception as exc:  # pyarrow's and the filesystem's many types
            raise FlipgateError(f"{name}: cannot read it as parquet ({type(exc).__name__}: {exc})") from exc


def _fragment(dataset: Dataset, index: int):
    import pyarrow.dataset as ds

    return ds.ParquetFileFormat().make_fragment(dataset.files[index], dataset.filesystem)


def _partition_keys(path: str, names: list[str]) -> dict[str, int]:
    """The label or pred a Hive-style folder (``label=3/``) gives a file that lacks the column."""
    keys = dict(part.split("=", 1) for part in Path(path).parts[:-1] if "=" in part)
    try:
        return {k: int(keys[k]) for k in ("label", "pred") if k in keys and k not in names}
    except ValueError as exc:
        raise FlipgateError(f"{path}: its folder names a class id that is not an integer ({exc})") from None
