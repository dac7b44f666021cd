import numpy as np
import pytest

from flipgate.metrics.flips import fix_and_new_fault, flip_counts, negative_flip_mask, per_class_nfr

LABELS = np.array([0, 1, 1, 0, 2, 2, 1, 0])
OLD = np.array([0, 1, 0, 0, 2, 1, 1, 1])  # right on 0,1,3,4,6
NEW = np.array([0, 0, 1, 0, 1, 2, 1, 1])  # right on 0,2,3,5,6


def test_hand_computed_flips():
    c = flip_counts(LABELS, OLD, NEW)
    # negative flips: ids 1 and 4 (old right, new wrong); positive: 2 and 5
    assert (c.n, c.negative_flips, c.positive_flips) == (8, 2, 2)
    assert c.nfr == pytest.approx(2 / 8)
    assert c.pfr == pytest.approx(2 / 8)
    assert c.accuracy == pytest.approx(5 / 8) and c.old_accuracy == pytest.approx(5 / 8)
    assert c.nfi == pytest.approx(2 / 3)  # 3 new errors, 2 of them negative flips
    assert negative_flip_mask(LABELS, OLD, NEW).nonzero()[0].tolist() == [1, 4]


def test_empty_set_is_all_zero():
    c = flip_counts(np.array([], int), np.array([], int), np.array([], int))
    assert c.n == 0 and c.nfr == 0.0 and c.nfi == 0.0 and c.accuracy == 0.0


def test_all_correct_has_no_flips():
    c = flip_counts(LABELS, LABELS, LABELS)
    assert (c.negative_flips, c.positive_flips, c.nfr, c.nfi, c.accuracy) == (0, 0, 0.0, 0.0, 1.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="do not match"):
        flip_counts(LABELS, OLD[:3], NEW)


def test_fix_and_new_fault():
    # new's negative flips: {1, 4}. mitigated keeps 4, fixes 1, and adds a new one at 6.
    mitigated = NEW.copy()
    mitigated[1] = 1
    mitigated[6] = 0
    r = fix_and_new_fault(LABELS, OLD, NEW, mitigated)
    assert r == {"fix_rate": 0.5, "new_fault_rate": 0.5, "fixed": 1, "introduced": 1}
    assert fix_and_new_fault(LABELS, OLD, OLD, NEW)["fix_rate"] == 0.0  # new without flips: rates are 0


def test_per_class_nfr():
    r = per_class_nfr(LABELS, OLD, NEW)
    assert r[1] == {"n": 3, "negative_flips": 1, "nfr": pytest.approx(1 / 3)}
    assert r[2] == {"n": 2, "negative_flips": 1, "nfr": 0.5}
    assert r[0]["negative_flips"] == 0
