"""Stage `soup`: SoupBCWI's soup, new models from k seeds (models/new is one) averaged into one
(flipgate.mitigation.soup trains and averages), or only an `off.json` marker when bcwi.variants has no `soup`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.data import update
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.soup import train_soup
from flipgate.models.classifier import save_classifier
from flipgate.models.device import get_device
from flipgate.models.train import TrainConfig

if TYPE_CHECKING:
    from flipgate.params import Base, Bcwi, Train
    from flipgate.stage import Run


def run_stage(run: Run, data_dir: Path, base: Base, bcwi: Bcwi, train_new: Train) -> None:
    """Reads the run's models/{old,new}; writes the averaged model to its models/soup. Members: new (the
    run's seed) and k - 1 more trained with new's schedule from seeds seed+1 ... seed+k-1."""
    out = run.models / "soup"
    if "soup" not in bcwi.variants or base.upgrade:
        with atomic_path(out, folder=True) as tmp:
            tmp.mkdir()
            write_json({"soup": "off", "why": base.no_weight_mixing or "bcwi.variants has no soup"}, tmp / "off.json")
        return
    labels, _ = update.load_labels(data_dir)
    cfg = TrainConfig.from_schedule(train_new, base.max_length, run.seed)  # new's schedule, for every member
    model, tok = train_soup(run.models / "old", run.models / "new", labels, update.load_split(data_dir, "updated"),
                            update.load_split(data_dir, "dev"), cfg, bcwi.soup_k, get_device(base.device),
                            base.eval_batch_size)
    seeds = [run.seed + i for i in range(bcwi.soup_k)]
    save_classifier(model, tok, out, {"role": "soup", "k": bcwi.soup_k, "seeds": seeds})
