"""NFR, NFI, PFR and per-class NFR as MLflow metrics, for `mlflow.models.evaluate(extra_metrics=...)`.

MLflow compares aggregates of a candidate and a baseline; a negative flip is a per-example comparison,
so these metrics read the baseline's prediction of every example from a column of the evaluation data
(`baseline_prediction` unless `flip_metrics(baseline_column=...)` names another). The arithmetic is
flipgate.metrics.flips' (pooled counts), so a figure here equals the pipeline's gate figure:

    result = mlflow.models.evaluate(data=frame, targets="label", predictions="prediction",
                                    extra_metrics=flip_metrics())
    mlflow.validate_evaluation_results({"nfr": MetricThreshold(threshold=0.01, greater_is_better=False)}, result)

Metrics (names as in `result.metrics`): `nfr`, `nfi` and `per_class_nfr/max` are lower-is-better, `pfr`
higher-is-better; `per_class_nfr/<class>` is each gold class's NFR (classes with no example are left out;
characters MLflow refuses in a metric name become `_`). `nfr` and `pfr` also score every row (1 for a
negative, resp. positive, flip): the run's evaluation table shows which examples flipped.
Edge cases: a rate whose denominator is zero is 0.0, as in flips.py. A baseline column that is missing
makes MLflow refuse the metric; one with a missing value raises ValueError naming the column.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
from mlflow.metrics import MetricValue
from mlflow.models import EvaluationMetric, make_metric

from flipgate.metrics.flips import flip_counts, negative_flip_mask, per_class_nfr

BASELINE_COLUMN = "baseline_prediction"
_RESERVED = ("predictions", "targets", "metrics")  # what MLflow hands an eval_fn by parameter name
_UNSAFE = re.compile(r"[^\w.\- ]")  # what MLflow allows in a metric name, less `/` and `:`


def _arrays(predictions: pd.Series, targets: pd.Series, baseline: pd.Series, column: str):
    baseline = pd.Series(baseline)
    missing = int(baseline.isna().sum())
    if missing:
        raise ValueError(f"{column}: {missing} of {len(baseline)} rows have no baseline prediction; "
                         "every example needs the baseline model's prediction")
    return np.asarray(targets), np.asarray(baseline), np.asarray(predictions)


def _flips(name: str, mask: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]):
    """A rate metric that also scores every row: 1 where `mask(labels, old, cand)` holds (a flip)."""
    def factory(column: str):
        def metric(predictions, targets, baseline):
            labels, old, cand = _arrays(predictions, targets, baseline, column)
            return MetricValue(scores=mask(labels, old, cand).astype(int).tolist(),
                               aggregate_results={name: getattr(flip_counts(labels, old, cand), name)})
        return metric
    return factory


_nfr = _flips("nfr", negative_flip_mask)
_pfr = _flips("pfr", lambda labels, old, cand: (old != labels) & (cand == labels))


def _nfi(column: str):
    def nfi(predictions, targets, baseline):
        labels, old, cand = _arrays(predictions, targets, baseline, column)
        return MetricValue(aggregate_results={"nfi": flip_counts(labels, old, cand).nfi})
    return nfi


def class_metric_names(classes) -> dict[object, str]:
    """Class label -> the `per_class_nfr/<name>` part MLflow accepts; two labels that would share a name
    raise ValueError (rename one of them)."""
    names: dict[object, str] = {}
    taken = {"max": "the worst class's NFR"}
    for c in classes:
        name = _UNSAFE.sub("_", str(c)) or "_"
        if name in taken:
            raise ValueError(f"class {c!r} would be logged as per_class_nfr/{name}, the name of {taken[name]}")
        names[c], taken[name] = name, f"class {c!r}"
    return names


def _per_class(column: str):
    def per_class_nfr_metric(predictions, targets, baseline):
        labels, old, cand = _arrays(predictions, targets, baseline, column)
        # flips.per_class_nfr counts integer class ids: code every label as its position among the gold ones
        classes = pd.unique(labels)
        codes = {c: i for i, c in enumerate(classes)}
        encode = np.vectorize(lambda v: codes.get(v, -1), otypes=[np.int64])  # -1: a label no example has
        rows = per_class_nfr(encode(labels), encode(old), encode(cand)) if len(labels) else {}
        names = class_metric_names(classes)
        results = {names[classes[i]]: float(r["nfr"]) for i, r in rows.items()}
        results["max"] = max(results.values(), default=0.0)
        return MetricValue(aggregate_results=results)
    return per_class_nfr_metric


def _with_column(fn: Callable, column: str) -> Callable:
    """MLflow passes an eval_fn the data column named like its parameter: rename `baseline` to `column`."""
    params = list(inspect.signature(fn).parameters.values())
    fn.__signature__ = inspect.Signature([*params[:2], params[2].replace(name=column)])
    return fn


def flip_metrics(baseline_column: str = BASELINE_COLUMN) -> list[EvaluationMetric]:
    """[nfr, nfi, pfr, per_class_nfr] reading the baseline's predictions from `baseline_column`."""
    if not isinstance(baseline_column, str) or not baseline_column.isidentifier() or baseline_column in _RESERVED:
        raise ValueError(f"baseline_column must name a column with a Python identifier other than "
                         f"{', '.join(_RESERVED)}; got {baseline_column!r}")
    specs = [
        (_nfr, "nfr", False, "negative flip rate: baseline right, candidate wrong, over all examples"),
        (_nfi, "nfi", False, "negative flip impact: negative flips over the candidate's errors"),
        (_pfr, "pfr", True, "positive flip rate: baseline wrong, candidate right, over all examples"),
        (_per_class, "per_class_nfr", False, "NFR within each gold class, and the worst class's as max"),
    ]
    return [
        make_metric(eval_fn=_with_column(factory(baseline_column), baseline_column), greater_is_better=better,
                    name=name, metric_details=details)
        for factory, name, better, details in specs
    ]
