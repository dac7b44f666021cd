"""Training and prediction throughput of flipgate's loops against Hugging Face's, same run.

Training: our loop vs `Trainer` (default sampler and train_sampling_strategy="group_by_length"), same model,
data, batch size and epochs. Prediction: ours vs `pipeline("text-classification")` at batch 32.

Run: python benchmarks/bench_throughput.py data/update [--n-train 1500 --n-predict 2000 --epochs 1]
Prints examples/s for each and the ratios. Needs the `update` stage's splits (dvc repro update).
"""

import argparse
import logging
import os
import tempfile
import time

import numpy as np
import torch

from flipgate.data import update
from flipgate.models.classifier import load_classifier
from flipgate.models.device import set_seed
from flipgate.models.predict import predict_logits
from flipgate.models.train import TrainConfig, train_classifier

CPU = torch.device("cpu")


def ours_train(texts, labels, labels_list, args) -> float:
    set_seed(0)
    model, tok = load_classifier(args.model, labels_list)
    cfg = TrainConfig(epochs=args.epochs, lr=1e-4, batch_size=args.batch_size, seed=0)
    res = train_classifier(model, tok, texts, labels, cfg, CPU)
    return res.examples_per_s


def trainer_train(texts, labels, labels_list, args, strategy: str) -> float:
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    set_seed(0)
    model, tok = load_classifier(args.model, labels_list)
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
                                  learning_rate=1e-4, warmup_steps=0.1, weight_decay=0.01, report_to=[], save_strategy="no",
                                  logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0,
                                  train_sampling_strategy=strategy, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        return len(texts) * args.epochs / (time.perf_counter() - start)


def ours_predict(texts, labels_list, args) -> float:
    model, tok = load_classifier(args.model, labels_list)
    predict_logits(model, tok, texts[:64], CPU, batch_size=64)  # warm-up
    start = time.perf_counter()
    predict_logits(model, tok, texts, CPU, batch_size=64)
    return len(texts) / (time.perf_counter() - start)


def pipeline_predict(texts, labels_list, args) -> float:
    from transformers import pipeline

    model, tok = load_classifier(args.model, labels_list)
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1)
    pipe(texts[:64], batch_size=32, truncation=True, max_length=128)  # warm-up
    start = time.perf_counter()
    pipe(texts, batch_size=32, truncation=True, max_length=128)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-predict", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    labels_list, _ = update.load_labels(args.data)
    train = update.load_split(args.data, "updated").iloc[: args.n_train]
    reg = update.load_split(args.data, "regression").iloc[: args.n_predict]
    texts, labels = train["text"].tolist(), train["label"].to_numpy()
    print(f"torch threads {torch.get_num_threads()}, model {args.model}, batch {args.batch_size}")
    if not args.skip_train:
        t_default = trainer_train(texts, labels, labels_list, args, "random")
        t_grouped = trainer_train(texts, labels, labels_list, args, "group_by_length")
        t_ours = ours_train(texts, labels, labels_list, args)
        print(f"train {len(texts)} ex x {args.epochs} epoch(s): Trainer default {t_default:.1f} ex/s, "
              f"Trainer group_by_length {t_grouped:.1f} ex/s, flipgate {t_ours:.1f} ex/s "
              f"-> {t_ours / t_grouped:.2f}x the best Trainer")
    p_pipe = pipeline_predict(reg["text"].tolist(), labels_list, args)
    p_ours = ours_predict(reg["text"].tolist(), labels_list, args)
    print(f"predict {len(reg)} ex: pipeline(batch 32) {p_pipe:.1f} ex/s, flipgate {p_ours:.1f} ex/s "
          f"-> {p_ours / p_pipe:.2f}x")
    print(f"reproduce: python benchmarks/bench_throughput.py {args.data} --n-train {args.n_train} "
          f"--n-predict {args.n_predict} --epochs {args.epochs}")


if __name__ == "__main__":
    main()
