"""Stage `gated_fusion` (and the benchmark's library half): build and train Gated Fusion, then predict each
split live, with old dropped and with the old-logit cache, and score every output against old and new.
`run_stage` is the stage's body; the functions below it are its parts, which the benchmark reuses.

Old's logits on dev and the regression set come from its predictions table (the project's currency and,
for a champion in production, exactly the cache of logits it served); they equal a live run of old.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from flipgate.data import update
from flipgate.io import read_json, write_json, write_parquet
from flipgate.mitigation.cache import OldLogitCache, distance_stats, sample_cached
from flipgate.mitigation.ensemble import score
from flipgate.mitigation.gated_fusion import FusionOutput, GateConfig, GatedFusion
from flipgate.mitigation.gated_fusion_train import (
    FusionSchedule,
    FusionTrainResult,
    build_gated_fusion,
    train_gated_fusion,
)
from flipgate.models.classifier import is_fine_tuned, load_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.models.train import TrainConfig
from flipgate.predictions import align, logits_matrix, predictions_frame, read_predictions

if TYPE_CHECKING:
    from flipgate.params import Base, GatedFusion as GatedFusionParams
    from flipgate.stage import Run

log = logging.getLogger(__name__)

LIVE, DROPPED = "gated_fusion", "gated_fusion_dropped"
RERUN = "rerun the stage that writes it"


def run_stage(run: Run, data_dir: Path, base: Base, p: GatedFusionParams) -> None:
    """Reads the run's models/old, predictions/{old,new} and reports/train/new.json (new's training time);
    writes its models/gated_fusion, predictions/gated_fusion{,_dropped,_cache<percent>}/ and
    reports/gated_fusion.json."""
    model_root, pred_root, new_train_report = run.models, run.predictions, run.reports / "train" / "new.json"
    labels, _ = update.load_labels(data_dir)
    splits = {s: update.load_split(data_dir, s) for s in ("dev", "regression")}
    old_tables = {s: read_predictions(pred_root / "old" / f"{s}.parquet") for s in splits}
    new_tables = {s: read_predictions(pred_root / "new" / f"{s}.parquet") for s in splits}
    # init old: new starts where train_new starts (old's weights; in a model upgrade base.model)
    init = {"old": base.model if base.upgrade else str(model_root / "old"), "base": base.model}.get(p.init, p.init)
    config = GateConfig(variant=p.variant, temperature=p.temperature, hidden=p.gate_hidden, dropout=p.gate_dropout,
                        inputs=p.gate_inputs or ("embedding" if p.variant == "paper" else "both"))
    schedule = FusionSchedule(
        train=TrainConfig.from_schedule(p, base.max_length, run.seed),
        lr2=p.lr2, drop_gate=p.drop_gate, gate_lr=p.gate_lr, gate_epochs=p.gate_epochs,
        heldout_fraction=p.heldout_fraction, refit=p.refit,
    )
    gf, result = fit(str(model_root / "old"), init, labels, update.load_split(data_dir, "updated"), config,
                     schedule, get_device(base.device), base.max_length, base.eval_batch_size, dev=splits["dev"])
    gf.save(model_root / "gated_fusion", {"role": "gated_fusion", "init": p.init, "seed": run.seed, "labels": labels})
    outputs = predict_splits(gf, splits, old_tables, p.cache_fractions, run.seed)
    written = write_outputs(outputs, pred_root)
    new_seconds = read_json(new_train_report).get("train_seconds") if new_train_report.exists() else None
    if new_seconds is None:
        log.warning("%s has no train_seconds: the training-time ratio is not reported", new_train_report)
    write_json({"variant": p.variant, "gate_inputs": config.inputs, "outputs": written,
                "train": train_summary(result, new_seconds), **score_outputs(outputs, old_tables, new_tables),
                "nearest_neighbour": "exact (torch.cdist); see flipgate.mitigation.cache for where it stops scaling"},
               run.reports / "gated_fusion.json")


def cache_name(fraction: float) -> str:
    return f"gated_fusion_cache{round(100 * fraction)}"


def fit(
    old_dir: str, init: str, labels: list[str], train_df: pd.DataFrame, config: GateConfig,
    schedule: FusionSchedule, device: torch.device, max_length: int, batch_size: int,
    dev: pd.DataFrame | None = None,
) -> tuple[GatedFusion, FusionTrainResult]:
    """Build Gated Fusion from old's folder and `init`, train it on `train_df` (text, label). New's dev
    accuracy (on `dev`) after every epoch drives an adaptive schedule (`schedule.train.patience`)."""
    seed = schedule.train.seed
    if is_fine_tuned(init):  # new from old: the noise-tolerant adaptive rule, as train_new's
        schedule = replace(schedule, train=replace(schedule.train, from_fine_tuned=True))
    gf = build_gated_fusion(old_dir, init, labels, config, device, max_length, batch_size, seed)

    def reload_new():
        set_seed(seed)
        return load_classifier(init, labels)[0]

    hook = None
    if dev is not None:
        texts, y = dev["text"].tolist(), dev["label"].to_numpy()

        def hook(epoch: int) -> dict:  # gf.new may be replaced (refit): read it at call time
            return {"dev_accuracy": float(np.mean(gf.new_outputs(texts)[0].argmax(1) == y)) if len(y) else 0.0,
                    "dev_examples": len(y)}

    result = train_gated_fusion(gf, train_df["text"].tolist(), train_df["label"].to_numpy(), schedule,
                                on_epoch_end=hook, reload_new=reload_new)
    return gf, result


@dataclass(frozen=True)
class SplitOutputs:
    tables: dict[str, pd.DataFrame]  # output name -> predictions table
    cache: list[dict]  # one row per cache fraction: hit rate and neighbour distances
    mean_alpha: float


def split_outputs(
    gf: GatedFusion, df: pd.DataFrame, old_logits: np.ndarray, fractions: list[float], seed: int
) -> SplitOutputs:
    """Live Gated Fusion, old dropped, and the cache at 0, each of `fractions` and 1 on one split.

    New runs once; the cache holds old's logits for a random `fraction` of the split's inputs. A 0% cache
    has nothing to borrow: that is Gated Fusion with old dropped.
    """
    texts = df["text"].tolist()
    new_logits, emb = gf.new_outputs(texts)
    live = gf.combine(new_logits, emb, old_logits)
    frame = lambda out: predictions_frame(df["id"], df["label"], out.logits)  # noqa: E731
    tables = {LIVE: frame(live), DROPPED: frame(gf.combine(new_logits, emb, None))}
    rows = []
    for fraction in sorted({0.0, 1.0, *fractions}):
        chosen = sample_cached(len(texts), fraction, seed)
        if len(chosen) == 0:
            out: FusionOutput = gf.combine(new_logits, emb, None)
            stats = {"cached": 0, "hit_rate": 0.0, "distance": distance_stats_empty(len(texts))}
        else:
            cache = OldLogitCache([texts[i] for i in chosen], old_logits[chosen], emb[chosen])
            lookup = cache.lookup(texts, emb)
            out = gf.combine(new_logits, emb, lookup.logits)
            stats = {"cached": len(cache), "hit_rate": lookup.hit_rate, "distance": distance_stats(lookup)}
        rows.append({"fraction": fraction, **stats, "table": frame(out)})
        if fraction in fractions:
            tables[cache_name(fraction)] = rows[-1]["table"]
    return SplitOutputs(tables, rows, float(live.alpha.mean()) if len(live.alpha) else 0.0)


def distance_stats_empty(n: int) -> dict:
    return {"misses": n, "mean": None, "median": None, "p90": None, "max": None}


def predict_splits(gf: GatedFusion, splits: dict[str, pd.DataFrame], old_tables: dict[str, pd.DataFrame],
                   fractions: list[float], seed: int) -> dict[str, SplitOutputs]:
    """Every split's outputs; old's logits are its predictions table's rows in the split's order."""
    old_logits = {s: logits_matrix(align(df, old_tables[s], f"split {s}", f"predictions/old/{s}", RERUN))
                  for s, df in splits.items()}
    return {s: split_outputs(gf, df, old_logits[s], fractions, seed) for s, df in splits.items()}


def score_outputs(outputs: dict[str, SplitOutputs], old_tables: dict[str, pd.DataFrame],
                  new_tables: dict[str, pd.DataFrame]) -> dict:
    """Per split: every output's metrics against old (fix/new fault against new), and the cache curve with
    the share of live Gated Fusion's NFR reduction (relative to new) that each cache size keeps, keyed by
    cache percent ("0", "50", "75", "100")."""
    report: dict = {}
    for split, so in outputs.items():
        live = so.tables[LIVE]
        old = align(live, old_tables[split], f"predictions/{LIVE}/{split}", f"predictions/old/{split}", RERUN)
        new = align(live, new_tables[split], f"predictions/{LIVE}/{split}", f"predictions/new/{split}", RERUN)
        models = {name: score(t, old, new) for name, t in so.tables.items()}
        models["new"] = score(new, old, new)
        cut = models["new"]["nfr"] - models[LIVE]["nfr"]
        curve = {}
        for row in so.cache:  # keyed by percent so DVC and MLflow see scalar metrics (cache.75.nfr)
            m = score(row["table"], old, new)
            kept = (models["new"]["nfr"] - m["nfr"]) / cut if cut > 0 else None
            curve[str(round(100 * row["fraction"]))] = {
                "fraction": row["fraction"], "cached": row["cached"], "hit_rate": row["hit_rate"],
                "accuracy": m["accuracy"], "nfr": m["nfr"], "fix_rate": m["fix_rate"],
                "new_fault_rate": m["new_fault_rate"], "nfr_reduction_kept": kept,
                "neighbour_distance": row["distance"]}
        report[split] = {"models": models, "cache": curve, "mean_alpha": so.mean_alpha}
    return report


def write_outputs(outputs: dict[str, SplitOutputs], pred_root: str | Path) -> list[str]:
    """predictions/<output>/<split>.parquet for every output; returns the output names."""
    names = list(next(iter(outputs.values())).tables)
    for split, so in outputs.items():
        for name, table in so.tables.items():
            write_parquet(table, Path(pred_root) / name / f"{split}.parquet")
    return names


def train_summary(result: FusionTrainResult, new_train_seconds: float | None) -> dict:
    return {
        "seconds": round(result.seconds, 2),
        "parts_s": {k: round(v, 2) for k, v in result.parts.items()},
        "new_train_seconds": new_train_seconds,
        "ratio_to_new": round(result.seconds / new_train_seconds, 3) if new_train_seconds else None,
        "new_epoch_loss": [round(x, 5) for x in result.new_epoch_loss],
        "new_best_epoch": result.new_best_epoch,
        "epoch_curve": [{k: round(v, 5) if isinstance(v, float) else v for k, v in e.items()} for e in result.new_epoch_eval],
        "joint_loss": result.joint_loss,
        "gate_epoch_loss": [round(x, 5) for x in result.gate_epoch_loss[:: max(1, len(result.gate_epoch_loss) // 10)]],
        "gate_examples": result.gate_examples,
        "new_examples": result.new_examples,
    }
