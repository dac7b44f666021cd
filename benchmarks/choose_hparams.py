"""Pick the old model's learning rate and epochs on dev: train on D_old at several learning rates and
evaluate dev accuracy after every epoch (linear decay over the longest schedule).

Run: python benchmarks/choose_hparams.py data/update --lrs 3e-5 1e-4 2e-4 --epochs 8 [--model embedded]
Prints a table of dev accuracy per (lr, epoch) and the best cell.
"""

import argparse
import logging
import time

import numpy as np

from flipgate.data import update
from flipgate.models.classifier import load_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, train_classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-5, 1e-4, 2e-4])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--split", default="old", help="training split (old or updated)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    labels, _ = update.load_labels(args.data)
    train = update.load_split(args.data, args.split)
    dev = update.load_split(args.data, "dev")
    device = get_device()
    rows = {}
    for lr in args.lrs:
        set_seed(args.seed)
        model, tok = load_classifier(args.model, labels)
        cfg = TrainConfig(epochs=args.epochs, lr=lr, batch_size=args.batch_size, seed=args.seed)

        def dev_acc(epoch: int) -> dict:
            logits = predict_logits(model, tok, dev["text"].tolist(), device)
            return {"dev_acc": float((logits.argmax(1) == dev["label"].to_numpy()).mean())}

        t = time.perf_counter()
        res = train_classifier(model, tok, train["text"].tolist(), train["label"].to_numpy(), cfg, device, dev_acc)
        rows[lr] = [e["dev_acc"] for e in res.epoch_eval]
        print(f"lr {lr:g}: " + " ".join(f"{100 * a:.1f}" for a in rows[lr])
              + f"  ({res.examples_per_s:.0f} train ex/s, {time.perf_counter() - t:.0f} s)", flush=True)
    best = max(((lr, e + 1, a) for lr, accs in rows.items() for e, a in enumerate(accs)), key=lambda r: r[2])
    print(f"best: lr {best[0]:g}, epoch {best[1]}: dev accuracy {100 * best[2]:.1f}")
    print(f"reproduce: python benchmarks/choose_hparams.py {args.data} --lrs {' '.join(map(str, args.lrs))} "
          f"--epochs {args.epochs} --split {args.split} --model {args.model}")


if __name__ == "__main__":
    main()
