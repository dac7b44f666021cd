"""`flipgate gate`: judge a candidate's predictions against the baseline's on the regression set.

Predictions tables are parquet, csv or jsonl files with columns id, label, pred (logits ignored), or
parquet datasets (a folder, a glob or any fsspec URL), which are read batch by batch and joined through
buckets spilled to a temp folder (flipgate.gate.stream), so memory is bounded whatever their size.

Exit status: 0 pass, 1 reject, 2 inconclusive, 3 bad input (the dispatcher maps FlipgateError to 3),
64 usage error, 70 internal error (flipgate.errors).
Imports no torch, transformers or MLflow: CI runs this on predictions files alone, in seconds.
Policy values come from the flags, else from the `gate` section of --params, else the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path

import numpy as np

from flipgate.argtypes import positive_int
from flipgate.errors import EXIT_INCONCLUSIVE, EXIT_PASS, EXIT_REJECT, EXIT_STATUS_HELP, FlipgateError
from flipgate.gate import render
from flipgate.gate.policy import Decision, Policy, decide, decide_table
from flipgate.gate.stream import BUCKET_ROWS, open_side, stream_counts
from flipgate.gate.tables import resolve_predictions, same_file
from flipgate.prediction_datasets import is_dataset
from flipgate.predictions import SAME_SET, align, check_file, read_arrow

log = logging.getLogger(__name__)

EXIT_CODES = {"pass": EXIT_PASS, "reject": EXIT_REJECT, "inconclusive": EXIT_INCONCLUSIVE}
_POLICY_FLAGS = ("nfr_budget", "upper_bound", "ci_level", "min_gain", "per_class_budget")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Judge a candidate's predictions against the baseline's on the regression set."
    p.epilog = EXIT_STATUS_HELP
    p.add_argument("--baseline", required=True, metavar="FILE", help="the old/champion model's predictions: a file, "
                   "a models:/ reference, or a parquet dataset (a folder, a glob, an fsspec URL such as s3://...)")
    p.add_argument("--candidate", required=True, metavar="FILE", help="the candidate's, on the same examples")
    p.add_argument("--params", type=Path, metavar="FILE", help="take policy defaults from its `gate` section")
    # default None everywhere: "not given" must fall through to --params, then to Policy's defaults.
    p.add_argument("--nfr-budget", type=rate(0, 1), metavar="RATE", help="max negative flip rate, a fraction "
                                                                         "(default 0.01, i.e. 1%%)")
    p.add_argument(
        "--upper-bound",
        action=argparse.BooleanOptionalAction,
        help="also require the one-sided Clopper-Pearson upper bound of the NFR <= budget",
    )
    p.add_argument("--ci-level", type=rate(0, 1, open_=True), metavar="LEVEL",
                   help="level of the upper bound, in (0, 1) (default 0.95)")
    p.add_argument("--min-gain", type=rate(-1, 1), metavar="RATE", help="min accuracy gain (default 0); may be < 0")
    p.add_argument("--per-class-budget", type=rate(0, 1), metavar="RATE", help="max NFR within every gold class")
    p.add_argument("--golden-ids", type=Path, metavar="FILE", help="ids (one per line) that must never flip")
    p.add_argument("--json", metavar="FILE", help="write the decision as JSON here (a file, never a folder)")
    p.add_argument("--markdown", metavar="FILE", help="write a PR-comment summary here (a file, never a folder)")
    p.add_argument("--spill-dir", type=Path, metavar="DIR", help="where a dataset's buckets are spilled while "
                   "joining (default: the system temp folder; needs about 40 bytes per row of both sides)")
    p.add_argument("--bucket-rows", type=positive_int, default=BUCKET_ROWS, metavar="N",
                   help=f"rows of one side joined in memory at once (default {BUCKET_ROWS:,}); bounds the memory")
    p.add_argument(
        "--allow-identical",
        action="store_true",
        help="judge a candidate whose predictions equal the baseline's, or whose file is the baseline's or a "
             "byte-identical copy (refused by default: usually a mix-up)",
    )


def rate(low: float, high: float, open_: bool = False):
    """An argparse type: a float in [low, high] ((low, high) when open_), with a hint for `1%`."""
    def parse(text: str) -> float:
        if text.strip().endswith("%"):
            hint = text.strip()[:-1]
            raise argparse.ArgumentTypeError(f"{text!r}: rates are fractions, not percentages; for {text} write "
                                             f"{_as_fraction(hint)}")
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        inside = low < value < high if open_ else low <= value <= high
        if not inside:  # NaN is never inside
            interval = f"({low:g}, {high:g})" if open_ else f"[{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"{text!r} is outside {interval}")
        return value

    parse.__name__ = "rate"
    return parse


def _as_fraction(percent: str) -> str:
    try:
        return f"{float(percent) / 100:g}"
    except ValueError:
        return "e.g. 0.01 for 1%"


def output_file(text: str | None, example: str) -> Path | None:
    """--json/--markdown: a file path; a folder (existing, or written with a trailing slash) is refused
    before any work, since a file write must never replace a folder."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir() or text.endswith("/"):
        raise FlipgateError(f"{text}: is a folder; name a file, e.g. {path / example}")
    return path


