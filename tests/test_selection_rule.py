"""The dev selection rule (flipgate.mitigation.selection_rule): hand-built per-example outcomes, known answers."""

import numpy as np
import pandas as pd
import pytest

from flipgate.errors import FlipgateError
from flipgate.mitigation.selection_rule import Options, Rule, choose


def outcomes(n: int, old_right: int, spec: dict) -> Options:
    """Options on n examples: old right on the first `old_right`; for each key (correct, flips):
    the option is wrong on `flips` of old's right examples and right on `correct` examples in all."""
    keys = list(spec)
    old = np.zeros(n, bool)
    old[:old_right] = True
    cols = []
    for correct, flips in spec.values():
        col = old.copy()
        col[:flips] = False  # negative flips
        gain = correct - (old_right - flips)  # right answers still to add (old's errors fixed), or to remove
        if gain >= 0:
            col[old_right:old_right + gain] = True
        else:
            col[flips:flips - gain] = False  # further negative flips would change `flips`: not used below
        assert col.sum() == correct and (old & ~col).sum() == flips
        cols.append(col)
    correct = np.stack(cols, axis=1)
    return Options(keys, correct, old[:, None] & ~correct, old, correct[:, 0])


def test_budget_rule_takes_the_most_accurate_option_within_budget():
    opts = outcomes(100, 80, {"a": (90, 8), "b": (88, 4), "c": (85, 1)})
    point = choose(opts, Rule("budget", nfr_budget=0.05, confidence=0.5), bootstrap=0)
    assert point.key == "b" and point.admissible and point.nfr == 0.04
    # With the 95% upper bound only one flip in 100 fits a 5% budget: its bound is 4.66%.
    strict = choose(opts, Rule("budget", nfr_budget=0.05, confidence=0.95), bootstrap=0)
    assert strict.key == "c" and strict.nfr_bound == pytest.approx(0.0466, abs=5e-4)


def test_budget_rule_requires_the_gain_over_old():
    opts = outcomes(100, 80, {"a": (90, 8), "b": (79, 1), "c": (82, 2)})
    choice = choose(opts, Rule("budget", nfr_budget=0.05, confidence=0.5, min_gain=0.0), bootstrap=0)
    assert choice.key == "c"  # b flips less but is less accurate than old (79 < 80)
    loss_ok = choose(opts, Rule("budget", nfr_budget=0.05, confidence=0.5, min_gain=-0.05), bootstrap=0)
    assert loss_ok.key == "c"  # still the most accurate of the admissible ones


def test_no_admissible_option_falls_back_to_the_safest_not_the_most_accurate():
    opts = outcomes(100, 80, {"a": (90, 8), "b": (88, 6)})
    choice = choose(opts, Rule("budget", nfr_budget=0.01, confidence=0.5), bootstrap=0)
    assert choice.key == "b" and not choice.admissible
    assert "not admissible" in choice.reason


def test_tolerance_rule_is_lowest_nfr_within_tolerance_of_the_reference():
    opts = outcomes(1000, 800, {0.0: (850, 40), 0.5: (845, 20), 0.7: (843, 10), 1.0: (800, 0)})
    assert choose(opts, Rule("tolerance", tolerance=0.005), bootstrap=0).key == 0.5  # 0.7 is 0.7 points below
    assert choose(opts, Rule("tolerance", tolerance=0.01), bootstrap=0).key == 0.7
    assert choose(opts, Rule("tolerance", tolerance=0.10), bootstrap=0).key == 1.0


def test_an_ordered_knob_is_judged_on_its_monotone_curve():
    # alpha 0 ... 0.4; the point at alpha 0.2 dips to 2 flips, then 5 at 0.3: noise on a falling curve.
    spec = {0.0: (90, 10), 0.1: (89, 6), 0.2: (89, 2), 0.3: (87, 5), 0.4: (84, 1)}
    raw = outcomes(100, 80, spec)
    rule = Rule("budget", nfr_budget=0.03, confidence=0.5)
    assert choose(raw, rule, bootstrap=0).key == 0.2
    smooth = Options(raw.keys, raw.correct, raw.flips, raw.old_correct, raw.ref_correct, trend="down")
    choice = choose(smooth, rule, bootstrap=0)
    assert choice.key == 0.4  # isotonic fit: 10, 6, 3.5, 3.5, 1 -> only alpha 0.4 is within 3%
    assert choice.nfr_bound == pytest.approx(0.01)


def test_bootstrap_reports_how_sure_the_choice_is():
    clear = outcomes(400, 300, {"a": (360, 0), "b": (300, 60)})
    c = choose(clear, Rule("budget", nfr_budget=0.05, confidence=0.5), bootstrap=200, seed=1)
    assert c.key == "a" and c.stability == 1.0 and c.distribution == {"a": 1.0}
    close = outcomes(400, 300, {"a": (330, 4), "b": (331, 4)})  # one example apart
    d = choose(close, Rule("budget", nfr_budget=0.05, confidence=0.5), bootstrap=200, seed=1)
    assert d.key == "b" and 0.2 < d.stability < 0.9 and sum(d.distribution.values()) == pytest.approx(1.0)
    again = choose(close, Rule("budget", nfr_budget=0.05, confidence=0.5), bootstrap=200, seed=1)
    assert again.distribution == d.distribution


def test_options_from_tables_line_rows_up_by_id_and_refuse_other_ids():
    old = pd.DataFrame({"id": ["a", "b", "c"], "label": [0, 1, 1], "pred": [0, 1, 0]})  # right on a, b
    shuffled = pd.DataFrame({"id": ["c", "a", "b"], "label": [1, 0, 1], "pred": [1, 1, 1]})  # right on b, c
    o = Options.from_tables({"x": shuffled}, old, old)
    assert o.correct[:, 0].tolist() == [False, True, True]  # in old's order: a wrong, b right, c right
    assert o.flips[:, 0].tolist() == [True, False, False]  # a: old right, x wrong
    assert o.old_correct.tolist() == [True, True, False] and o.ref_correct.tolist() == [True, True, False]
    with pytest.raises(FlipgateError, match=r"dev: x vs dev: old: ids do not match: 1 baseline id\(s\) missing "
                                            r"from the candidate \(e.g. 'c'\); 1 candidate id\(s\) missing from "
                                            r"the baseline \(e.g. 'z'\)"):
        Options.from_tables({"x": shuffled.assign(id=["z", "a", "b"])}, old, old)
    with pytest.raises(FlipgateError, match=r"dev: x: 1 id\(s\) have a different label than in dev: old, e.g. 'c'"):
        Options.from_tables({"x": shuffled.assign(label=[0, 0, 1])}, old, old)
