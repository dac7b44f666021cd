"""Build the report from predictions alone: reports/report.md, reports/report.html (self-contained),
reports/flips.parquet (the flip ledger), reports/plots/*.png and the tables DVC plots draws
(plots/bcwi_curve.csv, plots/per_class_nfr.csv). No model is run.

Reads predictions/<model>/{dev,regression}.parquet for every model folder, the update's labels.json
and regression.parquet (texts, label names) and, when present, the pipeline's reports/{metrics.json
(wall times), gate.json, select.json (the selected candidate), bcwi_curve.png (copied into plots/)}.
With run folders of several seeds it also renders their mean +- std table and writes seeds.json.

The jobs are one module each: report/inputs.py finds and reads (and computes the metrics), figures.py
computes what is drawn, layout.py lays the document out; this module puts them together and writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from flipgate.evaluate import PARTS
from flipgate.io import atomic_path, write_json, write_parquet
from flipgate.report import aggregate
from flipgate.report.document import Document, to_markdown
from flipgate.report.figures import make_plots, plot_data
from flipgate.report.html import to_html
from flipgate.report.inputs import Inputs, read_inputs
from flipgate.report.layout import document

log = logging.getLogger(__name__)


def build_report(predictions: str | Path, data: str | Path, reports: str | Path, runs: list[str | Path] = (),
                 candidate: str | None = None, top: int = 20, level: float = 0.95,
                 context: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Read, compute and write everything into `reports`; returns the paths written.

    `context`: the pipeline's reports folder(s) the predictions belong to, searched in order for
    gate.json, select.json, metrics.json, bcwi.json and bcwi_curve.png (default: `reports` itself).
    Raises FlipgateError on bad input.
    """
    reports = Path(reports)
    inputs = read_inputs(predictions, data, reports, runs, candidate, level, context)
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
