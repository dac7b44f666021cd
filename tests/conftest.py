"""Shared fixtures: a toy sentiment task, tiny BERTs built from a config (no downloads), an MLflow store."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# A pytest-xdist worker runs under execnet, whose __main__ has neither __spec__ nor __file__. pyspark
# (imported by great_expectations when it is installed) takes that for its own doctest run and calls
# sys.exit(0) on import, which ends the worker. The worker gets the __spec__ that `python -m pytest` has,
# which multiprocessing's spawn also reads (a "__main__" module is not re-run in the child).
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__spec__ = importlib.util.find_spec("pytest.__main__")

POSITIVE = ["good", "great", "fine", "lovely", "superb", "brilliant"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "terrible"]
FILLER = ["the", "movie", "plot", "was", "really", "quite", "acting", "film", "story", "and", "a", "very"]


def toy_frame(n: int, seed: int, prefix: str = "x") -> pd.DataFrame:
    """Sentences whose label is carried by one sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=rng.randint(3, 9))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append({"id": f"{prefix}{i}", "text": " ".join(words) + f" {prefix}{i}", "label": label})
    return pd.DataFrame(rows)


def build_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, corpus: list[str] | None = None) -> Path:
    """A randomly initialised BERT (hidden 32, 2 layers) with a WordPiece tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(hidden * 100 + layers)  # the same tiny model every session

    corpus = corpus or [" ".join(POSITIVE + NEGATIVE + FILLER)] + toy_frame(200, 99)["text"].tolist()
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_wide(tmp_path_factory) -> Path:
    """A different architecture (hidden 48, 3 layers) for model-upgrade tests."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-wide"), hidden=48, layers=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One migrated sqlite MLflow store per test module (migration costs seconds), with a pristine copy
    of the migrated db beside it (pristine.db) for tests that need an empty store."""
    import shutil

    import mlflow

    from flipgate import tracking

    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("FLIPGATE_PIPELINE_KEY", raising=False)
        uri = f"sqlite:///{folder}/mlflow.db"
        tracking.connect(uri).search_experiments()  # migrates the schema
        shutil.copy(folder / "mlflow.db", folder / "pristine.db")
        yield uri
        mlflow.set_tracking_uri(None)  # MLflow exported the URI to os.environ; later tests must not inherit it
