"""A real browser looks at the built site: headless Chromium, the site served on localhost with
nothing else reachable, the DOM read after its scripts ran.

Run after the build (``.ci/run`` does): ``pytest -m browser``. The site is
``docs/_build/html`` (or ``$VILAB_SITE``). Without Chromium (``apt-get install chromium``) the
tests skip and say so; without a built site they fail, naming the build command.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("VILAB_SITE", ROOT / "docs" / "_build" / "html"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site():
    """The built site on http://127.0.0.1:PORT, served from a thread."""
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium")
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no site at {SITE}: sphinx-build -W --keep-going -b html docs {SITE}")
    handler = functools.partial(QuietHandler, directory=str(SITE))
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test output is the browser's, not the server's
        pass


def _chromium(url: str, tmp_path: Path, *extra: str) -> str:
    """The DOM of ``url`` after 15 s of virtual time (scripts run: MathJax, search)."""
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
    ]  # fmt: skip
    done = subprocess.run(
        [CHROMIUM, *flags, *extra, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom(url: str, tmp_path: Path) -> str:
    return _chromium(url, tmp_path, "--dump-dom")


def test_the_home_page_renders_with_its_figure_and_tables(site, tmp_path):
    page = dom(f"{site}/index.html", tmp_path)
    assert "<h1>pyro-vi-lab" in page
    assert "The earthquake mixture" in page and "Automatic CAVI" in page
    assert re.search(r'<img[^>]+src="_images/earthquake_map_japan\.png"', page)


def test_math_is_typeset_and_no_raw_delimiters_are_left(site, tmp_path):
    page = dom(f"{site}/tutorials/auto_cavi.html", tmp_path)
    math = page.count('class="math notranslate nohighlight"')  # inline and display math
    assert math >= 2 and page.count("<mjx-container") == math  # each typeset by MathJax
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "$$" not in text and "\\(" not in text and "\\[" not in text


@pytest.mark.parametrize("tutorial", ["earthquake", "did_it_work", "vae"])
def test_a_tutorial_shows_its_figure_and_outputs(site, tmp_path, tutorial):
    page = dom(f"{site}/tutorials/{tutorial}.html", tmp_path)
    figures = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
    assert figures, "the tutorial's figure is missing"
    assert all((SITE / "tutorials" / f).is_file() for f in figures)
    assert "ELBO" in page and "cell_output" in page


def test_the_api_page_of_get_elbo_exists(site, tmp_path):
    page = dom(f"{site}/api/inference-estimators.html", tmp_path)
    assert 'id="inference.estimators.get_elbo"' in page
    assert 'id="inference.stl.elbo.StickingTheLanding"' in page


def test_search_returns_a_hit(site, tmp_path):
    page = dom(f"{site}/search.html?q=sticking", tmp_path)
    hits = re.findall(r'<li[^>]*>\s*<a[^>]+href="([^"]+)"', page.split('id="search-results"')[-1])
    assert hits, "no search result for 'sticking'"


def test_no_page_loads_anything_from_another_host(site, tmp_path):
    """No CDN: every script, style sheet and image of every page is served by the site."""
    outside = []
    for path in SITE.rglob("*.html"):
        for url in re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"',
                              path.read_text(errors="replace")):  # fmt: skip
            outside.append(f"{path.relative_to(SITE)}: {url}")
    assert outside == []


def test_a_page_screenshot_is_taken(site, tmp_path):
    """What a reader sees: a screenshot of a case-study page (kept in the test's tmp folder)."""
    shot = tmp_path / "page.png"
    _chromium(f"{site}/guides/estimators.html", tmp_path, f"--screenshot={shot}",
              "--window-size=1280,1600")  # fmt: skip
    assert shot.stat().st_size > 10_000
