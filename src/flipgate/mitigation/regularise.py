"""Regularisers that keep new near old while it trains (the BCWI talk's baselines; pure torch, no I/O):

- **prior weight decay** (towards old, L2-SP style): + s/2 * sum_i (theta_i - theta_old,i)^2;
- **EWC** (Kirkpatrick et al. 2017): + s/2 * sum_i F_i (theta_i - theta_old,i)^2, F old's diagonal Fisher
  on D_old (mitigation/fisher.py) scaled to mean 1 (bcwi.normalise_fisher), so s means what it means for
  prior weight decay and a constant F gives prior weight decay exactly;
- **Mixout** (Lee et al. 2020): while training, each weight of every linear layer is replaced by old's with
  probability p and the result rescaled, w' = u + M * (w - u) / (1 - p) with M ~ Bernoulli(1 - p) and u
  old's weight, so E[w'] = w; in eval mode w' = w.

The penalties are `extra_loss(logits, idx, model)` terms for models.train.train_classifier; Mixout is a
torch parametrization put on the model for the length of a training (`mixout`), so the saved model has
plain weights and plain state-dict keys. Parameters whose name old lacks are not pulled; a head that grew
rows for added classes is pulled on old's rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

StateDict = dict[str, torch.Tensor]


def _overlap(param: torch.Tensor, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(param's rows old has, old's tensor); None when the shapes differ beyond grown rows."""
    if anchor.shape == param.shape:
        return param, anchor
    if anchor.ndim == param.ndim and anchor.shape[1:] == param.shape[1:] and anchor.shape[0] < param.shape[0]:
        return param[: anchor.shape[0]], anchor
    return None


def l2_towards(
    model: torch.nn.Module, anchor: StateDict, strength: float, weights: StateDict | None = None,
) -> Callable[[torch.Tensor, np.ndarray, torch.nn.Module], torch.Tensor]:
    """The penalty s/2 * sum w (theta - anchor)^2 over the trainable parameters named in `anchor`, as an
    `extra_loss`; `weights` (a Fisher, same keys) None means 1 (prior weight decay). Anchor and weights are
    copied to the model's device on the first call. Raises ValueError on a negative strength or when no
    parameter has an anchor (old and new are not the same architecture: use distillation)."""
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    names = [n for n, p in model.named_parameters() if p.requires_grad and n in anchor]
    if not names:
        raise ValueError("no trainable parameter of the model is named in old's state dict (another architecture?)")
    cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def term(logits: torch.Tensor, idx: np.ndarray, model: torch.nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = torch.zeros((), device=logits.device, dtype=torch.float32)
        for name in names:
            p = params[name]
            if name not in cache:
                w = None if weights is None else weights[name].detach().to(p.device, torch.float32)
                cache[name] = (anchor[name].detach().to(p.device, torch.float32), w)
            a, w = cache[name]
            pair = _overlap(p, a)
            if pair is None:
                continue
            sq = (pair[0].float() - pair[1]) ** 2
            total = total + (sq if w is None else w[: len(pair[0])] * sq).sum()
        return 0.5 * strength * total

    return term


class MixoutWeight(torch.nn.Module):
    """A parametrization w -> u + M * (w - u) / (1 - p) in training mode, w in eval mode."""

    def __init__(self, old: torch.Tensor, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"mixout p must be in [0, 1), got {p}")
        self.p = p
        self.register_buffer("old", old.detach().clone(), persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return w
        old = self.old.to(w.dtype)
        return old + F.dropout(w - old, self.p, training=True)  # dropout keeps with 1 - p, scales by 1/(1-p)


@contextmanager
def mixout(model: torch.nn.Module, old: StateDict, p: float) -> Iterator[int]:
    """Mixout on the weight of every nn.Linear whose `<name>.weight` old has with the same shape, for the
    body of the `with`; yields how many layers it covers. p = 0 leaves the model untouched (so training
    is bitwise plain training). On exit the plain weights (the trained w) are put back."""
    if not 0 <= p < 1:
        raise ValueError(f"mixout p must be in [0, 1), got {p}")
    done: list[torch.nn.Module] = []
    try:
        if p > 0:
            for name, module in model.named_modules():
                key = f"{name}.weight" if name else "weight"
                if isinstance(module, torch.nn.Linear) and key in old and old[key].shape == module.weight.shape:
                    parametrize.register_parametrization(module, "weight", MixoutWeight(old[key], p))
                    done.append(module)
        yield len(done)
    finally:
        for module in done:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
