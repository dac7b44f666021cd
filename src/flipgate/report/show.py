"""`flipgate show`: the results table from reports/metrics.json."""

from __future__ import annotations

import argparse

from flipgate.io import read_json

COLUMNS = (("accuracy", "acc %"), ("nfr", "NFR %"), ("nfi", "NFI %"), ("pfr", "PFR %"), ("negative_flips", "neg flips"))


def results_table(metrics: dict, split: str = "regression") -> str:
    """A markdown table: one row per model, rates in percent, n in the header."""
    rows = metrics[split]
    n = next(iter(rows.values()))["n"] if rows else 0
    cols = list(COLUMNS) + ([("fix_rate", "fix %"), ("new_fault_rate", "new-fault %")]
                            if any("fix_rate" in r for r in rows.values()) else [])
    lines = [f"| model ({split}, n={n}) | " + " | ".join(h for _, h in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, r in rows.items():
        cells = []
        for key, _ in cols:
            v = r.get(key)
            cells.append("" if v is None else (str(v) if isinstance(v, int) else f"{100 * v:.2f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", default="reports/metrics.json", help="metrics file written by the evaluate stage")
    p.add_argument("--split", default="regression", choices=["regression", "dev"])


def run(args: argparse.Namespace) -> int:
    metrics = read_json(args.metrics)
    print(results_table(metrics, args.split))
    times = metrics.get("wall_time_s")
    if times:
        print("\nwall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return 0
