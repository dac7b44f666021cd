"""The HTML report's template: every text escaped, `code` and **bold** the only markup of paragraphs."""

from __future__ import annotations

import base64

from flipgate.report.document import Document, Image, Section, Table
from flipgate.report.html import to_html


def test_template_escapes_text_and_renders_blocks():
    png = b"\x89PNG\r\n\x1a\nfake"
    doc = Document("report <1>", [Section("a & b", [
        '**STALE**: run `dvc repro <x>`; "quoted" **not `code`** <script>alert(1)</script>',
        Table(["model", "acc %"], [["<i>new</i>", "80.00"], ["old", "79.00"]], left_columns=1),
        Image("plots/p.png", png, 'alt "with" <quotes>'),
    ])])
    html = to_html(doc)
    assert html.startswith("<!DOCTYPE html>\n") and html.endswith("</body></html>\n")
    assert "<title>report &lt;1&gt;</title>" in html and "<h1>report &lt;1&gt;</h1>" in html
    assert "<h2>a &amp; b</h2>" in html
    assert ("<p><strong>STALE</strong>: run <code>dvc repro &lt;x&gt;</code>; &#34;quoted&#34; "
            "**not <code>code</code>** &lt;script&gt;alert(1)&lt;/script&gt;</p>") in html
    assert ("<table><thead><tr><th>model</th><th>acc %</th></tr></thead><tbody>"
            '<tr><td>&lt;i&gt;new&lt;/i&gt;</td><td class="num">80.00</td></tr>'
            '<tr><td>old</td><td class="num">79.00</td></tr></tbody></table>') in html
    assert f'<img alt="alt &#34;with&#34; &lt;quotes&gt;" src="data:image/png;base64,{base64.b64encode(png).decode()}">' in html
    assert "<script" not in html and "<style>body {" in html  # the CSS inlined, nothing linked
