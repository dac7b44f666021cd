"""The seeds' baselines end to end (the `baselines` stage's body, `run_stage`): for each method, train a new model
from old on D_updated with its extra loss or regulariser at each grid point, predict dev and the regression
set, choose the grid point on dev by the rule BCWI's alpha uses, and return the chosen model and tables.

Every point trains with train_new's schedule (the Gated Fusion paper: the new model's training knobs,
"then fixed for all backward-compatible solutions"), from old, with the same seed. What each method needs
of old is computed once per call, not per step: its logits on D_updated (distillation, one forward pass),
its weights (prior weight decay, EWC, Mixout) and its Fisher (EWC; the `fisher` stage's when present).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from flipgate.data import update
from flipgate.io import atomic_path, read_json, write_json, write_parquet
from flipgate.mitigation.distill import distill_term
from flipgate.mitigation.ensemble import score
from flipgate.mitigation.regularise import l2_towards, mixout
from flipgate.mitigation.selection_rule import Options, Rule, choose, rule_from
from flipgate.models.classifier import classification_head, is_fine_tuned, load_classifier, save_classifier
from flipgate.models.device import get_device, set_seed
from flipgate.models.predict import predict_logits
from flipgate.models.run import check_fit, dev_accuracy_hook, schedule_summary
from flipgate.models.train import TrainConfig, TrainResult, train_classifier
from flipgate.predictions import align, predictions_frame, read_predictions

if TYPE_CHECKING:
    from flipgate.params import Base, Baselines, Gate, Schedule
    from flipgate.stage import Run

log = logging.getLogger(__name__)

SPLITS = ("dev", "regression")

DISTILL = {"kd": "kd", "focal_distill": "focal", "dynamic_distill": "dynamic"}  # method -> distill.Kind
METHODS = (*DISTILL, "prior_wd", "ewc", "mixout")


def point_name(knobs: dict) -> str:
    """A grid point's name, by its knobs: `lambda=1,T=2`, `strength=0.1`, `p=0.5`."""
    return ",".join(f"{k}={v:g}" for k, v in knobs.items())


@dataclass(frozen=True)
class OldState:
    """What the methods need of old, computed once: logits on the training set (row i = training example
    i), weights, the normalised Fisher (None until EWC needs it)."""

    train_logits: np.ndarray | None
    weights: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor] | None = None


def penalty(method: str, knobs: dict, old: OldState, train_labels: np.ndarray
            ) -> Callable[[torch.nn.Module], Callable | None]:
    """model -> its extra_loss for train_classifier (None: Mixout, which changes the weights instead)."""
    if method in DISTILL:
        if old.train_logits is None:
            raise ValueError(f"{method}: old's logits on the training set were not computed")
        term = distill_term(DISTILL[method], old.train_logits, train_labels, knobs["lambda"], knobs["T"])
        return lambda model: term
    if method == "prior_wd":
        return lambda model: l2_towards(model, old.weights, knobs["strength"])
    if method == "ewc":
        if old.fisher is None:
            raise ValueError("ewc: old's Fisher was not computed")
        return lambda model: l2_towards(model, old.weights, knobs["strength"], old.fisher)
    if method == "mixout":
        return lambda model: None
    raise ValueError(f"unknown baseline {method!r}; known: {METHODS}")


@contextmanager
def weights_transform(method: str, knobs: dict, old: OldState, model: torch.nn.Module) -> Iterator[None]:
    with mixout(model, old.weights, knobs["p"]) if method == "mixout" else nullcontext():
        yield


@dataclass
class PointResult:
    knobs: dict
    weights: dict[str, torch.Tensor]  # on CPU
    tables: dict[str, pd.DataFrame]  # split -> predictions table
    train: TrainResult
    summary: dict


def train_point(
    method: str, knobs: dict, init: str, labels: list[str], train_df: pd.DataFrame,
    eval_splits: dict[str, pd.DataFrame], cfg: TrainConfig, old: OldState, device: torch.device,
    eval_batch_size: int,
) -> PointResult:
    """One training of new from `init` (old's folder; in a model upgrade base.model, as train_new) with
    `method` at `knobs`, then its dev and regression predictions."""
    set_seed(cfg.seed)
    model, tok = load_classifier(init, labels)
    fresh = not is_fine_tuned(init)
    if not fresh:
        cfg = replace(cfg, head_lr=None, from_fine_tuned=True)  # new's schedule from a fine-tuned start
    hook = dev_accuracy_hook(model, tok, eval_splits["dev"], device, eval_batch_size, cfg.max_length)
    extra = penalty(method, knobs, old, train_df["label"].to_numpy())(model)
    log.info("%s %s: training from %s on %d examples", method, point_name(knobs), init, len(train_df))
    with weights_transform(method, knobs, old, model):
        result = train_classifier(model, tok, train_df["text"].tolist(), train_df["label"].to_numpy(), cfg, device,
                                  hook, extra_loss=extra, head=classification_head(model) if fresh else None)
    tables = {}
    for split, df in eval_splits.items():
        logits = predict_logits(model, tok, df["text"].tolist(), device, eval_batch_size, cfg.max_length)
        tables[split] = predictions_frame(df["id"], df["label"], logits)
    summary = {**schedule_summary(result, cfg), "train_seconds": round(result.seconds, 2),
               "fit": check_fit(method, result, train_df["label"].to_numpy(), eval_splits["dev"],
                                tables["dev"]["pred"].to_numpy(), len(labels))}
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return PointResult(knobs, weights, tables, result, summary)


