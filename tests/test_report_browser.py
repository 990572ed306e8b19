"""The report opened in a real browser (headless Debian chromium, driven over a DevTools pipe):
the page renders, every figure decodes, nothing errors, and hostile captions stay text."""
from __future__ import annotations

import pytest

from gapkit.report import build_report

from . import _chromium
from .test_report import XSS, make_run

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not _chromium.available(), reason="chromium not installed (apt-get install chromium)"),
]


def test_report_renders_in_chromium(tmp_path):
    run = make_run(tmp_path / "run", title=f"model {XSS}", caption=f"caption {XSS}")
    html = build_report([run], tmp_path / "report.html", title="Browser check")
    shot = tmp_path / "screenshot.png"
    info = _chromium.inspect_page(html, shot)
    assert info["title"] == "Browser check"
    assert info["h1"] == "Browser check"
    assert info["n_images"] == 2 and info["images_loaded"] == 2      # both figures decoded
    assert all(w > 300 for w in info["image_widths"])
    assert info["n_tables"] >= 4
    assert info["n_scripts"] == 0                                     # the XSS caption did not become a script
    assert XSS in info["body_text"]                                   # ... it is shown as text
    assert info["errors"] == []                                       # no console / load / CSP errors
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000    # a real, non-blank screenshot
    assert info["page_height"] > 900


def test_the_browser_check_catches_a_broken_page(tmp_path):
    """The harness itself: a missing image and a script error must be reported, not missed."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>broken</title></head><body>"
                    "<img src='missing.png'><script>console.error('boom'); undefined_fn();</script>"
                    "</body></html>")
    info = _chromium.inspect_page(page, tmp_path / "shot.png")
    assert info["n_images"] == 1 and info["images_loaded"] == 0
    assert any("boom" in e for e in info["errors"])
    assert any("undefined_fn" in e or "exception" in e for e in info["errors"])
