import numpy as np
import pytest
import torch

from flipgate.mitigation.cache import (
    OldLogitCache,
    distance_stats,
    nearest_neighbours,
    sample_cached,
    text_key,
    time_exact_search,
)
from flipgate.mitigation.gated_fusion import GateConfig, GatedFusion
from flipgate.pipeline.gated_fusion import DROPPED, LIVE, cache_name, split_outputs
from flipgate.models.classifier import load_classifier
from flipgate.models.device import set_seed
from flipgate.text import normalise_text

from conftest import toy_frame

CPU = torch.device("cpu")


def test_keys_ignore_case_and_whitespace():
    assert normalise_text("  The  Movie\n\twas GOOD ") == "the movie was good"
    assert text_key("The movie  was good") == text_key(" the movie was good\n")
    assert text_key("the movie was good") != text_key("the movie was bad")
    assert len(text_key("x")) == 64


def test_nearest_neighbour_on_hand_made_embeddings():
    keys = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    queries = torch.tensor([[1.0, 1.0], [9.0, 1.0], [0.0, 7.0], [6.0, 6.0], [10.0, 10.0]])
    idx, dist = nearest_neighbours(queries, keys)
    assert idx.tolist() == [0, 1, 2, 3, 3]
    torch.testing.assert_close(dist, torch.tensor([2**0.5, 2**0.5, 3.0, 32**0.5, 0.0]))
    for chunk in (1, 3):  # chunking over the keys does not change the answer
        i2, d2 = nearest_neighbours(queries, keys, chunk=chunk)
        assert i2.tolist() == idx.tolist()
        torch.testing.assert_close(d2, dist)
    # A tie goes to the lowest index, also across chunks.
    i3, _ = nearest_neighbours(torch.tensor([[5.0, 0.0]]), keys, chunk=1)
    assert i3.tolist() == [0]
    with pytest.raises(ValueError, match="no cached entries"):
        nearest_neighbours(queries, keys[:0])


