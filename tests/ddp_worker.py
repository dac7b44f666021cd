"""Run by tests/test_ddp.py, once alone and once under `accelerate launch` with 2 processes (gloo).

Usage: python ddp_worker.py MODEL_DIR OUT_DIR {classifier|gated_fusion}
classifier: fine_tune on the toy task (adaptive schedule, global batch 16); gated_fusion: Gated Fusion,
heldout and paper variants, new from a fine-tuned old (MODEL_DIR must then be one). Every process writes
OUT_DIR/rank<r>.json: the rows it fed forward per training step (a forward pre-hook) and a fingerprint
of its weights (the processes of a DDP run must end with the same ones); the main process writes the
predictions tables (fine_tune) or predictions of Gated Fusion, as parquet.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from conftest import toy_frame  # noqa: E402
from flipgate.models.device import get_device, is_main_process  # noqa: E402
from flipgate.models.train import TrainConfig  # noqa: E402

GLOBAL_BATCH = 16


def fingerprint(*modules: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def record_batches(model: torch.nn.Module, sizes: list[int]) -> None:
    def hook(module, args, kwargs):
        if module.training:
            sizes.append(int(kwargs["input_ids"].shape[0]))
    model.register_forward_pre_hook(hook, with_kwargs=True)


def watch(module, sizes: list[int]) -> None:
    """Put the batch-size hook on every model `module`'s load_classifier loads (the last: .model)."""
    load = module.load_classifier

    def loading(*a, **k):
        model, tok = load(*a, **k)
        record_batches(model, sizes)
        loading.model = model
        return model, tok

    module.load_classifier = loading


def main() -> None:
    model_dir, out, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    out.mkdir(parents=True, exist_ok=True)
    device = get_device("cpu")
    rank = int(os.environ.get("RANK", "0"))
    train, dev, reg = toy_frame(300, 0), toy_frame(60, 1, "d"), toy_frame(77, 2, "r")  # 77: uneven last batches
    sizes: list[int] = []
    if mode == "classifier":
        import flipgate.models.run as run

        watch(run, sizes)
        cfg = TrainConfig(epochs=5, lr=2e-3, batch_size=GLOBAL_BATCH, seed=0, max_length=32, patience=2)
        summary = run.fine_tune(model_dir, ["0", "1"], train, {"dev": dev, "regression": reg}, cfg, device,
                                out / "model", out / "predictions", 16, {"role": "old"})
        if is_main_process():
            (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        weights = fingerprint(run.load_classifier.model)
    else:
        import flipgate.mitigation.gated_fusion_train as gated_fusion_train
        from flipgate.mitigation.gated_fusion import GateConfig
        from flipgate.mitigation.gated_fusion_train import FusionSchedule
        from flipgate.pipeline.gated_fusion import fit

        watch(gated_fusion_train, sizes)  # old is loaded too, but frozen (eval): only new's steps are counted

        weights = {}
        for variant in ("heldout", "paper"):
            sched = FusionSchedule(train=TrainConfig(epochs=3, lr=2e-3, batch_size=GLOBAL_BATCH, seed=0, max_length=32,
                                                     patience=2), gate_epochs=3)
            gf, _ = fit(model_dir, model_dir, ["0", "1"], toy_frame(120, 5, "u"), GateConfig(variant=variant), sched,
                        device, 32, 16, dev=dev)
            o = gf.predict(reg["text"].tolist())
            if is_main_process():
                pd.DataFrame({"id": reg["id"], "pred": o.logits.argmax(1), "alpha": o.alpha}).to_parquet(
                    out / f"gated_fusion_{variant}.parquet")
            weights[variant] = fingerprint(gf.new, gf.gate)
    (out / f"rank{rank}.json").write_text(json.dumps({"batch_rows": sizes, "weights": weights}))


if __name__ == "__main__":
    main()
