"""Training Gated Fusion (the model, its gate and its folder are in flipgate.mitigation.gated_fusion).

`train_gated_fusion` runs one of the two variants: "paper" (new alone for N - 1 epochs, then one joint
epoch on the fused logits, the gate dropped with probability `drop_gate` at each joint step) or "heldout"
(new trains on D_updated minus a stratified gate split, then the gate is fitted on that split with new
frozen; `refit` retrains new on all of D_updated afterwards). Old's logits on the training data are computed
once, before new trains. Every loop runs unchanged under `accelerate launch` (models/device.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from flipgate.errors import FlipgateError
from flipgate.mitigation.gated_fusion import GateConfig, GatedFusion, fuse
from flipgate.models.batching import Encoded, length_grouped_batches
from flipgate.models.classifier import load_classifier
from flipgate.models.device import autocast, ddp, distributed, own_dropout_stream, set_seed, shard
from flipgate.models.train import TrainConfig, adamw, train_classifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionSchedule:
    """How Gated Fusion trains. `train` is new's recipe (epochs N, lr, batch size, seed, ...)."""

    train: TrainConfig
    lr2: float = 3e-5  # the paper variant's joint epoch (paper grid 5e-7 ... 3e-5)
    drop_gate: float = 0.5  # probability that a joint step trains new alone (paper grid 0.4 ... 0.8)
    gate_lr: float | None = None  # None: lr2 (paper as written) for "paper", 1e-3 for "heldout"
    gate_epochs: int = 30  # heldout: passes over the gate split
    heldout_fraction: float = 0.2  # heldout: share of D_updated kept for the gate, stratified by label
    refit: bool = False  # heldout: retrain new on all of D_updated once the gate is fitted


@dataclass
class FusionTrainResult:
    seconds: float = 0.0  # all of it: old's logits on the training data, new, the gate (not on_epoch_end)
    parts: dict[str, float] = field(default_factory=dict)
    new_epoch_loss: list[float] = field(default_factory=list)
    new_epoch_eval: list[dict] = field(default_factory=list)  # new's epoch curve (train loss, dev accuracy)
    new_best_epoch: int | None = None  # the epoch of new the adaptive schedule kept
    joint_loss: float | None = None
    gate_epoch_loss: list[float] = field(default_factory=list)
    gate_examples: int = 0
    new_examples: int = 0


