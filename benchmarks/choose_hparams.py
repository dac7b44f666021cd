"""Choose the training schedule on dev: train one split at several (lr, head lr) pairs and evaluate dev
accuracy after every epoch (linear decay over --epochs, as the adaptive schedule does).

Run: python benchmarks/choose_hparams.py data/update --configs 1e-4 1e-4:1e-3 2e-4 --epochs 20 [--patience 3]
  each config is LR or LR:HEAD_LR (the freshly initialised head's rate). --init starts from a fine-tuned
  folder instead of --model (e.g. seeds/0/models/old for the new model's schedule; head lr then ignored).
Prints, per config, dev accuracy per epoch, the epoch the adaptive schedule keeps (best dev accuracy,
stopping after `patience` epochs without improvement), its training time, and the regression-set
accuracy at that epoch (reported, never used to choose). --curves adds dev loss and regression-set
accuracy per epoch (to judge a stopping rule against what dev cannot show); --json writes every curve;
--save DIR keeps the last config's model (e.g. an old model to start a new model's schedule from).
"""

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from flipgate.data import update
from flipgate.models.classifier import classification_head, load_classifier, save_classifier
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
    ap.add_argument("--curves", action="store_true", help="dev loss and regression accuracy after every epoch")
    ap.add_argument("--json", help="write every config's curves to this file")
    ap.add_argument("--save", help="save the last config's model (its kept epoch) to this folder")
    args = ap.parse_args()
    runs = []
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
            out = {"dev_accuracy": float((logits.argmax(1) == dev["label"].to_numpy()).mean())}
            if args.curves:
                logp = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float32), 1).numpy()
                out["dev_loss"] = float(-logp[np.arange(len(dev)), dev["label"].to_numpy()].mean())
                reg_logits = predict_logits(model, tok, reg["text"].tolist(), device)
                out["regression_accuracy"] = float((reg_logits.argmax(1) == reg["label"].to_numpy()).mean())
            return out

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
        if args.curves:
            print("    dev loss " + " ".join(f"{e['dev_loss']:.3f}" for e in res.epoch_eval))
            print("    regression " + " ".join(f"{100 * e['regression_accuracy']:.1f}" for e in res.epoch_eval), flush=True)
        runs.append({"config": text, "epochs": args.epochs, "patience": args.patience, "init": args.init,
                     "kept_epoch": res.best_epoch, "regression_accuracy": reg_acc, "curve": res.epoch_eval})
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    if args.save:
        save_classifier(model, tok, args.save, {"role": "benchmark", "labels": labels, "init": args.init or args.model})
    print(f"reproduce: python benchmarks/choose_hparams.py {args.data} --configs {' '.join(args.configs)} "
          f"--epochs {args.epochs} --patience {args.patience} --split {args.split} --model {args.model}"
          + (f" --init {args.init}" if args.init else "") + f" --seed {args.seed}" + (" --curves" if args.curves else ""))


if __name__ == "__main__":
    main()
