"""The report's layout: its sections, tables and prose as a `Document` (flipgate.report.document), from the
inputs and the drawn PNGs. Rendering the document as markdown or HTML is document.py's and html.py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.io import read_json
from flipgate.metrics.intervals import mcnemar_exact, wilson
from flipgate.report import aggregate
from flipgate.report.document import Block, Document, Image, Section, Table
from flipgate.report.figures import class_nfr, focus_models
from flipgate.report.inputs import BASELINE, Inputs, read_optional, train_reports

TEXT_CHARS = 200  # a flipped example's text is cut here in the tables (the ledger keeps it whole)
WORST_CLASSES = 10


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


def _warnings(inputs: Inputs) -> list[str]:
    """The report's first lines: stale figures and models not fit to judge, with what to do."""
    from flipgate.models.fit import unfit_line
    from flipgate.params_file import read_params
    from flipgate.provenance import describe, stale_reasons

    lines = []
    metrics = read_optional(inputs.locate("metrics.json")) or {}
    if Path("params.yaml").is_file():
        lines += [f"**STALE**: {r}" for r in stale_reasons(metrics.get("provenance"), inputs.data, read_params())]
    for role, rec in train_reports(inputs).items():
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
    gate = read_optional(inputs.locate("gate.json"))
    if gate:
        verdict = str(gate.get("verdict", "?")).upper()
        blocks.append(f"Gate verdict for `{gate.get('candidate', 'the candidate')}`: {verdict}.")
        checks = [[c["name"], c["verdict"], _num(c.get("observed")), c["op"], _num(c["threshold"])]
                  for c in gate.get("checks") or []]
        if checks:
            blocks.append(Table(["check", "verdict", "observed", "op", "threshold"], checks, left_columns=2))
    times = (read_optional(inputs.locate("metrics.json")) or {}).get("wall_time_s")
    if times:
        blocks.append("Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
                      + f"; total {sum(times.values()):.0f} s.")
    return Section("Overview", blocks)


def _num(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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
    summary = inputs.locate("bcwi.json")
    skipped = read_json(summary).get("skipped") if summary.exists() else None
    if skipped:
        return Section("BCWI alpha curve", [f"BCWI skipped: {skipped}."])
    png = pngs.get("bcwi_curve.png")
    if not png:
        return Section("BCWI alpha curve", [f"No {inputs.locate('bcwi_curve.png')}: run the bcwi stage to draw it."])
    blocks: list[Block] = [Image("plots/bcwi_curve.png", png, "BCWI alpha curve"),
                           "Accuracy and NFR against alpha (0 = new, 1 = old); alpha is chosen on dev."]
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
    reports = train_reports(inputs)
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
    focus = focus_models(inputs)
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
    per = {m: class_nfr(inputs.ledger, m, k) for m in focus}
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
