"""Stage `fisher`: the old model's diagonal Fisher information on D_old (for FisherBCWI), or only an
`off.json` marker when bcwi.variants has no `fisher` (flipgate.mitigation.fisher does the maths)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flipgate.data import update
from flipgate.io import atomic_path, write_json
from flipgate.mitigation.fisher import diagonal_fisher
from flipgate.models.classifier import load_classifier
from flipgate.models.device import get_device, set_seed

if TYPE_CHECKING:
    from flipgate.params import Base, Bcwi
    from flipgate.stage import Run


def run_stage(run: Run, data_dir: Path, base: Base, bcwi: Bcwi) -> None:
    """Reads the run's models/old and D_old (at most bcwi.fisher_max_examples of it, sampled with the run's
    seed); writes its models/fisher/{fisher.safetensors,info.json}, or models/fisher/off.json."""
    from safetensors.torch import save_file

    out = run.models / "fisher"
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        if "fisher" not in bcwi.variants or base.upgrade:
            why = base.no_weight_mixing or "bcwi.variants has no fisher"
            write_json({"fisher": "off", "why": why}, tmp / "off.json")
            return
        set_seed(run.seed)
        d_old = update.load_split(data_dir, "old")
        if len(d_old) > bcwi.fisher_max_examples:
            d_old = d_old.sample(n=bcwi.fisher_max_examples, random_state=run.seed)
        model, tok = load_classifier(run.models / "old")
        fisher = diagonal_fisher(model, tok, d_old["text"].tolist(), d_old["label"].to_numpy(),
                                 get_device(base.device), base.max_length)
        save_file({k: v.contiguous() for k, v in fisher.items()}, str(tmp / "fisher.safetensors"))
        write_json({"fisher": "on", "examples": len(d_old)}, tmp / "info.json")
