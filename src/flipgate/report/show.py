"""`flipgate show`: the results table of the first seed's run (seeds/<seed>/reports/metrics.json) and,
with several seeds, the mean +- std table of reports/seeds.json (the report stage's). It says which data
the figures come from and, plainly, when they are stale: the update's data or params.yaml changed since
(e.g. a `dvc repro` that stopped at validation), by the figures' own record and by `dvc status`."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    p.add_argument("--metrics", type=Path, help="metrics file written by the evaluate stage "
                                                "(default: the first seed's, seeds/<seed>/reports/metrics.json)")
    p.add_argument("--seeds", type=Path, default=Path("reports/seeds.json"),
                   help="mean +- std over seeds, written by the report stage (default: reports/seeds.json)")
    p.add_argument("--split", default="regression", choices=["regression", "dev"])
    p.add_argument("--data", type=Path, default=Path("data/update"), help="the update's folder the figures should "
                                                                            "describe (default: data/update)")
    p.add_argument("--no-dvc-status", action="store_true", help="skip `dvc status` (about a second)")


def freshness(metrics: dict, data_dir: Path, check_dvc: bool) -> list[str]:
    """Lines on where the figures come from and why they may be stale (STALE lines first)."""
    from flipgate.params_file import read_params
    from flipgate.provenance import describe, dvc_status, stale_reasons

    params = read_params() if Path("params.yaml").is_file() else {}
    snap = metrics.get("provenance")
    lines = [f"STALE: {r}" for r in stale_reasons(snap, data_dir, params)] if params else []
    if check_dvc:
        status = dvc_status()
        if status:
            shown = status[:8] + ([f"... and {len(status) - 8} more"] if len(status) > 8 else [])
            lines.append("STALE: `dvc status` lists stages out of date (params or deps changed since they ran; "
                         "run `dvc repro`):\n  " + "\n  ".join(shown))
    if snap:
        lines.append(describe(snap))
    return lines


def run(args: argparse.Namespace) -> int:
    from flipgate.report.cli import pipeline_runs

    path = args.metrics or pipeline_runs()[0] / "reports" / "metrics.json"
    metrics = read_json(path)
    notes = freshness(metrics, args.data, check_dvc=args.metrics is None and not args.no_dvc_status)
    for line in notes:
        if line.startswith("STALE"):
            print(line)
    print(f"{path}:")
    print(results_table(metrics, args.split))
    for line in notes:
        if not line.startswith("STALE"):
            print(line)
    times = metrics.get("wall_time_s")
    if times:
        print("\nwall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    if args.metrics is None and args.split == "regression" and args.seeds.is_file():
        from flipgate.report.layout import seeds_table
        from flipgate.report.document import markdown_table

        agg = read_json(args.seeds)
        print(f"\n{args.seeds}: mean ± std over {len(agg['runs'])} seeds\n" + markdown_table(seeds_table(agg["regression"])))
    return 0