def old_train_logits(old_dir: str, texts: list[str], device: torch.device, batch_size: int,
                     max_length: int) -> tuple[np.ndarray, float]:
    """Old's logits on the training texts (one forward pass) and the seconds it took."""
    start = time.perf_counter()
    model, tok = load_classifier(old_dir)
    logits = predict_logits(model, tok, texts, device, batch_size, max_length)
    return logits, time.perf_counter() - start


@dataclass
class MethodResult:
    method: str
    chosen: PointResult
    report: dict


def run_method(
    method: str, grid: list[dict], init: str, labels: list[str], train_df: pd.DataFrame,
    eval_splits: dict[str, pd.DataFrame], old_tables: dict[str, pd.DataFrame], new_tables: dict[str, pd.DataFrame],
    cfg: TrainConfig, old: OldState, rule: Rule, device: torch.device, eval_batch_size: int,
    new_train_seconds: float | None, setup_seconds: float = 0.0,
) -> MethodResult:
    """Train every grid point, choose one on dev by `rule` (new is the tolerance rule's reference; the
    regression set is only scored), and report: the chosen knobs and why, each point's dev and regression
    figures against old (fix/new-fault against new), its train summary, and the training time as a ratio
    to new's (`setup_seconds`: what the method computed of old first, e.g. EWC's Fisher)."""
    if not grid:
        raise ValueError(f"{method}: an empty grid")
    aligned = {s: (old_tables[s].reset_index(drop=True),
                   align(old_tables[s], new_tables[s], f"predictions/old/{s}", f"predictions/new/{s}", "rerun train_new"))
               for s in eval_splits}
    points = {}
    rows = []
    for knobs in grid:
        res = train_point(method, knobs, init, labels, train_df, eval_splits, cfg, old, device, eval_batch_size)
        name = point_name(knobs)
        points[name] = res
        for split, (o, n) in aligned.items():
            t = align(o, res.tables[split], f"predictions/old/{split}", f"{method} {name} {split}", "rerun baselines")
            m = score(t, o, n)
            rows.append({"point": name, **knobs, "split": split,
                         **{k: m[k] for k in ("accuracy", "nfr", "pfr", "negative_flips", "n", "fix_rate",
                                              "new_fault_rate") if k in m}})
        del res.train  # keep the weights and tables only
    o_dev, n_dev = aligned["dev"]
    choice = choose(Options.from_tables({k: p.tables["dev"] for k, p in points.items()}, o_dev, n_dev,
                                        where=f"{method} grid"), rule)
    chosen = points[choice.key]
    log.info("%s: %s chosen on dev, in %.0f%% of dev resamples (%s)", method, choice.key, 100 * choice.stability,
             choice.reason)
    seconds = [p.summary["train_seconds"] for p in points.values()]
    ratio = (lambda s: round(s / new_train_seconds, 3) if new_train_seconds else None)
    report = {
        "method": method, "chosen": choice.key, "knobs": chosen.knobs, "admissible": choice.admissible,
        "reason": choice.reason, "stability": choice.stability, "distribution": choice.as_dict()["distribution"],
        "grid": rows, "train": chosen.summary,
        "metrics": {s: score(align(o, chosen.tables[s], "old", method, "rerun baselines"), o, n)
                    for s, (o, n) in aligned.items()},
        "timing": {
            "train_seconds": chosen.summary["train_seconds"], "setup_seconds": round(setup_seconds, 2),
            "grid_train_seconds": round(sum(seconds), 2), "new_train_seconds": new_train_seconds,
            "ratio_to_new": ratio(chosen.summary["train_seconds"]),
            "ratio_to_new_with_setup": ratio(chosen.summary["train_seconds"] + setup_seconds),
            "grid_ratio_to_new": ratio(sum(seconds) + setup_seconds),
        },
    }
    return MethodResult(method, chosen, report)


STACK = "bcwi_stacked"  # the folder of BCWI over a baseline's chosen model


