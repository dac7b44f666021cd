"""The seeds' baselines on hand-computed tensors: distillation (KD, focal, dynamic), prior weight decay, EWC,
Mixout, and the k-seed new-model ensemble."""

import math

import numpy as np
import pytest
import torch

from flipgate.mitigation.distill import distill_loss, distill_term, dynamic_mask, focal_mask, kl_per_example
from flipgate.mitigation.regularise import MixoutWeight, l2_towards, mixout
from flipgate.models.classifier import load_classifier
from flipgate.models.device import set_seed
from flipgate.models.train import TrainConfig, train_classifier

from conftest import toy_frame

CPU = torch.device("cpu")
LN3, LN4 = math.log(3), math.log(4)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# --- distillation -------------------------------------------------------------------------------------

def test_kd_value_by_hand():
    # old [0, 0] -> p_old = (1/2, 1/2); new [0, ln 3] -> p_new = (1/4, 3/4)
    # KL = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3)
    new, old = t([[0.0, LN3]]), t([[0.0, 0.0]])
    torch.testing.assert_close(kl_per_example(new, old, 1.0), t([0.5 * math.log(4 / 3)]))
    # T = 2: p_new = (1, sqrt 3) / (1 + sqrt 3); T^2 KL = 4 * (1/2 ln((1 + r)/2) + 1/2 ln((1 + r)/(2 r)))
    r = math.sqrt(3)
    by_hand = 4 * (0.5 * math.log((1 + r) / 2) + 0.5 * math.log((1 + r) / (2 * r)))
    torch.testing.assert_close(kl_per_example(new, old, 2.0), t([by_hand]))
    # the loss: lambda * mean over the batch; a second row equal to old contributes 0 to the sum
    loss = distill_loss("kd", t([[0.0, LN3], [0.0, 0.0]]), t([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]),
                        lam=3.0, temperature=1.0)
    torch.testing.assert_close(loss, torch.tensor(3.0 * 0.5 * math.log(4 / 3) / 2))


def test_focal_distillation_is_zero_where_old_is_wrong():
    old = t([[2.0, 0.0], [2.0, 0.0]])  # old predicts class 0 on both
    new = t([[0.0, LN3], [0.0, LN3]])
    labels = torch.tensor([0, 1])  # old right on the first, wrong on the second
    assert focal_mask(old, labels).tolist() == [1.0, 0.0]
    kl = kl_per_example(new, old, 1.0)
    torch.testing.assert_close(distill_loss("focal", new, old, labels, 1.0, 1.0), kl[0] / 2)
    # old wrong everywhere: exactly zero, while plain KD is not
    wrong = torch.tensor([1, 1])
    assert distill_loss("focal", new, old, wrong, 1.0, 1.0).item() == 0.0
    assert distill_loss("kd", new, old, wrong, 1.0, 1.0).item() > 0.1


def test_dynamic_mask_changes_when_new_overtakes_old():
    old, y = t([[0.0, LN3]]), torch.tensor([1])  # p_old(y) = 3/4
    behind, ahead = t([[0.0, 0.0]]), t([[0.0, LN4]])  # p_new(y) = 1/2, then 4/5
    assert dynamic_mask(behind, old, y).tolist() == [1.0]
    assert dynamic_mask(ahead, old, y).tolist() == [0.0]
    assert distill_loss("dynamic", ahead, old, y, 1.0, 1.0).item() == 0.0
    torch.testing.assert_close(distill_loss("dynamic", behind, old, y, 1.0, 1.0), kl_per_example(behind, old)[0])
    # the mask takes no gradient: only the KL does
    new = behind.clone().requires_grad_()
    distill_loss("dynamic", new, old, y, 1.0, 1.0).backward()
    # d KL(p_old || softmax(z)) / dz = p_new - p_old = (1/2 - 1/4, 1/2 - 3/4)
    torch.testing.assert_close(new.grad, t([[0.25, -0.25]]))


