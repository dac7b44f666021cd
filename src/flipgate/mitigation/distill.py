"""Distillation from old, the seeds' baselines (pure torch, no I/O):

    L = CE(new) + lambda * mean_i beta_i * T^2 * KL(p_old^T(x_i) || p_new^T(x_i))

with p^T = softmax(logits / T) and the mean over the batch (examples with beta 0 count in the mean: the
talk's sum over D_train, per example). T^2 keeps the gradient's size the same across temperatures (Hinton
et al. 2015). Three choices of beta (the BCWI talk's slides; the Gated Fusion paper's appendix A.2 grid:
lambda 0.1, 1, 10; T 0.5, 1, 2):

- ``kd``: beta = 1 (knowledge distillation);
- ``focal``: beta = 1[old's prediction is y] (Yan et al. 2021), fixed before training;
- ``dynamic``: beta = 1[p_old(y | x) > p_new(y | x)] (Xie et al. 2021), re-decided at every step from
  the new model's current logits (at T = 1, detached: the mask takes no gradient).

Old's logits come from a table computed once before training (no forward pass of old per step). An update
that adds classes gives old fewer columns: old's distribution puts no mass on the added classes, so their
terms of the KL are zero (and old is never right on, nor more confident about, an added-class example).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Kind = Literal["kd", "focal", "dynamic"]
KINDS: tuple[Kind, ...] = ("kd", "focal", "dynamic")


def kl_per_example(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * KL(p_old^T || p_new^T) for each row, shape (n,). `old_logits` may have fewer columns than
    `new_logits` (added classes): those classes get no old mass."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    k_old = old_logits.shape[1]
    if k_old > new_logits.shape[1]:
        raise ValueError(f"old has {k_old} classes but new only {new_logits.shape[1]}; label ids must only grow")
    log_new = F.log_softmax(new_logits.float() / temperature, dim=1)[:, :k_old]
    log_old = F.log_softmax(old_logits.float() / temperature, dim=1)
    return temperature**2 * (log_old.exp() * (log_old - log_new)).sum(dim=1)


def focal_mask(old_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where old's prediction is the gold label, else 0.0 (Yan et al.'s beta)."""
    return (old_logits.argmax(dim=1) == labels).float()


def dynamic_mask(new_logits: torch.Tensor, old_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where old gives the gold label more probability than new does now (Xie et al.'s beta), else 0.0.
    An added-class label (old has no such column) gets 0.0. Detached: the mask is a selection, not a loss."""
    p_new = F.softmax(new_logits.detach().float(), dim=1).gather(1, labels[:, None])[:, 0]
    known = labels < old_logits.shape[1]
    p_old = F.softmax(old_logits.float(), dim=1).gather(1, labels.clamp(max=old_logits.shape[1] - 1)[:, None])[:, 0]
    return (known & (p_old > p_new)).float()


def distill_loss(kind: Kind, new_logits: torch.Tensor, old_logits: torch.Tensor, labels: torch.Tensor,
                 lam: float, temperature: float) -> torch.Tensor:
    """lambda * mean over the batch of beta * T^2 KL(p_old^T || p_new^T) (the term added to CE)."""
    if kind == "kd":
        beta = torch.ones(len(labels), device=new_logits.device)
    elif kind == "focal":
        beta = focal_mask(old_logits, labels)
    elif kind == "dynamic":
        beta = dynamic_mask(new_logits, old_logits, labels)
    else:
        raise ValueError(f"unknown distillation kind {kind!r}; known: {KINDS}")
    return lam * (beta * kl_per_example(new_logits, old_logits, temperature)).mean()


def distill_term(kind: Kind, old_logits: np.ndarray, labels: np.ndarray, lam: float,
                 temperature: float) -> Callable[[torch.Tensor, np.ndarray, torch.nn.Module], torch.Tensor]:
    """The `extra_loss(logits, idx, model)` for models.train.train_classifier: old's logits and the gold
    labels of the training set (row i = training example i) looked up by the batch's indices."""
    old = torch.as_tensor(np.asarray(old_logits, dtype=np.float32))
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    if len(old) != len(y):
        raise ValueError(f"old's training logits have {len(old)} rows for {len(y)} training examples")

    def term(logits: torch.Tensor, idx: np.ndarray, model: torch.nn.Module) -> torch.Tensor:
        rows = torch.as_tensor(idx, dtype=torch.long)
        return distill_loss(kind, logits, old[rows].to(logits.device), y[rows].to(logits.device), lam, temperature)

    return term