def stack_bcwi(
    over: str, chosen: PointResult, alphas: list[float], old_dir: str, labels: list[str],
    eval_splits: dict[str, pd.DataFrame], old_tables: dict[str, pd.DataFrame], new_tables: dict[str, pd.DataFrame],
    old: OldState, rule: Rule, device: torch.device, eval_batch_size: int, max_length: int,
) -> tuple[dict, dict[str, pd.DataFrame], dict[str, torch.Tensor]]:
    """Mitigations that stack: BCWI between old and `over`'s chosen model (alpha 0: that model, 1: old, never
    picked), alpha chosen on dev by `rule` with new as the tolerance rule's reference, as the bcwi stage
    chooses. Returns the report, the chosen alpha's tables and its weights (on CPU)."""
    from flipgate.mitigation.bcwi import interpolate_into
    from flipgate.mitigation.bcwi_sweep import sweep
    from flipgate.pipeline.bcwi import head_keys

    start = time.perf_counter()
    o = {s: align(eval_splits[s], old_tables[s], f"split {s}", f"predictions/old/{s}", "rerun train_old")
         for s in eval_splits}
    n_dev = align(eval_splits["dev"], new_tables["dev"], "split dev", "predictions/new/dev", "rerun train_new")
    mine = {s: align(eval_splits[s], t, f"split {s}", f"{over} {s}", "rerun baselines") for s, t in chosen.tables.items()}
    model, tok = load_classifier(old_dir, labels)
    model.load_state_dict(chosen.weights)
    model.to(device)
    known = {0.0: mine}
    if len(labels) == len(o["dev"]["logits"].iloc[0]):
        known[1.0] = o
    grid = sorted({*alphas, 0.0})
    res = sweep(model, tok, old.weights, chosen.weights, grid, eval_splits, o, device, eval_batch_size, max_length,
                grow_keys=head_keys(model), known=known)
    choice = choose(Options.from_tables({a: t["dev"] for a, t in res.predictions.items() if a < 1.0}, o["dev"], n_dev,
                                        trend="down", where=f"bcwi over {over}"), rule)
    alpha = choice.key
    interpolate_into(model, old.weights, chosen.weights, alpha, None, head_keys(model))
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    tables = res.predictions[alpha]
    log.info("bcwi over %s: alpha %.2f chosen on dev, in %.0f%% of dev resamples (%s)", over, alpha,
             100 * choice.stability, choice.reason)
    report = {
        "method": STACK, "over": over, "over_knobs": chosen.knobs, "alpha": alpha, "admissible": choice.admissible,
        "reason": choice.reason, "stability": choice.stability, "distribution": choice.as_dict()["distribution"],
        "curve": [{"variant": STACK, **r} for r in res.rows],
        "metrics": {s: score(tables[s], o[s], align(eval_splits[s], new_tables[s], f"split {s}",
                                                     f"predictions/new/{s}", "rerun train_new"))
                    for s in eval_splits},
        "timing": {"sweep_seconds": round(time.perf_counter() - start, 2), "train_seconds": 0.0},
    }
    return report, tables, weights


# --------------------------------------------------------------------------------------------- the stage


def old_fisher(run: Run, data_dir: Path, old_dir: Path, max_examples: int, device, max_length: int):
    """Old's Fisher, normalised to mean 1: the fisher stage's when it wrote one, else computed here on D_old.
    Returns (Fisher, seconds spent here)."""
    from safetensors.torch import load_file

    from flipgate.mitigation.bcwi import normalise_fisher
    from flipgate.mitigation.fisher import diagonal_fisher

    start = time.perf_counter()
    cached = run.models / "fisher" / "fisher.safetensors"
    if cached.exists():
        return normalise_fisher(load_file(str(cached))), time.perf_counter() - start
    d_old = update.load_split(data_dir, "old")
    if len(d_old) > max_examples:
        d_old = d_old.sample(n=max_examples, random_state=run.seed)
    model, tok = load_classifier(str(old_dir))
    fisher = diagonal_fisher(model, tok, d_old["text"].tolist(), d_old["label"].to_numpy(), device, max_length)
    return normalise_fisher(fisher), time.perf_counter() - start


MIXING = ("prior_wd", "ewc", "mixout", STACK)  # the methods that need old's and new's weights to share shapes


def write_off(run: Run, method: str, reason: str | None = None) -> None:
    key = "bcwi_stack" if method == STACK else method
    why = {"method": method, "state": "off", "why": reason or f"baselines.{key}.enabled is false"}
    for folder in (run.models / method, run.predictions / method):
        with atomic_path(folder, folder=True) as tmp:
            tmp.mkdir()
            write_json(why, tmp / "off.json")