def run(args: argparse.Namespace) -> int:
    out_json, out_md = output_file(args.json, "gate.json"), output_file(args.markdown, "gate.md")
    policy, golden_file = build_policy(args)
    decision = gate_files(
        args.baseline, args.candidate, policy, allow_identical=args.allow_identical, golden_source=golden_file,
        spill_dir=args.spill_dir, bucket_rows=args.bucket_rows,
    )
    if out_json:
        from flipgate.io import write_json

        write_json(decision.to_dict(), out_json)
    if out_md:
        write_markdown(render.markdown(decision), out_md)
    print(render.text(decision))
    return EXIT_CODES[decision.verdict]


def gate_files(
    baseline_ref: str,
    candidate_ref: str,
    policy: Policy,
    allow_identical: bool = False,
    golden_source: Path | None = None,
    spill_dir: Path | None = None,
    bucket_rows: int = BUCKET_ROWS,
) -> Decision:
    """Read both predictions tables, check they describe the same examples, and decide.

    When either is a parquet dataset (a folder, glob or URL) both are streamed (`gate_datasets`).
    Raises FlipgateError for bad input: a missing or unreadable file, the baseline's own file or
    predictions as the candidate (unless allow_identical), ids or labels that differ, golden ids absent
    from the set.
    """
    if is_dataset(baseline_ref) or is_dataset(candidate_ref):
        return gate_datasets(baseline_ref, candidate_ref, policy, allow_identical, golden_source, spill_dir,
                             bucket_rows)
    start = time.perf_counter()
    base_path, cand_path = resolve_predictions(baseline_ref), resolve_predictions(candidate_ref)
    for path in (base_path, cand_path):
        check_file(path)
    if not allow_identical and same_file(base_path, cand_path):
        _refuse_own_file(base_path, cand_path)
    base = read_arrow(base_path)
    cand = align(base, read_arrow(cand_path), str(base_path), str(cand_path))  # in the baseline's row order
    labels, base_pred, cand_pred = (t[c].to_numpy() for t, c in ((base, "label"), (base, "pred"), (cand, "pred")))
    if not allow_identical and len(labels) and np.array_equal(base_pred, cand_pred):
        _refuse_identical(base_path, cand_path)
    with _golden_errors(golden_source):
        decision = decide(
            labels,
            base_pred,
            cand_pred,
            policy,
            ids=base["id"].to_pandas() if policy.golden_ids else None,
            baseline=str(baseline_ref),
            candidate=str(candidate_ref),
        )
    log.debug("gate decided in %.2f s on %d rows", time.perf_counter() - start, len(labels))
    return decision


