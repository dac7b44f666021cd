"""Stage `soup`: SoupBCWI's soup, new models from k seeds (models/new is one) averaged into one.

Usage: python stages/soup.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/{old,new}; writes the averaged model to its models/soup, or only models/soup/off.json
when bcwi.variants has no `soup`. Members: new (the run's seed) and k - 1 more from seeds seed+1 ... seed+k-1.
"""

import sys
from dataclasses import replace

from flipgate import stage
from flipgate.data import update
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.bcwi import average
from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.models.run import dev_accuracy_hook
from flipgate.models.train import train_classifier
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
    d_upd, dev = update.load_split(data_dir, "updated"), update.load_split(data_dir, "dev")
    device = get_device(base.device)
    model, tok = load_classifier(new_dir, labels)
    members = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    for i in range(1, bcwi.soup_k):
        seed = run.seed + i
        set_seed(seed)
        member, tok = load_classifier(old_dir, labels)
        # train_new's schedule, adaptive on dev as new's (a member starts from old: the noise-tolerant rule)
        cfg = replace(stage.train_config(hp, base.max_length, seed), from_fine_tuned=True)
        stage.log.info("soup member %d/%d (seed %d)", i + 1, bcwi.soup_k, seed)
        hook = dev_accuracy_hook(member, tok, dev, device, base.eval_batch_size, base.max_length)
        train_classifier(member, tok, d_upd["text"].tolist(), d_upd["label"].to_numpy(), cfg, device, hook)
        members.append({k: v.detach().cpu().clone() for k, v in member.state_dict().items()})
    model.load_state_dict(average(members))
    save_classifier(model, tok, out, {"role": "soup", "k": bcwi.soup_k, "seeds": [run.seed + i for i in range(bcwi.soup_k)]})


if __name__ == "__main__":
    stage.run("soup", main, sections=("base", "bcwi", "train_new"), metrics=(), artifacts=())