def run_stage(run: Run, data_dir: Path, base: Base, p: Baselines, hp: Schedule, gate: Gate) -> None:
    """Reads the run's models/old, models/fisher (EWC, when it holds a Fisher), predictions/{old,new} and
    reports/train/new.json (new's training time); writes, per method, models/<method>/ and
    predictions/<method>/{dev,regression}.parquet (a method that is off: only off.json in both), and
    reports/baselines.json. `hp`: train_new's schedule, which every grid point trains with."""
    grids = {m: p.grid(m) for m in METHODS}
    stack = p.bcwi_stack.enabled
    skipped = {}
    if base.no_weight_mixing:  # a model upgrade: the weight-space methods cannot run
        skipped = {m: base.no_weight_mixing for m in MIXING if (stack if m == STACK else grids[m])}
        grids.update({m: [] for m in skipped if m != STACK})
        stack = stack and STACK not in skipped
    off = [m for m, g in grids.items() if not g and m not in skipped] + ([] if stack or STACK in skipped else [STACK])
    for method in off:
        write_off(run, method)
    for method, why in skipped.items():
        log.warning("%s: skipped: %s", method, why)
        write_off(run, method, why)
    report: dict = {"methods": {}, "off": off, "skipped": skipped}
    if not any(grids.values()):
        write_json(report, run.reports / "baselines.json")
        return
    device = get_device(base.device)
    labels, _ = update.load_labels(data_dir)
    train_df = update.load_split(data_dir, "updated")
    splits = {s: update.load_split(data_dir, s) for s in SPLITS}
    preds = {m: {s: read_predictions(run.predictions / m / f"{s}.parquet") for s in SPLITS} for m in ("old", "new")}
    new_dev = preds["new"]["dev"]
    rule, _ = rule_from(p.objective, gate.nfr_budget, p.confidence, gate.min_gain, p.tolerance, p.ci_level,
                        int((new_dev["pred"] == new_dev["label"]).sum()), len(new_dev))
    new_report = run.reports / "train" / "new.json"
    new_seconds = read_json(new_report).get("train_seconds") if new_report.exists() else None
    if new_seconds is None:
        log.warning("%s has no train_seconds: the training-time ratios are not reported", new_report)
    old_dir = run.models / "old"
    init = base.model if base.upgrade else str(old_dir)  # where new starts, as train_new
    old_model, _ = load_classifier(str(old_dir))
    weights = {} if base.upgrade else {k: v.detach().clone() for k, v in old_model.state_dict().items()}
    del old_model
    logits, logits_s = None, 0.0
    if any(grids[m] for m in DISTILL):  # one forward pass of old over D_updated, shared by every distillation
        logits, logits_s = old_train_logits(str(old_dir), train_df["text"].tolist(), device, base.eval_batch_size,
                                            base.max_length)
        report["old_train_logits_seconds"] = round(logits_s, 2)
    fisher, fisher_s = None, 0.0
    if grids["ewc"]:
        fisher, fisher_s = old_fisher(run, data_dir, old_dir, p.ewc.fisher_max_examples, device, base.max_length)
        report["fisher_seconds"] = round(fisher_s, 2)
    old = OldState(logits, weights, fisher)
    cfg = TrainConfig.from_schedule(hp, base.max_length, run.seed)
    report["rule"] = rule.describe()
    for method, grid in grids.items():
        if not grid:
            continue
        setup = logits_s if method in DISTILL else fisher_s if method == "ewc" else 0.0
        res = run_method(method, grid, init, labels, train_df, splits, preds["old"], preds["new"], cfg, old,
                         rule, device, base.eval_batch_size, new_seconds, setup)
        model, tok = load_classifier(init, labels)
        model.load_state_dict(res.chosen.weights)
        save_classifier(model, tok, run.models / method,
                        {"role": method, "seed": run.seed, "knobs": res.chosen.knobs, "labels": labels})
        write_tables(run.predictions / method, res.chosen.tables)
        report["methods"][method] = res.report
        if stack and method == p.bcwi_stack.over:
            stacked, tables, weights = stack_bcwi(method, res.chosen, p.bcwi_stack.alphas, str(old_dir), labels,
                                                  splits, preds["old"], preds["new"], old, rule, device,
                                                  base.eval_batch_size, base.max_length)
            model.load_state_dict(weights)
            save_classifier(model, tok, run.models / STACK, {"role": STACK, "seed": run.seed, "over": method,
                                                             "alpha": stacked["alpha"], "labels": labels})
            write_tables(run.predictions / STACK, tables)
            report["methods"][STACK] = stacked
    write_json(report, run.reports / "baselines.json")


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    with atomic_path(folder, folder=True) as tmp:  # replaces an earlier off.json
        tmp.mkdir()
        for split, table in tables.items():
            write_parquet(table, tmp / f"{split}.parquet")
