"""Build the report from predictions alone: reports/report.md, reports/report.html (self-contained),
reports/flips.parquet (the flip ledger), reports/plots/*.png and the tables DVC plots draws
(plots/bcwi_curve.csv, plots/per_class_nfr.csv). No model is run.

Reads predictions/<model>/{dev,regression}.parquet for every model folder, the update's labels.json
and regression.parquet (texts, label names) and, when present, the pipeline's reports/{metrics.json
(wall times), gate.json, select.json (the selected candidate), bcwi_curve.png (copied into plots/)}.
With run folders of several seeds it also renders their mean +- std table and writes seeds.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError
from flipgate.evaluate import PARTS, evaluate
from flipgate.io import atomic_path, read_json, write_json, write_parquet
from flipgate.metrics.flips import per_class_nfr
from flipgate.metrics.intervals import mcnemar_exact, wilson
from flipgate.report import aggregate
from flipgate.report.document import Block, Document, Image, Section, Table, to_markdown
from flipgate.report.html import to_html
from flipgate.report.ledger import flip_ledger, read_regression
from flipgate.report.plots import epoch_curves_png, flip_matrix_png, per_class_nfr_png

log = logging.getLogger(__name__)

BASELINE, REFERENCE = "old", "new"
MODEL_ORDER = ("old", "target", "new", "bcwi", "gated_fusion", "ensemble_prob", "ensemble_logit")
TEXT_CHARS = 200  # a flipped example's text is cut here in the tables (the ledger keeps it whole)
WORST_CLASSES = 10


@dataclass(frozen=True)
class Inputs:
    """Everything the report is made of, read once."""

    models: dict[str, Path]
    names: list[str]
    metrics: dict  # evaluate()'s output: {"dev": {model: row}, "regression": {...}}
    ledger: pd.DataFrame
    candidate: str | None
    context: tuple[Path, ...]  # the pipeline's reports folders these predictions belong to; only read
    level: float = 0.95
    runs: list[dict] = field(default_factory=list)
    data: Path = Path("data/update")

    def locate(self, name: str) -> Path:
        """The first context folder's `name` that exists (else the first folder's, for messages)."""
        for folder in self.context:
            if (folder / name).is_file():
                return folder / name
        return self.context[0] / name


def _model_key(name: str) -> tuple[int, str]:
    for i, known in enumerate(MODEL_ORDER):
        if name == known or name.startswith(known + "_"):
            return i, name
    return len(MODEL_ORDER), name


def discover_models(pred_root: Path) -> dict[str, Path]:
    """Model folders holding both dev.parquet and regression.parquet, old/target/new first."""
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        raise FlipgateError(f"{pred_root}: predictions folder not found; pass --predictions (default: predictions)")
    found = {}
    for folder in sorted(p for p in pred_root.iterdir() if p.is_dir()):
        if (folder / "dev.parquet").is_file() and (folder / "regression.parquet").is_file():
            found[folder.name] = folder
        else:
            log.warning("%s: no dev.parquet and regression.parquet; left out of the report", folder)
    if BASELINE not in found:
        raise FlipgateError(f"{pred_root}: no {BASELINE}/ predictions; the report compares every model with old's")
    return dict(sorted(found.items(), key=lambda kv: _model_key(kv[0])))


def read_labels(data_dir: Path) -> tuple[list[str], int | None]:
    """(label names in id order, how many old knew, or None when the update added no class)."""
    path = Path(data_dir) / "labels.json"
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise FlipgateError(f"{path}: expected {{\"labels\": [names in id order], ...}}; rerun the update stage")
    names = [str(n) for n in meta["labels"]]
    num_old = meta.get("num_old_labels")
    return names, (int(num_old) if isinstance(num_old, int) and 0 < num_old < len(names) else None)


def find_candidate(folders: Sequence[Path], models: dict[str, Path]) -> str | None:
    """The selected candidate: gate.json's, else select.json's; None when neither names a present model."""
    for path in (folder / name for name in ("gate.json", "select.json") for folder in folders):
        if path.is_file():
            chosen = read_json(path).get("candidate")
            if chosen in models:
                return chosen
            if chosen:
                log.warning("%s: candidate %r has no predictions here; no candidate in the report", path, chosen)
    return None


def flip_matrix(old_pred, pred, num_classes: int) -> np.ndarray:
    """Counts of (old's prediction, the model's prediction) pairs; shape (num_classes, num_classes)."""
    old_pred, pred = np.asarray(old_pred, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    flat = np.bincount(old_pred * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}"  # scientific notation below 1e-4 (no "<": it would need escaping in markdown)


def comparison_table(rows: dict[str, dict], level: float) -> Table:
    """One row per model (regression set): rates in %, NFR with its Wilson interval, McNemar's p."""
    header = ["model", "acc %", f"NFR % [{level:.0%} Wilson]", "NFI %", "PFR %", "fix %", "new-fault %",
              "neg flips", "pos flips", "McNemar p"]
    out = []
    for name, r in rows.items():
        ci = wilson(r["negative_flips"], r["n"], level)
        nfr = f"{_pct(r['nfr'])} [{_pct(ci.low)}, {_pct(ci.high)}]"
        test = mcnemar_exact(r["negative_flips"], r["positive_flips"])
        out.append([name, _pct(r["accuracy"]), nfr, _pct(r["nfi"]), _pct(r["pfr"]), _pct(r.get("fix_rate")),
                    _pct(r.get("new_fault_rate")), str(r["negative_flips"]), str(r["positive_flips"]),
                    _p(test.p_value)])
    return Table(header, out)


