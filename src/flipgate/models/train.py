"""An explicit fine-tuning loop: AdamW with linear warmup/decay, length-grouped dynamic batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from flipgate.models.batching import Encoded, length_grouped_batches
from flipgate.models.device import autocast
from flipgate.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_length: int = 128
    seed: int = 0


@dataclass
class TrainResult:
    epoch_loss: list[float] = field(default_factory=list)
    examples: int = 0
    seconds: float = 0.0
    epoch_eval: list[dict] = field(default_factory=list)

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates all parameters in one pass (CPU and CUDA); it needs them on one device type.
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def train_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    labels: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    on_epoch_end: Callable[[int], dict] | None = None,
) -> TrainResult:
    """Fine-tune `model` in place on (texts, labels). Same seed, data and device give the same weights.

    `on_epoch_end(epoch)` may evaluate and return figures; they are kept in the result (for picking epochs).
    """
    if len(texts) == 0:
        raise ValueError("no training examples")
    enc = Encoded(tokenizer, texts, cfg.max_length)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = -(-len(enc) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    model.to(device)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    result = TrainResult()
    start = time.perf_counter()
    bar = progress(total=total, desc="train")
    for epoch in range(cfg.epochs):
        model.train()
        loss_sum, seen = 0.0, 0
        for idx in length_grouped_batches(enc.lengths, cfg.batch_size, rng):
            batch = {k: v.to(device) for k, v in enc.batch(idx).items()}
            with autocast(device):
                logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), y[idx].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.4f}")
        result.epoch_loss.append(loss_sum / seen)
        result.examples += seen
        log.info("epoch %d/%d: train loss %.4f", epoch + 1, cfg.epochs, loss_sum / seen)
        if on_epoch_end is not None:
            paused = time.perf_counter()
            result.epoch_eval.append({"epoch": epoch + 1, **on_epoch_end(epoch + 1)})
            start += time.perf_counter() - paused  # evaluation is not training time
    bar.close()
    result.seconds = time.perf_counter() - start
    model.eval()
    return result
