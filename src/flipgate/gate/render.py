"""The gate's decision as people read it: a markdown summary for a pull-request comment, plain text for a
terminal or a stage log. The decision itself (`gate.policy.Decision`) is data; it renders nothing.

Ids, paths and details come from users' files: in the markdown they are escaped (flipgate.markdown), so
nothing in them becomes markup, HTML or an @mention; the plain text keeps them as they are.
"""

from __future__ import annotations

import numpy as np

from flipgate.gate.policy import Decision
from flipgate.markdown import md_code, md_text

ICONS = {"pass": "✅", "reject": "❌", "inconclusive": "⚠️"}


def markdown(decision: Decision) -> str:
    """A short summary table for a pull-request comment."""
    c = decision.counts
    lines = [
        f"### flipgate gate: {ICONS[decision.verdict]} {decision.verdict.upper()}",
        "",
        f"{md_code(decision.candidate)} vs {md_code(decision.baseline)} on {c.n:,} regression examples: "
        f"NFR {c.nfr:.2%} ({c.negative_flips:,} negative flips), PFR {c.pfr:.2%}, "
        f"accuracy {c.accuracy:.2%} (baseline {c.old_accuracy:.2%}).",
        "",
        "| check | observed | threshold | verdict |",
        "|---|---|---|---|",
    ]
    for ch in decision.checks:
        lines.append(f"| {ch.name} | {_fmt(ch.observed)} | {ch.op} {_fmt(ch.threshold)} | {ch.verdict} |")
    notes = [f"- **{ch.name}**: {md_text(ch.detail)}" for ch in decision.checks
             if ch.detail and ch.verdict != "pass"]
    # an unfit baseline is named by its baseline_fit check already
    notes += [f"- **not fit to judge**: {md_text(why)}" for model, why in decision.unfit if model != "old" or
              not any(ch.name == "baseline_fit" for ch in decision.checks)]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def text(decision: Decision) -> str:
    """The same summary as plain text, for a terminal."""
    c = decision.counts
    lines = [
        f"flipgate gate: {decision.verdict.upper()}  ({decision.candidate} vs {decision.baseline}, n={c.n:,})",
        f"  NFR {c.nfr:.4f} ({c.negative_flips:,} negative flips)  PFR {c.pfr:.4f}  "
        f"accuracy {c.accuracy:.4f} vs {c.old_accuracy:.4f}",
    ]
    width = max(len(ch.name) for ch in decision.checks)
    for ch in decision.checks:
        line = f"  {ch.verdict:<12} {ch.name:<{width}}  {_fmt(ch.observed):>8} {ch.op} {_fmt(ch.threshold)}"
        lines.append(line + (f"  ({ch.detail})" if ch.detail else ""))
    lines += [f"  not fit to judge: {why}" for _, why in decision.unfit]
    return "\n".join(lines)


def _fmt(x: float | int | None) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return f"{x:.4f}"
