"""Gated Fusion (Lai et al. 2023): a learned gate mixes a frozen old model's logits with a new model's.

    logits = (1 - a) * l_old / T + a * l_new,    a = gate(stop_grad(E_new(x)) [, signals]) in [0, 1]

`GatedFusion` holds the two models and the gate (composition: it subclasses neither model). Old is frozen
(eval mode, no gradient) and may have another architecture and tokenizer than new: each model tokenises the
text with its own tokenizer, and only logits meet. The gate reads new's last-layer [CLS] vector through a
stop-gradient (so the gate never moves new's encoder) and, optionally, "signals": both models' confidence,
margin and entropy, whether they agree, and how much each believes the other's answer.

Two training variants (`train_gated_fusion`):
- "paper" (section 3.2 and appendix A.3 as written): new alone for N - 1 epochs at `lr`, then one joint
  epoch on the fused logits at `lr2`; at each joint step, with probability `drop_gate`, new trains alone.
- "heldout": new trains on D_updated minus a held-out gate split; the gate is then fitted on that split,
  which new has not seen, with new frozen. On its own training data new is almost never wrong where old
  is right, so a gate fitted there (the paper variant) learns to trust new; on held-out data it sees the
  disagreements it must learn to arbitrate. `refit` retrains new on all of D_updated afterwards.
"Old dropped" (a = 1) is new as trained inside Gated Fusion: `predict(texts, drop_old=True)`.

An update that adds classes gives old fewer logits: its missing columns are filled with its row minimum.
Saved as one folder: old/, new/ (HF folders), gate.safetensors, config.json, flipgate.json (kind
"gated_fusion"); `load_gated_fusion(folder)` loads it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.errors import FlipgateError
from flipgate.io import atomic_path
from flipgate.mitigation.ensemble import pad_old_logits
from flipgate.models.batching import Encoded, length_grouped_batches
from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.device import autocast, ddp, distributed, get_device, set_seed, shard
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, adamw, train_classifier

log = logging.getLogger(__name__)

VARIANTS = ("paper", "heldout")
GATE_INPUTS = ("embedding", "signals", "both")
N_SIGNALS = 9
KIND = "gated_fusion"


class Gate(nn.Module):
    """Dropout, Linear(d, hidden), LayerNorm, ReLU, Dropout, Linear(hidden, 1), Sigmoid (paper A.3).

    Maps (n, d) features to (n,) weights on new, in [0, 1].
    """

    def __init__(self, in_features: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _confidence(p: torch.Tensor) -> list[torch.Tensor]:
    """Max probability, top-1 minus top-2 probability, entropy / log(classes) (0 for one class)."""
    k = p.shape[1]
    top = p.topk(min(2, k), dim=1).values
    margin = top[:, 0] - top[:, 1] if k > 1 else top[:, 0]
    entropy = -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(k) if k > 1 else torch.zeros_like(top[:, 0])
    return [top[:, 0], margin, entropy]


def gate_signals(old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    """(n, 9) features in [0, 1] that generalise across inputs, computed without gradient: old's and new's
    max probability, margin and normalised entropy; agreement of their predictions; new's probability of
    old's prediction; old's probability of new's prediction."""
    with torch.no_grad():
        p_old, p_new = old_logits.float().softmax(1), new_logits.float().softmax(1)
        old_pred, new_pred = p_old.argmax(1, keepdim=True), p_new.argmax(1, keepdim=True)
        agree = (old_pred == new_pred).float().squeeze(1)
        cross = [p_new.gather(1, old_pred).squeeze(1), p_old.gather(1, new_pred).squeeze(1)]
        return torch.stack([*_confidence(p_old), *_confidence(p_new), agree, *cross], dim=1)


def fuse(old_logits: torch.Tensor, new_logits: torch.Tensor, alpha: torch.Tensor, temperature: float) -> torch.Tensor:
    """(1 - alpha) * old / T + alpha * new, alpha of shape (n,)."""
    a = alpha.unsqueeze(1)
    return (1 - a) * old_logits / temperature + a * new_logits


