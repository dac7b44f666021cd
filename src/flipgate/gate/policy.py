"""The promotion gate's decision: a pure function of two models' predictions and a policy.

`decide` compares a candidate with the baseline (the old model, i.e. the registry's champion) on the
regression set and returns a frozen `Decision` that lists every check with its observed value, its
threshold and its verdict (TFX "blessing" style); whoever promotes models only acts on it.

Checks (NFR = negative flips / n, a negative flip = baseline right and candidate wrong):
- ``nfr``: NFR <= nfr_budget.
- ``nfr_upper_bound`` (if ``upper_bound``): the one-sided Clopper-Pearson upper bound of the NFR at
  ``ci_level`` <= nfr_budget, i.e. "we are ci_level sure the true NFR is within budget".
- ``accuracy_gain``: candidate accuracy - baseline accuracy >= min_gain (negative allows a small loss).
- ``per_class_nfr`` (if ``per_class_budget`` is set): the NFR within every gold class <= the budget;
  observed is the worst class. Small classes are judged as they are: one flip among 5 is 0.2.
- ``golden_ids`` (if any): the number of golden examples that flipped negatively == 0.

Verdicts. A check is ``pass``, ``fail`` or ``inconclusive``. Inconclusive means the data cannot decide:
- the regression set is empty (every check that needs examples is inconclusive);
- the upper-bound check, when the point estimate passes (NFR <= budget) but the bound is above the
  budget. The set is too small to show the NFR is within budget at that confidence; a larger set would
  shrink the bound towards the point estimate (unless NFR equals the budget exactly). The detail says
  how many examples even zero flips need (``min_examples_for_bound``: 299 for budget 0.01 at 95%).
  When the point estimate itself is above the budget, ``nfr`` fails and the upper-bound check fails too.
The overall verdict is ``reject`` if any check fails, else ``inconclusive`` if any check is
inconclusive, else ``pass``. So a clear failure on a small set still rejects.

This module decides and renders nothing: the PR comment and the terminal summary are gate/render.py's,
the interval maths metrics/intervals.py's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from flipgate.metrics.flips import FlipCounts, flip_counts, negative_flip_mask
from flipgate.metrics.intervals import clopper_pearson_upper, min_examples_for_bound
from flipgate.metrics.table import FlipTable

CheckVerdict = Literal["pass", "fail", "inconclusive"]
Verdict = Literal["pass", "reject", "inconclusive"]

_MAX_LISTED = 10  # ids named in a check's detail; the JSON is a summary, not a dump


@dataclass(frozen=True)
class Policy:
    """What a candidate must satisfy. Rates are fractions (0.01 = 1%), not percentages."""

    nfr_budget: float = 0.01
    upper_bound: bool = False
    ci_level: float = 0.95
    min_gain: float = 0.0
    per_class_budget: float | None = None
    golden_ids: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not 0.0 <= self.nfr_budget <= 1.0:
            raise ValueError(f"nfr_budget must be in [0, 1], got {self.nfr_budget}")
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")
        if not -1.0 <= self.min_gain <= 1.0:
            raise ValueError(f"min_gain must be in [-1, 1] (a fraction of accuracy), got {self.min_gain}")
        if self.per_class_budget is not None and not 0.0 <= self.per_class_budget <= 1.0:
            raise ValueError(f"per_class_budget must be in [0, 1], got {self.per_class_budget}")
        # Accept any iterable of ids, keep a hashable frozen set.
        object.__setattr__(self, "golden_ids", frozenset(str(i) for i in self.golden_ids))

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["golden_ids"] = len(self.golden_ids)  # a count: the list itself lives in its file
        return d


@dataclass(frozen=True)
class Check:
    name: str
    observed: float | int | None  # None when there is nothing to observe (empty set)
    op: Literal["<=", ">=", "=="]
    threshold: float | int
    verdict: CheckVerdict
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    checks: tuple[Check, ...]
    counts: FlipCounts
    policy: Policy
    baseline: str = "baseline"
    candidate: str = "candidate"
    unfit: tuple[tuple[str, str], ...] = ()  # (model, why) for models that failed their fit-to-judge checks

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def with_selection(self, admissible: bool, reason: str) -> Decision:
        """This decision with the dev selection's outcome: a candidate `select` gated only as the safe
        fallback (nothing met the rule on dev) fails a `dev_selection` check, so the champion stays."""
        if admissible:
            return self
        checks = [*self.checks, Check("dev_selection", 0, "==", 1, "fail", reason)]
        return replace(self, verdict=_overall(checks), checks=tuple(checks))

    def with_fit(self, unfit: dict[str, str], baseline_role: str = "old") -> Decision:
        """This decision with the models that are not fit to judge named (model -> what failed and the
        fix). An unfit baseline adds a `baseline_fit` check that is inconclusive: a verdict against a
        baseline that did not learn its task means nothing, so it can never pass."""
        if not unfit:
            return self
        checks = list(self.checks)
        if baseline_role in unfit:
            checks.append(Check("baseline_fit", 0, "==", 1, "inconclusive", unfit[baseline_role]))
        return replace(self, verdict=_overall(checks), checks=tuple(checks), unfit=tuple(sorted(unfit.items())))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: verdict, every check, the pooled counts and the policy that was applied."""
        return {
            "verdict": self.verdict,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "checks": [asdict(c) for c in self.checks],
            "counts": self.counts.as_dict(),
            "policy": self.policy.to_dict(),
            "unfit": dict(self.unfit),
        }


