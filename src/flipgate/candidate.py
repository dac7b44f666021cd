"""Pick the candidate to gate on dev, by the rule BCWI's alpha uses (flipgate.mitigation.selection_rule): by
default the most accurate candidate whose dev NFR is within the gate's budget with dev's margin.

With no admissible candidate the safest one (lowest dev NFR) is returned with `admissible: false`: the
gate then rejects it and the champion stays, instead of shipping the most accurate, most regressive model.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.errors import FlipgateError
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.selection_rule import Options, Rule, choose, rule_for
from flipgate.predictions import read_predictions

if TYPE_CHECKING:
    from flipgate.params import Gate, Select

log = logging.getLogger(__name__)


def select_candidate(pred_root: Path, model_root: Path, out: Path, select: Select, gate: Gate,
                     report: Path = Path("reports/select.json")) -> dict:
    """The select stage: choose the candidate on dev (`select` params, the gate's budget), copy its
    predictions to `out` ({dev,regression}.parquet) with candidate.json (the choice and its model folder
    under `model_root`), and write the choice to `report`. Returns the choice."""
    rule, _ = rule_for(select, gate, read_predictions(pred_root / select.reference / "dev.parquet"))
    result = choose_candidate(pred_root, select.candidates, select.reference, rule)
    name = result["candidate"]
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        for split in ("dev", "regression"):
            shutil.copyfile(pred_root / name / f"{split}.parquet", tmp / f"{split}.parquet")
        write_json({**result, "model_dir": str(model_root / name)}, tmp / "candidate.json")
    write_json(result, report)
    say = log.info if result["admissible"] else log.warning
    say("candidate: %s, chosen in %.0f%% of dev resamples (%s)", name, 100 * result["stability"], result["reason"])
    return result


def choose_candidate(pred_root: Path, candidates: list[str], reference: str, rule: Rule) -> dict:
    """Dev figures only. Candidates without predictions are skipped (and listed as such)."""
    old = read_predictions(pred_root / "old" / "dev.parquet")
    ref = read_predictions(pred_root / reference / "dev.parquet")
    tables, missing = {}, []
    for name in candidates:
        path = pred_root / name / "dev.parquet"
        if not path.exists():
            missing.append(name)
            continue
        tables[name] = read_predictions(path)
    if not tables:
        raise FlipgateError(f"select.candidates: none of {candidates} has predictions under {pred_root}")
    options = Options.from_tables(tables, old, ref, where=str(pred_root / "*" / "dev.parquet"))
    choice = choose(options, rule)
    figures = {k: {"accuracy": float(options.correct[:, i].mean()), "nfr": float(options.flips[:, i].mean())}
               for i, k in enumerate(options.keys)}
    return {"candidate": choice.key, "admissible": choice.admissible, "reason": choice.reason,
            "stability": choice.stability, "distribution": choice.as_dict()["distribution"], "rule": choice.rule,
            "reference": reference, "reference_dev_accuracy": float(options.ref_correct.mean()),
            "old_dev_accuracy": float(options.old_correct.mean()), "dev": figures, "skipped": missing}
