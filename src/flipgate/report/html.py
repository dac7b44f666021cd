"""Render a report Document as one self-contained HTML file: inline CSS, PNGs as base64 data URIs,
no script and no external link, so it opens offline and can be mailed or attached as it is."""

from __future__ import annotations

import base64
import html
import re

from flipgate.report.document import Document, Image, Table

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans (the one markup paragraphs use) into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = []
    for row in t.rows:
        cells = "".join(
            f"<td>{html.escape(str(c))}</td>" if i < t.left_columns else f'<td class="num">{html.escape(str(c))}</td>'
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(img: Image) -> str:
    data = base64.b64encode(img.png).decode("ascii")
    return f'<img alt="{html.escape(img.alt, quote=True)}" src="data:image/png;base64,{data}">'


def to_html(doc: Document) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for section in doc.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_table(block))
            elif isinstance(block, Image):
                parts.append(_image(block))
            else:
                parts.append(f"<p>{_inline(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
