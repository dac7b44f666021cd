"""The `new_ensemble` stage's body: the new models of the first k seeds as one ensemble (majority vote and
mean probability, flipgate.mitigation.new_ensemble), from their predictions tables, scored against the
first seed's old and new.

Each member is its own seed's new model, fine-tuned from its own seed's old; the flips are counted against
the first seed's old, which only the first member started from (the papers' members share one old).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.io import atomic_path, write_json, write_parquet
from flipgate.mitigation.ensemble import score
from flipgate.mitigation.new_ensemble import KINDS, ensemble_tables
from flipgate.predictions import align, read_predictions

if TYPE_CHECKING:
    from flipgate.params import NewEnsemble

SPLITS = ("dev", "regression")


def run_stage(out: Path, p: NewEnsemble, seeds: list[int], report_path: Path = Path("reports/new_ensemble.json"),
              seeds_root: Path = Path("seeds")) -> None:
    """Reads <seeds_root>/<s>/predictions/new for the first `p.k` seeds and the first seed's
    predictions/old; writes OUT/{vote,prob}/{dev,regression}.parquet and `report_path` (only `off`, and
    OUT/off.json, when not enabled)."""
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        if not p.enabled:
            write_json({"state": "off", "why": "new_ensemble.enabled is false"}, tmp / "off.json")
            write_json({"state": "off"}, report_path)
            return
        members = seeds[: p.k]
        first = seeds_root / str(members[0]) / "predictions"
        report: dict = {"k": p.k, "seeds": members, "reference": f"{first}/old",
                        "tie_rule": "most votes; a tie goes to the higher mean probability, then the lower class id"}
        for split in SPLITS:
            tables = {f"{seeds_root}/{s}/predictions/new": read_predictions(seeds_root / str(s) / "predictions" / "new"
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
