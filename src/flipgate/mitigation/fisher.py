"""Diagonal Fisher information of a classifier on its training data (for FisherBCWI)."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.models.batching import Encoded
from flipgate.progress import progress


def diagonal_fisher(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    labels: np.ndarray,
    device: torch.device,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Per-parameter mean over examples of the squared gradient of log p(y | x) (the empirical Fisher,
    with gold labels y). One backward pass per example: a squared batch gradient is not a mean of
    squared per-example gradients. Keys are the model's state_dict keys; buffers get zeros.
    An empty input gives all zeros."""
    model.to(device).eval()  # eval: no dropout, the Fisher of the deployed function
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    enc = Encoded(tokenizer, texts, max_length)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    for i in progress(iterable=range(len(enc)), desc="fisher"):
        batch = {k: v.to(device) for k, v in enc.batch(np.array([i])).items()}
        model.zero_grad(set_to_none=True)
        logp = torch.log_softmax(model(**batch).logits.float(), dim=-1)
        logp[0, y[i]].backward()
        for n, p in params.items():
            if p.grad is not None:
                acc[n] += p.grad.detach().float() ** 2
    model.zero_grad(set_to_none=True)
    n = max(len(enc), 1)
    names = dict(model.named_parameters())
    out = {}
    for key, t in model.state_dict().items():
        out[key] = (acc[key] / n).to(t.dtype) if key in acc and key in names else torch.zeros_like(t)
    return out
