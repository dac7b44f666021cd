"""Tokenise once, then batch by length with dynamic padding (no padding to max_length)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


class Encoded:
    """Token ids of many texts, unpadded; `batch(idx)` pads only to the longest in the batch."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int):
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        self.columns = {k: enc[k] for k in self.keys}
        self.lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        width = int(self.lengths[idx].max())
        out = {}
        for k in self.keys:
            fill = self.pad_id if k == "input_ids" else 0
            arr = np.full((len(idx), width), fill, dtype=np.int64)
            for row, i in enumerate(idx):
                seq = self.columns[k][i]
                arr[row, : len(seq)] = seq
            out[k] = torch.from_numpy(arr)
        return out


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, mega: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length within mega-batches of `mega` batches, then shuffle the batch order.

    Batches hold similar lengths (little padding) while epochs stay random.
    """
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    for start in range(0, len(order), batch_size * mega):
        chunk = order[start : start + batch_size * mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Inference batches sorted by length, longest first (so a memory error shows up at once)."""
    order = np.argsort(-lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]
