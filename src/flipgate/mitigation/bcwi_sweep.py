"""Run BCWI over an alpha grid: interpolate into one live model, predict dev and the regression set."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.metrics.flips import flip_counts
from flipgate.mitigation.bcwi import StateDict, interpolate_into
from flipgate.models.predict import predict_logits
from flipgate.predictions import predictions_frame

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    rows: list[dict] = field(default_factory=list)  # one per (alpha, split): accuracy, nfr, pfr, ...
    predictions: dict[float, dict[str, pd.DataFrame]] = field(default_factory=dict)
    interpolate_s: float = 0.0
    predict_s: float = 0.0


def sweep(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    old_sd: StateDict,
    new_sd: StateDict,
    alphas: list[float],
    splits: dict[str, pd.DataFrame],
    old_preds: dict[str, pd.DataFrame],
    device: torch.device,
    batch_size: int,
    max_length: int,
    fisher: StateDict | None = None,
    grow_keys: frozenset[str] = frozenset(),
    known: dict[float, dict[str, pd.DataFrame]] | None = None,
) -> SweepResult:
    """For each alpha: the interpolated model's predictions and flip metrics against old per split.

    `known` maps alphas whose predictions already exist (plain BCWI: 0 = new, 1 = old) to their tables;
    those are reused, not re-run. Tables in `splits` and `old_preds` must be in the same row order.
    """
    known = known or {}
    out = SweepResult()
    for alpha in alphas:
        if alpha in known:
            tables = known[alpha]
        else:
            t0 = time.perf_counter()
            interpolate_into(model, old_sd, new_sd, alpha, fisher, grow_keys)
            t1 = time.perf_counter()
            tables = {}
            for name, df in splits.items():
                logits = predict_logits(model, tokenizer, df["text"].tolist(), device, batch_size, max_length)
                tables[name] = predictions_frame(df["id"], df["label"], logits)
            out.interpolate_s += t1 - t0
            out.predict_s += time.perf_counter() - t1
        out.predictions[alpha] = tables
        for name, table in tables.items():
            c = flip_counts(table["label"], old_preds[name]["pred"], table["pred"])
            out.rows.append({"alpha": alpha, "split": name, "accuracy": c.accuracy, "nfr": c.nfr, "pfr": c.pfr,
                             "nfi": c.nfi, "negative_flips": c.negative_flips, "n": c.n})
        dev = next(r for r in out.rows if r["alpha"] == alpha and r["split"] == "dev")
        log.info("alpha %.2f: dev accuracy %.2f%%, NFR %.2f%%", alpha, 100 * dev["accuracy"], 100 * dev["nfr"])
    return out


def correct_count(table: pd.DataFrame) -> int:
    return int(np.sum(table["pred"].to_numpy() == table["label"].to_numpy()))
