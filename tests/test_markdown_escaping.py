"""Ids from users' files in the markdown flipgate writes (issue 13): the gate's PR-comment summary,
report.md and validation.md. No id may become markup, HTML, or an @mention that notifies someone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from flipgate.data.validate import render_markdown, validate_update
from flipgate.gate import render
from flipgate.gate.policy import Policy, decide
from flipgate.io import write_parquet
from flipgate.markdown import MENTION_BREAK, md_code, md_text, no_mentions
from flipgate.predictions import predictions_frame
from flipgate.report.build import build_report

N = 50
ZWJ = MENTION_BREAK


def test_md_text_breaks_mentions_and_md_code_keeps_them_in_code():
    assert md_text("@octocat") == f"@{ZWJ}octocat"
    assert md_text("ping @org/team now") == f"ping @{ZWJ}org/team now"
    assert no_mentions("a@b.c") == f"a@{ZWJ}b.c"  # reads the same; GitHub never links it
    assert md_code("@octocat") == "`@octocat`"  # GitHub reads no mention inside code


def test_golden_id_mentions_in_the_gate_markdown_notify_nobody():
    ids = ["@octocat", "@org/security-team", "x@y"] + [f"r{i}" for i in range(N - 3)]
    labels, base = np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64)
    cand = base.copy()
    cand[:3] = 1  # every golden id flips: the detail lists them
    decision = decide(labels, base, cand, Policy(golden_ids=ids[:3]), ids=ids, baseline="@base.parquet",
                      candidate="cand.parquet")
    md = render.markdown(decision)
    assert "@octocat" not in md and "@org/security-team" not in md
    assert f"@{ZWJ}octocat" in md and f"@{ZWJ}org/security-team" in md
    assert "`@base.parquet`" in md  # a path is a code span: no mention there
    assert "'@octocat'" in render.text(decision)  # plain text and JSON keep the ids as they are
    assert "@octocat" in json.dumps(decision.to_dict())


def test_ids_in_report_md_are_escaped_as_in_the_pr_comment(tmp_path):
    ids = ["@octocat", "**bold**_id", "<img src=x>", "`tick`", "r4", "r5"]
    texts = ["good @team", "fine", "ok", "nice", "bad", "dull"]
    labels = np.array([0, 0, 0, 0, 1, 1])
    data = tmp_path / "data" / "update"
    data.mkdir(parents=True)
    (data / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"], "num_old_labels": 2}))
    pd.DataFrame({"id": ids, "text": texts, "label": labels}).to_parquet(data / "regression.parquet")
    old = np.array([[2.0, 0.0]] * 4 + [[0.0, 2.0]] * 2, np.float32)  # right everywhere
    new = np.array([[0.0, 1.0]] * 4 + [[0.0, 2.0]] * 2, np.float32)  # flips the first four
    for model, logits in (("old", old), ("new", new)):
        for split in ("dev", "regression"):
            write_parquet(predictions_frame(ids, labels, logits), tmp_path / "predictions" / model / f"{split}.parquet")
    paths = build_report(tmp_path / "predictions", data, tmp_path / "reports")
    md = paths["markdown"].read_text()
    flips = md[md.index("## Top negative flips"):]
    for raw in ids[:4]:
        assert f"| {md_text(raw)} |" in flips, raw
    assert "@octocat" not in md and "@team" not in md and f"good @{ZWJ}team" in md  # texts carry no mention either
    assert "<img" not in md and "| \\*\\*bold\\*\\*\\_id |" in flips
    assert "@octocat" in paths["html"].read_text()  # the HTML is not a GitHub comment: ids as they are


def test_ids_in_validation_md_are_code_spans_and_values_carry_no_mention():
    old = pd.DataFrame({"id": ["a`b", "a`b", "@octocat", "@octocat"], "text": ["w", "x", "y", "z"], "label": [0, 1, 0, 1]})
    other = pd.DataFrame({"id": ["n0", "n1"], "text": ["p", "q"], "label": [0, 1]})
    result = validate_update(old, other, other.assign(id=["r0", "r1"], text=["u", "v"]),
                             dev=other.assign(id=["d0", "d1"], text=["s", "t"]), old_labels=[0, 1])
    md = render_markdown(result)
    assert not result.success
    assert "- ``a`b``: 'w'" in md and "- `@octocat`: 'y'" in md  # offending rows: each id one code span
    assert f"'@{ZWJ}octocat'" in md and "'@octocat'" not in md  # the observed values outside code: no mention