@dataclass(frozen=True)
class GateConfig:
    variant: str = "paper"  # "paper" | "heldout"
    temperature: float = 1.0  # T on old's logits (paper grid 1.0 ... 1.6)
    hidden: int = 64
    dropout: float = 0.1
    inputs: str = "embedding"  # "embedding" (paper) | "signals" | "both"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise FlipgateError(f"gated_fusion.variant: {self.variant!r} is not one of {VARIANTS}")
        if self.inputs not in GATE_INPUTS:
            raise FlipgateError(f"gated_fusion.gate_inputs: {self.inputs!r} is not one of {GATE_INPUTS}")
        if self.temperature <= 0:
            raise FlipgateError("gated_fusion.temperature: must be > 0")

    def in_features(self, hidden_size: int) -> int:
        return {"embedding": hidden_size, "signals": N_SIGNALS, "both": hidden_size + N_SIGNALS}[self.inputs]


@dataclass(frozen=True)
class FusionOutput:
    logits: np.ndarray  # (n, classes) fused
    alpha: np.ndarray  # (n,) the gate's weight on new; 1 where old was dropped
    new_logits: np.ndarray
    embeddings: np.ndarray  # (n, hidden) new's [CLS] vectors
    old_logits: np.ndarray | None  # None when old was dropped


