"""A report as data (sections of paragraphs, tables and images), rendered to markdown here and to
self-contained HTML in `flipgate.report.html`. Cells and paragraphs are plain text: renderers escape them."""

from __future__ import annotations

from dataclasses import dataclass, field

from flipgate.markdown import md_text, no_mentions


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    left_columns: int = 1  # the first columns hold names or text; the rest are numbers, aligned right
    id_columns: tuple[int, ...] = ()  # columns of example ids: escaped in markdown as the gate's PR comment escapes them


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report's folder, for the markdown link
    png: bytes  # embedded in the HTML, so it opens offline and alone
    alt: str


Block = str | Table | Image


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    title: str
    sections: list[Section]


def _md_cell(text: str) -> str:
    # "<" as an entity: example texts must not become HTML in a rendered markdown view; no @mention either
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\r", " ").replace("\n", " ")
    return no_mentions(text)


def markdown_table(t: Table) -> str:
    align = ["---" if i < t.left_columns else "---:" for i in range(len(t.header))]
    lines = ["| " + " | ".join(_md_cell(h) for h in t.header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(md_text(c) if i in t.id_columns else _md_cell(c) for i, c in enumerate(row)) + " |"
              for row in t.rows]
    return "\n".join(lines)


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}"]
    for section in doc.sections:
        parts.append(f"## {section.title}")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(markdown_table(block))
            elif isinstance(block, Image):
                parts.append(f"![{_md_cell(block.alt)}]({block.path})")
            else:
                parts.append(block)
    return "\n\n".join(parts) + "\n"
