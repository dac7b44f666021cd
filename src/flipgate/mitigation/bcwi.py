"""Backward-compatible weight interpolation (Schumann et al. 2023).

theta = alpha * theta_old + (1 - alpha) * theta_new, where new was fine-tuned from old. alpha = 0 is new,
alpha = 1 is old. FisherBCWI weights old by its diagonal Fisher information F:
theta = (alpha F theta_old + (1 - alpha) theta_new) / (alpha F + 1 - alpha).
Everything is plain dict arithmetic over state_dicts, tensor by tensor, so peak memory stays at the two
inputs plus the model being written into.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from flipgate.errors import FlipgateError

StateDict = Mapping[str, torch.Tensor]

ARCH_HINT = "BCWI needs identical architectures; use Gated Fusion for an architecture upgrade"


def check_compatible(old: StateDict, new: StateDict, grow_keys: frozenset[str] = frozenset()) -> None:
    """Same keys and shapes, except head tensors (`grow_keys`) where new may have more rows (add_classes)."""
    if old.keys() != new.keys():
        only_old, only_new = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
        raise FlipgateError(f"{ARCH_HINT} (keys only in old: {only_old[:3]}, only in new: {only_new[:3]})")
    for key, t_new in new.items():
        t_old = old[key]
        if t_old.shape == t_new.shape:
            continue
        grows = key in grow_keys and t_old.shape[1:] == t_new.shape[1:] and t_old.shape[0] < t_new.shape[0]
        if not grows:
            raise FlipgateError(f"{ARCH_HINT} ({key}: old {tuple(t_old.shape)} vs new {tuple(t_new.shape)})")


def _fisher_mix(old: torch.Tensor, new: torch.Tensor, alpha: float, fisher: torch.Tensor) -> torch.Tensor:
    num = alpha * fisher * old + (1 - alpha) * new
    den = alpha * fisher + (1 - alpha)  # > 0 for alpha < 1, whatever F >= 0
    return num / den


def _mix_into(out: torch.Tensor, old: torch.Tensor, new: torch.Tensor, alpha: float,
              fisher: torch.Tensor | None) -> None:
    """Write one interpolated tensor into `out` (new's shape). Integer buffers (e.g. position ids) are
    copied from new. When new has more rows than old (classes added), the extra rows come from new and
    the shared rows are interpolated. Endpoints are copies, so alpha 0 and 1 are bitwise new and old."""
    if not new.is_floating_point() or alpha == 0.0:
        out.copy_(new)
        return
    if old.shape != new.shape:
        out.copy_(new)
        rows = old.shape[0]
        out, new = out[:rows], new[:rows]
        fisher = fisher[:rows] if fisher is not None and fisher.shape[0] != rows else fisher
    if alpha == 1.0:
        out.copy_(old)
    elif fisher is None:
        torch.lerp(new, old, alpha, out=out)  # in place: plain BCWI allocates nothing
    else:
        out.copy_(_fisher_mix(old, new, alpha, fisher))


def interpolate_tensor(old: torch.Tensor, new: torch.Tensor, alpha: float, fisher: torch.Tensor | None = None) -> torch.Tensor:
    """One interpolated tensor, newly allocated (see _mix_into for the rules)."""
    out = torch.empty_like(new)
    _mix_into(out, old, new, alpha, fisher)
    return out


@torch.no_grad()
def interpolate(
    old: StateDict,
    new: StateDict,
    alpha: float,
    fisher: StateDict | None = None,
    grow_keys: frozenset[str] = frozenset(),
) -> dict[str, torch.Tensor]:
    """The interpolated state dict (new tensors; inputs untouched)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_compatible(old, new, grow_keys)
    return {k: interpolate_tensor(old[k], new[k], alpha, None if fisher is None else fisher.get(k)) for k in new}


@torch.no_grad()
def interpolate_into(
    model: torch.nn.Module,
    old: StateDict,
    new: StateDict,
    alpha: float,
    fisher: StateDict | None = None,
    grow_keys: frozenset[str] = frozenset(),
) -> None:
    """Write the interpolation straight into `model`'s tensors (no third state dict)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_compatible(old, new, grow_keys)
    target = model.state_dict()
    if target.keys() != new.keys():
        raise FlipgateError(f"{ARCH_HINT} (the model to fill does not have new's parameters)")
    for key, out in target.items():
        _mix_into(out, old[key], new[key], alpha, None if fisher is None else fisher.get(key))


def average(state_dicts: list[StateDict]) -> dict[str, torch.Tensor]:
    """A uniform model soup: the mean of floating tensors; integer buffers from the first model."""
    if not state_dicts:
        raise ValueError("a soup needs at least one model")
    first = state_dicts[0]
    for sd in state_dicts[1:]:
        check_compatible(first, sd)
    out = {}
    for k, t in first.items():
        if t.is_floating_point():
            acc = t.detach().clone().to(torch.float64)
            for sd in state_dicts[1:]:
                acc += sd[k].to(torch.float64)
            out[k] = (acc / len(state_dicts)).to(t.dtype)
        else:
            out[k] = t.clone()
    return out


def normalise_fisher(fisher: StateDict) -> dict[str, torch.Tensor]:
    """Scale F so its mean over all parameters is 1: raw Fisher values are tiny (1e-8), and with mean 1
    alpha keeps the meaning it has in plain BCWI (a constant F gives plain BCWI exactly)."""
    total = sum(float(f.double().sum()) for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    mean = total / count if count else 0.0
    if mean <= 0:
        return {k: torch.ones_like(f) for k, f in fisher.items()}
    return {k: f / mean for k, f in fisher.items()}
