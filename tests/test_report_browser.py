"""reports/report.html opened in headless Chromium (the system's, driven by Playwright): it renders, every
image decodes, and the page asks for nothing but its own file. A screenshot is kept as a benchmark
artefact: reports/bench_report_screenshot.png. .ci/run installs chromium from Debian's packages."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from test_report import PREDS, project  # noqa: F401  (the fixture)

from flipgate.report.build import build_report

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "reports" / "bench_report_screenshot.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    """The system's Chromium (FLIPGATE_CHROMIUM overrides); skips the test, saying why, when there is none."""
    found = os.environ.get("FLIPGATE_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if not found:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does) nor FLIPGATE_CHROMIUM")
    return found


def open_in_chromium(page_path: Path, screenshot: Path) -> dict:
    """Load the file in a fresh headless browser with every non-file request refused and recorded; return
    what the page holds and what it asked for."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.lock has it)")
    requests, errors, refused = [], [], []
    with sync_api.sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses to run as root
        browser = p.chromium.launch(executable_path=chromium(), args=args)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)

            def route(r):
                if r.request.url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            images = page.evaluate("""() => [...document.images].map(i => ({
                alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                scheme: i.src.split(':')[0]}))""")
            info = page.evaluate("""() => ({
                title: document.title, h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
                rows: document.querySelectorAll('tbody tr').length, scripts: document.scripts.length,
                links: [...document.querySelectorAll('[href]')].map(e => e.getAttribute('href')),
                text: document.body.innerText, height: document.body.scrollHeight})""")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {**info, "images": images, "requests": requests, "errors": errors, "refused": refused}


def test_report_renders_in_chromium_with_every_image_decoded_and_nothing_fetched(project, monkeypatch):  # noqa: F811
    fig = Figure(figsize=(4, 2.5))
    fig.add_subplot().plot([0, 0.5, 1], [0.25, 0.125, 0])
    fig.savefig(project / "reports" / "bcwi_curve.png", metadata={"Software": None})  # the bcwi stage's plot
    monkeypatch.chdir(project)  # relative paths: the page, and so the kept screenshot, is the same every run
    paths = build_report(Path("predictions"), Path("data/update"), Path("reports"))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    seen = open_in_chromium(paths["html"], SCREENSHOT)

    assert seen["requests"] == [paths["html"].resolve().as_uri()]  # its own file; images are data: URIs
    assert seen["refused"] == [] and seen["errors"] == []
    assert seen["title"] == "flipgate report" and seen["scripts"] == 0 and seen["links"] == []
    assert {"Comparison on the regression set", "BCWI alpha curve", "NFR per class"} <= set(seen["h2"])
    assert seen["rows"] >= len(PREDS)  # the comparison table alone has a row per model
    assert "<b>bold</b>" in seen["text"]  # an example's markup is shown as text, not rendered
    assert "**" not in seen["text"]  # the report's own **bold** is bold, not asterisks
    images = seen["images"]
    assert len(images) == 4, images  # bcwi curve, flip matrices of new and bcwi, per-class NFR
    for img in images:
        assert img["scheme"] == "data" and img["complete"] and img["width"] > 0 and img["height"] > 0, img
    shot = SCREENSHOT.read_bytes()
    assert shot[:8] == PNG_MAGIC and len(shot) > 10_000
    assert seen["height"] > 900  # the page is longer than one screen: the full-page shot holds all of it
