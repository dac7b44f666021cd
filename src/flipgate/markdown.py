"""Escaping for markdown that GitHub renders: the gate's PR-comment summary and report.md.

Ids, paths and details come from users' files, so nothing in them may become markup, HTML, or an
@mention (GitHub notifies the user or team named after an `@` in a comment)."""

from __future__ import annotations

MENTION_BREAK = "\u200d"  # zero-width joiner after "@": GitHub links @user and @org/team, not @\u200duser
_MD_SPECIAL = set("\\`*_[]|~")  # inline markup; block markup (#, -, 1.) needs a line start, which never comes


def no_mentions(text: str) -> str:
    """`text` with every `@` followed by a zero-width joiner: it reads the same and notifies nobody."""
    return str(text).replace("@", "@" + MENTION_BREAK)


def md_text(text: str) -> str:
    """Text (ids, paths, details) safe inside a markdown line that GitHub renders, e.g. a PR comment:
    inline markup backslash-escaped, HTML's <, > and & as entities (so `<img ...>`, `**x**` or `| x |` in
    an id stays text), @mentions broken by a zero-width joiner, line breaks as spaces (an id cannot start
    a block of its own)."""
    out = []
    for ch in " ".join(str(text).splitlines()):
        if ch in "<>&":
            out.append({"<": "&lt;", ">": "&gt;", "&": "&amp;"}[ch])
        elif ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return no_mentions("".join(out))


def md_code(text: str) -> str:
    """`text` as a markdown code span (nothing inside is markup, and GitHub reads no @mention in code)
    whose fence is longer than any run of backticks in it; line breaks become spaces."""
    text = " ".join(str(text).splitlines()).replace("|", "\\|")  # a pipe would still split a table cell
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
