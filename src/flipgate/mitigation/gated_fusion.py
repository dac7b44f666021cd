"""Gated Fusion (Lai et al. 2023): a learned gate mixes a frozen old model's logits with a new model's.

    logits = (1 - a) * l_old / T + a * l_new,    a = gate(stop_grad(E_new(x)) [, signals]) in [0, 1]

`GatedFusion` holds the two models and the gate (composition: it subclasses neither model). Old is frozen
(eval mode, no gradient) and may have another architecture and tokenizer than new: each model tokenises the
text with its own tokenizer, and only logits meet. The gate reads new's last-layer [CLS] vector through a
stop-gradient (so the gate never moves new's encoder) and, optionally, "signals": both models' confidence,
margin and entropy, whether they agree, and how much each believes the other's answer.

Two training variants (`gated_fusion_train.train_gated_fusion`):
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.errors import FlipgateError
from flipgate.io import atomic_path
from flipgate.mitigation.ensemble import pad_old_logits
from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.device import get_device
from flipgate.models.predict import predict_logits

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
