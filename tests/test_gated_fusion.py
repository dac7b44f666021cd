import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flipgate.data import update
from flipgate.io import read_json
from flipgate.mitigation.gated_fusion import GateConfig, GatedFusion, load_gated_fusion
from flipgate.mitigation.gated_fusion_train import (
    FusionSchedule,
    build_gated_fusion,
    fit_gate,
    heldout_split,
    train_gated_fusion,
)
from flipgate.models.batching import Encoded
from flipgate.models.classifier import load_classifier, save_classifier
from flipgate.models.predict import predict_logits
from flipgate.models.run import fine_tune
from flipgate.models.train import TrainConfig, train_classifier
from flipgate.predictions import read_predictions

from conftest import toy_frame

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
LABELS = ["0", "1"]
TINY = TrainConfig(epochs=2, lr=2e-3, batch_size=16, seed=0, max_length=32)


@pytest.fixture(scope="module")
def old_dir(tiny_bert, tmp_path_factory) -> Path:
    """A tiny old model fitted (roughly) to the toy task."""
    folder = tmp_path_factory.mktemp("gf") / "old"
    model, tok = load_classifier(str(tiny_bert), LABELS)
    train = toy_frame(160, 0, "o")
    train_classifier(model, tok, train["text"].tolist(), train["label"].to_numpy(), TINY, CPU)
    save_classifier(model, tok, folder, {"role": "old", "labels": LABELS})
    return folder


def make_gf(old_dir: Path, init: str, **config) -> GatedFusion:
    return build_gated_fusion(str(old_dir), init, LABELS, GateConfig(**config), CPU, max_length=32)


TEXTS = toy_frame(24, 3, "t")["text"].tolist()


def test_gate_forced_to_one_gives_new_and_forced_to_zero_gives_old_over_t(old_dir, tiny_bert_wide):
    gf = make_gf(old_dir, str(tiny_bert_wide), inputs="both", temperature=1.6)
    new_ref = predict_logits(gf.new, gf.new_tokenizer, TEXTS, CPU, max_length=32)
    old_ref = predict_logits(gf.old, gf.old_tokenizer, TEXTS, CPU, max_length=32)
    last = gf.gate.net[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(50.0)  # sigmoid(50) == 1.0 in float32
    out = gf.predict(TEXTS)
    np.testing.assert_array_equal(out.alpha, np.ones(len(TEXTS), np.float32))
    np.testing.assert_allclose(out.logits, new_ref, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        last.bias.fill_(-50.0)
    out = gf.predict(TEXTS)
    assert out.alpha.max() < 1e-20
    np.testing.assert_allclose(out.logits, old_ref / 1.6, rtol=1e-5, atol=1e-6)
    # Old dropped: new alone whatever the gate says.
    np.testing.assert_allclose(gf.predict(TEXTS, drop_old=True).logits, new_ref, rtol=1e-6, atol=1e-6)


def new_forward(gf: GatedFusion, texts: list[str]):
    enc = Encoded(gf.new_tokenizer, texts, 32)
    out = gf.new(**enc.batch(np.arange(len(texts))), output_hidden_states=True)
    return out.logits, out.hidden_states[-1][:, 0]


def encoder_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("bert.") and p.grad is not None}


@pytest.mark.parametrize("inputs", ["embedding", "both"])
def test_stop_gradient_keeps_the_gate_out_of_news_encoder(old_dir, inputs):
    gf = make_gf(old_dir, str(old_dir), inputs=inputs)
    gf.gate.eval()
    old = torch.as_tensor(gf.old_logits(TEXTS))
    y = torch.tensor([i % 2 for i in range(len(TEXTS))])

    # The gate's own output sends nothing back into new.
    logits, emb = new_forward(gf, TEXTS)
    gf.gate(gf.gate_input(emb, old, logits)).sum().backward()
    assert encoder_grads(gf.new) == {}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gf.gate.parameters() if p.ndim == 2)
    gf.new.zero_grad(set_to_none=True)

    # The fused loss moves new's encoder exactly as if alpha were a constant.
    def grads(detach_alpha: bool) -> dict[str, torch.Tensor]:
        gf.new.zero_grad(set_to_none=True)
        logits, emb = new_forward(gf, TEXTS)
        fused, alpha = gf.fused(emb, old, logits)
        if detach_alpha:
            a = alpha.detach().unsqueeze(1)
            fused = (1 - a) * old / gf.config.temperature + a * logits
        torch.nn.functional.cross_entropy(fused, y).backward()
        return encoder_grads(gf.new)

    with_gate, constant = grads(False), grads(True)
    assert with_gate and set(with_gate) == set(constant)
    for name in with_gate:
        torch.testing.assert_close(with_gate[name], constant[name], rtol=0, atol=0)

    # Without the stop-gradient the gate would reach the encoder: the test above has teeth.
    gf.new.zero_grad(set_to_none=True)
    logits, emb = new_forward(gf, TEXTS)
    gf.gate.net[1:](torch.cat([emb, torch.zeros(len(emb), gf.gate.net[1].in_features - emb.shape[1])], 1)).sum().backward()
    assert any(g.abs().sum() > 0 for g in encoder_grads(gf.new).values())


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_paper_schedule_leaves_the_gate_alone_until_the_last_epoch(old_dir):
    gf = make_gf(old_dir, str(old_dir), variant="paper")
    train = toy_frame(48, 4, "p")
    start_gate, start_new = snapshot(gf.gate), snapshot(gf.new)
    seen: dict[int, tuple[dict, dict]] = {}
    schedule = FusionSchedule(replace_epochs(3), lr2=1e-3, drop_gate=0.4, gate_lr=1e-2)
    result = train_gated_fusion(gf, train["text"].tolist(), train["label"].to_numpy(), schedule,
                                on_epoch_end=lambda e: seen.__setitem__(e, (snapshot(gf.gate), snapshot(gf.new))))
    assert sorted(seen) == [1, 2, 3]
    for epoch in (1, 2):
        gate, new = seen[epoch]
        assert all(torch.equal(gate[k], start_gate[k]) for k in gate), epoch
        assert not all(torch.equal(new[k], start_new[k]) for k in new), epoch  # new did train
    assert not all(torch.equal(seen[3][0][k], start_gate[k]) for k in start_gate)
    assert len(result.new_epoch_loss) == 2 and result.joint_loss is not None
    assert set(result.parts) == {"old_logits_s", "new_s", "joint_s"}


