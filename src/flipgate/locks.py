"""File locks that serialise processes working on one MLflow store (no MLflow import here).

MLflow gives no compare-and-set: `set_registered_model_alias` overwrites whatever the alias held, and
creating a sqlite store migrates its schema in place, so two processes doing either at once race.
A lock is keyed by the store: for `sqlite:///path/mlflow.db` it is the file `mlflow.db.<purpose>.lock`
beside the database; for any other URI (a server, a file store) it lives in the temp folder, named by a
hash of the URI. Either way it serialises processes on one machine (or sharing that folder); it cannot
see a process on another machine talking to the same server. The kernel releases a lock when its holder
dies, so a killed promotion never leaves one behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flipgate.errors import FlipgateError

TIMEOUT_S = 600.0  # a promotion holds its lock for seconds; a wait this long means a process is stuck
SQLITE_PREFIX = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working directory unless it starts
    with /), else None."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri[len(SQLITE_PREFIX):].split("?", 1)[0])


def lock_file(uri: str, purpose: str) -> Path:
    """Where processes serialise `purpose` ("open", "promote") on the store at `uri`."""
    db = sqlite_file(uri)
    if db is not None:
        db = db.resolve()
        return db.with_name(f"{db.name}.{purpose}.lock")
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"flipgate-{digest}.{purpose}.lock"


@contextlib.contextmanager
def store_lock(uri: str, purpose: str, timeout: float = TIMEOUT_S) -> Iterator[Path]:
    """Hold the store's `purpose` lock for the body; yields the lock file. Raises FlipgateError naming the
    lock file when another process holds it for longer than `timeout` seconds."""
    from filelock import FileLock, Timeout

    path = lock_file(uri, purpose)
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise FlipgateError(
            f"{path}: another process has held the {purpose} lock of {uri} for over {timeout:.0f} s; "
            "wait for it to finish, or stop it (a killed holder releases the lock by itself)"
        ) from exc
    try:
        yield path
    finally:
        lock.release()
