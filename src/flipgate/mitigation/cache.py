"""Gated Fusion without hosting the old model: an old-logit cache (Lai et al. 2023, section 3.3, Table 5).

The old model's logits are kept for inputs it has already seen, keyed by the sha256 of the normalised text
(stripped, lowercased, whitespace collapsed). An input found in the cache uses its own old logits (a hit);
any other input borrows the old logits of its nearest cached neighbour by euclidean distance between the
NEW model's [CLS] embeddings (the cache stores one per entry). The fused prediction then runs the gate on
the new model's outputs and those old logits, exactly as live Gated Fusion does.

Nearest neighbour search is exact (torch.cdist over the cache in chunks). Its cost grows linearly with the
cache: measured on a 2-core CPU (torch 2.13) with 384-d keys (MiniLM's width), one
batch of 64 queries takes ~10 ms against 10k entries, ~150 ms against 100k and ~1.45 s against 1M (whose
keys alone are 1.5 GB of float32); a single query costs about the same as a batch of 64 (13 / 120 /
1,160 ms), so online lookups stay under ~20 ms only up to ~10-20k cached entries, and offline batch
scoring stays comfortable up to ~100k. Past that, replace it with an approximate index over the same keys:
FAISS (IVF-Flat or IVF-PQ on CPU, or HNSW) or hnswlib, which answer in well under a millisecond at
millions of entries, at the price of occasionally returning a near-but-not-nearest neighbour.
Reproduce: `python benchmarks/bench_gated_fusion.py --nn-scaling 10000 100000 1000000 [--nn-queries 1]`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flipgate.text import normalise_text


def text_key(text: str) -> str:
    """The cache key: sha256 hex digest of the normalised text (flipgate.text: the leakage checks' sameness)."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def nearest_neighbours(
    queries: torch.Tensor, keys: torch.Tensor, chunk: int = 65536
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact euclidean nearest neighbour of each query row among the key rows.

    Returns (index, distance), both of length len(queries). The keys are scanned `chunk` rows at a time
    so memory stays at len(queries) * chunk distances; ties go to the lowest index. Raises ValueError on
    an empty key set (there is no neighbour to borrow from).
    """
    if len(keys) == 0:
        raise ValueError("no cached entries to search")
    queries, keys = queries.float(), keys.float()
    best_d = torch.full((len(queries),), float("inf"))
    best_i = torch.zeros(len(queries), dtype=torch.long)
    for start in range(0, len(keys), chunk):
        d_min, i_min = torch.cdist(queries, keys[start : start + chunk]).min(dim=1)
        better = d_min < best_d
        best_d = torch.where(better, d_min, best_d)
        best_i = torch.where(better, i_min + start, best_i)
    # cdist's fast matrix-product form loses precision for near-identical vectors: recompute the
    # winners' distances directly so an exact duplicate reports 0.
    return best_i, (queries - keys[best_i]).norm(dim=1)


@dataclass(frozen=True)
class Lookup:
    """Old logits for each query, where they came from, and how far the borrowed neighbour was."""

    logits: np.ndarray  # (n, classes) float32
    hit: np.ndarray  # (n,) bool: the query's own text was cached
    neighbour: np.ndarray  # (n,) int: the cache entry used
    distance: np.ndarray  # (n,) float32: 0 for hits, euclidean distance of the borrowed neighbour otherwise

    @property
    def hit_rate(self) -> float:
        return float(self.hit.mean()) if len(self.hit) else 0.0


class OldLogitCache:
    """Cached old-model logits keyed by normalised-text hash, with new-model embeddings for misses.

    Duplicate texts (after normalisation) keep their first entry.
    """

    def __init__(self, texts: Sequence[str], old_logits: np.ndarray, embeddings: np.ndarray) -> None:
        if not (len(texts) == len(old_logits) == len(embeddings)):
            raise ValueError("texts, old_logits and embeddings must have the same length")
        first: dict[str, int] = {}
        for i, t in enumerate(texts):
            first.setdefault(text_key(t), i)
        keep = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        self.index = {k: j for j, k in enumerate(first)}
        self.logits = np.asarray(old_logits, dtype=np.float32)[keep]
        self.embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)[keep])

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, texts: Sequence[str], embeddings: np.ndarray, chunk: int = 65536) -> Lookup:
        """Old logits for `texts` (whose new-model embeddings are `embeddings`). Raises ValueError when the
        cache is empty: callers fall back to new alone (Gated Fusion with the old model dropped)."""
        n = len(texts)
        if len(self) == 0:
            raise ValueError("the cache is empty")
        own = np.array([self.index.get(text_key(t), -1) for t in texts], dtype=np.int64)
        hit = own >= 0
        neighbour, distance = own.copy(), np.zeros(n, dtype=np.float32)
        miss = np.flatnonzero(~hit)
        if len(miss):
            q = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)[miss])
            idx, dist = nearest_neighbours(q, self.embeddings, chunk)
            neighbour[miss], distance[miss] = idx.numpy(), dist.numpy()
        return Lookup(self.logits[neighbour], hit, neighbour, distance)


def sample_cached(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of round(fraction * n) inputs drawn at random without replacement (fraction in [0, 1]).

    With one seed, caches are nested: the 50% cache is a subset of the 75% cache.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"cache fraction {fraction} is not in [0, 1]")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: int(round(fraction * n))])


def distance_stats(lookup: Lookup) -> dict[str, float | int | None]:
    """Distances of the borrowed neighbours (misses only); None values when every query was a hit."""
    d = lookup.distance[~lookup.hit]
    if len(d) == 0:
        return {"misses": 0, "mean": None, "median": None, "p90": None, "max": None}
    return {"misses": int(len(d)), "mean": float(d.mean()), "median": float(np.median(d)),
            "p90": float(np.quantile(d, 0.9)), "max": float(d.max())}


def time_exact_search(sizes: Sequence[int], dim: int = 384, queries: int = 64, repeats: int = 3,
                      seed: int = 0) -> list[dict]:
    """Seconds for one batch of `queries` exact lookups against caches of each size (random vectors)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(queries, dim, generator=g)
    rows = []
    for size in sizes:
        keys = torch.randn(size, dim, generator=g)
        nearest_neighbours(q, keys[: min(size, 1024)])  # warm up kernels
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            nearest_neighbours(q, keys)
            best = min(best, time.perf_counter() - t)
        rows.append({"cache_size": size, "dim": dim, "queries": queries, "seconds": best,
                     "key_megabytes": size * dim * 4 / 2**20})
        del keys
    return rows
