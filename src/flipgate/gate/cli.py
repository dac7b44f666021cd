"""`flipgate gate`: judge a candidate's predictions against the baseline's on the regression set.

Predictions tables are parquet, csv or jsonl files with columns id, label, pred (logits ignored).

Exit status: 0 pass, 1 reject, 2 inconclusive, 3 bad input (the dispatcher maps FlipgateError to 3).
Imports no torch, transformers or MLflow: CI runs this on predictions files alone, in seconds.
Policy values come from the flags, else from the `gate` section of --params, else the defaults.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from flipgate.errors import FlipgateError
from flipgate.gate.policy import Decision, Policy, decide
from flipgate.gate.tables import align, read_predictions, resolve_predictions, same_file

log = logging.getLogger(__name__)

EXIT_CODES = {"pass": 0, "reject": 1, "inconclusive": 2}
_POLICY_FLAGS = ("nfr_budget", "upper_bound", "ci_level", "min_gain", "per_class_budget")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Judge a candidate's predictions against the baseline's on the regression set."
    p.epilog = "exit status: 0 pass, 1 reject, 2 inconclusive, 3 bad input"
    p.add_argument("--baseline", required=True, metavar="FILE", help="the old/champion model's predictions")
    p.add_argument("--candidate", required=True, metavar="FILE", help="the candidate's, on the same examples")
    p.add_argument("--params", type=Path, metavar="FILE", help="take policy defaults from its `gate` section")
    # default None everywhere: "not given" must fall through to --params, then to Policy's defaults.
    p.add_argument("--nfr-budget", type=float, metavar="RATE", help="max negative flip rate (default 0.01)")
    p.add_argument(
        "--upper-bound",
        action=argparse.BooleanOptionalAction,
        help="also require the one-sided Clopper-Pearson upper bound of the NFR <= budget",
    )
    p.add_argument("--ci-level", type=float, metavar="LEVEL", help="level of the upper bound (default 0.95)")
    p.add_argument("--min-gain", type=float, metavar="RATE", help="min accuracy gain (default 0); may be < 0")
    p.add_argument("--per-class-budget", type=float, metavar="RATE", help="max NFR within every gold class")
    p.add_argument("--golden-ids", type=Path, metavar="FILE", help="ids (one per line) that must never flip")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the decision as JSON here")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a PR-comment summary here")
    p.add_argument(
        "--allow-identical",
        action="store_true",
        help="judge a candidate whose predictions equal the baseline's (refused by default: usually a mix-up)",
    )


def run(args: argparse.Namespace) -> int:
    policy, golden_file = build_policy(args)
    decision = gate_files(
        args.baseline, args.candidate, policy, allow_identical=args.allow_identical, golden_source=golden_file
    )
    if args.json:
        from flipgate.io import write_json

        write_json(decision.to_dict(), args.json)
    if args.markdown:
        write_markdown(decision.to_markdown(), args.markdown)
    print(decision.to_text())
    return EXIT_CODES[decision.verdict]


def gate_files(
    baseline_ref: str,
    candidate_ref: str,
    policy: Policy,
    allow_identical: bool = False,
    golden_source: Path | None = None,
) -> Decision:
    """Read both predictions tables, check they describe the same examples, and decide.

    Raises FlipgateError for bad input: a missing or unreadable file, the baseline's own file or
    predictions as the candidate, ids or labels that differ, golden ids absent from the set.
    """
    start = time.perf_counter()
    base_path, cand_path = resolve_predictions(baseline_ref), resolve_predictions(candidate_ref)
    for path in (base_path, cand_path):
        if not path.is_file():
            raise FlipgateError(f"{path}: file not found")
    if same_file(base_path, cand_path):
        raise FlipgateError(
            f"{cand_path}: the candidate is the baseline's own file ({base_path}); "
            "pass the candidate model's predictions"
        )
    data = align(read_predictions(base_path), read_predictions(cand_path), str(base_path), str(cand_path))
    if not allow_identical and len(data.labels) and np.array_equal(data.baseline_pred, data.candidate_pred):
        raise FlipgateError(
            f"{cand_path}: every prediction equals the baseline's ({base_path}), so this is most likely the "
            "baseline's predictions under another name; pass the candidate's (or --allow-identical)"
        )
    try:
        decision = decide(
            data.labels,
            data.baseline_pred,
            data.candidate_pred,
            policy,
            ids=data.ids.to_pandas() if policy.golden_ids else None,
            baseline=str(baseline_ref),
            candidate=str(candidate_ref),
        )
    except ValueError as exc:  # golden ids absent from the regression set
        raise FlipgateError(
            f"{golden_source or 'golden ids'}: {exc}; every golden id must be in the regression set"
        ) from exc
    log.debug("gate decided in %.2f s on %d rows", time.perf_counter() - start, len(data.labels))
    return decision


def build_policy(args: argparse.Namespace) -> tuple[Policy, Path | None]:
    """The policy and its golden ids file. Flags override the `gate` section of --params, which
    overrides Policy's defaults."""
    values: dict[str, object] = {}
    golden_file: Path | None = None
    if args.params is not None:
        from flipgate.params import load_section  # pydantic + yaml: only when asked for

        section = load_section("gate", args.params)
        values = {k: getattr(section, k) for k in _POLICY_FLAGS}
        golden_file = Path(section.golden_ids_file) if section.golden_ids_file else None
    values.update({k: getattr(args, k) for k in _POLICY_FLAGS if getattr(args, k) is not None})
    if args.golden_ids is not None:
        golden_file = args.golden_ids
    golden = read_golden_ids(golden_file) if golden_file else frozenset()
    try:
        return Policy(**values, golden_ids=golden), golden_file
    except ValueError as exc:
        raise FlipgateError(f"gate policy: {exc}") from exc


def read_golden_ids(path: Path) -> frozenset[str]:
    """One id per line; blank lines and lines starting with '#' are ignored."""
    if not path.is_file():
        raise FlipgateError(f"{path}: golden ids file not found")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise FlipgateError(f"{path}: golden ids file is not text ({exc}); write one id per line") from exc
    ids = frozenset(s for line in lines if (s := line.strip()) and not s.startswith("#"))
    if not ids:
        raise FlipgateError(f"{path}: golden ids file lists no id; write one id per line or drop the option")
    return ids


def write_markdown(text: str, path: Path) -> None:
    from flipgate.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)