def test_added_classes_get_no_old_mass():
    # old knows 2 classes, new 3; old (1/2, 1/2), new (1/3, 1/3, 1/3): KL = ln(3/2)
    new, old = t([[0.0, 0.0, 0.0]]), t([[0.0, 0.0]])
    torch.testing.assert_close(kl_per_example(new, old), t([math.log(1.5)]))
    y = torch.tensor([2])  # an added class: old is never right, never more confident
    assert focal_mask(old, y).tolist() == [0.0] and dynamic_mask(new, old, y).tolist() == [0.0]


def test_distill_term_looks_up_old_by_the_batch_indices():
    old = np.array([[0.0, 0.0], [5.0, -5.0], [0.0, 0.0]], dtype=np.float32)
    term = distill_term("kd", old, np.array([0, 0, 1]), lam=1.0, temperature=1.0)
    new = t([[0.0, LN3], [0.0, LN3]])
    torch.testing.assert_close(term(new, np.array([2, 0]), None), kl_per_example(new, t([[0.0, 0.0]] * 2)).mean())
    with pytest.raises(ValueError, match="rows for"):
        distill_term("kd", old, np.array([0, 1]), 1.0, 1.0)


# --- penalties towards old --------------------------------------------------------------------------

def test_l2_towards_old_by_hand():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(t([[1.0, 2.0]]))
    anchor = {"weight": t([[0.0, 1.0]])}
    wd = l2_towards(lin, anchor, strength=2.0)
    loss = wd(t([[0.0]]), np.array([0]), lin)
    torch.testing.assert_close(loss, torch.tensor(2.0))  # 0.5 * 2 * (1 + 1)
    loss.backward()
    torch.testing.assert_close(lin.weight.grad, t([[2.0, 2.0]]))  # s * (theta - theta_old)
    ewc = l2_towards(lin, anchor, strength=2.0, weights={"weight": t([[3.0, 0.0]])})
    torch.testing.assert_close(ewc(t([[0.0]]), np.array([0]), lin), torch.tensor(3.0))  # 0.5 * 2 * 3 * 1


def test_l2_pulls_only_old_rows_of_a_grown_head():
    lin = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(t([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]))
    loss = l2_towards(lin, {"weight": torch.zeros(2, 2)}, strength=1.0)(t([[0.0]]), np.array([0]), lin)
    torch.testing.assert_close(loss, torch.tensor(1.0))  # 0.5 * (1 + 1); the added row is free
    with pytest.raises(ValueError, match="another architecture"):
        l2_towards(lin, {"other.weight": torch.zeros(2, 2)}, 1.0)


def _train(tiny_bert, steps_model=None, extra=None, context=None):
    """A few steps of the tiny BERT on 48 toy sentences from a fixed seed; returns its state dict."""
    set_seed(0)
    model, tok = load_classifier(str(tiny_bert), ["0", "1"])
    if steps_model is not None:
        model.load_state_dict(steps_model)
    df = toy_frame(48, 3)
    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=16, seed=0, max_length=32)
    extra_loss = extra(model) if extra else None
    if context is not None:
        with context(model):
            train_classifier(model, tok, df["text"].tolist(), df["label"].to_numpy(), cfg, CPU, extra_loss=extra_loss)
    else:
        train_classifier(model, tok, df["text"].tolist(), df["label"].to_numpy(), cfg, CPU, extra_loss=extra_loss)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def start_and_plain(tiny_bert):
    """An 'old' (the tiny BERT after a few steps), and plain training continued from it."""
    old = _train(tiny_bert)
    return old, _train(tiny_bert, old)


def _assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ: {different[:3]}"


def test_prior_wd_at_strength_zero_is_plain_training(tiny_bert, start_and_plain):
    old, plain = start_and_plain
    _assert_bitwise(_train(tiny_bert, old, extra=lambda m: l2_towards(m, old, 0.0)), plain)
    pulled = _train(tiny_bert, old, extra=lambda m: l2_towards(m, old, 10.0))
    key = "bert.encoder.layer.0.attention.self.query.weight"
    # a strong pull ends nearer old than plain training does
    assert (pulled[key] - old[key]).norm() < 0.5 * (plain[key] - old[key]).norm()


