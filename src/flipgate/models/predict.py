"""Batched inference: length-sorted batches, dynamic padding, logits (and [CLS] embeddings) out.

Under a multi-process launch (models/device.py) the length-sorted batches are dealt out over the processes
by Accelerate's data loader (even batches: the last ones are padded with repeated rows), and every batch's
rows, logits and embeddings are gathered with `gather_for_metrics`, which drops those padding repeats: each
process gets the whole result, every row exactly once. Every process must make the same calls."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from flipgate.models.batching import Encoded, sorted_batches
from flipgate.models.device import autocast, distributed
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

    An empty input gives arrays with zero rows. `batch_size` is per process.
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
    dist = distributed()
    if dist is None:
        for idx in sorted_batches(enc.lengths, batch_size):
            batch = {key: v.to(device) for key, v in enc.batch(idx).items()}
            with autocast(device):
                out = model(**batch, output_hidden_states=embeddings)
            logits[idx] = out.logits.float().cpu().numpy()
            if embeddings:
                embs[idx] = out.hidden_states[-1][:, 0].float().cpu().numpy()
            bar.update(len(idx))
    else:
        for rows, out_logits, out_embs in _gathered(model, enc, device, batch_size, embeddings, dist):
            logits[rows] = out_logits
            if embeddings:
                embs[rows] = out_embs
            bar.update(len(rows))
    bar.close()
    return (logits, embs) if embeddings else logits


def _gathered(model, enc: Encoded, device: torch.device, batch_size: int, embeddings: bool, dist):
    """(rows, logits, embeddings or None) per global step, gathered from every process."""
    from accelerate.data_loader import prepare_data_loader

    order = torch.from_numpy(np.argsort(-enc.lengths, kind="stable"))  # longest first, as sorted_batches
    loader = prepare_data_loader(torch.utils.data.DataLoader(order, batch_size=batch_size),
                                 num_processes=dist.num_processes, process_index=dist.process_index)
    for idx in loader:
        batch = {key: v.to(device) for key, v in enc.batch(idx.numpy()).items()}
        with autocast(device):
            out = model(**batch, output_hidden_states=embeddings)
        mine = [idx.to(device), out.logits.float()]
        if embeddings:
            mine.append(out.hidden_states[-1][:, 0].float().contiguous())
        got = [t.cpu().numpy() for t in dist.gather_for_metrics(mine)]
        yield got[0], got[1], got[2] if embeddings else None