def heldout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(gate indices, training indices): about `fraction` of each class held out, at least one of a class
    with two or more examples, never all of a class. Both sorted."""
    if not 0 < fraction < 1:
        raise FlipgateError(f"gated_fusion.heldout_fraction: {fraction} is not in (0, 1)")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1)
        held.append(idx[:k])
    gate = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return gate, np.setdiff1d(np.arange(len(labels)), gate)


def build_gated_fusion(old_dir: str, init: str, labels: list[str], config: GateConfig, device: torch.device,
                       max_length: int = 128, batch_size: int = 64, seed: int = 0) -> GatedFusion:
    """Load old (frozen, its own head) and new from `init` (old's folder for a data update, or a
    pretrained model id/folder for a model upgrade) with a head for `labels`; a fresh gate."""
    old, old_tok = load_classifier(old_dir)
    set_seed(seed)  # before new's head and the gate are initialised
    new, new_tok = load_classifier(init, labels)
    return GatedFusion(old, old_tok, new, new_tok, config, device, max_length=max_length, batch_size=batch_size)


def train_gated_fusion(
    gf: GatedFusion,
    texts: list[str],
    labels: np.ndarray,
    schedule: FusionSchedule,
    on_epoch_end: Callable[[int], None] | None = None,
    reload_new: Callable[[], PreTrainedModel] | None = None,
) -> FusionTrainResult:
    """Train `gf` in place on (texts, labels) with its config's variant. `on_epoch_end(epoch)` runs after
    each of new's epochs (and, for "paper", after the joint epoch N); `reload_new` gives a fresh new
    model for `refit` (required then)."""
    texts, labels = list(texts), np.asarray(labels, dtype=np.int64)
    if not texts:
        raise FlipgateError("gated_fusion: no training examples")
    result = FusionTrainResult()
    start = time.perf_counter()
    t = time.perf_counter()
    old_logits = gf.old_logits(texts)  # old is frozen: its training logits are computed once
    result.parts["old_logits_s"] = time.perf_counter() - t
    if gf.config.variant == "paper":
        _train_paper(gf, texts, labels, old_logits, schedule, result, on_epoch_end)
    else:
        _train_heldout(gf, texts, labels, old_logits, schedule, result, on_epoch_end, reload_new)
    result.seconds = sum(result.parts.values())
    log.info("gated fusion (%s) trained in %.1f s (%s)", gf.config.variant, time.perf_counter() - start,
             ", ".join(f"{k} {v:.1f}" for k, v in result.parts.items()))
    gf.new.eval()
    gf.gate.eval()
    return result


def _hook(on_epoch_end: Callable[[int], None] | None) -> Callable[[int], dict] | None:
    if on_epoch_end is None:
        return None
    return lambda epoch: on_epoch_end(epoch) or {}


def _train_new(gf: GatedFusion, texts: list[str], labels: np.ndarray, cfg: TrainConfig,
               result: FusionTrainResult, on_epoch_end, key: str = "new_s") -> None:
    res = train_classifier(gf.new, gf.new_tokenizer, texts, labels, cfg, gf.device, _hook(on_epoch_end))
    result.parts[key] = result.parts.get(key, 0.0) + res.seconds
    result.new_epoch_loss += res.epoch_loss
    result.new_epoch_eval = res.epoch_eval
    result.new_best_epoch = res.best_epoch
    result.new_examples += res.examples


def _train_paper(gf, texts, labels, old_logits, schedule: FusionSchedule, result, on_epoch_end) -> None:
    cfg = schedule.train
    if cfg.epochs > 1:
        _train_new(gf, texts, labels, replace(cfg, epochs=cfg.epochs - 1), result, on_epoch_end)
    t = time.perf_counter()
    result.joint_loss = joint_epoch(gf, texts, labels, old_logits, schedule)
    result.parts["joint_s"] = time.perf_counter() - t
    result.new_examples += len(texts)
    if on_epoch_end is not None:
        on_epoch_end(cfg.epochs)


def joint_epoch(gf: GatedFusion, texts: list[str], labels: np.ndarray, old_logits: np.ndarray,
                schedule: FusionSchedule) -> float:
    """One epoch of new and the gate on the fused logits at lr2 (constant); with probability drop_gate a
    step trains new alone on its own logits. Returns the mean loss. Under a multi-process launch each
    process trains its share of every batch through DDP (as train_classifier); the drop draws, from the
    same seed, are the same in every process."""
    cfg, device = schedule.train, gf.device
    dist = distributed()
    world, rank = (dist.num_processes, dist.process_index) if dist is not None else (1, 0)
    new_net, gate_net = (ddp(gf.new), ddp(gf.gate)) if dist is not None else (gf.new, gf.gate)
    own_dropout_stream(cfg.seed + 1, rank)
    enc = Encoded(gf.new_tokenizer, texts, cfg.max_length)
    y = torch.as_tensor(np.array(labels), device=device)
    old = torch.as_tensor(old_logits, device=device)
    opt = adamw(gf.new, schedule.lr2, cfg.weight_decay)
    opt.add_param_group({"params": list(gf.gate.parameters()), "lr": schedule.gate_lr or schedule.lr2,
                         "weight_decay": cfg.weight_decay})
    rng = np.random.default_rng(cfg.seed + 1)
    gf.new.train()
    gf.gate.train()
    loss_sum = 0.0
    for idx in length_grouped_batches(enc.lengths, cfg.batch_size, rng):
        weight = 1.0
        if dist is not None:
            idx, weight = shard(idx, rank, world)
        batch = {k: v.to(device) for k, v in enc.batch(idx).items()}
        rows = torch.as_tensor(idx, device=device)
        with autocast(device):
            out = new_net(**batch, output_hidden_states=True)
        new_logits = out.logits.float()
        if rng.random() < schedule.drop_gate:
            loss = nn.functional.cross_entropy(new_logits, y[rows])
        elif dist is None:
            fused, _ = gf.fused(out.hidden_states[-1][:, 0].float(), old[rows], new_logits)
            loss = nn.functional.cross_entropy(fused, y[rows])
        else:  # gf.fused with the gate's DDP wrapper
            emb = out.hidden_states[-1][:, 0].float()
            alpha = gate_net(gf.gate_input(emb, old[rows], new_logits))
            loss = nn.functional.cross_entropy(fuse(old[rows], new_logits, alpha, gf.config.temperature), y[rows])
        if dist is None:
            loss.backward()
        else:
            dist.backward(loss * weight)
            idx = idx if weight else idx[:0]
        nn.utils.clip_grad_norm_(gf.new.parameters(), cfg.grad_clip)
        nn.utils.clip_grad_norm_(gf.gate.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum += loss.item() * len(idx)
    if dist is not None:
        loss_sum = dist.reduce(torch.tensor([loss_sum], dtype=torch.float64, device=device)).item()
    log.info("joint epoch: loss %.4f", loss_sum / len(texts))
    return loss_sum / len(texts)


def _train_heldout(gf, texts, labels, old_logits, schedule: FusionSchedule, result, on_epoch_end, reload_new) -> None:
    cfg = schedule.train
    gate_idx, fit_idx = heldout_split(labels, schedule.heldout_fraction, cfg.seed)
    _train_new(gf, [texts[i] for i in fit_idx], labels[fit_idx], cfg, result, on_epoch_end)
    t = time.perf_counter()
    new_logits, emb = gf.new_outputs([texts[i] for i in gate_idx])
    result.gate_epoch_loss = fit_gate(gf, emb, old_logits[gate_idx], new_logits, labels[gate_idx],
                                      schedule.gate_lr or 1e-3, schedule.gate_epochs, cfg.batch_size,
                                      cfg.weight_decay, cfg.seed)
    result.parts["gate_s"] = time.perf_counter() - t
    result.gate_examples = len(gate_idx)
    if schedule.refit:
        if reload_new is None:
            raise ValueError("refit needs reload_new")
        if gf.config.inputs != "signals":
            log.warning("refit with gate_inputs=%s: the gate was fitted on another new model's embeddings",
                        gf.config.inputs)
        gf.new = reload_new().to(gf.device)
        _train_new(gf, texts, labels, cfg, result, on_epoch_end, key="refit_s")


def fit_gate(gf: GatedFusion, embeddings: np.ndarray, old_logits: np.ndarray, new_logits: np.ndarray,
             labels: np.ndarray, lr: float, epochs: int, batch_size: int, weight_decay: float, seed: int) -> list[float]:
    """Fit only the gate on fixed outputs of both models (new frozen): cross-entropy of the fused logits.
    Returns the loss per epoch; an empty split leaves the gate as it is. Under a multi-process launch every
    process fits it on the same (gathered) outputs, and all then take process 0's gate: their dropout
    draws may differ, their gates must not."""
    if len(labels) == 0:
        return []
    dev = gf.device
    old, new = (torch.as_tensor(a, device=dev).float() for a in (old_logits, new_logits))
    x = gf.gate_input(torch.as_tensor(embeddings, device=dev).float(), old, new)
    y = torch.as_tensor(labels, device=dev)
    opt = torch.optim.AdamW(gf.gate.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    gf.gate.train()
    losses = []
    for _ in range(epochs):
        total = 0.0
        for rows in torch.randperm(len(y), generator=g).split(batch_size):
            rows = rows.to(dev)
            fused = fuse(old[rows], new[rows], gf.gate(x[rows]), gf.config.temperature)
            loss = nn.functional.cross_entropy(fused, y[rows])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            total += loss.item() * len(rows)
        losses.append(total / len(y))
    gf.gate.eval()
    if distributed() is not None:
        for t in gf.gate.state_dict().values():
            torch.distributed.broadcast(t, src=0)
    log.info("gate fitted on %d held-out examples: loss %.4f -> %.4f", len(y), losses[0], losses[-1])
    return losses
