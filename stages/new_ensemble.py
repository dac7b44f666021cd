"""Stage `new_ensemble`: the new models of the first k `seeds` as one ensemble (majority vote and mean
probability), from their predictions tables, scored against the first seed's old and new.

Usage: python stages/new_ensemble.py OUT_DIR
Reads seeds/<s>/predictions/new for the first new_ensemble.k seeds and seeds/<first>/predictions/old; writes
OUT_DIR/{vote,prob}/{dev,regression}.parquet and reports/new_ensemble.json (only `off` when not enabled).

Each member is its own seed's new model, fine-tuned from its own seed's old; the flips are counted against
the first seed's old, which only the first member started from (the papers' members share one old).
"""

import sys
from pathlib import Path

from flipgate import stage
from flipgate.io import atomic_path, write_json, write_parquet
from flipgate.mitigation.ensemble import score
from flipgate.mitigation.new_ensemble import KINDS, ensemble_tables
from flipgate.params import load_section, load_seeds
from flipgate.predictions import align, read_predictions

SPLITS = ("dev", "regression")


def main(run: stage.Run) -> None:
    out = Path(sys.argv[1])
    p, seeds = load_section("new_ensemble"), load_seeds()
    report_path = Path("reports") / "new_ensemble.json"
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        if not p.enabled:
            write_json({"state": "off", "why": "new_ensemble.enabled is false"}, tmp / "off.json")
            write_json({"state": "off"}, report_path)
            return
        members = seeds[: p.k]
        first = Path("seeds") / str(members[0]) / "predictions"
        report: dict = {"k": p.k, "seeds": members, "reference": f"{first}/old",
                        "tie_rule": "most votes; a tie goes to the higher mean probability, then the lower class id"}
        for split in SPLITS:
            tables = {f"seeds/{s}/predictions/new": read_predictions(Path("seeds") / str(s) / "predictions" / "new"
                                                                     / f"{split}.parquet") for s in members}
            old = read_predictions(first / "old" / f"{split}.parquet").reset_index(drop=True)
            new = align(old, next(iter(tables.values())), f"{first}/old/{split}", f"{first}/new/{split}",
                        "rerun train_new")
            for kind in KINDS:
                table = ensemble_tables(kind, tables)
                write_parquet(table, tmp / kind / f"{split}.parquet")
                aligned = align(old, table, f"{first}/old/{split}", f"new_ensemble {kind}", "rerun new_ensemble")
                report.setdefault(kind, {})[split] = score(aligned, old, new)
        write_json(report, report_path)


if __name__ == "__main__":
    stage.run("new_ensemble", main, sections=("new_ensemble",), metrics=("reports/new_ensemble.json",),
              artifacts=("reports/new_ensemble.json",))