def replace_epochs(n: int) -> TrainConfig:
    return TrainConfig(epochs=n, lr=TINY.lr, batch_size=TINY.batch_size, seed=0, max_length=32)


def test_heldout_split_is_stratified_disjoint_and_complete():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 2)
    gate, fit = heldout_split(labels, 0.2, seed=0)
    assert set(gate).isdisjoint(fit) and sorted([*gate, *fit]) == list(range(82))
    assert [int((labels[gate] == c).sum()) for c in (0, 1, 2)] == [10, 6, 1]
    np.testing.assert_array_equal(gate, heldout_split(labels, 0.2, seed=0)[0])
    with pytest.raises(Exception, match="heldout_fraction"):
        heldout_split(labels, 1.0, seed=0)


def test_signals_gate_learns_where_new_fails(old_dir):
    """Held-out outputs where new is wrong exactly when it is unsure and old is sure: the fitted gate
    trusts old there and new elsewhere, fixing every flip."""
    gf = make_gf(old_dir, str(old_dir), inputs="signals", dropout=0.0)
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    risky = rng.random(n) < 0.3
    onehot = np.eye(2, dtype=np.float32)
    new = np.where(risky[:, None], 0.4 * onehot[1 - y], 4.0 * onehot[y])  # unsure and wrong / sure and right
    old = np.where(risky[:, None], 4.0 * onehot[y], 0.5 * onehot[1 - y])  # sure and right / unsure and wrong
    losses = fit_gate(gf, np.zeros((n, 32), np.float32), old, new, y, lr=1e-2, epochs=40, batch_size=32,
                      weight_decay=0.0, seed=0)
    assert losses[-1] < losses[0] / 2
    out = gf.combine(new.astype(np.float32), np.zeros((n, 32), np.float32), old.astype(np.float32))
    assert out.alpha[risky].max() < 0.3 and out.alpha[~risky].min() > 0.7
    assert (out.logits.argmax(1) == y).all()