def gate_datasets(
    baseline_ref: str,
    candidate_ref: str,
    policy: Policy,
    allow_identical: bool = False,
    golden_source: Path | None = None,
    spill_dir: Path | None = None,
    bucket_rows: int = BUCKET_ROWS,
) -> Decision:
    """`gate_files` for predictions too large for memory: both sides read batch by batch and joined through
    spilled buckets (flipgate.gate.stream); the same refusals, messages and decision as the in-memory path."""
    start = time.perf_counter()
    base_ref, cand_ref = (ref if is_dataset(ref) else str(resolve_predictions(ref))
                          for ref in (baseline_ref, candidate_ref))
    if not allow_identical and _same_source(base_ref, cand_ref):
        _refuse_own_file(base_ref, cand_ref)
    base, cand = open_side(base_ref), open_side(cand_ref)
    counts = stream_counts(base, cand, policy.golden_ids, SAME_SET, bucket_rows=bucket_rows, spill_dir=spill_dir)
    if not allow_identical and counts.table.n and not counts.any_prediction_differs:
        _refuse_identical(base_ref, cand_ref)
    with _golden_errors(golden_source):
        decision = decide_table(counts.table, policy, counts.golden if policy.golden_ids else None,
                                baseline=str(baseline_ref), candidate=str(candidate_ref))
    log.debug("gate decided in %.2f s on %d rows, streamed", time.perf_counter() - start, counts.table.n)
    return decision


def _refuse_own_file(base, cand) -> None:
    raise FlipgateError(f"{cand}: the candidate is the baseline's own file ({base}); "
                        "pass the candidate model's predictions")


def _same_source(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    if Path(a).is_file() and Path(b).is_file():
        return same_file(Path(a), Path(b))
    return Path(a).resolve() == Path(b).resolve()


def _refuse_identical(base: object, cand: object) -> None:
    raise FlipgateError(
        f"{cand}: every prediction equals the baseline's ({base}), so this is most likely the "
        "baseline's predictions under another name; pass the candidate's (or --allow-identical)"
    )


@contextlib.contextmanager
def _golden_errors(golden_source: Path | None):
    try:
        yield
    except ValueError as exc:  # golden ids absent from the regression set
        raise FlipgateError(
            f"{golden_source or 'golden ids'}: {exc}; every golden id must be in the regression set"
        ) from exc


def build_policy(args: argparse.Namespace) -> tuple[Policy, Path | None]:
    """The policy and its golden ids file. Flags override the `gate` section of --params, which
    overrides Policy's defaults."""
    values: dict[str, object] = {}
    golden_file: Path | None = None
    if args.params is not None:
        from flipgate.params_file import load_section  # pydantic + yaml: only when asked for

        section = load_section("gate", _params_file(args.params))
        values = {k: getattr(section, k) for k in _POLICY_FLAGS}
        golden_file = golden_ids_path(section.golden_ids_file, args.params)
    values.update({k: getattr(args, k) for k in _POLICY_FLAGS if getattr(args, k) is not None})
    if args.golden_ids is not None:
        golden_file = args.golden_ids
    golden = read_golden_ids(golden_file) if golden_file else frozenset()
    try:
        return Policy(**values, golden_ids=golden), golden_file
    except ValueError as exc:
        raise FlipgateError(f"gate policy: {exc}") from exc


def _params_file(path: Path) -> Path:
    if path.is_dir():
        raise FlipgateError(f"{path}: is a folder; --params names a params file, e.g. {path / 'params.yaml'}")
    if path.is_file():
        try:
            path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FlipgateError(f"{path}: cannot read the params file ({exc})") from exc
    return path


def golden_ids_path(value: str | None, params_file: str | Path) -> Path | None:
    """`gate.golden_ids_file` of a params file: a relative path is relative to that file's folder, so
    `flipgate gate --params project/params.yaml` works from anywhere."""
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(params_file).parent / path


def read_golden_ids(path: Path) -> frozenset[str]:
    """One id per line; blank lines and lines starting with '#' are ignored."""
    if path.is_dir():
        raise FlipgateError(f"{path}: is a folder; the golden ids file is a text file, one id per line")
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

    with atomic_path(path, folder=False) as tmp:
        tmp.write_text(text, encoding="utf-8")
