"""In a real browser, as `streamlit run app.py` starts with the project's own config: no request to another host,
no Deploy button, a console free of errors and warnings on every page, user text shown literally, Learn's stages.

Uses Playwright's Python package with Debian's chromium (never `playwright install`); skipped when either is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from . import tiny_setup
from .conftest import env_for_subprocess
from scripts.app_server import free_port, open_when_up, stop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
NASTY = "**John** [x](https://example.com) :red[x] <b>x</b> :smile: www.example.com Mary"
IFRAME_NOTES = re.compile(r"page, warning: (Unrecognized feature: '[a-z-]+'\.|An iframe which has both allow-scripts and "
                          r"allow-same-origin for its sandbox attribute can escape its sandboxing\.)$")
PAGES = ["Prune", "Circuit", "Compare", "Experiment", "Prompt lab", "Learn"]


@pytest.fixture()
def plain_server(tiny_env: dict[str, str], tmp_path: Path):
    """`streamlit run app.py` with no flags but headless and a port: what .streamlit/config.toml says holds."""
    tiny_setup.make_examples(tiny_env["CIRCUIT_EXPLORER_MODELS"].split("=", 1)[1], tmp_path / "examples")
    env = {"CIRCUIT_LIBRARY": str(tmp_path / "library"), "CIRCUIT_EXAMPLES": str(tmp_path / "examples"),
           "CIRCUIT_EXPLORER_MODELS": tiny_env["CIRCUIT_EXPLORER_MODELS"], "OMP_NUM_THREADS": "1"}
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port)], cwd=ROOT, env=env_for_subprocess(env), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        yield f"http://localhost:{port}"
    finally:
        stop(proc)
        log.close()


def _settle(page) -> None:
    """Wait until the script has finished (Streamlit's status widget gone for a moment)."""
    page.wait_for_timeout(800)
    for _ in range(240):
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(700)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(250)


def test_offline_clean_console_literal_text_and_learn(plain_server):
    url = plain_server
    console, foreign, where = [], [], ["Prune"]  # where: the page a console message came from
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: console.append(f"{where[0]} page, {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("request", lambda r: foreign.append(r.url)
                if urlparse(r.url).hostname not in ("localhost", "127.0.0.1", None) and
                not r.url.startswith(("data:", "blob:", "about:")) else None)
        open_when_up(page, url)
        page.get_by_role("heading", name="Prune: find a circuit").wait_for(timeout=120_000)
        _settle(page)
        for name in PAGES[1:]:
            where[0] = name
            page.get_by_role("link", name=name).first.click()
            _settle(page)
            if name == "Circuit":  # the faithfulness curve and the score histogram (Vega-Lite) have drawn
                page.wait_for_function("document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] canvas, "
                                       "[data-testid=\"stVegaLiteChart\"] svg').length >= 2", timeout=60_000)
                page.wait_for_timeout(1500)
            assert page.locator('[data-testid="stException"]').count() == 0, name
        assert page.locator('[data-testid="stAppDeployButton"]').count() == 0, "a Deploy button is shown"

        where[0] = "Prompt lab"
        page.get_by_role("link", name="Prompt lab").first.click()
        _settle(page)
        box = page.get_by_label("Prompts — one per line", exact=False)
        box.fill(NASTY)
        box.press("Control+Enter")
        _settle(page)
        summary = page.locator('[data-testid="stExpander"] summary').first
        assert NASTY in summary.inner_text().replace("\u2060", ""), summary.inner_text()
        assert summary.locator("a, strong, b, span[style*='color']").count() == 0, summary.inner_html()

        where[0] = "Learn"
        page.get_by_role("link", name="Learn").first.click()
        _settle(page)
        for _ in range(5):
            page.get_by_role("button", name="Next stage").click()
            _settle(page)
        page.get_by_text("Stage 5 of 5").wait_for(timeout=60_000)
        assert page.get_by_role("button", name="Next stage").is_disabled()
        page.get_by_text("Check your predictions").wait_for(timeout=10_000)
        browser.close()
    assert not foreign, f"requests to other hosts: {foreign[:5]}"
    # Chromium's own notes on the `allow` and `sandbox` attributes Streamlit puts on every st.iframe (the graph's):
    # not something a page can change, and not the app's errors.
    console = [m for m in console if not IFRAME_NOTES.search(m)]
    assert not console, "\n".join(dict.fromkeys(console))