def test_lookup_uses_own_logits_on_a_hit_and_the_nearest_neighbour_otherwise():
    texts = ["a good film", "a bad film", "A  Good film"]  # the third is the first, normalised
    logits = np.array([[1, 0], [0, 1], [9, 9]], np.float32)
    emb = np.array([[0, 0], [10, 0], [0, 0]], np.float32)
    cache = OldLogitCache(texts, logits, emb)
    assert len(cache) == 2  # duplicates keep their first entry
    look = cache.lookup(["a good film ", "unseen near bad", "unseen near good"],
                        np.array([[5, 5], [8, 1], [1, 1]], np.float32))
    assert look.hit.tolist() == [True, False, False]
    assert look.neighbour.tolist() == [0, 1, 0]
    np.testing.assert_array_equal(look.logits, [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_allclose(look.distance, [0.0, 5**0.5, 2**0.5], rtol=1e-6)
    assert look.hit_rate == pytest.approx(1 / 3)
    stats = distance_stats(look)
    assert stats["misses"] == 2 and stats["max"] == pytest.approx(5**0.5)
    with pytest.raises(ValueError, match="empty"):
        OldLogitCache([], np.zeros((0, 2)), np.zeros((0, 2))).lookup(["x"], np.zeros((1, 2)))


def test_cache_samples_are_sized_and_nested():
    half, most = sample_cached(200, 0.5, seed=3), sample_cached(200, 0.75, seed=3)
    assert len(half) == 100 and len(most) == 150 and len(set(most)) == 150
    assert set(half) <= set(most)
    assert len(sample_cached(200, 0.0, 3)) == 0 and len(sample_cached(200, 1.0, 3)) == 200


@pytest.fixture(scope="module")
def gf(tiny_bert, tiny_bert_wide):
    """Untrained but deterministic: old and new of different sizes and tokenizers, a gate on both inputs."""
    old, old_tok = load_classifier(str(tiny_bert), ["0", "1"])
    set_seed(0)
    new, new_tok = load_classifier(str(tiny_bert_wide), ["0", "1"])
    return GatedFusion(old, old_tok, new, new_tok, GateConfig(inputs="both", temperature=1.3), CPU, max_length=32)


def test_full_cache_equals_live_gated_fusion_and_empty_cache_drops_old(gf):
    df = toy_frame(40, 5, "c")
    texts = df["text"].tolist()
    live = gf.predict(texts)
    new_logits, emb = gf.new_outputs(texts)
    look = OldLogitCache(texts, gf.old_logits(texts), emb).lookup(texts, emb)
    assert look.hit.all()
    cached = gf.combine(new_logits, emb, look.logits)
    np.testing.assert_allclose(cached.logits, live.logits, rtol=1e-5, atol=1e-6)

    out = split_outputs(gf, df, gf.old_logits(texts), [0.5], seed=0)
    assert set(out.tables) == {LIVE, DROPPED, cache_name(0.5)}
    rows = {r["fraction"]: r for r in out.cache}
    assert sorted(rows) == [0.0, 0.5, 1.0]
    assert rows[1.0]["hit_rate"] == 1.0 and rows[0.5]["hit_rate"] == 0.5 and rows[0.0]["hit_rate"] == 0.0
    np.testing.assert_allclose(np.stack(rows[1.0]["table"]["logits"]), live.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.stack(rows[0.0]["table"]["logits"]), np.stack(out.tables[DROPPED]["logits"]))
    # the 20 inputs left out of the 50% cache borrow their nearest cached neighbour's logits (Euclidean)
    chosen = sample_cached(40, 0.5, seed=0)
    missed = np.setdiff1d(np.arange(40), chosen)
    nearest = np.linalg.norm(emb[missed, None, :] - emb[None, chosen, :], axis=2).min(axis=1)
    assert rows[0.5]["distance"]["misses"] == 20
    assert rows[0.5]["distance"]["mean"] == pytest.approx(float(nearest.mean()), rel=1e-5)
    assert rows[0.5]["distance"]["max"] == pytest.approx(float(nearest.max()), rel=1e-5)


def test_a_miss_borrows_its_neighbours_old_logits(gf):
    texts = toy_frame(12, 6, "m")["text"].tolist()
    old = gf.old_logits(texts)
    new_logits, emb = gf.new_outputs(texts)
    cache = OldLogitCache(texts[:6], old[:6], emb[:6])
    look = cache.lookup(texts, emb)
    d = np.linalg.norm(emb[6:, None, :] - emb[None, :6, :], axis=2)
    np.testing.assert_array_equal(look.neighbour[6:], d.argmin(axis=1))
    np.testing.assert_allclose(look.distance[6:], d.min(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(look.logits[6:], old[d.argmin(axis=1)])
    fused = gf.combine(new_logits, emb, look.logits)
    live = gf.combine(new_logits, emb, old)
    np.testing.assert_allclose(fused.logits[:6], live.logits[:6], rtol=1e-6)


def test_exact_search_timing_rows_keep_the_best_repeat(monkeypatch):
    import flipgate.mitigation.cache as cache

    ticks = iter([0.0, 5.0, 5.0, 7.0, 7.0, 10.0,  # size 100: repeats of 5, 2 and 3 s
                  20.0, 21.5, 30.0, 34.0, 40.0, 41.0])  # size 1000: 1.5, 4 and 1 s
    monkeypatch.setattr(cache.time, "perf_counter", lambda: next(ticks))
    rows = time_exact_search([100, 1000], dim=8, queries=4, repeats=3)
    assert [r["cache_size"] for r in rows] == [100, 1000]
    assert [r["seconds"] for r in rows] == [2.0, 1.0]
    assert [r["key_megabytes"] for r in rows] == [100 * 8 * 4 / 2**20, 1000 * 8 * 4 / 2**20]  # float32 keys
