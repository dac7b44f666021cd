"""The gate's counts over predictions too large for memory: parquet datasets read batch by batch.

Both sides are hash-partitioned by id into buckets spilled to a temp folder (Arrow IPC files), then each
bucket is joined in memory; equal ids land in the same bucket, so the join, the duplicate check and the
per-class flip tables of all buckets add up to those of the whole set (`metrics.table.FlipTable`).
Memory is bounded by a few readers' batches while partitioning and by `bucket_rows` rows per side while
joining (split among the buckets joined at once); a set that fits in one bucket is joined in memory
without spilling.

The work runs on `workers` threads (default: the CPU count, at most 8): batches are hashed and cut into
buckets, and buckets are joined, in parallel (numpy and Arrow release the GIL); results are written and
merged in the order of a single thread, so the counts and every message are the same for any `workers`.

Within a bucket, rows are matched by a 64-bit hash of the id and every match is confirmed by comparing
the ids themselves, so the join is exact: a hash shared by two different ids (or an id held twice) is
found and settled on the ids. What is refused, and in what order, is what `predictions.align` refuses:
duplicates in the baseline, then in the candidate, then ids on one side only, then labels that differ;
every message counts over the whole set.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flipgate.errors import FlipgateError
from flipgate.gate.policy import GoldenOutcome
from flipgate.metrics.table import FlipTable
from flipgate.prediction_datasets import BATCH_ROWS, Dataset, dataset_batches, dataset_rows, is_dataset, open_dataset
from flipgate.predictions import check_file, duplicate_message, label_message, mismatch_message, read_arrow

log = logging.getLogger(__name__)

BUCKET_ROWS = 1 << 22  # rows of one side joined at once (~4M: a few hundred MB with both sides)
_SPILL_SCHEMA = pa.schema([("id", pa.large_string()), ("label", pa.int64()), ("pred", pa.int64()),
                           ("file", pa.int32()), ("hash", pa.uint64())])
_MIX = np.uint64(0xFF51AFD7ED558CCD)
_WORD = np.uint64(0x9E3779B97F4A7C15)


# --- the two sides --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    """One side of the join: its name for messages, its row count, and its batches (file index, table)."""

    name: str
    rows: int
    batches: Callable[[], Iterator[tuple[int, pa.Table]]]
    file_name: Callable[[int], str]


def open_side(ref: str, batch_rows: int = BATCH_ROWS) -> Side:
    """A dataset (folder, glob, URL) or a single file. A parquet file is read batch by batch like a
    dataset; a csv or jsonl file is read whole (`read_arrow`)."""
    if is_dataset(ref):
        dataset = open_dataset(ref)
        return _dataset_side(dataset, batch_rows)
    path = Path(ref)
    check_file(path)
    if path.suffix.lower() == ".parquet":
        from pyarrow import fs as pafs

        return _dataset_side(Dataset(str(path), (str(path),), pafs.LocalFileSystem()), batch_rows)
    table = read_arrow(path)
    return Side(str(path), len(table), lambda: iter([(0, table)]), lambda i: str(path))


def _dataset_side(dataset: Dataset, batch_rows: int) -> Side:
    rows = _with_file_errors(dataset, lambda: dataset_rows(dataset))
    return Side(dataset.name, rows, lambda: dataset_batches(dataset, batch_rows), dataset.file_name)


def _with_file_errors(dataset: Dataset, count: Callable[[], int]) -> int:
    try:
        return count()
    except Exception as exc:  # a footer that is not parquet: name the dataset, read_batches names the file
        raise FlipgateError(f"{dataset.name}: cannot read its parquet footers ({type(exc).__name__}: {exc})") from exc


# --- hashing ----------------------------------------------------------------------------------------

def id_hash(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each id (text). Equal ids hash equal; different ids almost never do, and the join
    confirms every match on the ids, so the hash only decides buckets and candidate pairs.

    Fast path: ids padded to a multiple of 8 bytes and read as uint64 words (one numpy pass per word).
    Ids longer than 64 characters are hashed on their first and last 32; ids whose padding leaves their
    byte lengths unequal (non-ASCII text) take a byte-by-byte path."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    ids = pc.cast(ids, pa.large_string())
    if len(ids) == 0:
        return np.zeros(0, np.uint64)
    lengths = pc.binary_length(ids).to_numpy(zero_copy_only=False).astype(np.uint64)
    key = ids
    if lengths.max() > 64:
        key = pc.binary_join_element_wise(pc.utf8_slice_codeunits(ids, 0, 32),
                                          pc.utf8_slice_codeunits(ids, -32), pa.scalar("", pa.large_string()))
    width = -(-int(pc.max(pc.binary_length(key)).as_py()) // 8) * 8
    padded = pc.utf8_rpad(key, width, "\x00")
    offsets, data = _buffers(padded)
    if offsets[-1] - offsets[0] == width * len(ids):  # every id padded to `width` bytes
        words = data[offsets[0]:offsets[-1]].view(np.uint64).reshape(len(ids), width // 8)
        h = lengths * _WORD
        for j in range(words.shape[1]):
            h = (h ^ words[:, j]) * _MIX
            h ^= h >> np.uint64(29)
    else:
        h = _hash_bytes(*_buffers(key)) ^ (lengths * _WORD)
    return _finish(h)


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.frombuffer(arr.buffers()[1], np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    return offsets, np.frombuffer(arr.buffers()[2], np.uint8)


def _hash_bytes(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Polynomial hash of each string's bytes (every string non-empty)."""
    start = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    segment = data[offsets[0]:offsets[-1]].astype(np.uint64)
    position = np.arange(len(segment)) - np.repeat(start, lengths)
    powers = np.cumprod(np.full(int(lengths.max()), _MIX, np.uint64))
    return np.add.reduceat(segment * powers[position], start)


