import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from flipgate.errors import FlipgateError
from flipgate.io import write_parquet
from flipgate.predictions import predictions_frame
from flipgate.report.aggregate import aggregate, load_runs, mean_std, wall_time
from flipgate.report.build import build_report
from flipgate.report.figures import flip_matrix
from flipgate.report.inputs import discover_models
from flipgate.report.ledger import flip_ledger, read_regression, softmax_confidence

NAMES = ["negative", "neutral", "positive"]
IDS = [f"r{i}" for i in range(8)]
LABELS = np.array([0, 1, 1, 0, 2, 2, 1, 0])
TEXTS = ["fine film", "a | pipe <b>bold</b> http://example.com/x", "dull", "good", "so so", "great", "meh", "ok"]
PREDS = {
    "old": np.array([0, 1, 0, 0, 2, 1, 1, 1]),  # right on 0, 1, 3, 4, 6
    "new": np.array([0, 0, 1, 0, 1, 2, 1, 1]),  # right on 0, 2, 3, 5, 6
    "target": np.array([0, 1, 1, 0, 2, 2, 1, 0]),  # always right
    "bcwi": np.array([0, 1, 1, 0, 1, 1, 1, 1]),  # keeps 1, still flips 4
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def logits_for(pred: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Logits whose argmax is `pred`, with softmax max e^s / (e^s + 2)."""
    logits = np.zeros((len(pred), 3), np.float32)
    logits[np.arange(len(pred)), pred] = strength
    return logits


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    data = tmp_path / "data" / "update"
    data.mkdir(parents=True)
    (data / "labels.json").write_text(json.dumps({"labels": NAMES, "num_old_labels": 3}))
    pd.DataFrame({"id": IDS, "text": TEXTS, "label": LABELS}).to_parquet(data / "regression.parquet")
    strength = np.linspace(0.5, 4.0, 8, dtype=np.float32)
    for model, pred in PREDS.items():
        for split in ("dev", "regression"):
            s = strength if model == "old" else strength[::-1]
            write_parquet(predictions_frame(IDS, LABELS, logits_for(pred, s)), tmp_path / "predictions" / model / f"{split}.parquet")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "gate.json").write_text(json.dumps({"verdict": "reject", "candidate": "bcwi", "checks": [
        {"name": "nfr", "observed": 0.125, "op": "<=", "threshold": 0.01, "verdict": "fail", "detail": ""}]}))
    return tmp_path


def test_softmax_confidence():
    conf = softmax_confidence(np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1000.0, 0.0, 0.0]]))
    assert conf == pytest.approx([np.e**2 / (np.e**2 + 2), 1 / 3, 1.0])
    assert softmax_confidence(np.zeros((0, 3))).shape == (0,)


def test_ledger_flip_types_hand_case(project):
    ledger = flip_ledger(discover_models(project / "predictions"), read_regression(project / "data" / "update"))
    assert list(ledger.columns) == ["model", "id", "text", "label", "old_pred", "old_confidence", "pred", "confidence", "flip"]
    assert set(ledger["model"]) == {"target", "new", "bcwi"}  # old's own values are the old_* columns
    new = ledger[ledger["model"] == "new"]
    assert new["id"].tolist() == IDS  # regression-set order
    assert new["flip"].tolist() == ["both_right", "negative", "positive", "both_right", "negative", "positive",
                                    "both_right", "both_wrong"]
    assert new["text"].tolist() == TEXTS
    row = new.iloc[1]
    assert (row["old_pred"], row["pred"]) == (1, 0)
    assert row["old_confidence"] == pytest.approx(np.exp(1.0) / (np.exp(1.0) + 2))  # strength[1] = 1.0
    assert row["confidence"] == pytest.approx(np.exp(3.5) / (np.exp(3.5) + 2))  # reversed: strength[6] = 3.5
    # target is always right: both right where old is (0, 1, 3, 4, 6), a positive flip where old is wrong
    assert ledger[ledger["model"] == "target"]["flip"].tolist() == [
        "both_right", "both_right", "positive", "both_right", "both_right", "positive", "both_right", "positive"]
    # bcwi is right on 0, 1, 2, 3, 6: it loses 4 (old right), and 5 and 7 stay wrong
    assert ledger[ledger["model"] == "bcwi"]["flip"].tolist() == [
        "both_right", "both_right", "positive", "both_right", "negative", "both_wrong", "both_right", "both_wrong"]


def test_ledger_refuses_predictions_from_another_update(project):
    reg = read_regression(project / "data" / "update")
    reg.loc[0, "id"] = "other"
    with pytest.raises(FlipgateError, match="another data update"):
        flip_ledger(discover_models(project / "predictions"), reg)


def test_flip_matrix_counts():
    m = flip_matrix(PREDS["old"], PREDS["new"], 3)
    assert m.tolist() == [[2, 1, 0], [1, 2, 1], [0, 1, 0]]  # old 1 -> new 1 at r6 and r7
    assert m.sum() == 8


def test_report_has_every_model_plots_and_is_self_contained(project):
    paths = build_report(project / "predictions", project / "data" / "update", project / "reports")
    md = paths["markdown"].read_text()
    for model in PREDS:
        assert re.search(rf"^\| {model} \|", md, re.M), model
    # models in the conventional order, old first
    table = md.split("## Comparison on the regression set")[1].split("##")[0]
    assert re.findall(r"^\| (\w+) \|", table, re.M) == ["model", "old", "target", "new", "bcwi"]
    # new: 2 negative flips of 8 -> NFR 25.00 with its Wilson interval; McNemar 2 vs 2 -> p = 1
    assert re.search(r"^\| new \| 62\.50 \| 25\.00 \[7\.15, 59\.07\] \|.*\| 2 \| 2 \| 1 \|$", md, re.M)
    plots = sorted(p.name for p in (project / "reports" / "plots").iterdir() if p.suffix == ".png")
    assert plots == ["flip_matrix_bcwi.png", "flip_matrix_new.png", "per_class_nfr.png"]  # (+ DVC's CSVs)
    for name in plots:
        path = project / "reports" / "plots" / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(path).ndim == 3
        assert f"(plots/{name})" in md
    html = paths["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert html.count('src="data:image/png;base64,') == 3 and "<script" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html  # example texts are escaped
    assert "a \\| pipe &lt;b>bold&lt;/b>" in md  # and do not break markdown tables or become HTML
    assert "Gate verdict for `bcwi`: REJECT." in md
    assert "Top negative flips" in md and "| neutral (0.58) | negative (0.94) |" in md  # r1
    ledger = pd.read_parquet(paths["ledger"])
    assert len(ledger) == 3 * 8


def test_report_embeds_the_bcwi_curve_when_present(project):
    from matplotlib.figure import Figure

    Figure(figsize=(2, 2)).savefig(project / "reports" / "bcwi_curve.png")
    paths = build_report(project / "predictions", project / "data" / "update", project / "reports")
    assert "![BCWI alpha curve](plots/bcwi_curve.png)" in paths["markdown"].read_text()
    assert (project / "reports" / "plots" / "bcwi_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert paths["html"].read_text().count("data:image/png;base64,") == 4


def write_metrics(path: Path, acc: float, nfr: float, fix: float | None = None, wall: float = 10.0) -> Path:
    new = {"accuracy": acc, "nfr": nfr, "nfi": 2 * nfr, "pfr": 0.1, "n": 100}
    bcwi = dict(new, accuracy=acc - 0.01, nfr=nfr / 2, fix_rate=fix, new_fault_rate=0.0)
    rows = {"old": {"accuracy": 0.7, "nfr": 0.0, "nfi": 0.0, "pfr": 0.0, "n": 100}, "new": new, "bcwi": bcwi}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dev": rows, "regression": rows, "wall_time_s": {"a": wall, "b": 1.0}}))
    return path


def test_seed_aggregation_hand_numbers(tmp_path):
    runs = [write_metrics(tmp_path / "seed0" / "reports" / "metrics.json", 0.80, 0.02, 0.5, wall=9.0),
            write_metrics(tmp_path / "seed1" / "reports" / "metrics.json", 0.90, 0.04, 0.7, wall=11.0),
            write_metrics(tmp_path / "s2.json", 1.00, 0.06, None, wall=13.0)]
    loaded = load_runs([tmp_path / "seed0", tmp_path / "seed1", runs[2]])  # run folders or files
    agg = aggregate(loaded)
    assert list(agg) == ["old", "new", "bcwi"]
    assert agg["new"]["seeds"] == 3
    assert agg["new"]["accuracy"]["mean"] == pytest.approx(0.9)
    assert agg["new"]["accuracy"]["std"] == pytest.approx(0.1)  # sample std: sqrt((0.01 + 0 + 0.01) / 2)
    assert agg["new"]["nfr"] == pytest.approx({"mean": 0.04, "std": 0.02, "n": 3})
    assert agg["bcwi"]["fix_rate"] == pytest.approx({"mean": 0.6, "std": np.sqrt(0.02), "n": 2})  # None skipped
    assert "fix_rate" not in agg["old"]
    assert wall_time(loaded) == pytest.approx({"mean": 12.0, "std": 2.0, "n": 3})
    one = aggregate(load_runs([runs[0]]))
    assert one["new"]["accuracy"] == {"mean": 0.8, "std": 0.0, "n": 1}
    assert mean_std([1.0, 2.0, 3.0, 4.0])["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_seed_aggregation_refuses_bad_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlipgateError, match="no reports/metrics.json"):
        load_runs([tmp_path / "empty"])
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(FlipgateError, match="no 'regression' section"):
        load_runs([tmp_path / "m.json"])


def test_cli_report_rebuilds_from_predictions_without_torch(project, tmp_path):
    runs = [write_metrics(tmp_path / f"seed{i}" / "reports" / "metrics.json", 0.8 + i / 10, 0.02) for i in range(2)]
    code = ("import sys; from flipgate.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    argv = ["report", "--predictions", "predictions", "--data", "data/update", "--reports", "reports",
            "--runs", *(str(r.parent.parent) for r in runs)]
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout
    reports = project / "reports"
    for name in ("report.md", "report.html", "flips.parquet", "plots/per_class_nfr.png", "seeds.json"):
        assert (reports / name).is_file(), name
    md = (reports / "report.md").read_text()
    assert "## Across seeds (2 runs)" in md
    assert re.search(r"^\| new \| 2 \| 85\.00 ± 7\.07 \| 2\.00 ± 0\.00 \|", md, re.M)


def test_cli_runs_alone_take_details_from_the_first_run_folder(project, tmp_path):
    from flipgate.cli import main

    write_metrics(project / "reports" / "metrics.json", 0.9, 0.04)
    other = write_metrics(tmp_path / "seed1" / "reports" / "metrics.json", 0.8, 0.02)
    out = tmp_path / "out"
    assert main(["report", "--runs", str(project), str(other.parent.parent), "--reports", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert f"(predictions in `{project / 'predictions'}`)" in md
    assert "Gate verdict for `bcwi`: REJECT." in md  # the run's own reports/gate.json
    assert re.search(r"^\| new \| 2 \| 85\.00 ± 7\.07 \| 3\.00 ± 1\.41 \|", md, re.M)
    assert json.loads((out / "seeds.json").read_text())["regression"]["new"]["seeds"] == 2


def test_cli_report_bad_input_names_the_folder(project):
    proc = subprocess.run([sys.executable, "-m", "flipgate.cli", "report", "--predictions", "nowhere"],
                          cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "nowhere: predictions folder not found" in proc.stderr


def test_cli_report_with_no_flags_reads_the_pipeline_seed_folders(project, monkeypatch):
    """In a project: params.yaml `seeds` names the run folders seeds/<seed>/; the first gives the
    per-example parts (and its bcwi curve), reports/gate.json the verdict, all of them the mean +- std."""
    from matplotlib.figure import Figure

    from flipgate.cli import main

    (project / "params.yaml").write_text("seeds: [5, 2]\n")
    (project / "predictions").rename(project / "seeds_5_predictions")
    (project / "seeds" / "5").mkdir(parents=True)
    (project / "seeds_5_predictions").rename(project / "seeds" / "5" / "predictions")
    write_metrics(project / "seeds" / "5" / "reports" / "metrics.json", 0.9, 0.04)
    write_metrics(project / "seeds" / "2" / "reports" / "metrics.json", 0.8, 0.02)
    Figure(figsize=(2, 2)).savefig(project / "seeds" / "5" / "reports" / "bcwi_curve.png")
    monkeypatch.chdir(project)
    assert main(["report"]) == 0
    md = (project / "reports" / "report.md").read_text()
    assert "(predictions in `seeds/5/predictions`)" in md
    assert "Gate verdict for `bcwi`: REJECT." in md
    assert "## Across seeds (2 runs)" in md and (project / "reports" / "plots" / "bcwi_curve.png").is_file()
    assert re.search(r"^\| new \| 2 \| 85\.00 ± 7\.07 \| 3\.00 ± 1\.41 \|", md, re.M)


def test_report_splits_old_and_added_classes(project):
    """num_old_labels 2: classes 0 and 1 are old's (6 examples), class 2 was added (2 examples)."""
    (project / "data" / "update" / "labels.json").write_text(json.dumps({"labels": NAMES, "num_old_labels": 2}))
    paths = build_report(project / "predictions", project / "data" / "update", project / "reports")
    md = paths["markdown"].read_text()
    part = md[md.index("## Old and added classes"):]
    assert "Examples of the classes old knew (6):" in part and "Examples of the added classes (2):" in part
    old_part = part[:part.index("Examples of the added classes")]
    # new on old's classes: old right on r0, r1, r3, r6; new wrong on r1 only -> NFR 1/6
    assert re.search(r"^\| new \| 66\.67 \| 16\.67 \[", old_part, re.M), old_part
    added = part[part.index("Examples of the added classes"):]
    assert re.search(r"^\| target \| 100\.00 \| 0\.00 \[", added, re.M), added


def test_a_single_seed_rebuild_drops_a_stale_seeds_table(project):
    (project / "reports" / "seeds.json").write_text('{"runs": ["a", "b"], "regression": {}}')
    paths = build_report(project / "predictions", project / "data" / "update", project / "reports")
    assert "seeds" not in paths and not (project / "reports" / "seeds.json").exists()
