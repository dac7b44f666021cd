"""Choose the training schedule on dev: train one split at several (lr, head lr) pairs and evaluate dev
accuracy after every epoch (linear decay over --epochs, as the adaptive schedule does).

Run: python benchmarks/choose_hparams.py data/update --configs 1e-4 1e-4:1e-3 2e-4 --epochs 20 [--patience 3]
  each config is LR or LR:HEAD_LR (the freshly initialised head's rate). --init starts from a fine-tuned
  folder instead of --model (e.g. seeds/0/models/old for the new model's schedule; head lr then ignored).
Prints, per config, dev accuracy per epoch, the epoch the adaptive schedule keeps (best dev accuracy,
stopping after `patience` epochs without improvement), its training time, and the regression-set
accuracy at that epoch (reported, never used to choose).
"""

import argparse
import logging
import time

import numpy as np

from flipgate.data import update
from flipgate.models.classifier import classification_head, load_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, train_classifier


def parse_config(text: str) -> tuple[float, float | None]:
    lr, _, head = text.partition(":")
    return float(lr), (float(head) if head else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--configs", nargs="+", default=["1e-4", "1e-4:1e-3", "2e-4"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--init", help="a fine-tuned model folder to start from (default: --model)")
    ap.add_argument("--split", default="old", help="training split (old or updated)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    labels, _ = update.load_labels(args.data)
    train = update.load_split(args.data, args.split)
    dev, reg = update.load_split(args.data, "dev"), update.load_split(args.data, "regression")
    device = get_device()
    print(f"{args.data}: {len(labels)} classes, {len(train)} training examples ({args.split}), dev {len(dev)}")
    for text in args.configs:
        lr, head_lr = parse_config(text)
        set_seed(args.seed)
        model, tok = load_classifier(args.init or args.model, labels)
        cfg = TrainConfig(epochs=args.epochs, lr=lr, batch_size=args.batch_size, seed=args.seed,
                          head_lr=None if args.init else head_lr, patience=args.patience)

        def dev_acc(epoch: int) -> dict:
            logits = predict_logits(model, tok, dev["text"].tolist(), device)
            return {"dev_accuracy": float((logits.argmax(1) == dev["label"].to_numpy()).mean())}

        t = time.perf_counter()
        res = train_classifier(model, tok, train["text"].tolist(), train["label"].to_numpy(), cfg, device, dev_acc,
                               head=classification_head(model))
        wall = time.perf_counter() - t
        reg_acc = float((predict_logits(model, tok, reg["text"].tolist(), device).argmax(1) == reg["label"].to_numpy()).mean())
        curve = " ".join(f"{100 * e['dev_accuracy']:.1f}" for e in res.epoch_eval)
        loss = " ".join(f"{e['train_loss']:.2f}" for e in res.epoch_eval)
        best = res.epoch_eval[res.best_epoch - 1]
        print(f"lr {text}: dev {curve}\n    train loss {loss}\n    kept epoch {res.best_epoch}/{len(res.epoch_eval)} "
              f"(dev {100 * best['dev_accuracy']:.1f}%), regression {100 * reg_acc:.2f}%, {wall:.0f} s wall "
              f"({res.examples_per_s:.0f} train ex/s)", flush=True)
    print(f"reproduce: python benchmarks/choose_hparams.py {args.data} --configs {' '.join(args.configs)} "
          f"--epochs {args.epochs} --patience {args.patience} --split {args.split} --model {args.model}"
          + (f" --init {args.init}" if args.init else "") + f" --seed {args.seed}")


if __name__ == "__main__":
    main()
