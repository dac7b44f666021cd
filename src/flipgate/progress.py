"""Progress bars for long loops: shown on a terminal, silent in CI and in logs."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(**kwargs) -> tqdm:
    return tqdm(disable=not enabled(), leave=False, dynamic_ncols=True, **kwargs)
