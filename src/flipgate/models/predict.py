"""Batched inference: length-sorted batches, dynamic padding, logits (and [CLS] embeddings) out."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.models.batching import Encoded, sorted_batches
from flipgate.models.device import autocast
from flipgate.progress import progress


@torch.inference_mode()
def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    device: torch.device,
    batch_size: int = 64,
    max_length: int = 128,
    embeddings: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Logits (n, classes) in input order; with `embeddings`, also the last layer's [CLS] vectors (n, h).

    An empty input gives arrays with zero rows.
    """
    model.to(device).eval()
    n = len(texts)
    k = model.config.num_labels
    logits = np.zeros((n, k), dtype=np.float32)
    embs = np.zeros((n, model.config.hidden_size), dtype=np.float32) if embeddings else None
    if n == 0:
        return (logits, embs) if embeddings else logits
    enc = Encoded(tokenizer, texts, max_length)
    bar = progress(total=n, desc="predict")
    for idx in sorted_batches(enc.lengths, batch_size):
        batch = {key: v.to(device) for key, v in enc.batch(idx).items()}
        with autocast(device):
            out = model(**batch, output_hidden_states=embeddings)
        logits[idx] = out.logits.float().cpu().numpy()
        if embeddings:
            embs[idx] = out.hidden_states[-1][:, 0].float().cpu().numpy()
        bar.update(len(idx))
    bar.close()
    return (logits, embs) if embeddings else logits
