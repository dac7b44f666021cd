"""Atomic file writes, JSON and parquet (predictions tables are read and built in flipgate.predictions)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from flipgate.errors import FlipgateError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, folder: bool | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; move it onto `path` only if the block succeeds, so a crash never
    leaves a half-written artifact.

    folder=False (a file): an existing folder at `path` is refused at once, before the block runs; a
    file never replaces a folder (`--json reports/` must not wipe reports/). folder=True (a folder): an
    existing folder at `path` is replaced as a whole; an existing file is refused. folder=None (the
    caller does not say): decided by what the block wrote, with the same refusals, after the block.
    Temp names carry the writer's pid and host; the leftovers of a killed writer of the same target
    (its pid no longer alive on this host) are removed here, at the next write.
    """
    path = Path(path)
    _refuse_target(path, folder)
    _make_parent(path)
    tmp = writer_temp_dir(path)
    target = tmp / path.name
    try:
        yield target
        _refuse_target(path, folder if folder is not None else target.is_dir() and not target.is_symlink())
        if path.is_dir() and not path.is_symlink():
            os.replace(path, tmp / ".replaced")  # out of the way in one rename; removed with tmp below
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _refuse_target(path: Path, folder: bool | None) -> None:
    if folder is False and path.is_dir():
        raise FlipgateError(f"{path}: is a folder; name a file inside it (a file write never replaces a folder)")
    if folder is True and path.exists() and not path.is_dir():
        raise FlipgateError(f"{path}: is a file, where a folder is written; move it away or name another path")


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise FlipgateError(f"{path}: cannot create its folder {path.parent}: a file stands in the way ({exc})") from exc


def writer_temp_dir(path: Path) -> Path:
    """A new temp folder beside `path` named by this writer (.NAME.<pid>@<host>.XXXX.tmp), after removing
    the ones a dead writer of the same `path` left behind."""
    _remove_stale_temps(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent))


def _writer_tag() -> str:
    """pid@host of this process, for temp names: on a shared filesystem only this host's pids are judged."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c == "-") or "host"
    return f"{os.getpid()}@{host}"


_LEGACY_TEMP_AGE_S = 24 * 3600  # temps named before the pid was in the name: removed once a day old


def _remove_stale_temps(path: Path) -> None:
    """Remove `.NAME.<pid>@<host>.XXXX.tmp` beside `path` whose writer is dead (and pid-less temps of
    earlier versions older than a day). A live or unknown writer's temp is always left alone."""
    prefix = f".{path.name}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    here = _writer_tag().split("@", 1)[1]
    for tmp in candidates:
        rest = tmp.name[len(prefix):-len(".tmp")]
        writer, _, random_part = rest.rpartition(".")
        pid, at, host = writer.partition("@")
        if at and pid.isdigit() and host == here:
            stale = not _pid_alive(int(pid))
        elif not writer and random_part:  # the earlier `.NAME.XXXX.tmp`, no pid to ask
            stale = _age_s(tmp) > _LEGACY_TEMP_AGE_S
        else:  # another target's temp (e.g. `.gate.json.*` beside `gate`), or another host's
            stale = False
        if stale:
            log.info("removing %s, left by a killed write of %s", tmp, path)
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists, owned by someone else (or cannot tell: keep it)
        return True
    return True


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def write_json(obj: object, path: str | Path) -> None:
    with atomic_path(path, folder=False) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | Path) -> object:
    path = Path(path)
    if path.is_dir():
        raise FlipgateError(f"{path}: is a folder, not a JSON file; name the file")
    if not path.exists():
        raise FlipgateError(f"{path}: file not found; run the stage that writes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FlipgateError(f"{path}: not valid JSON ({exc}); delete it and rerun its stage") from exc


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path, folder=False) as tmp:
        df.to_parquet(tmp, index=False)


def frame_hash(df: pd.DataFrame, columns: list[str]) -> str:
    """A content hash of some columns, stable across runs (for dataset fingerprints)."""
    h = hashlib.sha256()
    for col in columns:
        h.update(pd.util.hash_pandas_object(df[col].astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def hash_files(h: hashlib._Hash, path: Path) -> None:
    """Feed a file (its name and bytes) or a folder (each file's relative name and bytes, sorted) into `h`,
    so two copies of a folder hash alike wherever they sit (the pipeline key's data files, model folders)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update((f.relative_to(path).as_posix() if path.is_dir() else f.name).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