def seeds_table(agg: dict[str, dict]) -> Table:
    """Mean ± std (in %) per model over seeds."""
    header = ["model", "seeds", "acc %", "NFR %", "NFI %", "PFR %", "fix %", "new-fault %"]
    out = []
    for name, entry in agg.items():
        cells = [name, str(entry["seeds"])]
        for metric in aggregate.METRICS:
            s = entry.get(metric)
            cells.append("" if s is None else f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}")
        out.append(cells)
    return Table(header, out, left_columns=1)


def _name(names: list[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def top_flips_table(ledger: pd.DataFrame, model: str, names: list[str], top: int) -> Table:
    """The model's negative flips that old was most confident about."""
    flips = ledger[(ledger["model"] == model) & (ledger["flip"] == "negative")]
    flips = flips.sort_values("old_confidence", ascending=False, kind="stable", na_position="last").head(top)
    rows = []
    for r in flips.itertuples(index=False):
        text = str(r.text) if len(str(r.text)) <= TEXT_CHARS else str(r.text)[: TEXT_CHARS - 1] + "…"
        rows.append([str(r.id), text, _name(names, r.label), f"{_name(names, r.old_pred)} ({r.old_confidence:.2f})",
                     f"{_name(names, r.pred)} ({r.confidence:.2f})"])
    return Table(["id", "text", "label", "old (confidence)", f"{model} (confidence)"], rows, left_columns=5,
                 id_columns=(0,))


def _focus(inputs: Inputs) -> list[str]:
    """The models the plots and flip lists show: new and the selected candidate."""
    return [m for m in dict.fromkeys([REFERENCE, inputs.candidate]) if m and m in inputs.models and m != BASELINE]


def _class_nfr(ledger: pd.DataFrame, model: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    sub = ledger[ledger["model"] == model]
    per = per_class_nfr(sub["label"], sub["old_pred"], sub["pred"], num_classes=k)
    n = np.array([per.get(c, {}).get("n", 0) for c in range(k)])
    return n, np.array([per.get(c, {}).get("nfr", 0.0) for c in range(k)])


def make_plots(inputs: Inputs) -> dict[str, bytes]:
    """{file name under plots/: PNG bytes}: a flip matrix per focus model, one per-class NFR plot and the
    BCWI curve when the bcwi stage drew one."""
    k, pngs = len(inputs.names), {}
    for model in _focus(inputs):
        sub = inputs.ledger[inputs.ledger["model"] == model]
        m = flip_matrix(sub["old_pred"], sub["pred"], k)
        off = int(m.sum() - np.trace(m))
        pngs[f"flip_matrix_{model}.png"] = flip_matrix_png(
            m, inputs.names, f"old vs {model} on the regression set ({off} changed predictions)", model)
    curve = inputs.locate("bcwi_curve.png")  # the bcwi stage's plot, copied so every PNG sits in plots/
    if curve.is_file():
        pngs["bcwi_curve.png"] = curve.read_bytes()
    if _focus(inputs):
        nfr = {model: _class_nfr(inputs.ledger, model, k)[1] for model in _focus(inputs)}
        pngs["per_class_nfr.png"] = per_class_nfr_png(nfr, inputs.names, "NFR per gold class (regression set)")
    curves = {m: r for m, r in _train_reports(inputs).items() if r.get("epoch_curve")}
    if curves:
        pngs["epoch_curves.png"] = epoch_curves_png({m: r["epoch_curve"] for m, r in curves.items()},
                                                    {m: r.get("best_epoch") for m, r in curves.items()})
    return pngs


BCWI_CURVE_CSV, PER_CLASS_CSV = "bcwi_curve.csv", "per_class_nfr.csv"  # plots/ files dvc.yaml declares


def bcwi_curve_frame(curve: dict, variant: str = "plain") -> pd.DataFrame:
    """The bcwi stage's curve (bcwi_curve.json rows: variant, alpha, split, accuracy, nfr, pfr, ...) as one
    row per alpha of `variant`: alpha, accuracy_dev, nfr_dev, pfr_dev, accuracy_regression, ... (a plain
    table DVC plots draws as lines against alpha). Empty when the curve has no row of `variant`."""
    rows = [r for r in curve.get("rows") or [] if isinstance(r, dict) and r.get("variant") == variant]
    if not rows:
        return pd.DataFrame(columns=["alpha"])
    long = pd.DataFrame(rows)
    wide = long.pivot_table(index="alpha", columns="split", values=["accuracy", "nfr", "pfr"], aggfunc="first")
    wide.columns = [f"{metric}_{split}" for metric, split in wide.columns]
    order = [f"{m}_{s}" for s in ("dev", "regression") for m in ("accuracy", "nfr", "pfr")]
    return wide[[c for c in order if c in wide.columns]].reset_index()


def per_class_frame(inputs: Inputs) -> pd.DataFrame:
    """One row per gold class of the regression set: class, n, nfr_new, nfr_candidate (NFR within the
    class of new and of the selected candidate; new's again when there is no other candidate) and
    candidate (its name). No rows without new's predictions."""
    columns = ["class", "n", "nfr_new", "nfr_candidate", "candidate"]
    if REFERENCE not in inputs.models:
        return pd.DataFrame(columns=columns)
    cand = inputs.candidate if inputs.candidate in inputs.models and inputs.candidate != BASELINE else REFERENCE
    k = len(inputs.names)
    n, nfr_new = _class_nfr(inputs.ledger, REFERENCE, k)
    frame = pd.DataFrame({"class": inputs.names, "n": n, "nfr_new": nfr_new,
                          "nfr_candidate": _class_nfr(inputs.ledger, cand, k)[1], "candidate": cand})
    return frame.loc[frame["n"] > 0, columns].reset_index(drop=True)


def plot_data(inputs: Inputs) -> dict[str, bytes]:
    """{file name under plots/: CSV bytes}: the BCWI curve (when the bcwi stage wrote bcwi_curve.json) and
    per-class NFR, the tables `dvc plots show` / `dvc plots diff` draw (dvc.yaml `plots`)."""
    out = {PER_CLASS_CSV: per_class_frame(inputs).to_csv(index=False).encode()}
    curve = inputs.locate("bcwi_curve.json")
    if curve.is_file():
        record = read_json(curve)
        if not isinstance(record, dict):
            raise FlipgateError(f"{curve}: expected {{\"rows\": [...]}} as the bcwi stage writes it")
        out[BCWI_CURVE_CSV] = bcwi_curve_frame(record).to_csv(index=False).encode()
    return out


def _train_reports(inputs: Inputs) -> dict[str, dict]:
    """role -> train report (train/<role>.json; Gated Fusion's new from gated_fusion.json) of the first
    context folder that has them."""
    out: dict[str, dict] = {}
    for role in ("old", "target", "new"):
        rec = _read_optional(inputs.locate(f"train/{role}.json"))
        if rec:
            out[role] = rec
    gf = _read_optional(inputs.locate("gated_fusion.json"))
    if gf and (gf.get("train") or {}).get("epoch_curve"):
        out["gated_fusion (its new)"] = {"epoch_curve": gf["train"]["epoch_curve"],
                                         "best_epoch": gf["train"].get("new_best_epoch")}
    return out


def _warnings(inputs: Inputs) -> list[str]:
    """The report's first lines: stale figures and models not fit to judge, with what to do."""
    from flipgate.models.fit import unfit_line
    from flipgate.params import read_params
    from flipgate.provenance import describe, stale_reasons

    lines = []
    metrics = _read_optional(inputs.locate("metrics.json")) or {}
    if Path("params.yaml").is_file():
        lines += [f"**STALE**: {r}" for r in stale_reasons(metrics.get("provenance"), inputs.data, read_params())]
    for role, rec in _train_reports(inputs).items():
        fit = rec.get("fit")
        if fit and not fit.get("fit", True):
            lines.append(f"**Not fit to judge**: {unfit_line(role, fit)}")
    if metrics.get("provenance"):
        lines.append(describe(metrics["provenance"]) + ".")
    return lines


def _overview(inputs: Inputs) -> Section:
    reg = inputs.metrics["regression"]
    n = next(iter(reg.values()))["n"]
    models = ", ".join(f"`{m}`" for m in inputs.models)
    blocks: list[Block] = [*_warnings(inputs),
        f"Regression set: {n:,} examples, {len(inputs.names)} classes. Models: {models} (predictions in "
        f"`{inputs.models[BASELINE].parent}`). Every model is compared with `old`, the model in production.",
        f"Selected candidate: `{inputs.candidate}`." if inputs.candidate else
        f"No selected candidate in {inputs.context[0]}/gate.json or select.json; the plots show `new`.",
    ]
    gate = _read_optional(inputs.locate("gate.json"))
    if gate:
        verdict = str(gate.get("verdict", "?")).upper()
        blocks.append(f"Gate verdict for `{gate.get('candidate', 'the candidate')}`: {verdict}.")
        checks = [[c["name"], c["verdict"], _num(c.get("observed")), c["op"], _num(c["threshold"])]
                  for c in gate.get("checks") or []]
        if checks:
            blocks.append(Table(["check", "verdict", "observed", "op", "threshold"], checks, left_columns=2))
    times = (_read_optional(inputs.locate("metrics.json")) or {}).get("wall_time_s")
    if times:
        blocks.append("Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
                      + f"; total {sum(times.values()):.0f} s.")
    return Section("Overview", blocks)


def _num(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _read_optional(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except FlipgateError as exc:
        log.warning("%s", exc)
        return None
    return data if isinstance(data, dict) else None


def _comparison(inputs: Inputs) -> Section:
    title = "This run on the regression set" if inputs.runs else "Comparison on the regression set"
    return Section(title, [
        comparison_table(inputs.metrics["regression"], inputs.level),
        "Rates in % of the regression set (NFI: of the model's errors). A negative flip: old right, the model "
        "wrong; a positive flip: the reverse. Fix and new-fault rates are against `new`'s negative flips. "
        "McNemar p: exact two-sided test that negative and positive flips are equally likely (small p: the "
        "model's accuracy differs from old's beyond chance).",
    ])


def _parts(inputs: Inputs) -> Section | None:
    """The update added classes: the regression set's examples of old's classes and of the added ones."""
    if "regression_old_labels" not in inputs.metrics:
        return None
    blocks: list[Block] = []
    for part, what in (("regression_old_labels", "classes old knew"), ("regression_new_labels", "added classes")):
        rows = inputs.metrics.get(part)
        if rows:
            n = next(iter(rows.values()))["n"]
            blocks += [f"Examples of the {what} ({n:,}):", comparison_table(rows, inputs.level)]
            if inputs.runs and all(part in run for run in inputs.runs):
                blocks += [f"Mean ± std over {len(inputs.runs)} seeds:", seeds_table(aggregate.aggregate(inputs.runs, part))]
    blocks.append("Old's head has no output for an added class, so NFR there is 0 by construction; accuracy "
                  "says how well the added classes were learnt.")
    return Section("Old and added classes", blocks)


def _seeds(inputs: Inputs) -> Section:
    agg = aggregate.aggregate(inputs.runs)
    blocks: list[Block] = [seeds_table(agg), f"Mean ± sample std over {len(inputs.runs)} run(s) (std 0 for one seed)."]
    wall = aggregate.wall_time(inputs.runs)
    if wall:
        blocks.append(f"Wall time per run: {wall['mean']:.0f} ± {wall['std']:.0f} s.")
    return Section(f"Across seeds ({len(inputs.runs)} runs)", blocks)


def _bcwi(inputs: Inputs, pngs: dict[str, bytes]) -> Section:
    png = pngs.get("bcwi_curve.png")
    if not png:
        return Section("BCWI alpha curve", [f"No {inputs.locate('bcwi_curve.png')}: run the bcwi stage to draw it."])
    blocks: list[Block] = [Image("plots/bcwi_curve.png", png, "BCWI alpha curve"),
                           "Accuracy and NFR against alpha (0 = new, 1 = old); alpha is chosen on dev."]
    summary = inputs.locate("bcwi.json")
    if summary.exists():
        b = read_json(summary)
        sel = b["selected"]
        choice = sel.get("choice") or {}
        sure = ""
        if choice.get("distribution"):
            spread = ", ".join(f"{float(k):.2f}: {100 * v:.0f}%" for k, v in sorted(choice["distribution"].items(),
                                                                                   key=lambda kv: float(kv[0])))
            sure = (f" The same alpha is chosen on {100 * choice['stability']:.0f}% of 1,000 bootstrap resamples of "
                    f"dev (alpha: share of resamples — {spread}).")
        half = b.get("new_dev_ci_halfwidth")
        blocks.append(
            f"Selected: {sel['variant']} alpha {sel['alpha']:.2f} ({sel['reason']})." + sure
            + ("" if sel.get("admissible", True) else " No alpha met the rule: this is the safe fallback.")
            + (f" The 95% interval of new's dev accuracy ({100 * b['new_dev_accuracy']:.2f}%) is ± {100 * half:.2f} "
               "points wide: dev differences smaller than that are noise." if half is not None else "")
        )
    return Section("BCWI alpha curve", blocks)


def _training(inputs: Inputs, pngs: dict[str, bytes]) -> Section:
    reports = _train_reports(inputs)
    rows = []
    for role, r in reports.items():
        curve = r.get("epoch_curve") or []
        fit = r.get("fit") or {}
        rows.append([role, str(r.get("schedule", "")), str(len(curve) or r.get("epochs_run", "")),
                     str(r.get("best_epoch", "")),
                     " ".join(f"{100 * e['dev_accuracy']:.1f}" for e in curve if "dev_accuracy" in e),
                     " ".join(f"{e['train_loss']:.2f}" for e in curve),
                     "" if not fit else ("yes" if fit.get("fit") else "NO: " + ", ".join(fit.get("failed", [])))])
    if not rows:
        return Section("Training", ["No train reports (train/<role>.json) beside these predictions."])
    blocks: list[Block] = [
        Table(["model", "schedule", "epochs", "kept", "dev accuracy % per epoch", "train loss per epoch", "fit"],
              rows, left_columns=1),
        "auto: up to max_epochs, the epoch with the best dev accuracy kept, stopped after `patience` epochs "
        "without improvement. Fit to judge: dev accuracy beats the majority class and chance, the training "
        "loss fell well below ln(classes), and it was no longer falling steeply when training ended."]
    if "epoch_curves.png" in pngs:
        blocks.insert(0, Image("plots/epoch_curves.png", pngs["epoch_curves.png"], "epoch curves"))
    return Section("Training", blocks)


def _flips(inputs: Inputs, pngs: dict[str, bytes], top: int) -> list[Section]:
    focus = _focus(inputs)
    if not focus:
        return [Section("Flips", ["Neither `new` nor a selected candidate has predictions: nothing to plot."])]
    matrices = Section("Flip matrix", [
        "Old's prediction (rows) against the model's (columns), counts on the regression set; off-diagonal "
        "cells are changed predictions."])
    for model in focus:
        name = f"flip_matrix_{model}.png"
        matrices.blocks.append(Image(f"plots/{name}", pngs[name], f"flip matrix {model}"))
    per_class = Section("NFR per class", [Image("plots/per_class_nfr.png", pngs["per_class_nfr.png"], "per-class NFR"),
                                          _worst_classes(inputs, focus)])
    lists = Section(f"Top negative flips (by old's confidence, at most {top} per model)", [])
    for model in focus:
        table = top_flips_table(inputs.ledger, model, inputs.names, top)
        lists.blocks.append(f"`{model}`: {len(table.rows)} shown.")
        lists.blocks.append(table if table.rows else "No negative flips.")
    return [matrices, per_class, lists]


def _worst_classes(inputs: Inputs, focus: list[str]) -> Table:
    k = len(inputs.names)
    per = {m: _class_nfr(inputs.ledger, m, k) for m in focus}
    n = next(iter(per.values()))[0]
    worst = np.max(np.vstack([v[1] for v in per.values()]), axis=0)
    order = [c for c in np.argsort(-worst, kind="stable")[:WORST_CLASSES] if worst[c] > 0]
    rows = [[_name(inputs.names, c), str(int(n[c]))] + [_pct(per[m][1][c]) for m in focus] for c in order]
    return Table(["class", "n"] + [f"NFR % {m}" for m in focus], rows)


def _files(inputs: Inputs) -> Section:
    return Section("Files", [
        f"flips.parquet (beside this report): the flip ledger, {len(inputs.ledger):,} rows (one per regression "
        "example and model other than old): id, text, label, old_pred, old_confidence, pred, confidence, flip "
        "(negative, positive, both_wrong, both_right). Confidence is the softmax maximum of the logits.",
        "Rebuild this report from predictions alone with `flipgate report`.",
    ])


def document(inputs: Inputs, pngs: dict[str, bytes], top: int) -> Document:
    parts = _parts(inputs)
    sections = [_overview(inputs), *([_seeds(inputs)] if inputs.runs else []), _comparison(inputs), *([parts] if parts else [])]
    sections += [_training(inputs, pngs), _bcwi(inputs, pngs), *_flips(inputs, pngs, top), _files(inputs)]
    return Document("flipgate report", sections)


def build_report(predictions: str | Path, data: str | Path, reports: str | Path, runs: list[str | Path] = (),
                 candidate: str | None = None, top: int = 20, level: float = 0.95,
                 context: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Read, compute and write everything into `reports`; returns the paths written.

    `context`: the pipeline's reports folder(s) the predictions belong to, searched in order for
    gate.json, select.json, metrics.json, bcwi.json and bcwi_curve.png (default: `reports` itself).
    Raises FlipgateError on bad input.
    """
    reports = Path(reports)
    context = tuple(Path(c) for c in context) or (reports,)
    models = discover_models(Path(predictions))
    names, num_old = read_labels(Path(data))
    ledger = flip_ledger(models, read_regression(Path(data)), BASELINE)
    seen = [ledger[c].to_numpy(dtype=np.int64).max(initial=-1) for c in ("label", "old_pred", "pred")]
    k = max(len(names), *(int(s) + 1 for s in seen))
    names += [str(c) for c in range(len(names), k)]  # ids past labels.json still get a (numeric) name
    if candidate is not None and candidate not in models:
        raise FlipgateError(f"--candidate {candidate!r}: no {predictions}/{candidate}/ folder; present: {list(models)}")
    inputs = Inputs(models=models, names=names, metrics=evaluate(models, BASELINE, REFERENCE, num_old), ledger=ledger,
                    candidate=candidate or find_candidate(context, models), context=context, level=level,
                    runs=aggregate.load_runs(list(runs)) if runs else [], data=Path(data))
    pngs = make_plots(inputs)
    return write_outputs(inputs, pngs, document(inputs, pngs, top), reports, plot_data(inputs))


def write_outputs(inputs: Inputs, pngs: dict[str, bytes], doc: Document, out: Path,
                  data: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Each artifact atomically; the plots folder (the PNGs and the `data` tables) as a whole, so no stale
    plot survives a rebuild."""
    paths = {"ledger": out / "flips.parquet", "plots": out / "plots", "markdown": out / "report.md",
             "html": out / "report.html"}
    write_parquet(inputs.ledger, paths["ledger"])
    with atomic_path(paths["plots"], folder=True) as tmp:
        tmp.mkdir()
        for name, content in {**pngs, **(data or {})}.items():
            (tmp / name).write_bytes(content)
    for key, text in (("markdown", to_markdown(doc)), ("html", to_html(doc))):
        with atomic_path(paths[key], folder=False) as tmp:
            tmp.write_text(text, encoding="utf-8")
    (out / "seeds.json").unlink(missing_ok=True)  # a table from an earlier, multi-seed run would be stale
    if inputs.runs:
        paths["seeds"] = out / "seeds.json"
        parts = [p for p in PARTS if all(p in run for run in inputs.runs)]
        write_json({"runs": [run["path"] for run in inputs.runs], "regression": aggregate.aggregate(inputs.runs),
                    **{p: aggregate.aggregate(inputs.runs, p) for p in parts}}, paths["seeds"])
    log.info("report written: %s", ", ".join(str(p) for p in paths.values()))
    return paths
