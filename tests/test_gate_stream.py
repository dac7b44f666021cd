"""`flipgate gate` over partitioned parquet datasets: exact counts merged over spilled buckets, the same
refusals (with counts over the whole set) and the same decision as the in-memory path."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flipgate.cli import main
from flipgate.errors import FlipgateError
from flipgate.gate import stream
from flipgate.gate.cli import gate_datasets, gate_files
from flipgate.gate.policy import Policy
from flipgate.gate.stream import id_hash, open_side, stream_counts
from flipgate.metrics.table import BOTH, NEITHER, ONLY_BASELINE, ONLY_CANDIDATE, FlipTable


def write_parts(folder, parts: list[dict]) -> str:
    folder.mkdir(parents=True)
    for k, columns in enumerate(parts):
        pq.write_table(pa.table(columns), folder / f"part-{k:05d}.parquet")
    return str(folder)


def table_of(ids, labels, preds) -> dict:
    return {"id": list(ids), "label": np.asarray(labels, np.int64), "pred": np.asarray(preds, np.int64)}


# Ten examples by hand. label / baseline / candidate:
#   r0..r3 class 0: both right (r0, r1), only baseline (r2: a negative flip), only candidate (r3)
#   r4..r9 class 1: both right (r4), only baseline (r5, r6), neither (r7), only candidate (r8, r9)
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
BASE = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
CAND = [0, 0, 1, 0, 1, 0, 0, 0, 1, 1]
IDS = [f"r{i}" for i in range(10)]
EXPECTED = {0: {NEITHER: 0, ONLY_CANDIDATE: 1, ONLY_BASELINE: 1, BOTH: 2},
            1: {NEITHER: 1, ONLY_CANDIDATE: 2, ONLY_BASELINE: 2, BOTH: 1}}


@pytest.fixture
def hand(tmp_path):
    """The ten examples as two datasets split differently: baseline 3 files in id order, candidate 4
    files in another order (each id in exactly one file)."""
    rows = np.arange(10)
    base = [table_of([IDS[i] for i in p], [LABELS[i] for i in p], [BASE[i] for i in p])
            for p in np.array_split(rows, 3)]
    order = [7, 2, 9, 0, 5, 3, 8, 1, 6, 4]
    cand = [table_of([IDS[i] for i in p], [LABELS[i] for i in p], [CAND[i] for i in p])
            for p in np.array_split(np.array(order), 4)]
    return write_parts(tmp_path / "base", base), write_parts(tmp_path / "cand", cand)


@pytest.mark.parametrize("bucket_rows", [1_000_000, 3, 1])  # in memory; 4 buckets; 10 buckets
def test_hand_counted_flip_table(hand, bucket_rows, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    counts = stream_counts(open_side(hand[0]), open_side(hand[1]), bucket_rows=bucket_rows, spill_dir=spill)
    table = counts.table
    assert table.classes.tolist() == [0, 1]
    for row, c in zip(table.cells, (0, 1)):
        assert {cell: int(row[cell]) for cell in range(4)} == EXPECTED[c]
    c = table.counts()
    assert (c.n, c.old_correct, c.cand_correct, c.negative_flips, c.positive_flips) == (10, 6, 6, 3, 3)
    assert table.per_class() == {0: {"n": 4, "negative_flips": 1, "nfr": 0.25},
                                 1: {"n": 6, "negative_flips": 2, "nfr": 2 / 6}}
    assert list(spill.iterdir()) == []  # the spill folder is gone


def test_hand_counted_decision_through_the_cli(hand, tmp_path, capsys):
    out = tmp_path / "gate.json"
    rc = main(["gate", "--baseline", hand[0], "--candidate", f"{hand[1]}/part-*.parquet", "--nfr-budget", "0.3",
               "--per-class-budget", "0.3", "--golden-ids", str(_golden(tmp_path, "r5", "r0")),
               "--json", str(out), "--bucket-rows", "2"])
    decision = json.loads(out.read_text())
    assert rc == 1
    assert decision["counts"]["negative_flips"] == 3 and decision["counts"]["n"] == 10
    checks = {c["name"]: c for c in decision["checks"]}
    assert checks["nfr"]["verdict"] == "pass" and checks["nfr"]["observed"] == pytest.approx(0.3)
    assert checks["per_class_nfr"]["verdict"] == "fail" and checks["per_class_nfr"]["detail"] == \
        "1 class(es) over budget: 1 (2/6)"
    assert checks["golden_ids"]["detail"] == "flipped: 'r5'"
    assert "REJECT" in capsys.readouterr().out


def _golden(tmp_path, *ids):
    path = tmp_path / "golden.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


def random_sets(n: int, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    base = np.where(rng.random(n) < 0.85, labels, (labels + 1) % classes)
    cand = np.where(rng.random(n) < 0.2, labels, base)
    cand = np.where(rng.random(n) < 0.03, (labels + 2) % classes, cand)
    ids = np.array([f"ex-{i:06d}" for i in range(n)])
    return ids, labels, base, cand


def test_same_decision_as_the_in_memory_path(tmp_path):
    ids, labels, base, cand = random_sets(5000)
    rng = np.random.default_rng(1)
    pq.write_table(pa.table(table_of(ids, labels, base)), tmp_path / "base.parquet")
    perm = rng.permutation(len(ids))
    pq.write_table(pa.table(table_of(ids[perm], labels[perm], cand[perm])), tmp_path / "cand.parquet")
    parts = [table_of(ids[p], labels[p], cand[p]) for p in np.array_split(rng.permutation(len(ids)), 9)]
    folder = write_parts(tmp_path / "cand_parts", parts)
    golden = frozenset(ids[rng.choice(len(ids), 50, replace=False)])
    policy = Policy(nfr_budget=0.02, upper_bound=True, per_class_budget=0.03, golden_ids=golden)
    whole = gate_files(str(tmp_path / "base.parquet"), str(tmp_path / "cand.parquet"), policy)
    for bucket_rows in (10**6, 700):
        streamed = gate_datasets(str(tmp_path / "base.parquet"), folder, policy, bucket_rows=bucket_rows)
        a, b = whole.to_dict(), streamed.to_dict()
        assert b["candidate"] == folder
        a.pop("candidate"), b.pop("candidate")
        assert a == b
    per_class = FlipTable.from_arrays(labels, base, cand).per_class()
    from flipgate.metrics.flips import per_class_nfr

    assert per_class == per_class_nfr(labels, base, cand)


def test_duplicates_across_partitions_are_refused_with_counts(hand, tmp_path):
    base = [table_of(IDS[:6], LABELS[:6], BASE[:6]), table_of(IDS[4:], LABELS[4:], BASE[4:])]  # r4, r5 twice
    folder = write_parts(tmp_path / "dup", base)
    for bucket_rows in (100, 1):
        with pytest.raises(FlipgateError) as err:
            gate_datasets(folder, hand[1], Policy(), bucket_rows=bucket_rows)
        message = str(err.value)
        assert message.startswith(f"{folder}: 2 duplicate id(s), e.g. ")
        assert f"{folder}/part-00000.parquet, {folder}/part-00001.parquet" in message


def test_duplicates_in_the_candidate_are_named_after_the_baseline_is_clean(hand, tmp_path):
    cand = [table_of(IDS, LABELS, CAND), table_of(["r3"], [0], [0])]
    folder = write_parts(tmp_path / "dup", cand)
    with pytest.raises(FlipgateError, match=rf"^{folder}: 1 duplicate id\(s\), e.g. 'r3' \(in .*part-00000.parquet, "
                                             r".*part-00001.parquet\)$"):
        gate_datasets(hand[0], folder, Policy(), bucket_rows=2)


def test_missing_ids_are_refused_with_the_in_memory_message(tmp_path):
    base = [table_of(IDS[:5], LABELS[:5], BASE[:5]), table_of(IDS[5:], LABELS[5:], BASE[5:])]
    keep = [1, 2, 4, 6, 7, 8]  # r0, r3, r5, r9 missing
    cand = [table_of([IDS[i] for i in keep] + ["x1", "x2"], [LABELS[i] for i in keep] + [0, 0],
                     [CAND[i] for i in keep] + [0, 0])]
    b, c = write_parts(tmp_path / "b", base), write_parts(tmp_path / "c", cand)
    pq.write_table(pa.table(table_of(IDS, LABELS, BASE)), tmp_path / "b.parquet")
    pq.write_table(pa.table(cand[0]), tmp_path / "c.parquet")
    with pytest.raises(FlipgateError) as in_memory:
        gate_files(str(tmp_path / "b.parquet"), str(tmp_path / "c.parquet"), Policy())
    for bucket_rows in (100, 1):
        with pytest.raises(FlipgateError) as streamed:
            gate_datasets(b, c, Policy(), bucket_rows=bucket_rows)
        message = str(streamed.value)
        assert message.startswith(f"{c} vs {b}: ids do not match: 4 baseline id(s) missing from the candidate (e.g. ")
        assert "; 2 candidate id(s) missing from the baseline (e.g. " in message
        # the same text as the in-memory path's, but for the names and the examples
        shape = lambda m: m.split(": ", 1)[1].split("(e.g.")[0]  # noqa: E731
        assert shape(message) == shape(str(in_memory.value))
        assert message.endswith("both tables must be predictions on the same regression set")


def test_labels_that_differ_are_counted_over_all_buckets(hand, tmp_path):
    labels = list(LABELS)
    labels[2], labels[7], labels[9] = 1, 0, 0
    folder = write_parts(tmp_path / "c", [table_of(IDS[:5], labels[:5], CAND[:5]),
                                          table_of(IDS[5:], labels[5:], CAND[5:])])
    with pytest.raises(FlipgateError, match=r"3 id\(s\) have a different label than in"):
        gate_datasets(hand[0], folder, Policy(), bucket_rows=1)


def test_identical_predictions_and_the_same_dataset_are_refused(hand):
    with pytest.raises(FlipgateError, match="the candidate is the baseline's own file"):
        gate_datasets(hand[0], hand[0] + "/", Policy())
    with pytest.raises(FlipgateError, match="every prediction equals the baseline's"):
        gate_datasets(hand[0], f"{hand[0]}/*.parquet", Policy())
    decision = gate_datasets(hand[0], f"{hand[0]}/*.parquet", Policy(), allow_identical=True)
    assert decision.counts.negative_flips == 0


def test_hash_collisions_are_settled_on_the_ids(hand, tmp_path, monkeypatch):
    """Every id in one of three hashes: the join still matches ids exactly."""
    monkeypatch.setattr(stream, "id_hash", lambda ids: np.array([len(i) % 3 for i in ids.to_pylist()], np.uint64))
    counts = stream_counts(open_side(hand[0]), open_side(hand[1]), bucket_rows=4, spill_dir=tmp_path)
    assert counts.table.counts().negative_flips == 3 and counts.table.n == 10
    folder = write_parts(tmp_path / "dup", [table_of(IDS, LABELS, CAND), table_of(["r3", "r33"], [0, 0], [0, 0])])
    with pytest.raises(FlipgateError, match=r"1 duplicate id\(s\), e.g. 'r3'"):
        stream_counts(open_side(hand[0]), open_side(folder), bucket_rows=4, spill_dir=tmp_path)


def test_id_hash_is_a_function_of_the_id_alone():
    ids = ["a", "a\x00", "héllo wörld", "x" * 200, "x" * 199 + "y", "12", "r1"]
    first = id_hash(pa.array(ids, pa.large_string()))
    again = id_hash(pa.array(list(reversed(ids)) + ["pad"] * 5, pa.string()))  # other batch, other type
    assert first.tolist() == list(reversed(again[:len(ids)].tolist()))
    assert len(set(first.tolist())) == len(ids)
    assert id_hash(pa.array([], pa.large_string())).size == 0


def test_an_fsspec_url_and_hive_partitions(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    ids, labels, base, cand = random_sets(300, classes=3, seed=2)
    for c in range(3):  # the candidate's label comes from its folder (label=c), as Spark's partitionBy writes it
        rows = labels == c
        with memory.open(f"/flipgate-test/cand/label={c}/part-0.parquet", "wb") as f:
            pq.write_table(pa.table({"id": ids[rows], "pred": cand[rows]}), f)
    memory.pipe("/flipgate-test/cand/_SUCCESS", b"")
    pq.write_table(pa.table(table_of(ids, labels, base)), tmp_path / "base.parquet")
    try:
        decision = gate_files(str(tmp_path / "base.parquet"), "memory://flipgate-test/cand", Policy(nfr_budget=1))
        assert decision.counts == FlipTable.from_arrays(labels, base, cand).counts()
        with pytest.raises(FlipgateError, match="no parquet files found"):
            gate_files(str(tmp_path / "base.parquet"), "memory://flipgate-test/nothing", Policy())
    finally:
        memory.rm("/flipgate-test", recursive=True)


def test_bad_partitions_are_named(hand, tmp_path, capsys):
    folder = tmp_path / "bad"
    write_parts(folder, [table_of(IDS[:5], LABELS[:5], CAND[:5])])
    pq.write_table(pa.table({"id": IDS[5:], "label": LABELS[5:]}), folder / "part-00001.parquet")
    assert main(["gate", "--baseline", hand[0], "--candidate", str(folder)]) == 3
    assert f"{folder}/part-00001.parquet: missing column(s) ['pred']" in capsys.readouterr().err
    (folder / "part-00001.parquet").write_bytes(b"PAR1 not parquet PAR1")
    assert main(["gate", "--baseline", hand[0], "--candidate", str(folder)]) == 3
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no predictions here")
    assert main(["gate", "--baseline", hand[0], "--candidate", str(empty)]) == 3
    assert f"{empty}: is a folder, not a predictions file; name the file" in capsys.readouterr().err
    assert main(["gate", "--baseline", hand[0], "--candidate", str(tmp_path / "nope" / "*.parquet")]) == 3
    assert "no parquet files found" in capsys.readouterr().err


def test_threads_change_nothing_not_even_the_examples_in_messages(tmp_path):
    """Batches cut and buckets joined on 1 or 4 threads: the same counts, golden outcome and refusals,
    word for word (results are written and merged in the order one thread would)."""
    rng = np.random.default_rng(7)
    n = 3_000
    ids = np.array([f"q{i}" for i in range(n)])
    labels, base, cand = (rng.integers(0, 3, n) for _ in range(3))
    order = rng.permutation(n)
    b = write_parts(tmp_path / "b", [table_of(ids[p], labels[p], base[p]) for p in np.array_split(np.arange(n), 7)])
    c = write_parts(tmp_path / "c", [table_of(ids[p], labels[p], cand[p]) for p in np.array_split(order, 5)])
    golden = frozenset(ids[rng.choice(n, 40, replace=False)].tolist())
    runs = [stream_counts(open_side(b), open_side(c), golden, bucket_rows=200, workers=w) for w in (1, 4)]
    assert runs[0].table.counts() == runs[1].table.counts() == FlipTable.from_arrays(labels, base, cand).counts()
    assert runs[0].table.per_class() == runs[1].table.per_class()
    assert runs[0].golden == runs[1].golden and len(runs[0].golden.flipped) > 0
    # refusals: 11 candidate ids missing, 3 labels differing elsewhere
    keep = order[11:]
    labels2 = labels.copy()
    labels2[keep[:3]] = (labels2[keep[:3]] + 1) % 3
    c2 = write_parts(tmp_path / "c2", [table_of(ids[p], labels2[p], cand[p]) for p in np.array_split(keep, 5)])
    messages = []
    for w in (1, 4):
        with pytest.raises(FlipgateError) as err:
            stream_counts(open_side(b), open_side(c2), bucket_rows=200, workers=w)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "11 baseline id(s) missing from the candidate" in messages[0]
