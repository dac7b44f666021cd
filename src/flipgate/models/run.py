"""Fine-tune one model role end to end: load, train, save, predict dev and the regression set.

Under a multi-process launch (models/device.py) every process trains and predicts (predictions are
gathered, so each has every row once), and only the main process saves the model and writes the tables."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.io import write_parquet
from flipgate.models.classifier import classification_head, is_fine_tuned, keep_layers, load_classifier, save_classifier
from flipgate.models.device import distributed, is_main_process, set_seed
from flipgate.models.fit import fit_checks, unfit_line
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, TrainResult, train_classifier
from flipgate.predictions import predictions_frame

log = logging.getLogger(__name__)

EVAL_SPLITS = ("dev", "regression")


def write_predictions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    splits: dict[str, pd.DataFrame],
    out_dir: str | Path,
    device: torch.device,
    batch_size: int,
    max_length: int,
) -> dict[str, pd.DataFrame]:
    """Predict each split and write predictions/<model>/<split>.parquet (the main process only under a
    launch; every process predicts); return the tables."""
    tables = {}
    for name, df in splits.items():
        logits = predict_logits(model, tokenizer, df["text"].tolist(), device, batch_size, max_length)
        tables[name] = predictions_frame(df["id"], df["label"], logits)
        if is_main_process():
            write_parquet(tables[name], Path(out_dir) / f"{name}.parquet")
    return tables


def dev_accuracy_hook(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dev: pd.DataFrame,
                      device: torch.device, batch_size: int, max_length: int):
    """on_epoch_end for train_classifier: the model's dev accuracy (what the adaptive schedule keeps)."""
    texts, y = dev["text"].tolist(), dev["label"].to_numpy()

    def hook(epoch: int) -> dict:
        logits = predict_logits(model, tokenizer, texts, device, batch_size, max_length)
        return {"dev_accuracy": float(np.mean(logits.argmax(1) == y)) if len(y) else 0.0, "dev_examples": len(y)}

    return hook


def schedule_summary(result: TrainResult, cfg: TrainConfig) -> dict:
    """The epoch curve and what the schedule kept, for the model's train report."""
    return {
        "schedule": "auto" if cfg.patience is not None else "fixed",
        "max_epochs" if cfg.patience is not None else "epochs": cfg.epochs,
        "patience": cfg.patience,
        "lr": cfg.lr,
        "head_lr": cfg.head_lr,
        "rule": ("within one standard error of the best dev accuracy (fine-tuned start)" if cfg.from_fine_tuned
                 else "best dev accuracy") if cfg.patience is not None else None,
        "epochs_run": len(result.epoch_loss),
        "best_epoch": result.best_epoch or len(result.epoch_loss),
        "stopped_early": result.stopped_early,
        "epoch_curve": [{k: round(v, 5) if isinstance(v, float) else v for k, v in e.items()} for e in result.epoch_eval],
    }


def check_fit(role: str, result: TrainResult, train_labels, dev: pd.DataFrame, dev_pred: np.ndarray,
              num_classes: int) -> dict:
    """fit_checks on a finished training run; logs a warning naming the model when it fails."""
    kept = result.best_epoch or len(result.epoch_loss)
    ended_on_dev = result.stopped_early or kept < len(result.epoch_loss)  # dev, not the epoch budget, ended it
    fit = fit_checks(result.epoch_loss, kept, ended_on_dev, np.asarray(train_labels), dev["label"].to_numpy(),
                     dev_pred, num_classes)
    if not fit["fit"]:
        log.warning("%s", unfit_line(role, fit))
    return fit


def fine_tune(
    init: str,
    labels: list[str],
    train_df: pd.DataFrame,
    eval_splits: dict[str, pd.DataFrame],
    cfg: TrainConfig,
    device: torch.device,
    model_dir: str | Path,
    predictions_dir: str | Path,
    eval_batch_size: int,
    meta: dict,
    layers: int | None = None,
) -> dict:
    """Seed, load `init` with a head for `labels`, train on `train_df` (dev accuracy after every epoch: the
    adaptive schedule keeps the best), save, predict, check the model is fit to judge. Returns a summary.
    `cfg.head_lr` applies only to a freshly initialised head (init is not a fine-tuned classifier); a
    fine-tuned init trains with the noise-tolerant adaptive rule (`from_fine_tuned`, models/train.py).
    `layers`: keep only init's first `layers` transformer layers (a smaller model, models.classifier.keep_layers)."""
    set_seed(cfg.seed)
    model, tokenizer = load_classifier(init, labels)
    if layers is not None:
        model = keep_layers(model, layers)
    fresh = not is_fine_tuned(init)
    log.info("training from %s on %d examples: %s, lr %g%s, batch %d", init, len(train_df),
             f"up to {cfg.epochs} epochs (patience {cfg.patience})" if cfg.patience else f"{cfg.epochs} epochs",
             cfg.lr, f", head lr {cfg.head_lr:g}" if fresh and cfg.head_lr else "", cfg.batch_size)
    if not fresh:
        cfg = replace(cfg, head_lr=None, from_fine_tuned=True)
    hook = dev_accuracy_hook(model, tokenizer, eval_splits["dev"], device, eval_batch_size, cfg.max_length)
    result: TrainResult = train_classifier(
        model, tokenizer, train_df["text"].tolist(), train_df["label"].to_numpy(), cfg, device, hook,
        head=classification_head(model) if fresh else None,
    )
    if is_main_process():
        save_classifier(model, tokenizer, model_dir, {**meta, "init": init, "labels": labels,
                                                      **({"layers": layers} if layers is not None else {})})
    tables = write_predictions(model, tokenizer, eval_splits, predictions_dir, device, eval_batch_size, cfg.max_length)
    summary = {
        "init": init,
        **({"layers": layers} if layers is not None else {}),
        "train_examples": len(train_df),
        **schedule_summary(result, cfg),
        "epoch_loss": [round(x, 5) for x in result.epoch_loss],
        "train_seconds": round(result.seconds, 2),
        "train_examples_per_s": round(result.examples_per_s, 1),
    }
    if result.processes > 1:
        summary["distributed"] = {"processes": result.processes, "global_batch_size": cfg.batch_size,
                                  "per_process_batch_size": result.per_process_batch_size}
    for name, t in tables.items():
        summary[f"{name}_accuracy"] = float(np.mean(t["pred"].to_numpy() == t["label"].to_numpy()))
    summary["fit"] = check_fit(meta.get("role", "model"), result, train_df["label"].to_numpy(), eval_splits["dev"],
                               tables["dev"]["pred"].to_numpy(), len(labels))
    if (dist := distributed()) is not None:
        dist.wait_for_everyone()  # the model and the tables are on disk before any process goes on
    return summary
