"""Validate an update's splits (D_old, D_new, dev, D_reg) with a Great Expectations suite.

Per file: required columns (id, text, label), at least one row, no nulls, text not blank and within
[min_chars, max_chars] characters, labels in the allowed set, unique ids. Across files: ids unique
over D_old + D_new, no text shared between training data and D_reg, nor between dev and D_reg or the
training data (texts compared after strip, lowercase and whitespace collapse). Dev chooses alpha and
the candidate, the regression set judges them: a dev set that is mostly the regression set always
fails, whatever `leakage` says. The cross-file facts are computed in pandas as boolean columns
(`id_in_old`, `in_regression`) and checked by GX like any other column, so every verdict and every
offending row comes out of GX the same way. Leakage can be downgraded to a warning (GX severity) for
published splits that share a few texts with their test set (MASSIVE add_data shares 7).

Class-balance drift of D_new against D_old (total variation distance of the label shares) is
computed here, not by GX, and only warns. Under `add_classes` it is measured on the old classes
only (shares renormalised), since the added classes are new by design.

Edge cases: a missing column fails `expect_column_to_exist` and skips the checks that need it; an
empty file fails the row-count check; drift is skipped (with a warning) when either side has no
labels to compare.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from flipgate.errors import FlipgateError
from flipgate.io import atomic_path, write_json
from flipgate.markdown import md_code, md_text, no_mentions
from flipgate.text import normalise_text

log = logging.getLogger(__name__)

ROLES = ("old", "new", "dev", "regression")
DEV_IS_REGRESSION = 0.5  # share of dev texts found in the regression set above which dev is refused
REQUIRED_COLUMNS = ("id", "text", "label")
MAX_ROWS = 10  # offending rows kept per check
MAX_TEXT = 200  # characters of text kept per offending row
Scenario = Literal["data_update", "add_classes"]
# SUMMARY gives positional indices of the first offending rows without materialising every one.
RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_ROWS,
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation's verdict on one file. `source` is "great_expectations" or "flipgate"."""

    file: str
    expectation: str
    column: str | None
    description: str
    success: bool
    severity: Literal["critical", "warning"] = "critical"
    kwargs: dict = field(default_factory=dict)
    observed: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    source: str = "great_expectations"

    def summary(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        counts = ""
        if "unexpected_count" in self.observed:
            counts = f": {self.observed['unexpected_count']} of {self.observed['element_count']} row(s)"
            values = self.observed.get("unexpected_values")
            if values and self.column not in ("id_in_old", "in_regression", "in_training"):
                counts += f", e.g. values {values}"
        elif self.observed:
            counts = f": observed {self.observed}"
        return f"{self.file}: {self.expectation}{where} ({self.description}) failed{counts}"


@dataclass(frozen=True)
class ValidationResult:
    """All checks of all files, plus human warnings. `success` ignores warning-severity checks."""

    files: dict[str, str]  # role -> file name used in messages
    checks: list[ExpectationResult]
    warnings: list[str]
    params: dict

    @property
    def failures(self) -> list[ExpectationResult]:
        return [c for c in self.checks if not c.success and c.severity == "critical"]

    @property
    def success(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        out: dict = {"success": self.success, "n_checks": len(self.checks), "n_failed": len(self.failures),
                     "n_warnings": len(self.warnings), "params": self.params, "warnings": self.warnings, "files": {}}
        for role, name in self.files.items():
            checks = [asdict(c) for c in self.checks if c.file == name]
            ok = all(c["success"] or c["severity"] != "critical" for c in checks)
            out["files"][role] = {"file": name, "success": ok, "checks": checks}
        return out

    def raise_for_failures(self, report: str | None = None) -> None:
        """Raise one FlipgateError listing every failed check with up to ten offending rows each."""
        if self.success:
            return
        lines = [f"{len(self.failures)} data check(s) failed:"]
        for c in self.failures:
            lines.append("- " + c.summary())
            lines += [f"    id={r.get('id')!r} text={r.get('text')!r}" for r in c.rows]
        where = f"; full report in {report}" if report else ""
        lines.append(f"Fix or drop these rows in the input data (or adjust params `validate`) and rerun{where}.")
        raise FlipgateError("\n".join(lines))


def normalised_texts(s: pd.Series) -> pd.Series:
    """Each text as flipgate.text.normalise_text makes it (missing ones stay missing): the key for leakage
    checks, the same sameness as the old-logit cache's."""
    return s.astype("string").map(normalise_text, na_action="ignore")


def label_shares(labels: pd.Series, keep: Collection | None = None) -> dict:
    """Share of each label (nulls dropped); with `keep`, only those labels, renormalised."""
    labels = labels.dropna()
    if keep is not None:
        labels = labels[labels.isin(list(keep))]
    shares = labels.value_counts(normalize=True).sort_index()
    return {_plain(k): float(v) for k, v in shares.items()}


def total_variation(p: Mapping, q: Mapping) -> float:
    """Total variation distance 0.5 * sum |p - q| over the union of keys (0 = same, 1 = disjoint)."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def validate_update(
    old: pd.DataFrame,
    new: pd.DataFrame,
    regression: pd.DataFrame,
    *,
    dev: pd.DataFrame,
    old_labels: Collection,
    added_labels: Collection = (),
    scenario: Scenario = "data_update",
    min_chars: int = 1,
    max_chars: int = 2000,
    drift_threshold: float = 0.2,
    leakage: Literal["fail", "warn"] = "fail",
    names: Mapping[str, str] | None = None,
) -> ValidationResult:
    """Run the suite on the four splits. Labels may be class ids or raw names (any hashable).

    Allowed labels: D_old always `old_labels`; D_new and D_reg also `added_labels` when
    `scenario == "add_classes"` (D_reg may hold the added classes: old cannot be right on them, so
    they never count as negative flips). `leakage="warn"` downgrades the shared-text check to a
    warning (GX severity), for published splits that cannot be changed. `names` maps role -> file
    name for messages.
    """
    names = {role: (names or {}).get(role, role) for role in ROLES}
    frames = {"old": old, "new": new, "dev": dev, "regression": regression}
    allowed_new = [*old_labels, *added_labels] if scenario == "add_classes" else list(old_labels)
    allowed = {"old": list(old_labels), "new": allowed_new, "dev": allowed_new, "regression": allowed_new}
    derived = _cross_file_columns(frames)
    params = {"scenario": scenario, "min_chars": min_chars, "max_chars": max_chars, "drift_threshold": drift_threshold,
              "leakage": leakage, "allowed_labels": {r: [_plain(v) for v in allowed[r]] for r in ROLES}}

    context = _context()
    checks: list[ExpectationResult] = []
    for role in ROLES:
        frame = frames[role].reset_index(drop=True)  # GX reports positional row indices
        for col, values in derived[role].items():
            frame[col] = values
        specs = _expectations(frame, allowed[role], min_chars, max_chars, leakage, names)
        checks += _run_suite(context, role, names[role], frame, specs)

    checks += _dev_not_regression(frames, names)
    warnings = [f"{c.summary()}; kept as a warning" for c in checks if not c.success and c.severity == "warning"]
    drift, drift_warnings = _drift(old, new, old_labels, scenario, drift_threshold, names)
    checks += drift
    warnings += drift_warnings
    if scenario == "add_classes" and added_labels and "label" in new and not new["label"].isin(list(added_labels)).any():
        warnings.append(f"{names['new']}: scenario add_classes but no example of the added classes {list(added_labels)}")
    for w in warnings:
        log.warning(w)
    result = ValidationResult(files=names, checks=checks, warnings=warnings, params=params)
    log.info("validation: %d check(s), %d failed, %d warning(s)", len(checks), len(result.failures), len(warnings))
    return result


def _context():
    """A fresh in-memory GX context with progress bars and chatty logging off."""
    # GX pins this one module's logger to INFO, so quieting the package logger is not enough.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _cross_file_columns(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, pd.Series]]:
    """Boolean columns for the cross-file checks; a check is left out when its columns are missing."""
    out: dict[str, dict[str, pd.Series]] = {role: {} for role in ROLES}
    old, new, reg = frames["old"], frames["new"], frames["regression"]
    if "id" in old and "id" in new:
        out["new"]["id_in_old"] = new["id"].isin(old["id"].dropna()).to_numpy()
    if "text" in reg:
        reg_texts = normalised_texts(reg["text"]).dropna()
        for role in ("old", "new", "dev"):
            if "text" in frames[role]:
                leaked = normalised_texts(frames[role]["text"]).isin(reg_texts)
                out[role]["in_regression"] = leaked.fillna(False).to_numpy(dtype=bool)
    train_texts = [normalised_texts(frames[r]["text"]).dropna() for r in ("old", "new") if "text" in frames[r]]
    if "text" in frames["dev"] and train_texts:
        out["dev"]["in_training"] = normalised_texts(frames["dev"]["text"]).isin(pd.concat(train_texts)).fillna(False).to_numpy(dtype=bool)
    return out


def _dev_not_regression(frames: dict[str, pd.DataFrame], names: Mapping[str, str]) -> list[ExpectationResult]:
    """Dev must not be (mostly) the regression set, whatever `leakage` allows: it would choose what it then judges."""
    dev, reg = frames["dev"], frames["regression"]
    if "text" not in dev or "text" not in reg or len(dev) == 0:
        return []
    share = float(normalised_texts(dev["text"]).isin(normalised_texts(reg["text"]).dropna()).mean())
    return [ExpectationResult(
        file=names["dev"], expectation="dev_is_not_the_regression_set", column="text", source="flipgate",
        description=f"at most {DEV_IS_REGRESSION:.0%} of dev's texts in the regression set {names['regression']} "
                    "(dev chooses alpha and the candidate; the regression set must judge them on other examples)",
        success=share <= DEV_IS_REGRESSION, kwargs={"max_share": DEV_IS_REGRESSION}, observed={"share": round(share, 4)},
    )]


def _expectations(frame: pd.DataFrame, allowed: list, min_chars: int, max_chars: int, leakage: str,
                  names: Mapping[str, str]) -> list:
    """The suite for one file, built for the columns it actually has."""
    specs: list = [gxe.ExpectTableRowCountToBeBetween(min_value=1, description="the file has rows")]
    specs += [gxe.ExpectColumnToExist(column=c, description="required column") for c in REQUIRED_COLUMNS]
    present = [c for c in REQUIRED_COLUMNS if c in frame]
    specs += [gxe.ExpectColumnValuesToNotBeNull(column=c, description="no missing values") for c in present]
    if "id" in frame:
        specs.append(gxe.ExpectColumnValuesToBeUnique(column="id", description="ids unique within the file"))
    if "text" in frame:
        specs.append(gxe.ExpectColumnValuesToNotMatchRegex(
            column="text", regex=r"^\s*$", description="text not empty or blank"))
        specs.append(gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=min_chars, max_value=max_chars,
            description=f"text length in [{min_chars}, {max_chars}] characters"))
    if "label" in frame:
        # In-set ignores nulls; the not-null check above covers them.
        specs.append(gxe.ExpectColumnValuesToBeInSet(
            column="label", value_set=allowed, description=f"labels in the allowed set {[_plain(v) for v in allowed]}"))
    if "id_in_old" in frame:
        specs.append(gxe.ExpectColumnValuesToBeInSet(
            column="id_in_old", value_set=[False], description=f"ids unique across {names['old']} and {names['new']}"))
    if "in_regression" in frame:
        specs.append(gxe.ExpectColumnValuesToBeInSet(
            column="in_regression", value_set=[False], severity="warning" if leakage == "warn" else "critical",
            description=f"text not shared with the regression set {names['regression']} (leakage)"))
    if "in_training" in frame:
        specs.append(gxe.ExpectColumnValuesToBeInSet(
            column="in_training", value_set=[False], severity="warning" if leakage == "warn" else "critical",
            description=f"text not shared with the training data {names['old']}, {names['new']} (leakage)"))
    return specs


def _run_suite(context, role: str, name: str, frame: pd.DataFrame, specs: list) -> list[ExpectationResult]:
    """Validate one frame against its suite; results come back in suite order."""
    for i, spec in enumerate(specs):
        spec.meta = {"order": i}
    suite = gx.ExpectationSuite(name=f"flipgate_{role}", expectations=specs)
    source = context.data_sources.add_pandas(f"flipgate_{role}")
    batch_def = source.add_dataframe_asset(role).add_batch_definition_whole_dataframe("whole")
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    results = batch.validate(suite, result_format=RESULT_FORMAT).results
    return [_to_check(name, frame, r) for r in sorted(results, key=lambda r: r.expectation_config.meta["order"])]


def _to_check(name: str, frame: pd.DataFrame, r) -> ExpectationResult:
    cfg = r.expectation_config
    kwargs = {k: _plain(v) for k, v in cfg.kwargs.items() if k not in ("batch_id", "column")}
    res = r.result or {}
    observed: dict = {}
    rows: list[dict] = []
    if "unexpected_count" in res:
        observed = {k: _plain(res[k]) for k in ("element_count", "unexpected_count", "unexpected_percent") if k in res}
        observed["unexpected_values"] = [_plain(v) for v in res.get("partial_unexpected_list", [])]
        rows = _rows(frame, res.get("partial_unexpected_index_list") or [])
    elif "observed_value" in res:
        observed = {"observed_value": _plain(res["observed_value"])}
    elif cfg.type == "expect_column_to_exist":
        observed = {"columns": [str(c) for c in frame.columns]}
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed["error"] = r.exception_info.get("exception_message")
    severity = "critical" if cfg.severity == "critical" else "warning"  # GX also has "info": treat as warning
    return ExpectationResult(file=name, expectation=cfg.type, column=cfg.kwargs.get("column"),
                             description=cfg.description or "", success=bool(r.success), severity=severity,
                             kwargs=kwargs, observed=observed, rows=rows)


def _rows(frame: pd.DataFrame, index: list) -> list[dict]:
    cols = [c for c in ("id", "text") if c in frame]
    rows = []
    for i in index[:MAX_ROWS]:
        row = {c: _plain(frame.at[i, c]) for c in cols}
        if isinstance(row.get("text"), str) and len(row["text"]) > MAX_TEXT:
            row["text"] = row["text"][:MAX_TEXT] + "..."
        rows.append(row)
    return rows


def _drift(old, new, old_labels, scenario: Scenario, threshold: float, names) -> tuple[list[ExpectationResult], list[str]]:
    if "label" not in old or "label" not in new:
        return [], []  # the missing column already fails
    keep = list(old_labels) if scenario == "add_classes" else None
    p, q = label_shares(old["label"], keep), label_shares(new["label"], keep)
    if not p or not q:
        return [], [f"class-balance drift not measured: {names['old'] if not p else names['new']} has no labels to compare"]
    tvd = total_variation(p, q)
    ok = tvd <= threshold
    scope = " (old classes only)" if keep is not None else ""
    check = ExpectationResult(
        file=names["new"], expectation="class_balance_drift", column="label", severity="warning", source="flipgate",
        description=f"label shares of {names['new']} vs {names['old']}, total variation distance <= {threshold}{scope}",
        success=ok, kwargs={"threshold": threshold}, observed={"tvd": round(tvd, 4), "old": p, "new": q},
    )
    if ok:
        return [check], []
    return [check], [f"{names['new']}: class balance drifted from {names['old']}: total variation distance "
                     f"{tvd:.3f} > {threshold} (shares old {_fmt(p)}, new {_fmt(q)}){scope}; training continues"]


def _fmt(shares: Mapping) -> str:
    return "{" + ", ".join(f"{k}: {v:.2f}" for k, v in shares.items()) + "}"


def _plain(v: object) -> object:
    """JSON-safe scalars: numpy -> python, NaN/NA -> None."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if hasattr(v, "item") else v


# ---- reports ----

def write_reports(result: ValidationResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write validation.json and validation.md atomically; return their paths."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "validation.json", out_dir / "validation.md"
    write_json(result.as_dict(), json_path)
    with atomic_path(md_path, folder=False) as tmp:
        tmp.write_text(render_markdown(result))
    return json_path, md_path


def render_markdown(result: ValidationResult) -> str:
    verdict = "PASSED" if result.success else f"FAILED ({len(result.failures)} check(s))"
    lines = [f"# Data validation: {verdict}", ""]
    if result.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in result.warnings] + [""]
    for role, name in result.files.items():
        lines += [f"## {role}: `{name}`", "", "| check | column | result | observed |", "|---|---|---|---|"]
        for c in (c for c in result.checks if c.file == name):
            mark = "ok" if c.success else ("WARN" if c.severity == "warning" else "FAIL")
            lines.append(f"| {c.description} | {c.column or ''} | {mark} | {_md(_observed_text(c))} |")
        lines.append("")
        for c in (c for c in result.checks if c.file == name and c.rows and not c.success):
            lines += [f"Offending rows for *{c.description}*:", ""]
            lines += [f"- {md_code(r.get('id'))}: {md_text(repr(r.get('text')))}" for r in c.rows] + [""]
    return "\n".join(lines)


def _observed_text(c: ExpectationResult) -> str:
    obs = c.observed
    if "unexpected_count" in obs:
        text = f"{obs['unexpected_count']} of {obs['element_count']} rows unexpected"
        if obs["unexpected_count"] and c.column not in ("id_in_old", "in_regression"):
            text += f", e.g. {obs['unexpected_values']}"
        return text
    if "tvd" in obs:
        return f"TVD {obs['tvd']}; old {_fmt(obs['old'])}, new {_fmt(obs['new'])}"
    if "observed_value" in obs:
        return f"{obs['observed_value']} rows"
    if not c.success and "columns" in obs:
        return f"columns present: {obs['columns']}"
    return ""


def _md(v: object) -> str:
    return "" if v in (None, {}) else no_mentions(str(v).replace("|", "\\|").replace("\n", " "))
