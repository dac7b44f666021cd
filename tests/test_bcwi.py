import numpy as np
import pandas as pd
import pytest
import torch

from flipgate.errors import FlipgateError
from flipgate.mitigation.bcwi import average, interpolate, interpolate_into, normalise_fisher
from flipgate.pipeline.bcwi import head_keys
from flipgate.metrics.intervals import accuracy_halfwidth
from flipgate.models.classifier import load_classifier


def state(seed: int, rows: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "enc.weight": torch.randn(4, 5, generator=g),
        "enc.bias": torch.randn(4, generator=g),
        "pos_ids": torch.arange(7),
        "classifier.weight": torch.randn(rows, 4, generator=g),
        "classifier.bias": torch.randn(rows, generator=g),
    }


OLD, NEW = state(0), state(1)


def test_alpha_endpoints_are_bitwise_new_and_old():
    at0, at1 = interpolate(OLD, NEW, 0.0), interpolate(OLD, NEW, 1.0)
    for k in NEW:
        assert torch.equal(at0[k], NEW[k]), k
        assert torch.equal(at1[k], OLD[k]) or not OLD[k].is_floating_point(), k


def test_midpoint_and_integer_buffers():
    mid = interpolate(OLD, NEW, 0.4)
    torch.testing.assert_close(mid["enc.weight"], 0.4 * OLD["enc.weight"] + 0.6 * NEW["enc.weight"])
    assert torch.equal(mid["pos_ids"], NEW["pos_ids"]) and mid["pos_ids"].dtype == torch.int64


def test_fisher_with_constant_f_equals_plain():
    for c in (1.0, 7.5):
        f = normalise_fisher({k: torch.full_like(v, c, dtype=torch.float32) for k, v in NEW.items()})
        for alpha in (0.3, 0.7):
            plain, fish = interpolate(OLD, NEW, alpha), interpolate(OLD, NEW, alpha, fisher=f)
            for k in NEW:
                torch.testing.assert_close(fish[k].float(), plain[k].float())


def test_fisher_zero_and_alpha_one_give_no_nan():
    zero = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in NEW.items()}
    for alpha in (0.0, 0.5, 0.99, 1.0):
        out = interpolate(OLD, NEW, alpha, fisher=zero)
        assert all(torch.isfinite(t.float()).all() for t in out.values())
    # F = 0 leaves no pull towards old below alpha 1: new's weights.
    torch.testing.assert_close(interpolate(OLD, NEW, 0.5, fisher=zero)["enc.weight"], NEW["enc.weight"])
    # Large F pulls a parameter to old.
    big = {k: torch.full_like(v, 1e6, dtype=torch.float32) for k, v in NEW.items()}
    torch.testing.assert_close(interpolate(OLD, NEW, 0.5, fisher=big)["enc.weight"], OLD["enc.weight"], rtol=1e-4, atol=1e-4)


def test_added_class_rows_come_from_new():
    new5 = state(1, rows=5)
    keys = frozenset({"classifier.weight", "classifier.bias"})
    out = interpolate(OLD, new5, 0.5, grow_keys=keys)
    assert torch.equal(out["classifier.weight"][3:], new5["classifier.weight"][3:])
    torch.testing.assert_close(out["classifier.weight"][:3], 0.5 * OLD["classifier.weight"] + 0.5 * new5["classifier.weight"][:3])
    with pytest.raises(FlipgateError, match="identical architectures"):
        interpolate(OLD, new5, 0.5)  # without grow keys a shape change is an architecture change


def test_mismatched_architectures_raise_the_clear_error():
    other = dict(NEW)
    other["enc.weight"] = torch.randn(4, 6)
    with pytest.raises(FlipgateError, match="use Gated Fusion for an architecture upgrade"):
        interpolate(OLD, other, 0.5)
    missing = {k: v for k, v in NEW.items() if k != "enc.bias"}
    with pytest.raises(FlipgateError, match="keys only in old"):
        interpolate(OLD, missing, 0.5)


def test_soup_is_the_mean():
    soup = average([OLD, NEW])
    torch.testing.assert_close(soup["enc.weight"], (OLD["enc.weight"] + NEW["enc.weight"]) / 2)
    assert torch.equal(soup["pos_ids"], OLD["pos_ids"])


def test_interpolate_into_a_real_model(tiny_bert, tiny_bert_wide):
    a, _ = load_classifier(str(tiny_bert), ["0", "1"])
    b, _ = load_classifier(str(tiny_bert), ["0", "1"])
    torch.manual_seed(5)
    for p in b.parameters():
        p.data.add_(torch.randn_like(p))
    sa = {k: v.clone() for k, v in a.state_dict().items()}
    sb = {k: v.clone() for k, v in b.state_dict().items()}
    interpolate_into(b, sa, sb, 1.0)
    for k, v in b.state_dict().items():
        assert torch.equal(v, sa[k]), k
    assert head_keys(b) == {"classifier.weight", "classifier.bias"}
    wide, _ = load_classifier(str(tiny_bert_wide), ["0", "1"])
    with pytest.raises(FlipgateError, match="identical architectures"):
        interpolate_into(b, sa, wide.state_dict(), 0.5)



def test_ci_halfwidth_is_the_wilson_half_width():
    # Wilson's half-width z / (n + z²) * sqrt(k (n - k) / n + z² / 4), z = 1.959964 at 95%:
    # 800 of 1,000: 1.959964 / 1003.8414 * sqrt(160 + 0.960359) = 0.0247709 (about 2.5 points)
    assert accuracy_halfwidth(800, 1000) == pytest.approx(0.0247709, abs=1e-7)
    # 8 of 10: 1.959964 / 13.841459 * sqrt(1.6 + 0.960359) = 0.2265777 (the interval [0.490, 0.943])
    assert accuracy_halfwidth(8, 10) == pytest.approx(0.2265777, abs=1e-7)
    assert accuracy_halfwidth(800, 1000, level=0.5) < accuracy_halfwidth(800, 1000)
    assert accuracy_halfwidth(0, 0) == 0.0


def test_peak_memory_stays_within_three_model_copies():
    """Measured in a fresh process: interpolating adds at most about one tensor over the 3 copies held."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bcwi_memory.py"
    out = subprocess.run([sys.executable, str(script), "--tensors", "8", "--mb", "16"], capture_output=True,
                         text=True, check=True).stdout
    growth, tensor, copy = map(float, re.search(r"GROWTH_MB=(\S+) TENSOR_MB=(\S+) COPY_MB=(\S+)", out).groups())
    assert growth <= 2 * tensor + 8, out  # one result tensor in flight (plus allocator slack), never a 4th copy
    assert growth < copy, out
