"""When two texts are the same text: the old-logit cache's key and the validation's leakage checks agree."""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Strip, lowercase (Python's str.lower, so a Greek final sigma stays ς) and collapse whitespace runs to
    one space ("  A  b\\n" -> "a b")."""
    return _SPACE.sub(" ", text.strip().lower())