def test_ewc_with_zero_fisher_is_plain_training(tiny_bert, start_and_plain):
    old, plain = start_and_plain
    zero = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in old.items()}
    _assert_bitwise(_train(tiny_bert, old, extra=lambda m: l2_towards(m, old, 5.0, weights=zero)), plain)


def test_mixout_at_p_zero_is_plain_training(tiny_bert, start_and_plain):
    old, plain = start_and_plain
    _assert_bitwise(_train(tiny_bert, old, context=lambda m: mixout(m, old, 0.0)), plain)
    mixed = _train(tiny_bert, old, context=lambda m: mixout(m, old, 0.5))
    assert mixed.keys() == plain.keys()  # plain weights and keys again after training
    assert not torch.equal(mixed["classifier.weight"], plain["classifier.weight"])


def test_mixout_weight_by_hand():
    w, u = t([[1.0, 2.0], [3.0, 4.0]]), t([[0.5, 0.5], [0.5, 0.5]])
    mix = MixoutWeight(u, 0.5)
    torch.manual_seed(0)
    out = mix(w)
    # each entry is old's (u) or u + (w - u) / (1 - p) = 2w - u
    assert all(o in (a, 2 * b - a) for o, a, b in zip(out.flatten().tolist(), u.flatten().tolist(), w.flatten().tolist()))
    draws = torch.stack([mix(w) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(draws, w, atol=0.1, rtol=0)  # E[w'] = w
    mix.eval()
    assert torch.equal(mix(w), w)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MixoutWeight(u, 1.0)


def test_mixout_covers_every_linear_layer_and_restores_the_parameter(tiny_bert):
    model, _ = load_classifier(str(tiny_bert), ["0", "1"])
    old = {k: v.clone() for k, v in model.state_dict().items()}
    before = model.classifier.weight
    linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with mixout(model, old, 0.3) as n:
        assert n == linear
        model.eval()
        assert torch.equal(model.classifier.weight, before)
    assert model.classifier.weight is before and not hasattr(model.classifier, "parametrizations")


# --- the new-model ensemble over k seeds ---------------------------------------------------------------

def _table(logits, labels):
    from flipgate.predictions import predictions_frame

    return predictions_frame([f"i{j}" for j in range(len(labels))], labels, np.array(logits, dtype=np.float32))


def test_majority_vote_tie_goes_to_the_higher_mean_probability_then_the_lower_class():
    from flipgate.mitigation.new_ensemble import ensemble_tables

    # example 0: 2 votes each for classes 0 and 1; class 1's mean probability is higher -> 1
    # example 1: 3 votes for class 0 against 1, though class 1 has the higher mean probability -> 0
    # example 2: a 2-2 tie with equal mean probabilities -> the lower class id, 0
    a, b = math.log(0.6 / 0.4), math.log(0.9 / 0.1)  # p(winner) 0.6 and 0.9
    members = {
        "s0": _table([[a, 0.0], [a, 0.0], [a, 0.0]], [0, 0, 0]),
        "s1": _table([[a, 0.0], [a, 0.0], [0.0, a]], [0, 0, 0]),
        "s2": _table([[0.0, b], [a, 0.0], [a, 0.0]], [0, 0, 0]),
        "s3": _table([[0.0, b], [0.0, 50.0], [0.0, a]], [0, 0, 0]),
    }
    vote = ensemble_tables("vote", members)
    assert vote["pred"].tolist() == [1, 0, 0]
    prob = ensemble_tables("prob", members)
    # mean p(class 1): example 0 (0.4 + 0.4 + 0.9 + 0.9) / 4 = 0.65; example 1 (0.4 * 3 + 1) / 4 = 0.55
    torch.testing.assert_close(np.exp(np.stack(prob["logits"].to_numpy()))[:2, 1], np.array([0.65, 0.55], dtype=np.float32))
    assert prob["pred"].tolist() == [1, 1, 0]


def _run_folder(tmp_path, tiny_bert, old_layers=None):
    """A seed's run folder as the pipeline leaves it before `baselines`: the update's splits, old trained on
    D_old, new trained from old on D_updated, both models' dev and regression predictions. With
    `old_layers` (a model upgrade): old is the tiny BERT cut to that many layers, new the whole one."""
    from flipgate.data import update
    from flipgate.io import write_json, write_parquet
    from flipgate.models.classifier import save_classifier
    from flipgate.models.predict import predict_logits
    from flipgate.predictions import predictions_frame
    from flipgate.stage import Run

    frames = {name: toy_frame(n, seed, name[0]) for name, n, seed in
              (("old", 64, 0), ("new", 48, 1), ("dev", 40, 2), ("regression", 40, 3))}
    for df in frames.values():
        df["label"] = df["label"].astype(str)
    data = tmp_path / "data"
    update.save(update.from_files(*frames.values(), add_classes=False), data)
    run = Run(tmp_path / "run", 0)
    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=16, seed=0, max_length=32)
    from flipgate.models.classifier import keep_layers

    model, tok = load_classifier(str(tiny_bert), ["0", "1"])
    if old_layers:
        model = keep_layers(model, old_layers)
    for role, split in (("old", "old"), ("new", "updated")):
        set_seed(0)
        if role == "new" and old_layers:
            model, tok = load_classifier(str(tiny_bert), ["0", "1"])
        df = update.load_split(data, split)
        res = train_classifier(model, tok, df["text"].tolist(), df["label"].to_numpy(), cfg, CPU)
        save_classifier(model, tok, run.models / role, {"role": role, "labels": ["0", "1"]})
        for s in ("dev", "regression"):
            ev = update.load_split(data, s)
            logits = predict_logits(model, tok, ev["text"].tolist(), CPU, 32, 32)
            write_parquet(predictions_frame(ev["id"], ev["label"], logits), run.predictions / role / f"{s}.parquet")
        if role == "new":
            write_json({"train_seconds": res.seconds}, run.reports / "train" / "new.json")
    return run, data, cfg


def test_bcwi_stacked_over_a_baseline(tmp_path, tiny_bert):
    """Stage baselines with KD on and BCWI stacked over it: the stacked model is old and KD's chosen model
    interpolated at the chosen alpha (bitwise), its alpha 0 is KD itself, its tables are what the saved
    model predicts, and every method that is off writes only off.json."""
    from flipgate.io import read_json
    from flipgate.mitigation.bcwi import interpolate
    from flipgate.models.predict import predict_logits
    from flipgate.params import Baselines, Base, Gate, Schedule
    from flipgate.pipeline.baselines import METHODS, STACK, run_stage
    from flipgate.predictions import read_predictions

    run, data, _ = _run_folder(tmp_path, tiny_bert)
    p = Baselines(kd={"enabled": True, "lambdas": [1.0], "temperatures": [2.0]}, objective="tolerance",
                  tolerance=100, bcwi_stack={"enabled": True, "over": "kd", "alphas": [0.0, 0.5, 0.9]})
    hp = Schedule(epochs=2, lr=5e-3, batch_size=16)
    run_stage(run, data, Base(model=str(tiny_bert), max_length=32, eval_batch_size=32, device="cpu"), p, hp, Gate())
    report = read_json(run.reports / "baselines.json")
    assert sorted(report["off"]) == sorted([m for m in METHODS if m != "kd"])
    for m in report["off"]:
        assert [f.name for f in (run.predictions / m).iterdir()] == ["off.json"]
    stacked = report["methods"][STACK]
    assert stacked["over"] == "kd" and stacked["alpha"] in (0.0, 0.5, 0.9)
    dev_curve = {r["alpha"]: r for r in stacked["curve"] if r["split"] == "dev"}
    assert sorted(dev_curve) == [0.0, 0.5, 0.9]
    assert dev_curve[0.0]["accuracy"] == report["methods"]["kd"]["metrics"]["dev"]["accuracy"]
    # the saved stacked model is the interpolation of old and KD at the chosen alpha, bitwise
    old, _ = load_classifier(str(run.models / "old"))
    kd, _ = load_classifier(str(run.models / "kd"))
    want = interpolate(old.state_dict(), kd.state_dict(), stacked["alpha"])
    got, tok = load_classifier(str(run.models / STACK))
    _assert_bitwise({k: v for k, v in got.state_dict().items()}, {k: want[k] for k in got.state_dict()})
    # its predictions are the saved model's
    table = read_predictions(run.predictions / STACK / "regression.parquet")
    from flipgate.data import update
    reg = update.load_split(data, "regression")
    logits = predict_logits(got, tok, reg["text"].tolist(), CPU, 32, 32)
    assert (table["pred"].to_numpy() == logits.argmax(1)).all()
    assert np.allclose(np.stack(table["logits"].to_numpy()), logits, atol=1e-5)


def test_bcwi_stack_over_a_method_that_is_off_is_refused():
    from pydantic import ValidationError

    from flipgate.params import Baselines

    with pytest.raises(ValidationError, match=r"baselines.focal_distill.enabled: true"):
        Baselines(bcwi_stack={"enabled": True, "over": "focal_distill"})


def test_keep_layers_cuts_the_stack_and_reloads_cut(tiny_bert, tmp_path):
    from flipgate.errors import FlipgateError
    from flipgate.models.classifier import keep_layers, save_classifier

    model, tok = load_classifier(str(tiny_bert), ["0", "1"])
    full = {k: v.clone() for k, v in model.state_dict().items()}
    cut = keep_layers(model, 1)
    assert cut.config.num_hidden_layers == 1 and len(cut.bert.encoder.layer) == 1
    sd = cut.state_dict()
    assert not any(".layer.1." in k for k in sd)
    _assert_bitwise(sd, {k: full[k] for k in sd})  # what is kept is the first layer, untouched
    save_classifier(cut, tok, tmp_path / "cut", {"labels": ["0", "1"]})
    again, _ = load_classifier(str(tmp_path / "cut"))
    assert len(again.bert.encoder.layer) == 1
    _assert_bitwise(again.state_dict(), sd)
    with pytest.raises(FlipgateError, match="base.old_layers: 5, but the model has 2 layers"):
        keep_layers(load_classifier(str(tiny_bert), ["0", "1"])[0], 5)


def test_a_model_upgrade_distils_and_skips_the_weight_methods(tmp_path, tiny_bert):
    """old is a 1-layer cut, new the 2-layer model: KD trains new from base.model (a fresh head, not old's
    weights); prior WD and BCWI over KD are skipped with the reason; the bcwi stage writes only why."""
    from flipgate.io import read_json
    from flipgate.params import Baselines, Base, Bcwi, Gate, Schedule
    from flipgate.pipeline import bcwi as bcwi_stage
    from flipgate.pipeline.baselines import STACK, run_stage

    run, data, _ = _run_folder(tmp_path, tiny_bert, old_layers=1)
    base = Base(model=str(tiny_bert), max_length=32, eval_batch_size=32, device="cpu", old_layers=1)
    assert base.upgrade and base.old_init == str(tiny_bert)
    p = Baselines(kd={"enabled": True}, prior_wd={"enabled": True}, objective="tolerance", tolerance=100,
                  bcwi_stack={"enabled": True, "over": "kd"})
    run_stage(run, data, base, p, Schedule(epochs=2, lr=5e-3, batch_size=16), Gate())
    report = read_json(run.reports / "baselines.json")
    assert set(report["skipped"]) == {"prior_wd", STACK}
    for m in ("prior_wd", STACK):
        assert "different architectures" in read_json(run.predictions / m / "off.json")["why"]
    assert "ewc" in report["off"] and "prior_wd" not in report["off"]
    kd, _ = load_classifier(str(run.models / "kd"))
    assert len(kd.bert.encoder.layer) == 2  # new's architecture
    assert (run.predictions / "kd" / "regression.parquet").is_file()
    bcwi_stage.run_stage(run, data, base, Bcwi(), Gate())
    assert "different architectures" in read_json(run.reports / "bcwi.json")["skipped"]
    assert read_json(run.predictions / "bcwi" / "off.json")["state"] == "off"
    assert read_json(run.reports / "bcwi_curve.json")["rows"] == []
    assert (run.reports / "bcwi_curve.png").read_bytes()[:4] == b"\x89PNG"
