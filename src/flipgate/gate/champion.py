"""The registry's champion as the pipeline's old model (`old.source: registry`): fetch it, predict.

Here rather than in `models/run.py`, so the model code does not import the registry (which imports the
model code to log a pyfunc): models -> gate -> models was a circle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flipgate.gate import registry
from flipgate.io import write_parquet
from flipgate.predictions import predictions_frame

if TYPE_CHECKING:
    import torch


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
