"""Render a report Document as one self-contained HTML file through the Jinja2 template
templates/report.html.j2: inline CSS (templates/report.css), PNGs as base64 data URIs, no script and no
external link, so it opens offline and can be mailed or attached as it is. Autoescaping is on: texts,
cells and alt texts are plain text; in paragraphs only `code` spans and **bold** become markup."""

from __future__ import annotations

import base64
import re
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from flipgate.report.document import Document, Image, Table

TEMPLATE, CSS = "report.html.j2", "report.css"


def _inline(text: object) -> Markup:
    """Escape, then turn the two markups paragraphs use into HTML: `code` spans into <code>, **bold**
    (outside code) into <strong>."""
    parts = re.split(r"(`[^`]+`)", str(escape(str(text))))
    out = [f"<code>{p[1:-1]}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1
           else re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", p) for p in parts]
    return Markup("".join(out))


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("flipgate.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(inline=_inline, base64=_base64)
    env.tests.update(table=lambda b: isinstance(b, Table), image=lambda b: isinstance(b, Image))
    return env


def to_html(doc: Document) -> str:
    env = environment()
    css = Markup(env.loader.get_source(env, CSS)[0])  # our own file, inlined as it is
    return env.get_template(TEMPLATE).render(doc=doc, css=css)