def _finish(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * _MIX
    return h ^ (h >> np.uint64(33))


# --- what the join found --------------------------------------------------------------------------

@dataclass
class Found:
    """A count over the whole set and one example (with the files that hold it, for duplicates)."""

    count: int = 0
    example: str | None = None
    files: tuple[int, ...] = ()

    def add(self, count: int, example: str | None, files: tuple[int, ...] = ()) -> None:
        if count and self.example is None:
            self.example, self.files = example, files
        self.count += count

    def merge(self, other: Found) -> None:
        self.add(other.count, other.example, other.files)


@dataclass
class Counts:
    """Everything the gate needs from the joined sides; `raise_problems` refuses as `align` does."""

    table: FlipTable = field(default_factory=FlipTable.empty)
    golden: GoldenOutcome = field(default_factory=lambda: GoldenOutcome(frozenset(), frozenset()))
    any_prediction_differs: bool = False
    dup_base: Found = field(default_factory=Found)
    dup_cand: Found = field(default_factory=Found)
    only_base: Found = field(default_factory=Found)
    only_cand: Found = field(default_factory=Found)
    labels_differ: Found = field(default_factory=Found)

    def merge(self, other: Counts) -> None:
        """Add the counts of other buckets (examples: this one's first, as one pass over both would find)."""
        self.table = self.table + other.table
        self.golden = self.golden + other.golden
        self.any_prediction_differs = self.any_prediction_differs or other.any_prediction_differs
        for name in ("dup_base", "dup_cand", "only_base", "only_cand", "labels_differ"):
            getattr(self, name).merge(getattr(other, name))

    def raise_problems(self, base: Side, cand: Side, hint: str) -> None:
        for found, side in ((self.dup_base, base), (self.dup_cand, cand)):
            if found.count:
                where = ", ".join(side.file_name(i) for i in found.files)
                raise FlipgateError(duplicate_message(side.name, found.count, found.example) + f" (in {where})")
        if self.only_base.count or self.only_cand.count:
            raise FlipgateError(mismatch_message(base.name, cand.name, (self.only_base.count, self.only_base.example),
                                                 (self.only_cand.count, self.only_cand.example), hint))
        if self.labels_differ.count:
            raise FlipgateError(label_message(cand.name, base.name, self.labels_differ.count,
                                              self.labels_differ.example, hint))


# --- the join ---------------------------------------------------------------------------------------

def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def stream_counts(base: Side, cand: Side, golden: frozenset[str] = frozenset(), hint: str = "",
                  bucket_rows: int = BUCKET_ROWS, spill_dir: str | Path | None = None,
                  workers: int | None = None) -> Counts:
    """Join both sides by id and count; raises FlipgateError for what `align` refuses (see the module)."""
    workers = workers or default_workers()
    golden_hashes = np.unique(id_hash(pa.array(sorted(golden), pa.large_string()))) if golden else None
    counts = Counts()
    if max(base.rows, cand.rows) <= bucket_rows:
        _join(_whole(base), _whole(cand), counts, golden, golden_hashes)
        counts.raise_problems(base, cand, hint)
        return counts
    # `workers` buckets are joined at once: each holds a share of bucket_rows, so memory stays as bounded.
    buckets = math.ceil(max(base.rows, cand.rows) / max(1, bucket_rows // workers))
    folder = Path(tempfile.mkdtemp(prefix="flipgate-gate-spill-", dir=spill_dir))
    try:
        log.info("partitioning %s and %s rows into %d buckets under %s (%d threads)", f"{base.rows:,}",
                 f"{cand.rows:,}", buckets, folder, workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="flipgate-gate") as pool:
            _spill(base, buckets, folder / "baseline", pool, workers)
            _spill(cand, buckets, folder / "candidate", pool, workers)

            def join_bucket(b: int) -> Counts:
                part = Counts()
                _join(_read(folder / "baseline", b), _read(folder / "candidate", b), part, golden, golden_hashes)
                return part

            for part in _progress(pool.map(join_bucket, range(buckets)), "joining buckets", buckets):
                counts.merge(part)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    counts.raise_problems(base, cand, hint)
    return counts


def _progress(items, desc: str, total: int | None = None):
    from flipgate.progress import progress

    return progress(iterable=items, desc=desc, total=total)


def _with_hash(file_index: int, table: pa.Table) -> pa.Table:
    return pa.table({"id": table["id"], "label": table["label"], "pred": table["pred"],
                     "file": pa.array(np.full(len(table), file_index, np.int32)),
                     "hash": pa.array(id_hash(table["id"]))}, schema=_SPILL_SCHEMA)


def _whole(side: Side) -> pa.Table:
    parts = [_with_hash(i, t) for i, t in side.batches()]
    return pa.concat_tables(parts) if parts else _SPILL_SCHEMA.empty_table()


def _spill(side: Side, buckets: int, folder: Path, pool: ThreadPoolExecutor, workers: int) -> None:
    """Write each row to bucket (hash mod buckets): one Arrow IPC stream per bucket. Batches are hashed
    and cut on the pool (at most `workers` ahead of the writer) and written in the order they were read."""
    folder.mkdir()
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}

    def write(pieces: list[tuple[int, pa.Table]]) -> None:
        for b, piece in pieces:
            if b not in writers:
                writers[b] = pa.ipc.new_stream(str(folder / f"{b}.arrow"), _SPILL_SCHEMA)
            writers[b].write_table(piece)

    pending: deque = deque()
    try:
        for file_index, table in _progress(side.batches(), f"partitioning {side.name}"):
            pending.append(pool.submit(_cut, file_index, table, buckets))
            if len(pending) > workers:
                write(pending.popleft().result())
        while pending:
            write(pending.popleft().result())
    finally:
        for future in pending:
            future.cancel()
        for writer in writers.values():
            writer.close()


def _cut(file_index: int, table: pa.Table, buckets: int) -> list[tuple[int, pa.Table]]:
    """A batch's rows with their hashes, cut into (bucket, rows) pieces."""
    rows = _with_hash(file_index, table)
    bucket = (rows["hash"].to_numpy() % np.uint64(buckets)).astype(_bucket_type(buckets))
    rows = rows.take(pa.array(np.argsort(bucket, kind="stable")))  # a radix sort for <= 16 bits
    sizes = np.bincount(bucket, minlength=buckets)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [(int(b), rows.slice(starts[b], sizes[b])) for b in np.flatnonzero(sizes)]


def _bucket_type(buckets: int) -> type:
    return np.uint16 if buckets <= 1 << 16 else np.uint32


def _read(folder: Path, bucket: int) -> pa.Table:
    path = folder / f"{bucket}.arrow"
    if not path.exists():
        return _SPILL_SCHEMA.empty_table()
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def _join(base: pa.Table, cand: pa.Table, counts: Counts, golden: frozenset[str],
          golden_hashes: np.ndarray | None) -> None:
    """Join one bucket (every id of it on both sides) into `counts`."""
    hb, hc = base["hash"].to_numpy(), cand["hash"].to_numpy()
    ob, oc = np.argsort(hb), np.argsort(hc)
    collided = False
    for table, order, found in ((base, ob, counts.dup_base), (cand, oc, counts.dup_cand)):
        dup_count, example, files, collision = _repeats(table, order)
        found.add(dup_count, example, files)
        collided = collided or collision
    if counts.dup_base.count or counts.dup_cand.count:
        return  # duplicates are refused first; the rest would be counted for nothing
    if collided:  # two different ids share a hash (about once in 10^19 pairs): match on the ids alone
        pos = pc.index_in(base["id"], value_set=cand["id"])
        bi = np.flatnonzero(pc.is_valid(pos).to_numpy(zero_copy_only=False))
        ci = pc.drop_null(pos).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        bi, ci = _match(hb, hc, ob, oc, base["id"], cand["id"])
    _count_unmatched(base, bi, counts.only_base)
    _count_unmatched(cand, ci, counts.only_cand)
    label_b, label_c = base["label"].to_numpy()[bi], cand["label"].to_numpy()[ci]
    differ = label_b != label_c
    counts.labels_differ.add(int(differ.sum()), base["id"][int(bi[np.argmax(differ)])].as_py() if differ.any() else None)
    pred_b, pred_c = base["pred"].to_numpy()[bi], cand["pred"].to_numpy()[ci]
    counts.table = counts.table + FlipTable.from_arrays(label_b, pred_b, pred_c)
    counts.any_prediction_differs = counts.any_prediction_differs or bool((pred_b != pred_c).any())
    if golden_hashes is not None:
        maybe = np.flatnonzero(np.isin(hb[bi], golden_hashes))
        ids = base["id"].take(pa.array(bi[maybe])).to_pylist()
        flips = (pred_b[maybe] == label_b[maybe]) & (pred_c[maybe] != label_b[maybe])
        found = {i for i in ids if i in golden}
        flipped = {i for i, f in zip(ids, flips) if f and i in golden}
        counts.golden = counts.golden + GoldenOutcome(frozenset(found), frozenset(flipped))


def _repeats(table: pa.Table, order: np.ndarray) -> tuple[int, str | None, tuple[int, ...], bool]:
    """(duplicate ids, one of them, the files that hold it, whether two different ids share a hash)."""
    sorted_hash = table["hash"].to_numpy()[order]
    same = sorted_hash[1:] == sorted_hash[:-1]
    if not same.any():
        return 0, None, (), False
    rows = order[np.unique(np.concatenate([np.flatnonzero(same), np.flatnonzero(same) + 1]))]
    subset = table.take(pa.array(rows))
    value_counts = pc.value_counts(subset["id"])
    dups = pc.filter(value_counts, pc.greater(value_counts.field("counts"), 1))
    distinct_hashes = len(np.unique(subset["hash"].to_numpy()))
    collision = len(value_counts) > distinct_hashes  # more distinct ids than hashes among the repeats
    if not len(dups):
        return 0, None, (), collision
    example = dups[0]["values"].as_py()
    files = subset.filter(pc.equal(subset["id"], example))["file"].to_numpy()
    return len(dups), example, tuple(sorted(set(files.tolist()))), collision


def _match(hb, hc, ob, oc, base_ids, cand_ids) -> tuple[np.ndarray, np.ndarray]:
    """Rows (base, candidate) holding the same id, when each side's hashes are distinct."""
    sorted_b = hb[ob]
    if len(hb) == len(hc) and np.array_equal(sorted_b, hc[oc]):  # the usual case: the same id set
        bi, ci = ob, oc
    else:
        pos = np.minimum(np.searchsorted(sorted_b, hc), max(len(hb) - 1, 0))
        hit = np.flatnonzero(sorted_b[pos] == hc) if len(hb) else np.zeros(0, np.int64)
        bi, ci = ob[pos[hit]], hit
    same = _same_ids(base_ids, cand_ids, bi, ci)
    return bi[same], ci[same]


def _same_ids(base_ids: pa.ChunkedArray, cand_ids: pa.ChunkedArray, bi: np.ndarray, ci: np.ndarray) -> np.ndarray:
    """base_ids[bi] == cand_ids[ci], row by row. Ids of one width of at least 8 bytes on both sides
    (zero-padded numbers, UUIDs) are compared as a few uint64 words each; others through Arrow."""
    words = [_words(ids) for ids in (base_ids, cand_ids)]
    if words[0] is not None and words[1] is not None and len(words[0]) == len(words[1]):
        same = np.ones(len(bi), bool)
        for wb, wc in zip(*words):
            same &= wb[bi] == wc[ci]
        return same
    return pc.equal(base_ids.take(pa.array(bi)), cand_ids.take(pa.array(ci))).to_numpy(zero_copy_only=False)


def _words(ids: pa.ChunkedArray) -> list[np.ndarray] | None:
    """When every id has the same byte length w >= 8: views of each id's bytes at 0, 8, ... and w - 8
    (the last overlaps), as uint64 arrays; together they cover every byte. Else None."""
    ids = ids.combine_chunks()
    if len(ids) == 0:
        return None
    offsets, data = _buffers(ids)
    width = int(offsets[1] - offsets[0])
    if width < 8 or offsets[-1] - offsets[0] != width * len(ids) or not (np.diff(offsets) == width).all():
        return None
    starts = sorted({*range(0, width - 7, 8), width - 8})
    return [np.ndarray((len(ids),), "<u8", data, offset=int(offsets[0]) + o, strides=(width,)) for o in starts]


def _count_unmatched(table: pa.Table, matched: np.ndarray, found: Found) -> None:
    missing = len(table) - len(matched)
    if missing:
        mask = np.ones(len(table), bool)
        mask[matched] = False
        found.add(missing, table["id"][int(np.argmax(mask))].as_py())
