"""An explicit fine-tuning loop: AdamW with linear warmup/decay, length-grouped dynamic batches, and an
adaptive schedule (train up to `epochs`, keep the epoch with the best dev accuracy, stop after `patience`
epochs without improvement).

A model that starts fine-tuned (new from old) begins at or near its best dev accuracy: its first epoch
is old barely moved, and what further epochs gain (on MASSIVE, 2 points on the regression set) lies
within dev's noise, so "no new best for `patience` epochs" would stop it at once. For such a start
(`from_fine_tuned`) an epoch counts as holding while its dev accuracy is within one standard error of the
best so far; training stops after `patience` epochs that fall below that, and the latest holding epoch
is kept (the latest is the most annealed).

Under `accelerate launch` with N processes (models/device.py) the loop is the same: every process draws
the same global batches (same seed), trains its 1/N share of each (`batch_size` stays the global batch),
DDP averages the gradients, and each epoch's loss and the dev figures are the global ones, so every
process takes the same schedule decisions (the kept epoch, the stop). Each process draws its own dropout
masks (device.own_dropout_stream), as one process draws one per row of the global batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from flipgate.models.batching import Encoded, length_grouped_batches
from flipgate.models.device import autocast, ddp, distributed, own_dropout_stream, shard
from flipgate.params import AUTO, Schedule
from flipgate.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """`epochs` is the fixed number of epochs, or with `patience` the most the adaptive schedule runs.

    `head_lr` is the freshly initialised classification head's learning rate (None: `lr`): a head
    with many classes starts far from any solution while the encoder starts close to one."""

    epochs: int
    lr: float
    batch_size: int
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_length: int = 128
    seed: int = 0
    head_lr: float | None = None
    patience: int | None = None  # None: a fixed schedule (every epoch, the last one kept)
    from_fine_tuned: bool = False  # the adaptive schedule tolerates dev's noise (see the module docstring)

    @classmethod
    def from_schedule(cls, schedule: Schedule, max_length: int, seed: int) -> TrainConfig:
        """The config of a params section with the schedule keys (train_*, gated_fusion): `epochs: auto`
        trains up to max_epochs with early stopping on dev (`patience`), `epochs: N` exactly N epochs."""
        auto = schedule.epochs == AUTO
        return cls(
            epochs=schedule.max_epochs if auto else schedule.epochs, lr=schedule.lr, batch_size=schedule.batch_size,
            warmup_ratio=schedule.warmup_ratio, weight_decay=schedule.weight_decay, grad_clip=schedule.grad_clip,
            max_length=max_length, seed=seed, head_lr=schedule.head_lr, patience=schedule.patience if auto else None,
        )


@dataclass
class TrainResult:
    epoch_loss: list[float] = field(default_factory=list)
    examples: int = 0
    seconds: float = 0.0
    epoch_eval: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights were kept (adaptive schedule), else None
    stopped_early: bool = False
    processes: int = 1  # under accelerate launch: the processes that shared each global batch
    per_process_batch_size: int | None = None  # the most rows one process trained per step (batch_size / processes)

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


def standard_error(accuracy: float, n: int) -> float:
    """The binomial standard error of an accuracy measured on n examples."""
    return (accuracy * (1 - accuracy) / n) ** 0.5 if n else 0.0


def adamw(
    model: torch.nn.Module, lr: float, weight_decay: float, head: torch.nn.Module | None = None,
    head_lr: float | None = None,
) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and LayerNorm weights (the BERT recipe); the parameters of
    `head` (if given) at `head_lr`."""
    head_ids = {id(p) for p in head.parameters()} if head is not None and head_lr is not None else set()
    buckets: dict[tuple[bool, bool], list] = {(h, d): [] for h in (False, True) for d in (False, True)}
    for p in model.parameters():
        if p.requires_grad:
            buckets[(id(p) in head_ids, p.ndim >= 2)].append(p)
    groups = [
        {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": head_lr if in_head else lr}
        for (in_head, decay), ps in buckets.items() if ps
    ]
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
    head: torch.nn.Module | None = None,
    extra_loss: Callable[[torch.Tensor, np.ndarray, torch.nn.Module], torch.Tensor] | None = None,
) -> TrainResult:
    """Fine-tune `model` in place on (texts, labels). Same seed, data and device give the same weights.

    `on_epoch_end(epoch)` may evaluate and return figures (kept in the result, per epoch). With
    `cfg.patience`, it must return `dev_accuracy`: the weights of the best epoch (the first of equals) are
    restored at the end, and training stops after `patience` epochs without improvement; with
    `cfg.from_fine_tuned` also `dev_examples`, and the rule tolerates dev's noise (module docstring). The
    learning rate decays linearly over `cfg.epochs` either way. `head` gets `cfg.head_lr`.
    `extra_loss(logits, idx, model)` (a distillation term or a penalty towards old) is added to the
    cross-entropy of each batch; `idx` are the batch's row numbers in `texts`. The reported epoch loss is
    the cross-entropy alone. Under a multi-process launch, `device` is the process's own, `idx` the
    process's rows of the batch, and `on_epoch_end` must return the same figures in every process
    (predict_logits gathers, so a dev accuracy from it does).
    """
    if len(texts) == 0:
        raise ValueError("no training examples")
    enc = Encoded(tokenizer, texts, cfg.max_length)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = -(-len(enc) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    model.to(device)
    if cfg.patience is not None and on_epoch_end is None:
        raise ValueError("an adaptive schedule (patience) needs on_epoch_end to return dev_accuracy")
    opt = adamw(model, cfg.lr, cfg.weight_decay, head, cfg.head_lr)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    result = TrainResult()
    dist = distributed()
    world, rank = (dist.num_processes, dist.process_index) if dist is not None else (1, 0)
    net = ddp(model) if dist is not None else model  # forward and backward through DDP; `model` is the same weights
    own_dropout_stream(cfg.seed, rank)
    result.processes, result.per_process_batch_size = world, -(-cfg.batch_size // world)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (dev accuracy, epoch, weights on CPU)
    top = 0.0  # from_fine_tuned: the best dev accuracy so far (best[0] is then the kept epoch's)
    start = time.perf_counter()
    bar = progress(total=total, desc="train")
    for epoch in range(cfg.epochs):
        model.train()
        loss_sum, seen = 0.0, 0
        for idx in length_grouped_batches(enc.lengths, cfg.batch_size, rng):
            if dist is None:
                batch = {k: v.to(device) for k, v in enc.batch(idx).items()}
                with autocast(device):
                    logits = model(**batch).logits
                ce = torch.nn.functional.cross_entropy(logits.float(), y[idx].to(device))
                loss = ce if extra_loss is None else ce + extra_loss(logits.float(), idx, model)
                loss.backward()
            else:  # this process's share of the global batch; DDP averages the weighted gradients
                idx, weight = shard(idx, rank, world)
                batch = {k: v.to(device) for k, v in enc.batch(idx).items()}
                with autocast(device):
                    logits = net(**batch).logits
                ce = torch.nn.functional.cross_entropy(logits.float(), y[idx].to(device))
                loss = ce if extra_loss is None else ce + extra_loss(logits.float(), idx, model)
                dist.backward(loss * weight)  # a per-row mean or a penalty on the weights: exact either way
                idx = idx if weight else idx[:0]  # the rows this process counts in the epoch's loss
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += ce.item() * len(idx)
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(seen, 1):.4f}")
        if dist is not None:  # the global mean loss over the epoch's examples, the same in every process
            loss_sum, seen = dist.reduce(torch.tensor([loss_sum, seen], dtype=torch.float64, device=device)).tolist()
            seen = int(seen)
        result.epoch_loss.append(loss_sum / seen)
        result.examples += seen
        log.info("epoch %d/%d: train loss %.4f", epoch + 1, cfg.epochs, loss_sum / seen)
        if on_epoch_end is not None:
            paused = time.perf_counter()
            figures = on_epoch_end(epoch + 1)
            result.epoch_eval.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, **figures})
            if cfg.patience is not None:
                acc = figures["dev_accuracy"]
                if cfg.from_fine_tuned:
                    top = max(top, acc)
                    holds = acc >= top - standard_error(top, figures["dev_examples"])
                else:
                    holds = best is None or acc > best[0]
                if holds:
                    best = (acc, epoch + 1, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
                elif epoch + 1 - best[1] >= cfg.patience:
                    result.stopped_early = epoch + 1 < cfg.epochs
                    log.info("no dev improvement for %d epochs: stopping at epoch %d", cfg.patience, epoch + 1)
                    start += time.perf_counter() - paused
                    break
            start += time.perf_counter() - paused  # evaluation is not training time
    bar.close()
    result.seconds = time.perf_counter() - start
    if best is not None:
        result.best_epoch = best[1]
        if best[1] != len(result.epoch_loss):
            model.load_state_dict(best[2])
        log.info("kept epoch %d (dev accuracy %.2f%%)", best[1], 100 * best[0])
    model.eval()
    return result
