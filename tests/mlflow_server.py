"""A real `mlflow server` for tests: on a free port of 127.0.0.1, in its own process group, on a copy of
a migrated sqlite store (the `store` fixture's pristine.db), stopped as a whole afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(store: str, folder: Path) -> Iterator[str]:
    """Yield the URL of a server whose backend is a copy of `store`'s pristine.db and whose artifacts go
    to folder/artifacts. Skips the test when the server cannot start here; fails it when a process of the
    server's group outlives the stop."""
    db = folder / "server.db"
    shutil.copy(Path(store[len("sqlite:///"):]).with_name("pristine.db"), db)  # no fresh migration
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = folder / "server.log"
    with log_path.open("wb") as log:  # a file, not a pipe: a full pipe would block the server
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(folder / "artifacts")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait_for(url, server, log_path)
            except (RuntimeError, TimeoutError) as exc:
                pytest.skip(f"mlflow server cannot start here: {exc}")
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    assert _group_gone(server.pid), "a process of the server's group outlived SIGTERM"


def _wait_for(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer /health within {timeout} s")


def _group_gone(pgid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    return False
