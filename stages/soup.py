"""Stage `soup`: SoupBCWI's soup, new models from k seeds (models/new is one) averaged into one.

Usage: python stages/soup.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/{old,new}; writes the averaged model to its models/soup, or only models/soup/off.json
when bcwi.variants has no `soup`. Members: new (the run's seed) and k - 1 more from seeds seed+1 ... seed+k-1.
"""

import sys

from flipgate import stage
from flipgate.data import update
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.soup import train_soup
from flipgate.models.classifier import save_classifier
from flipgate.models.device import get_device
from flipgate.models.train import TrainConfig
from flipgate.params import load_section


def main() -> None:
    data_dir = sys.argv[1]
    run = stage.current()
    old_dir, new_dir, out = run.models / "old", run.models / "new", run.models / "soup"
    base, bcwi, hp = load_section("base"), load_section("bcwi"), load_section("train_new")
    if "soup" not in bcwi.variants:
        with atomic_path(out, folder=True) as tmp:
            tmp.mkdir()
            write_json({"soup": "off", "why": "bcwi.variants has no soup"}, tmp / "off.json")
        return
    labels, _ = update.load_labels(data_dir)
    cfg = TrainConfig.from_schedule(hp, base.max_length, run.seed)  # new's schedule, for every member
    model, tok = train_soup(old_dir, new_dir, labels, update.load_split(data_dir, "updated"),
                            update.load_split(data_dir, "dev"), cfg, bcwi.soup_k, get_device(base.device),
                            base.eval_batch_size)
    seeds = [run.seed + i for i in range(bcwi.soup_k)]
    save_classifier(model, tok, out, {"role": "soup", "k": bcwi.soup_k, "seeds": seeds})


if __name__ == "__main__":
    stage.run("soup", main, sections=("base", "bcwi", "train_new"), metrics=(), artifacts=())
