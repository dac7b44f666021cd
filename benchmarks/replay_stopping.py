"""Replay early-stopping rules on full epoch curves: which epoch each rule keeps, when it stops, and the
regression-set accuracy there (reported, never used by a rule).

The curves come from `python benchmarks/choose_hparams.py DATA ... --patience 100 --curves --json FILE`
(every epoch trained, dev accuracy, dev loss and regression accuracy recorded after each). A rule only
decides when to stop and which epoch to keep; the model trajectory does not depend on it (the learning
rate decays over the run's --epochs either way), so replaying it on the full curve is exact.

Run: python benchmarks/replay_stopping.py runs/probe_new20.json [more.json ...] [--dev-size 500]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def accuracy_rule(curve: list[dict], patience: int) -> tuple[int, int]:
    """The shipped rule: best dev accuracy (first of equals); stop after `patience` epochs without a new best."""
    best, best_epoch = -1.0, 0
    for e in curve:
        if e["dev_accuracy"] > best:
            best, best_epoch = e["dev_accuracy"], e["epoch"]
        elif e["epoch"] - best_epoch >= patience:
            return best_epoch, e["epoch"]
    return best_epoch, curve[-1]["epoch"]


def loss_rule(curve: list[dict], patience: int) -> tuple[int, int]:
    """Lowest dev loss; stop after `patience` epochs without a new lowest."""
    best, best_epoch = math.inf, 0
    for e in curve:
        if e["dev_loss"] < best:
            best, best_epoch = e["dev_loss"], e["epoch"]
        elif e["epoch"] - best_epoch >= patience:
            return best_epoch, e["epoch"]
    return best_epoch, curve[-1]["epoch"]


def within_noise_rule(curve: list[dict], patience: int, n_dev: int) -> tuple[int, int]:
    """The fine-tuned-start rule (flipgate.models.train, from_fine_tuned): an epoch holds while its dev accuracy
    is within one standard error of the best so far; stop after `patience` epochs that do not hold; keep the
    latest holding epoch."""
    top, kept = 0.0, 0
    for e in curve:
        top = max(top, e["dev_accuracy"])
        if e["dev_accuracy"] >= top - math.sqrt(top * (1 - top) / n_dev):
            kept = e["epoch"]
        elif e["epoch"] - kept >= patience:
            return kept, e["epoch"]
    return kept, curve[-1]["epoch"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("curves", nargs="+", type=Path)
    ap.add_argument("--dev-size", type=int, required=True, help="examples in dev (for the standard error)")
    ap.add_argument("--patience", type=int, nargs="+", default=[2, 3, 5])
    args = ap.parse_args()
    for path in args.curves:
        for run in json.loads(path.read_text()):
            curve = run["curve"]
            reg = {e["epoch"]: e["regression_accuracy"] for e in curve}
            best_reg = max(reg, key=reg.get)
            print(f"{path} config {run['config']} over {run['epochs']} epochs: regression at each epoch "
                  + " ".join(f"{100 * reg[e['epoch']]:.1f}" for e in curve)
                  + f" (best {100 * reg[best_reg]:.2f} at epoch {best_reg}; last {100 * reg[curve[-1]['epoch']]:.2f})")
            print("  dev accuracy " + " ".join(f"{100 * e['dev_accuracy']:.1f}" for e in curve))
            print("  dev loss     " + " ".join(f"{e['dev_loss']:.3f}" for e in curve))
            for p in args.patience:
                for name, (kept, stop) in (
                    ("accuracy", accuracy_rule(curve, p)),
                    ("loss", loss_rule(curve, p)),
                    ("within one SE (fine-tuned)", within_noise_rule(curve, p, args.dev_size)),
                ):
                    print(f"  patience {p} {name:>24}: keeps epoch {kept:2d}, stops at {stop:2d}, "
                          f"regression {100 * reg[kept]:.2f}%")
    print(f"reproduce: python benchmarks/replay_stopping.py {' '.join(map(str, args.curves))} --dev-size {args.dev_size}")


if __name__ == "__main__":
    main()
