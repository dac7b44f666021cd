"""The GPU path, checked: fine-tune and predict on the embedded default with bf16 autocast on CUDA, then
score the same weights on the CPU in fp32 and compare.

Run (on a machine with CUDA): bash benchmarks/gpu_check.sh   (installs what is missing, then runs this)
or:                           python benchmarks/gpu_check.py [--epochs 4 --n-train 1500 --n-predict 2000]

Prints, with the command: the device, training and prediction throughput on it (examples/s, the first
epoch and the first prediction pass counted apart as warm-up; epoch 1 is its own one-epoch schedule and the
rest another, so this is a throughput and agreement check, not the pipeline's training recipe), the regression-set accuracy, and the
agreement of its predictions with the CPU's (share of equal predicted classes, max |logit difference|).
`--device cpu` runs the same steps on the CPU alone (a dry run of the script; both sides then agree exactly).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from flipgate.data.sources import load_embedded
from flipgate.data.update import from_pool
from flipgate.models.classifier import load_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, train_classifier

CPU = torch.device("cpu")


def timed_predict(model, tok, texts, device, batch_size, max_length) -> tuple[np.ndarray, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    logits = predict_logits(model, tok, texts, device, batch_size, max_length)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return logits, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default; refused without one) or cpu (a dry run)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-predict", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False); run it on a "
              "machine with a GPU, or pass --device cpu for a dry run", file=sys.stderr)
        return 2
    device = get_device(args.device)
    split = from_pool(load_embedded(), n_old=args.n_train, n_new=0, n_dev=0, n_regression=args.n_predict, seed=0)
    train, reg = split.old, split.regression
    set_seed(0)
    model, tok = load_classifier("embedded", split.labels)
    cfg = TrainConfig(epochs=1, lr=1e-4, batch_size=args.batch_size, max_length=args.max_length, seed=0, head_lr=1e-3)
    texts, y = train["text"].tolist(), train["label"].to_numpy()
    # epoch 1 apart (CUDA context, kernels' autotuning), then the rest on one schedule of their own
    first = train_classifier(model, tok, texts, y, cfg, device)
    rest = train_classifier(model, tok, texts, y, replace(cfg, epochs=args.epochs - 1), device) if args.epochs > 1 else first
    reg_texts = reg["text"].tolist()
    _, warm_s = timed_predict(model, tok, reg_texts, device, args.eval_batch_size, args.max_length)
    logits, pred_s = timed_predict(model, tok, reg_texts, device, args.eval_batch_size, args.max_length)
    # the weights stay fp32 (autocast only casts inside ops): the same model, moved to the CPU, no autocast there
    cpu_logits = predict_logits(model, tok, reg_texts, CPU, args.eval_batch_size, args.max_length)
    preds, cpu_preds = logits.argmax(1), cpu_logits.argmax(1)
    figures = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "autocast": "bf16" if device.type == "cuda" else "fp32",
        "torch": torch.__version__,
        "train_examples": len(texts), "epochs": args.epochs, "batch_size": args.batch_size,
        "train_first_epoch_examples_per_s": round(first.examples_per_s, 1),
        "train_examples_per_s": round(rest.examples_per_s, 1),
        "predict_examples": len(reg_texts),
        "predict_first_pass_examples_per_s": round(len(reg_texts) / warm_s, 1),
        "predict_examples_per_s": round(len(reg_texts) / pred_s, 1),
        "regression_accuracy": round(float(np.mean(preds == reg["label"].to_numpy())), 4),
        "cpu_fp32_regression_accuracy": round(float(np.mean(cpu_preds == reg["label"].to_numpy())), 4),
        "agreement_with_cpu_fp32": round(float(np.mean(preds == cpu_preds)), 4),
        "max_abs_logit_diff_vs_cpu_fp32": float(np.abs(logits - cpu_logits).max()),
    }
    print("command: python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]))
    for key, value in figures.items():
        print(f"  {key}: {value}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
