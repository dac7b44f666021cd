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


def either_rule(curve: list[dict], patience: int, n_dev: int) -> tuple[int, int]:
    """Patience resets on a new best dev accuracy or a new lowest dev loss; the kept epoch is the lowest-loss
    one among those whose dev accuracy is within one standard error of the best so far (indistinguishable)."""
    best_acc, best_loss, last_gain = -1.0, math.inf, 0
    seen: list[dict] = []
    stop = curve[-1]["epoch"]
    for e in curve:
        seen.append(e)
        gained = False
        if e["dev_accuracy"] > best_acc:
            best_acc, gained = e["dev_accuracy"], True
        if e["dev_loss"] < best_loss:
            best_loss, gained = e["dev_loss"], True
        if gained:
            last_gain = e["epoch"]
        elif e["epoch"] - last_gain >= patience:
            stop = e["epoch"]
            break
    se = math.sqrt(best_acc * (1 - best_acc) / n_dev)
    close = [e for e in seen if e["dev_accuracy"] >= best_acc - se]
    return min(close, key=lambda e: e["dev_loss"])["epoch"], stop


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
                    ("accuracy-or-loss, 1-SE", either_rule(curve, p, args.dev_size)),
                ):
                    print(f"  patience {p} {name:>24}: keeps epoch {kept:2d}, stops at {stop:2d}, "
                          f"regression {100 * reg[kept]:.2f}%")
    print(f"reproduce: python benchmarks/replay_stopping.py {' '.join(map(str, args.curves))} --dev-size {args.dev_size}")


if __name__ == "__main__":
    main()
