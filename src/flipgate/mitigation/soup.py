"""SoupBCWI's soup: new models from k seeds, averaged into one (the `soup` variant BCWI interpolates with old)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.mitigation.bcwi import average
from flipgate.models.classifier import load_classifier
from flipgate.models.device import set_seed
from flipgate.models.run import dev_accuracy_hook
from flipgate.models.train import TrainConfig, train_classifier

log = logging.getLogger(__name__)


def train_soup(
    old_dir: str | Path, new_dir: str | Path, labels: list[str], train_df: pd.DataFrame, dev: pd.DataFrame,
    cfg: TrainConfig, k: int, device: torch.device, eval_batch_size: int,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """new (trained with seed `cfg.seed`) and k - 1 more members trained from old on `train_df` (text, label)
    with seeds cfg.seed + 1 ... cfg.seed + k - 1, their weights averaged into new's model.

    Each member trains with `cfg`'s schedule, adaptive on `dev` as new's; a member starts from old, so
    with the noise-tolerant rule (`from_fine_tuned`). k = 1 returns new itself."""
    model, tok = load_classifier(new_dir, labels)
    members = [{name: v.detach().clone() for name, v in model.state_dict().items()}]
    for i in range(1, k):
        seed = cfg.seed + i
        set_seed(seed)
        member, tok = load_classifier(old_dir, labels)
        log.info("soup member %d/%d (seed %d)", i + 1, k, seed)
        hook = dev_accuracy_hook(member, tok, dev, device, eval_batch_size, cfg.max_length)
        train_classifier(member, tok, train_df["text"].tolist(), train_df["label"].to_numpy(),
                         replace(cfg, seed=seed, from_fine_tuned=True), device, hook)
        members.append({name: v.detach().cpu().clone() for name, v in member.state_dict().items()})
    model.load_state_dict(average(members))
    return model, tok
