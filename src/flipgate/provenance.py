"""Where a set of figures comes from, and whether it is still current.

The evaluate stage records a snapshot beside its metrics: the data source, the update's splits (rows
and a content hash) and the source files' size and modification time. `flipgate show` and `flipgate
report` compare it with what is there now, so a table left by an earlier run (say, after a `dvc repro`
that stopped at validation on new data) is never shown as if it were current. `dvc_status` adds what
DVC knows: every stage whose params or deps changed since it last ran.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from flipgate.io import frame_hash

log = logging.getLogger(__name__)

SPLITS = ("old", "new", "dev", "regression")


def _split_fingerprints(data_dir: Path) -> dict[str, dict]:
    out = {}
    for name in SPLITS:
        path = data_dir / f"{name}.parquet"
        if path.is_file():
            df = pd.read_parquet(path)
            cols = [c for c in ("id", "text", "label") if c in df.columns]
            out[name] = {"rows": len(df), "hash": frame_hash(df, cols)}
    return out


def _source_files(data: dict) -> list[str]:
    files = data.get("files") or {}
    if data.get("source") != "files" or not files:
        return []
    new = files.get("new") or []
    return [str(p) for p in (files.get("old"), *([new] if isinstance(new, str) else new), files.get("dev"),
                             files.get("regression")) if p]


def _file_signature(path: Path) -> list[tuple[str, int, float]]:
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    return [(str(f), f.stat().st_size, round(f.stat().st_mtime, 3)) for f in files if f.exists()]


def snapshot(data_dir: str | Path, params: dict) -> dict:
    """What figures computed now come from: `params` is params.yaml as read (its `data` section is used)."""
    data = params.get("data") or {}
    source = data.get("source", "embedded")
    files = _source_files(data)
    return {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_source": source if source != "hf" else f"hf:{(data.get('hf') or {}).get('dataset')}",
        "data_files": files,
        "source_signature": [list(s) for f in files for s in _file_signature(Path(f))],
        "splits": _split_fingerprints(Path(data_dir)),
    }


def describe(snap: dict) -> str:
    """One line: source, rows per split, content hashes."""
    splits = snap.get("splits") or {}
    rows = ", ".join(f"{k} {v['rows']:,}" for k, v in splits.items())
    source = snap.get("data_source", "?")
    if snap.get("data_files"):
        source += " (" + ", ".join(snap["data_files"]) + ")"
    regression = (splits.get("regression") or {}).get("hash", "?")
    return f"data: {source}; {rows}; regression set hash {regression}; computed {snap.get('written_at', '?')}"


def stale_reasons(snap: dict | None, data_dir: str | Path, params: dict) -> list[str]:
    """Why figures with snapshot `snap` no longer describe the data in `data_dir` and params.yaml's
    data source; empty when they still do. No snapshot (figures from an older version) is a reason."""
    if not snap:
        return ["these figures carry no record of their data (written by an older flipgate): rerun `dvc repro`"]
    reasons = []
    now = _split_fingerprints(Path(data_dir))
    changed = [k for k in SPLITS if (snap.get("splits") or {}).get(k) != now.get(k)]
    if changed:
        reasons.append(f"{data_dir} changed since these figures were computed ({', '.join(changed)}): a later "
                       "stage failed or has not run; run `dvc repro`")
    data = params.get("data") or {}
    source = data.get("source", "embedded")
    source = source if source != "hf" else f"hf:{(data.get('hf') or {}).get('dataset')}"
    files = _source_files(data)
    if source != snap.get("data_source") or files != snap.get("data_files"):
        now_from = " ".join([source, *files])
        then_from = " ".join([str(snap.get("data_source")), *(snap.get("data_files") or [])])
        reasons.append(f"params.yaml's data source is now {now_from}; these figures are from {then_from}; run `dvc repro`")
    elif [list(s) for f in files for s in _file_signature(Path(f))] != snap.get("source_signature"):
        reasons.append("the data files changed after these figures were computed; run `dvc repro`")
    return reasons


def dvc_status(root: str | Path = ".") -> list[str] | None:
    """Stages DVC sees as out of date, with what changed ("train_old@0: params train_old"); None when
    `root` is not a DVC project or DVC cannot tell. Not to be called from inside a running stage (the
    repo is locked then)."""
    if not (Path(root) / "dvc.yaml").is_file() or not (Path(root) / ".dvc").is_dir():
        return None
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            status = repo.status()
    except Exception as exc:  # noqa: BLE001 - any DVC failure only means "cannot tell"
        log.debug("dvc status failed: %s", exc)
        return None
    lines = []
    for stage, changes in status.items():
        what = []
        for change in changes:
            if isinstance(change, dict):
                for kind, detail in change.items():
                    keys = sorted(k for d in detail.values() for k in (d if isinstance(d, dict) else {})) \
                        if kind == "changed params" else sorted(detail)
                    what.append(f"{kind} {', '.join(map(str, keys))}" if keys else kind)
            else:
                what.append(str(change))
        lines.append(f"{stage}: {'; '.join(what)}")
    return lines