def decide(
    labels,
    baseline_pred,
    candidate_pred,
    policy: Policy = Policy(),
    ids=None,
    baseline: str = "baseline",
    candidate: str = "candidate",
) -> Decision:
    """Judge a candidate against the baseline on the same examples (arrays aligned row by row).

    `ids` (strings, aligned with the arrays) is needed only for golden ids. Raises ValueError when
    the arrays' shapes differ, or a golden id is not among `ids`: a golden example that is not in the
    regression set cannot be checked, so it is a configuration error rather than a pass.
    """
    labels, base, cand = (np.asarray(a) for a in (labels, baseline_pred, candidate_pred))
    flip_counts(labels, base, cand)  # the shape check and its message
    golden = golden_outcome(labels, base, cand, ids, policy.golden_ids) if policy.golden_ids else None
    return decide_table(FlipTable.from_arrays(labels, base, cand), policy, golden, baseline, candidate)


@dataclass(frozen=True)
class GoldenOutcome:
    """The golden ids found in the regression set, and those of them that flipped negatively."""

    found: frozenset[str]
    flipped: frozenset[str]

    def __add__(self, other: GoldenOutcome) -> GoldenOutcome:
        return GoldenOutcome(self.found | other.found, self.flipped | other.flipped)


def golden_outcome(labels, base, cand, ids, golden: frozenset[str]) -> GoldenOutcome:
    """Which of `golden` are among `ids` (aligned with the arrays), and which of those flipped negatively."""
    if ids is None:
        raise ValueError("golden ids need the examples' ids")
    ids = pd.Series(ids, copy=False).astype("string")  # stays Arrow-backed: no 10M Python strings
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids do not match {len(labels)} labels")
    in_golden = ids.isin(golden).to_numpy(dtype=bool)
    flipped = in_golden & negative_flip_mask(labels, base, cand)
    return GoldenOutcome(frozenset(ids[in_golden]), frozenset(ids[flipped]))


def decide_table(
    table: FlipTable,
    policy: Policy = Policy(),
    golden: GoldenOutcome | None = None,
    baseline: str = "baseline",
    candidate: str = "candidate",
) -> Decision:
    """Judge from counts alone: the per-class flip table (and, with golden ids, their outcome) are all a
    decision needs, so a regression set counted part by part decides exactly as one read whole.

    Raises ValueError when the policy names golden ids and `golden` is None or misses one of them.
    """
    counts = table.counts()
    checks = [_nfr_check(counts, policy)]
    if policy.upper_bound:
        checks.append(_upper_bound_check(counts, policy))
    checks.append(_gain_check(counts, policy))
    if policy.per_class_budget is not None:
        checks.append(_per_class_check(table.per_class(), policy.per_class_budget))
    if policy.golden_ids:
        if golden is None:
            raise ValueError("golden ids need the examples' ids")
        checks.append(_golden_check(golden, policy.golden_ids))
    return Decision(_overall(checks), tuple(checks), counts, policy, baseline, candidate)


