"""Fine-tune one model role end to end: load, train, save, predict dev and the regression set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.io import predictions_frame, write_parquet
from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.device import set_seed
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, TrainResult, train_classifier

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
    """Predict each split and write predictions/<model>/<split>.parquet; return the tables."""
    tables = {}
    for name, df in splits.items():
        logits = predict_logits(model, tokenizer, df["text"].tolist(), device, batch_size, max_length)
        tables[name] = predictions_frame(df["id"], df["label"], logits)
        write_parquet(tables[name], Path(out_dir) / f"{name}.parquet")
    return tables


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
) -> dict:
    """Seed, load `init` with a head for `labels`, train on `train_df`, save, predict. Returns a summary."""
    set_seed(cfg.seed)
    model, tokenizer = load_classifier(init, labels)
    log.info("training from %s on %d examples: %d epochs, lr %g, batch %d", init, len(train_df), cfg.epochs, cfg.lr, cfg.batch_size)
    result: TrainResult = train_classifier(
        model, tokenizer, train_df["text"].tolist(), train_df["label"].to_numpy(), cfg, device
    )
    save_classifier(model, tokenizer, model_dir, {**meta, "init": init, "labels": labels})
    tables = write_predictions(model, tokenizer, eval_splits, predictions_dir, device, eval_batch_size, cfg.max_length)
    summary = {
        "init": init,
        "train_examples": len(train_df),
        "epochs": cfg.epochs,
        "epoch_loss": [round(x, 5) for x in result.epoch_loss],
        "train_seconds": round(result.seconds, 2),
        "train_examples_per_s": round(result.examples_per_s, 1),
    }
    for name, t in tables.items():
        summary[f"{name}_accuracy"] = float(np.mean(t["pred"].to_numpy() == t["label"].to_numpy()))
    return summary


def from_registry(
    registered_name: str,
    tracking_uri: str | None,
    eval_splits: dict[str, pd.DataFrame],
    device: torch.device,
    model_dir: str | Path,
    predictions_dir: str | Path,
    eval_batch_size: int,
    max_length: int,
) -> dict:
    """The old model of a data update: fetch `models:/<name>@champion` into `model_dir`, predict.

    The champion may be any kind the registry holds (a classifier or a Gated Fusion folder); the stages
    that start from old's weights (train_new, BCWI) need a classifier and say so otherwise."""
    from flipgate.gate import registry
    from flipgate.models.pyfunc import load_any

    version = registry.champion_version(registered_name, tracking_uri)
    registry.load_champion(registered_name, model_dir, tracking_uri)
    predictor = load_any(model_dir, max_length=max_length, batch_size=eval_batch_size, device=device.type)
    summary = {"init": f"models:/{registered_name}@champion", "champion_version": version, "train_examples": 0}
    for name, df in eval_splits.items():
        table = predictions_frame(df["id"], df["label"], predictor.predict_logits(df["text"].tolist()))
        write_parquet(table, Path(predictions_dir) / f"{name}.parquet")
        summary[f"{name}_accuracy"] = float(np.mean(table["pred"].to_numpy() == table["label"].to_numpy()))
    return summary
