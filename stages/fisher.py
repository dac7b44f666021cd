"""Stage `fisher`: the old model's diagonal Fisher information on D_old (for FisherBCWI).

Usage: python stages/fisher.py DATA_DIR [--run seeds/<seed> --seed <seed>]
Reads the run's models/old; writes its models/fisher/fisher.safetensors, or only models/fisher/off.json
when bcwi.variants has no `fisher`.
"""

import sys

from safetensors.torch import save_file

from flipgate import stage
from flipgate.data import update
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.fisher import diagonal_fisher
from flipgate.models.classifier import load_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.params import load_section


def main() -> None:
    data_dir = sys.argv[1]
    run = stage.current()
    old_dir, out = run.models / "old", run.models / "fisher"
    base, bcwi = load_section("base"), load_section("bcwi")
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        if "fisher" not in bcwi.variants:
            write_json({"fisher": "off", "why": "bcwi.variants has no fisher"}, tmp / "off.json")
            return
        set_seed(run.seed)
        d_old = update.load_split(data_dir, "old")
        if len(d_old) > bcwi.fisher_max_examples:
            d_old = d_old.sample(n=bcwi.fisher_max_examples, random_state=run.seed)
        model, tok = load_classifier(old_dir)
        fisher = diagonal_fisher(model, tok, d_old["text"].tolist(), d_old["label"].to_numpy(),
                                 get_device(base.device), base.max_length)
        save_file({k: v.contiguous() for k, v in fisher.items()}, str(tmp / "fisher.safetensors"))
        write_json({"fisher": "on", "examples": len(d_old)}, tmp / "info.json")


if __name__ == "__main__":
    stage.run("fisher", main, sections=("base", "bcwi"), metrics=(), artifacts=())
