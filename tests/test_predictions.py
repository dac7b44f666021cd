"""flipgate.predictions: the one reader, builder and aligner of predictions tables (hand-computed values)."""

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flipgate.errors import FlipgateError
from flipgate.predictions import align, logits_matrix, predictions_frame, read_arrow, read_predictions


def test_frame_predicts_the_argmax_and_keeps_ids_as_text():
    t = predictions_frame([7, "b", "007"], [2, 0, 1], [[0.1, 0.2, 0.9], [3.0, -1.0, 0.0], [0.0, 0.5, 0.4]])
    assert t["id"].tolist() == ["7", "b", "007"] and str(t["id"].dtype) == "string"
    assert t["pred"].tolist() == [2, 0, 1] and t["pred"].dtype == np.int64
    np.testing.assert_array_equal(logits_matrix(t)[1], np.array([3.0, -1.0, 0.0], np.float32))
    assert logits_matrix(t.iloc[:0]).shape == (0, 0)


@pytest.fixture
def three_formats(tmp_path):
    """The same 3 rows as parquet, csv and jsonl; the ids look like numbers ("007") and must stay text."""
    rows = pd.DataFrame({"id": ["007", "x", "12"], "label": [1, 0, 2], "pred": [1, 1, 2], "note": ["a", "b", "c"]})
    rows.to_parquet(tmp_path / "p.parquet")
    rows.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "p.jsonl").write_text('{"id": "007", "label": 1, "pred": 1}\n{"id": "x", "label": 0, "pred": 1}\n'
                                      '{"id": "12", "label": 2, "pred": 2}\n')
    return tmp_path


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_every_format_reads_to_the_same_table(three_formats, suffix):
    t = read_predictions(three_formats / f"p.{suffix}")
    assert list(t.columns) == ["id", "label", "pred"]  # other columns are not read
    assert t["id"].tolist() == ["007", "x", "12"]
    assert t["label"].tolist() == [1, 0, 2] and t["pred"].tolist() == [1, 1, 2]
    assert read_arrow(three_formats / f"p.{suffix}")["id"].type == pa.large_string()


def test_logits_come_with_the_pandas_table(tmp_path):
    path = tmp_path / "t.parquet"
    predictions_frame(["a", "b"], [0, 1], [[1.0, 0.0], [0.0, 2.0]]).to_parquet(path)
    np.testing.assert_array_equal(logits_matrix(read_predictions(path)), np.array([[1, 0], [0, 2]], np.float32))
    assert read_arrow(path).column_names == ["id", "label", "pred"]  # the gate never loads logits


def test_read_refuses_duplicate_ids_counting_the_ids(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,label,pred\na,0,0\nb,0,0\na,0,0\nb,0,0\nb,0,0\nc,0,0\n")  # a twice, b three times
    with pytest.raises(FlipgateError, match=re.escape(f"{path}: 2 duplicate id(s), e.g. ")):
        read_predictions(path)
    assert len(read_arrow(path)) == 6  # left to align


def frame(ids, labels, preds) -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(ids, dtype="string"), "label": labels, "pred": preds})


BASE = frame(["a", "b", "c", "d"], [0, 1, 1, 0], [0, 1, 0, 0])


def test_align_puts_the_candidate_in_the_baselines_order():
    cand = frame(["d", "b", "a", "c"], [0, 1, 0, 1], [3, 2, 1, 4])
    out = align(BASE, cand, "base", "cand")
    assert out["id"].tolist() == ["a", "b", "c", "d"] and out["pred"].tolist() == [1, 2, 4, 3]
    assert out.index.tolist() == [0, 1, 2, 3]
    arrow = align(pa.Table.from_pandas(BASE), pa.Table.from_pandas(cand), "base", "cand")
    assert arrow["pred"].to_pylist() == [1, 2, 4, 3]
    same = align(BASE, BASE.assign(pred=[9, 9, 9, 9]), "base", "cand")  # already in order: no join
    assert same["pred"].tolist() == [9, 9, 9, 9]


def test_align_counts_ids_missing_on_each_side():
    cand = frame(["a", "b", "x", "y"], [0, 1, 1, 0], [0, 0, 0, 0])  # c, d missing; x, y extra
    with pytest.raises(FlipgateError) as err:
        align(BASE, cand, "base.parquet", "cand.parquet", hint="rerun it")
    assert str(err.value) == ("cand.parquet vs base.parquet: ids do not match: 2 baseline id(s) missing from the "
                              "candidate (e.g. 'c'); 2 candidate id(s) missing from the baseline (e.g. 'x'); rerun it")
    with pytest.raises(FlipgateError, match=re.escape("1 baseline id(s) missing from the candidate (e.g. 'd')")):
        align(BASE, BASE.iloc[:3], "base", "cand")


def test_align_names_the_table_with_duplicates():
    dup = frame(["a", "a", "c", "c"], [0, 0, 1, 1], [0, 0, 0, 0])  # same length, two ids twice each
    with pytest.raises(FlipgateError, match=re.escape("cand: 2 duplicate id(s), e.g. 'a'")):
        align(BASE, dup, "base", "cand")
    with pytest.raises(FlipgateError, match=re.escape("base: 2 duplicate id(s), e.g. 'a'")):
        align(dup, BASE, "base", "cand")
    with pytest.raises(FlipgateError, match=re.escape("base: 2 duplicate id(s)")):  # in order on both sides
        align(dup, dup, "base", "cand")


def test_align_counts_labels_that_differ():
    cand = frame(["d", "c", "b", "a"], [1, 0, 1, 0], [0, 0, 0, 0])  # d and c relabelled
    with pytest.raises(FlipgateError) as err:
        align(BASE, cand, "base", "cand")
    assert str(err.value) == ("cand: 2 id(s) have a different label than in base, e.g. 'c'; "
                              "both tables must be predictions on the same regression set")


def test_a_data_split_is_a_baseline():
    split = pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["w", "x", "y", "z"], "label": [0, 1, 1, 0]})
    out = align(split, BASE.iloc[::-1], "split", "preds")
    assert out["pred"].tolist() == [0, 1, 0, 0]