class GatedFusion:
    """A frozen old classifier, a trainable new one and a gate; each model keeps its own tokenizer."""

    def __init__(
        self,
        old: PreTrainedModel,
        old_tokenizer: PreTrainedTokenizerBase,
        new: PreTrainedModel,
        new_tokenizer: PreTrainedTokenizerBase,
        config: GateConfig,
        device: torch.device,
        gate: Gate | None = None,
        max_length: int = 128,
        batch_size: int = 64,
    ) -> None:
        self.old = old.to(device).eval().requires_grad_(False)
        self.old_tokenizer, self.new_tokenizer = old_tokenizer, new_tokenizer
        self.new = new.to(device)
        self.config, self.device = config, device
        self.gate = (gate or Gate(config.in_features(new.config.hidden_size), config.hidden, config.dropout)).to(device)
        self.max_length, self.batch_size = max_length, batch_size

    @property
    def num_labels(self) -> int:
        return self.new.config.num_labels

    def gate_input(self, emb: torch.Tensor, old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.config.inputs in ("embedding", "both"):
            parts.append(emb.detach().float())  # stop-gradient (paper eq. 4): the gate must not move new
        if self.config.inputs in ("signals", "both"):
            parts.append(gate_signals(old_logits, new_logits))
        return torch.cat(parts, dim=1)

    def fused(
        self, emb: torch.Tensor, old_logits: torch.Tensor, new_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused logits and the gate's alpha, differentiable in new's logits and the gate's weights."""
        alpha = self.gate(self.gate_input(emb, old_logits, new_logits))
        return fuse(old_logits, new_logits, alpha, self.config.temperature), alpha

    def old_logits(self, texts: list[str]) -> np.ndarray:
        """Old's logits with old's own tokenizer, widened to new's classes."""
        logits = predict_logits(self.old, self.old_tokenizer, list(texts), self.device, self.batch_size, self.max_length)
        return pad_old_logits(logits, self.num_labels)

    def new_outputs(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """New's logits and [CLS] embeddings with new's own tokenizer."""
        return predict_logits(self.new, self.new_tokenizer, list(texts), self.device, self.batch_size,
                              self.max_length, embeddings=True)

    @torch.no_grad()
    def combine(self, new_logits: np.ndarray, embeddings: np.ndarray, old_logits: np.ndarray | None) -> FusionOutput:
        """Gate and fuse precomputed outputs; `old_logits` None means old is dropped (alpha = 1)."""
        n = len(new_logits)
        if old_logits is None:
            return FusionOutput(new_logits.astype(np.float32), np.ones(n, np.float32), new_logits, embeddings, None)
        old_logits = pad_old_logits(old_logits, self.num_labels)
        self.gate.eval()
        fused, alpha = np.zeros_like(new_logits, dtype=np.float32), np.zeros(n, np.float32)
        for s in range(0, n, 4096):  # the gate is tiny; chunks only bound memory
            rows = slice(s, s + 4096)
            e, o, nl = (torch.as_tensor(x[rows], device=self.device).float() for x in (embeddings, old_logits, new_logits))
            f, a = self.fused(e, o, nl)
            fused[rows], alpha[rows] = f.cpu().numpy(), a.cpu().numpy()
        return FusionOutput(fused, alpha, new_logits, embeddings, old_logits)

    def predict(self, texts: list[str], old_logits: np.ndarray | None = None, drop_old: bool = False) -> FusionOutput:
        """Fused logits for `texts`. Old runs live unless its logits are given (a cache) or `drop_old`."""
        new_logits, emb = self.new_outputs(texts)
        if not drop_old and old_logits is None:
            old_logits = self.old_logits(texts)
        return self.combine(new_logits, emb, None if drop_old else old_logits)

    def predict_logits(self, texts: list[str]) -> np.ndarray:
        """The pyfunc Predictor protocol: fused logits (n, classes)."""
        return self.predict(list(texts)).logits

    def save(self, folder: str | Path, meta: dict | None = None) -> None:
        """One folder, written atomically: old/, new/, gate.safetensors, config.json, flipgate.json."""
        config = {**asdict(self.config), "gate_in_features": self.config.in_features(self.new.config.hidden_size),
                  "num_labels": self.num_labels, "old_num_labels": self.old.config.num_labels,
                  "max_length": self.max_length}
        with atomic_path(folder, folder=True) as tmp:
            tmp.mkdir()
            save_classifier(self.old, self.old_tokenizer, tmp / "old", {"role": "old"})
            save_classifier(self.new, self.new_tokenizer, tmp / "new", {"role": "gated_fusion_new"})
            gate = {k: v.detach().cpu().contiguous() for k, v in self.gate.state_dict().items()}
            save_file(gate, str(tmp / "gate.safetensors"))
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            (tmp / "flipgate.json").write_text(json.dumps({"kind": KIND, **(meta or {})}, indent=2) + "\n")


def load_gated_fusion(
    folder: str | Path, device: torch.device | str = "auto", max_length: int | None = None, batch_size: int = 64
) -> GatedFusion:
    """Load a folder written by `GatedFusion.save`. Raises FlipgateError naming the folder when it is not one."""
    folder = Path(folder)
    manifest = folder / "flipgate.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("kind") != KIND:
        raise FlipgateError(f"{folder}: not a Gated Fusion folder (flipgate.json with kind {KIND!r} missing)")
    config = json.loads((folder / "config.json").read_text())
    device = device if isinstance(device, torch.device) else get_device(device)
    gate_cfg = GateConfig(**{k: config[k] for k in ("variant", "temperature", "hidden", "dropout", "inputs")})
    gate = Gate(config["gate_in_features"], gate_cfg.hidden, gate_cfg.dropout)
    gate.load_state_dict(load_file(str(folder / "gate.safetensors")))
    old, old_tok = load_classifier(str(folder / "old"))
    new, new_tok = load_classifier(str(folder / "new"))
    return GatedFusion(old, old_tok, new, new_tok, gate_cfg, device, gate.eval(),
                       max_length or config["max_length"], batch_size)


def load_predictor(folder: Path, max_length: int = 128, batch_size: int = 64, device: str = "auto") -> GatedFusion:
    """The loader `flipgate.models.pyfunc` dispatches to for kind "gated_fusion"."""
    return load_gated_fusion(folder, device, max_length, batch_size)


# ---------------------------------------------------------------------------------------------- training


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
