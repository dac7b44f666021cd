"""Helper of tests/test_faults.py, not a test: a zygote process that imports torch, transformers, Great
Expectations and the report's libraries once, then runs each stage script in a forked child (a real
process with its own pid, killed with SIGKILL by the test), so a kill costs no 15 s of imports.

A child may be told to pause at one point of an atomic write of one target (flipgate.io.atomic_path
renames a temp `.NAME.<pid>@<host>.XXXX.tmp` onto NAME): it writes a `ready` file and sleeps there, and
the test kills it. Points, at the rename of the temp onto the target:
  partial        the temp's content cut to half its bytes (a file; a folder: its largest file), as a kill
                 in the middle of writing leaves it; the target not yet touched
  swapped        a folder target only: the old folder moved into the temp, the new one not yet in place
  after_rename   the new target in place, the temp (holding the replaced folder, if any) not yet removed
Or at a call (the promote stage's MLflow registry steps, which write no file): the target is a dotted
name, a function of a module or a method of a class ("mlflow.tracking.MlflowClient.create_model_version"),
with `#N` for its Nth call in the child (default 1):
  before_call    the call not yet made (its arguments computed)
  after_call     the call returned, nothing after it done

Protocol: one JSON request per line on stdin {"cwd", "argv": [script, ...], "log", "fault": null or
{"target", "point", "ready"}}; replies on stdout: {"ready": true} once imported, then per request
{"started": pid} and {"ended": pid, "rc": exit code, negative for a signal}.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import tempfile
import time
import traceback
from pathlib import Path

POINTS = ("partial", "swapped", "after_rename")
CALL_POINTS = ("before_call", "after_call")


def preload() -> None:
    import great_expectations  # noqa: F401
    import matplotlib  # noqa: F401
    import torch  # noqa: F401
    from transformers import BertForSequenceClassification  # noqa: F401  (transformers imports lazily)

    import mlflow.pyfunc  # noqa: F401
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    import flipgate.data.validate  # noqa: F401
    import flipgate.gate.registry  # noqa: F401
    import flipgate.models.run  # noqa: F401
    import flipgate.report.build  # noqa: F401
    import flipgate.stage  # noqa: F401


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _is_temp_of(folder: Path, target: Path) -> bool:
    return folder.name.startswith(f".{target.name}.") and folder.name.endswith(".tmp") and folder.parent == target.parent


def _cut(path: Path) -> None:
    """Leave `path` (a file, or a folder's largest file) half written."""
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        if not files:
            return
        path = max(files, key=lambda p: p.stat().st_size)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _pause(ready: str, **report: str) -> None:
    Path(f"{ready}.part").write_text(json.dumps(report))
    os.rename(f"{ready}.part", ready)  # whole when the test sees it (os.rename: os.replace may be wrapped)
    while True:
        time.sleep(60)  # until the test's SIGKILL


def _resolve(dotted: str) -> tuple[object, str]:
    """"pkg.module.Class.method" -> (Class, "method"): the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:-1]:
            owner = getattr(owner, attr)
        getattr(owner, parts[-1])  # it must exist: a misspelt target would never pause
        return owner, parts[-1]
    raise ImportError(dotted)


def install_call(target: str, point: str, ready: str) -> None:
    """Wrap the function `target` ("dotted.name#N") so that this process pauses at `point` of its Nth call."""
    dotted, _, nth = target.partition("#")
    owner, name = _resolve(dotted)
    real, calls, goal = getattr(owner, name), [0], int(nth or 1)

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == goal and point == "before_call":
            _pause(ready, call=target)
        done = real(*args, **kwargs)
        if calls[0] == goal and point == "after_call":
            _pause(ready, call=target)
        return done

    setattr(owner, name, wrapper)


def install(target: str, point: str, ready: str) -> None:
    """Wrap os.replace so that this process pauses at `point` of the write of `target` (or, for a call
    point, wrap the function `target`)."""
    if point in CALL_POINTS:
        install_call(target, point, ready)
        return
    assert point in POINTS, point
    goal = Path(os.path.abspath(target))
    real_replace = os.replace

    def pause(temp: Path) -> None:
        _pause(ready, temp=str(temp))

    def replace(src, dst, *args, **kwargs):
        if not isinstance(src, str | os.PathLike) or not isinstance(dst, str | os.PathLike):
            return real_replace(src, dst, *args, **kwargs)
        s, d = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
        swap_out = s == goal and d.name == ".replaced" and _is_temp_of(d.parent, goal)  # an old folder moved aside
        final = d == goal and s.name == goal.name and _is_temp_of(s.parent, goal)
        if (swap_out or final) and point == "partial":  # whichever comes first
            temp = d.parent if swap_out else s.parent
            _cut(temp / goal.name)
            pause(temp)
        if swap_out and point == "swapped":
            real_replace(src, dst, *args, **kwargs)
            pause(d.parent)
        done = real_replace(src, dst, *args, **kwargs)
        if final and point == "after_rename":
            pause(s.parent)
        return done

    os.replace = replace


def child(request: dict) -> None:
    os.chdir(request["cwd"])
    if request.get("tmpdir"):  # the system temp folder of this child: what a killed run leaves there
        os.environ["TMPDIR"] = tempfile.tempdir = request["tmpdir"]
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 0
    try:
        if request.get("fault"):
            install(**request["fault"])
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = str(Path(script).parent)  # as `python stages/x.py` sets it
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    preload()
    reply({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        reply({"started": pid})
        _, status = os.waitpid(pid, 0)  # reaped before the reply: the next writer sees a dead pid
        reply({"ended": pid, "rc": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