@pytest.mark.parametrize("variant", ["paper", "heldout"])
def test_upgrade_to_a_wider_model_trains_saves_and_loads(old_dir, tiny_bert_wide, tmp_path, variant):
    gf = make_gf(old_dir, str(tiny_bert_wide), variant=variant, inputs="both" if variant == "heldout" else "embedding")
    assert gf.old.config.hidden_size == 32 and gf.new.config.hidden_size == 48
    assert gf.old_tokenizer.get_vocab() != gf.new_tokenizer.get_vocab()
    train = toy_frame(64, 7, "u")
    schedule = FusionSchedule(TINY, lr2=1e-3, gate_epochs=3, heldout_fraction=0.25)
    start = time.perf_counter()
    result = train_gated_fusion(gf, train["text"].tolist(), train["label"].to_numpy(), schedule)
    elapsed = time.perf_counter() - start
    assert result.gate_examples == 16 if variant == "heldout" else result.joint_loss
    # the reported time is its parts (old's logits, then new and the gate, or the joint epoch), within the call's
    assert {"old_logits_s", "gate_s" if variant == "heldout" else "joint_s"} <= set(result.parts)
    assert result.seconds == pytest.approx(sum(result.parts.values())) and result.seconds <= elapsed
    out = gf.predict(TEXTS)
    assert out.logits.shape == (len(TEXTS), 2) and out.embeddings.shape == (len(TEXTS), 48)
    # the paper's mixture of old's (tempered) and new's logits, weighted by the gate's alpha
    a = out.alpha[:, None]
    np.testing.assert_allclose(out.logits, (1 - a) * out.old_logits / gf.config.temperature + a * out.new_logits,
                               rtol=1e-5, atol=1e-6)

    gf.save(tmp_path / "gf", {"role": "gated_fusion"})
    assert sorted(p.name for p in (tmp_path / "gf").iterdir()) == [
        "config.json", "flipgate.json", "gate.safetensors", "new", "old"]
    assert json.loads((tmp_path / "gf" / "flipgate.json").read_text())["kind"] == "gated_fusion"
    again = load_gated_fusion(tmp_path / "gf", CPU)
    np.testing.assert_array_equal(again.predict(TEXTS).logits, out.logits)
    if variant == "paper":  # the registry's pyfunc loads it by its kind
        from flipgate.models.pyfunc import load_any

        np.testing.assert_array_equal(load_any(tmp_path / "gf", device="cpu", max_length=32).predict_logits(TEXTS),
                                      out.logits)


def test_heldout_refit_retrains_new_on_everything(old_dir):
    gf = make_gf(old_dir, str(old_dir), variant="heldout", inputs="signals")
    train = toy_frame(40, 8, "r")
    schedule = FusionSchedule(replace_epochs(1), gate_epochs=2, heldout_fraction=0.25, refit=True)
    result = train_gated_fusion(gf, train["text"].tolist(), train["label"].to_numpy(), schedule,
                                reload_new=lambda: load_classifier(str(old_dir), LABELS)[0])
    assert result.new_examples == 30 + 40 and "refit_s" in result.parts