def _overall(checks: list[Check]) -> Verdict:
    verdicts = {c.verdict for c in checks}
    if "fail" in verdicts:
        return "reject"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"


def _nfr_check(c: FlipCounts, p: Policy) -> Check:
    if c.n == 0:
        return Check("nfr", None, "<=", p.nfr_budget, "inconclusive", "the regression set is empty")
    verdict: CheckVerdict = "pass" if c.nfr <= p.nfr_budget else "fail"
    return Check("nfr", c.nfr, "<=", p.nfr_budget, verdict, f"{c.negative_flips:,} negative flips of {c.n:,}")


def _upper_bound_check(c: FlipCounts, p: Policy) -> Check:
    name = "nfr_upper_bound"
    if c.n == 0:
        return Check(name, None, "<=", p.nfr_budget, "inconclusive", "the regression set is empty")
    upper = clopper_pearson_upper(c.negative_flips, c.n, p.ci_level)
    if upper <= p.nfr_budget:
        return Check(name, upper, "<=", p.nfr_budget, "pass", f"one-sided Clopper-Pearson at {p.ci_level:g}")
    if c.nfr > p.nfr_budget:
        return Check(name, upper, "<=", p.nfr_budget, "fail", "the point estimate is above the budget too")
    need = min_examples_for_bound(p.nfr_budget, p.ci_level)
    why = (
        f"the point estimate passes but {c.n:,} examples cannot show NFR <= {p.nfr_budget:g} "
        f"at {p.ci_level:g} confidence; "
        + (f"even zero flips need >= {need:,} examples" if need else "a zero budget can never be shown")
    )
    return Check(name, upper, "<=", p.nfr_budget, "inconclusive", why)


def _gain_check(c: FlipCounts, p: Policy) -> Check:
    if c.n == 0:
        return Check("accuracy_gain", None, ">=", p.min_gain, "inconclusive", "the regression set is empty")
    gain = (c.cand_correct - c.old_correct) / c.n  # one division: no cancellation error at gain 0
    verdict: CheckVerdict = "pass" if gain >= p.min_gain else "fail"
    detail = f"candidate {c.accuracy:.4f} vs baseline {c.old_accuracy:.4f}"
    return Check("accuracy_gain", gain, ">=", p.min_gain, verdict, detail)


def _per_class_check(per_class: dict[int, dict[str, float | int]], budget: float) -> Check:
    if not per_class:
        return Check("per_class_nfr", None, "<=", budget, "inconclusive", "the regression set is empty")
    worst_class, worst = max(per_class.items(), key=lambda kv: (kv[1]["nfr"], -kv[0]))
    over = sorted(c for c, v in per_class.items() if v["nfr"] > budget)
    if not over:
        detail = f"worst class {worst_class}: {worst['negative_flips']}/{worst['n']}"
        return Check("per_class_nfr", worst["nfr"], "<=", budget, "pass", detail)
    shown = ", ".join(
        f"{c} ({per_class[c]['negative_flips']}/{per_class[c]['n']})" for c in over[:_MAX_LISTED]
    )
    more = f" and {len(over) - _MAX_LISTED} more" if len(over) > _MAX_LISTED else ""
    detail = f"{len(over)} class(es) over budget: {shown}{more}"
    return Check("per_class_nfr", worst["nfr"], "<=", budget, "fail", detail)


def _golden_check(golden: GoldenOutcome, wanted: frozenset[str]) -> Check:
    absent = sorted(wanted - golden.found)
    if absent:
        raise ValueError(f"{len(absent)} golden id(s) are not in the regression set, e.g. {absent[0]!r}")
    flipped = sorted(golden.flipped & wanted)
    if not flipped:
        return Check("golden_ids", 0, "==", 0, "pass", f"none of {len(wanted):,} golden examples flipped")
    shown = ", ".join(repr(i) for i in flipped[:_MAX_LISTED])
    more = f" and {len(flipped) - _MAX_LISTED} more" if len(flipped) > _MAX_LISTED else ""
    return Check("golden_ids", len(flipped), "==", 0, "fail", f"flipped: {shown}{more}")
