"""Reading params.yaml: the file checked as a whole (`check_all`: every section of `flipgate.params`, the
seeds, and the rules that span sections, every problem in one message), one section (`load_section`) or
the training seeds (`load_seeds`). Every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from flipgate.errors import FlipgateError
from flipgate.params import SECTIONS, Section


def read_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise FlipgateError(f"{path}: params file not found; run from the project root")
    if path.is_dir():
        raise FlipgateError(f"{path}: is a folder; name the params file (e.g. {path / 'params.yaml'})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise FlipgateError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); save it as UTF-8 YAML") from exc
    except yaml.YAMLError as exc:
        raise FlipgateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise FlipgateError(f"{path}: expected a mapping of sections at the top level")
    unknown = sorted(set(raw) - set(SECTIONS) - {SEEDS})
    if unknown:
        raise FlipgateError(f"{path}: unknown section(s) {unknown}; known: {sorted([SEEDS, *SECTIONS])}")
    return raw


SEEDS = "seeds"  # the top-level list of training seeds: one run folder seeds/<seed>/ each (dvc.yaml foreach)


def load_seeds(path: str | Path = "params.yaml", raw: dict | None = None) -> list[int]:
    """The training seeds, in order (the first is the primary run that select, gate and promote use)."""
    raw = read_params(path) if raw is None else raw
    seeds = raw.get(SEEDS, [0])
    if (not isinstance(seeds, list) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise FlipgateError(f"{path}: seeds: expected a non-empty list of distinct integers in [0, 2**32), e.g. [0, 1, 2]; "
                            f"got {seeds!r}")
    return seeds


def load_section(name: str, path: str | Path = "params.yaml", raw: dict | None = None) -> Section:
    """Validate one section of params.yaml; any error names the file and the key."""
    raw = read_params(path) if raw is None else raw
    model = SECTIONS[name]
    value = raw.get(name)
    try:  # an empty section (`bcwi:`) is the defaults; `bcwi: 0` or `bcwi: []` is an error, not the defaults
        return model.model_validate({} if value is None else value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join([name, *(str(p) for p in err['loc'])])}: {err['msg']}" for err in exc.errors()
        )
        raise FlipgateError(f"{path}: {problems}") from None


def check_all(path: str | Path = "params.yaml") -> dict[str, Section]:
    """Validate the whole params file (every section, the seeds, and the rules that span sections) and
    raise one FlipgateError listing every problem. Every stage runs it first, so a bad key fails in
    seconds, before any training, whichever stage DVC starts with."""
    raw = read_params(path)
    problems: list[str] = []
    sections: dict[str, Section] = {}
    for name in SECTIONS:
        try:
            sections[name] = load_section(name, path, raw)
        except FlipgateError as exc:
            problems.append(str(exc).removeprefix(f"{path}: "))
    try:
        seeds = load_seeds(path, raw)
        ens = sections.get("new_ensemble")
        if ens is not None and ens.enabled and ens.k > len(seeds):
            problems.append(f"new_ensemble.k: {ens.k} members need at least {ens.k} seeds; seeds has {len(seeds)}")
    except FlipgateError as exc:
        problems.append(str(exc).removeprefix(f"{path}: "))
    if not problems:
        problems = _cross_section_problems(sections)
    if problems:
        raise FlipgateError(f"{path}: " + "; ".join(problems))
    return sections


def _cross_section_problems(s: dict[str, Section]) -> list[str]:
    data, update = s["data"], s["update"]
    problems = []
    if data.source == "files" and data.files is None:
        problems.append("data.files: required when data.source is files (old, new, dev, regression)")
    if data.source == "hf" and data.hf is None:
        problems.append("data.hf: required when data.source is hf (dataset, split)")
    if update.new_classes and data.scenario != "add_classes":
        problems.append("update.new_classes: set data.scenario: add_classes to hold classes out of D_old")
    return problems