@pytest.fixture(scope="module")
def project(old_dir, tmp_path_factory):
    """A project folder as the pipeline leaves it after train_new: data/update, models/old,
    predictions/{old,new}, reports/train/new.json and a params.yaml."""
    root = tmp_path_factory.mktemp("project")
    upd = update.Update(old=toy_frame(60, 10, "o"), new=toy_frame(30, 11, "n"), dev=toy_frame(30, 12, "d"),
                        regression=toy_frame(40, 13, "r"), labels=LABELS, num_old_labels=2)
    update.save(upd, root / "data" / "update")
    shutil.copytree(old_dir, root / "models" / "old")
    splits = {s: update.load_split(root / "data" / "update", s) for s in ("dev", "regression")}
    from flipgate.models.run import write_predictions

    model, tok = load_classifier(str(old_dir))
    write_predictions(model, tok, splits, root / "predictions" / "old", CPU, 32, 32)
    summary = fine_tune(str(old_dir), LABELS, upd.updated, splits, replace_epochs(1), CPU, root / "models" / "new",
                        root / "predictions" / "new", 32, {"role": "new"})
    (root / "reports" / "train").mkdir(parents=True)
    (root / "reports" / "train" / "new.json").write_text(json.dumps(summary))
    params = {"base": {"model": "unused", "max_length": 32, "eval_batch_size": 32, "device": "cpu"},
              "tracking": {"enabled": False},
              "gated_fusion": {"variant": "heldout", "epochs": 2, "lr": 2e-3, "batch_size": 16, "gate_epochs": 3},
              "train_old": {"epochs": 1, "lr": 2e-3, "batch_size": 16},
              "train_new": {"epochs": 1, "lr": 2e-3, "batch_size": 16}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_stage_writes_the_model_predictions_and_report(project):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CI": "true"}
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "gated_fusion.py"), "data/update"], cwd=project, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("gated_fusion", "gated_fusion_dropped", "gated_fusion_cache50", "gated_fusion_cache75"):
        for split in ("dev", "regression"):
            t = read_predictions(project / "predictions" / name / f"{split}.parquet")
            assert len(t) == (30 if split == "dev" else 40)
    report = read_json(project / "reports" / "gated_fusion.json")
    assert report["variant"] == "heldout" and report["gate_inputs"] == "both"
    new_seconds = read_json(project / "reports" / "train" / "new.json")["train_seconds"]
    assert report["train"]["new_train_seconds"] == new_seconds
    # ratio_to_new is rounded to 0.001 from the unrounded seconds; "seconds" is rounded to 0.01
    assert report["train"]["ratio_to_new"] == pytest.approx(report["train"]["seconds"] / new_seconds,
                                                            abs=0.0005 + 0.005 / new_seconds)
    reg = report["regression"]
    cache = reg["cache"]
    assert list(cache) == ["0", "50", "75", "100"]
    assert cache["100"]["nfr"] == reg["models"]["gated_fusion"]["nfr"]
    assert cache["100"]["accuracy"] == reg["models"]["gated_fusion"]["accuracy"]
    assert cache["0"]["accuracy"] == reg["models"]["gated_fusion_dropped"]["accuracy"]
    assert cache["75"]["hit_rate"] == 0.75 and cache["75"]["neighbour_distance"]["misses"] == 10
    assert {"fix_rate", "new_fault_rate", "nfr", "accuracy"} <= set(reg["models"]["gated_fusion"])
    # The saved folder predicts the regression set as the table says.
    gf = load_gated_fusion(project / "models" / "gated_fusion", CPU)
    reg_df = update.load_split(project / "data" / "update", "regression")
    table = read_predictions(project / "predictions" / "gated_fusion" / "regression.parquet")
    np.testing.assert_allclose(gf.predict(reg_df["text"].tolist()).logits, np.stack(table["logits"]), rtol=1e-4, atol=1e-5)


def test_benchmark_runs_on_a_tiny_update(project, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gated_fusion
    finally:
        sys.path.pop(0)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        code = bench_gated_fusion.main(["data/update", "--old", "models/old", "--predictions", "predictions",
                                        "--configs", "paper:epochs=1", "heldout:gate_inputs=signals,epochs=1",
                                        "--out", "bench.json"])
    finally:
        os.chdir(cwd)
    assert code == 0
    printed = capsys.readouterr().out
    assert "| heldout:gate_inputs=signals,epochs=1 |" in printed and "ensemble_logit" in printed
    result = read_json(project / "bench.json")
    assert [r["model"] for r in result["rows"]][:2] == ["old", "new"]
    assert set(result["configs"]) == {"paper:epochs=1", "heldout:gate_inputs=signals,epochs=1"}
    paper = result["configs"]["paper:epochs=1"]
    new_seconds = read_json(project / "reports" / "train" / "new.json")["train_seconds"]
    assert paper["train_ratio"] == pytest.approx(paper["train_seconds"] / new_seconds)
