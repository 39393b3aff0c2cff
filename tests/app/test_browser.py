"""End to end in a real browser: start the server, prune, move the threshold, open Compare.

Uses Playwright's Python package with Debian's chromium (never `playwright install`); skipped when
either is missing. Set EXPLORER_SHOTS=<folder> to keep screenshots of each step.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from . import tiny_setup
from .conftest import env_for_subprocess
from scripts.app_server import free_port, launch, open_when_up, stop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
if os.environ.get("CI") == "true":   # CI: a missing package is an error, not a skip
    from playwright.sync_api import sync_playwright
else:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
if CHROMIUM is None and os.environ.get("CI") == "true":   # CI never skips it silently (.ci/run checks too)
    pytest.fail("CI=true but no chromium on PATH: the browser test cannot run (apt-get install chromium)",
                pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")


@pytest.fixture()
def server(tiny_env: dict[str, str], tmp_path: Path):
    """The app on a free port: the embedded IOI model when it is shipped, else the tiny test model."""
    import engine

    ioi = next((n for n in engine.embedded_models() if "ioi" in n.lower()), None)
    env = {"CIRCUIT_LIBRARY": str(tmp_path / "library"), "CIRCUIT_EXAMPLES": str(tmp_path / "examples"),
           "OMP_NUM_THREADS": "1"}
    if ioi is None:
        env["CIRCUIT_EXPLORER_MODELS"] = tiny_env["CIRCUIT_EXPLORER_MODELS"]
        tiny_setup.make_examples(tiny_env["CIRCUIT_EXPLORER_MODELS"].split("=", 1)[1], tmp_path / "examples")
    else:
        tiny_setup.make_examples(ioi, tmp_path / "examples", ioi)
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    t0 = time.time()
    proc = launch(ROOT, port, env_for_subprocess(env), log)
    try:
        yield f"http://localhost:{port}", t0
    finally:
        stop(proc)
        log.close()


def _shot(page, name: str) -> None:
    if os.environ.get("EXPLORER_SHOTS"):
        Path(os.environ["EXPLORER_SHOTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["EXPLORER_SHOTS"]) / f"e2e_{name}.png"), full_page=True)


def _graph_frame(page, prefix: str):
    page.wait_for_selector(f'iframe[title^="{prefix}"]', timeout=90_000)
    frame = None
    for _ in range(300):
        for f in page.frames[1:]:
            try:
                if f.frame_element().get_attribute("title").startswith(prefix):
                    frame = f
            except Exception:  # detached while the page reruns
                continue
        if frame is not None:
            break
        time.sleep(0.1)
    frame.wait_for_function("window.ceVisibleEdges !== undefined", timeout=60_000)
    return frame


def _open_prune_page(p, url: str):  # noqa: ANN001, ANN202 - Playwright objects
    """Debian's chromium on the app's first page, once its title shows; returns (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    open_when_up(page, url)
    page.get_by_role("heading", name="Prune: find a circuit").wait_for(timeout=120_000)
    return browser, page


def test_prune_threshold_compare(server):
    url, started = server
    with sync_playwright() as p:
        browser, page = _open_prune_page(p, url)
        print(f"\nfirst page rendered {time.time() - started:.1f} s after the server started")
        page.get_by_label("Steps", exact=True).fill("12")
        page.get_by_label("Batch size", exact=True).fill("8")
        page.get_by_role("button", name="Prune").click()
        page.get_by_text("Saved to the library as").wait_for(timeout=240_000)
        _shot(page, "prune")

        page.get_by_role("link", name="Open it in the Circuit page").click()
        frame = _graph_frame(page, "circuit graph")
        loaded, n0 = frame.evaluate("window.ceLoadedAt"), frame.evaluate("window.ceVisibleEdges")
        slider = page.get_by_role("slider").first
        slider.focus()
        lat = []
        for i in range(1, 4):
            t = time.time()
            page.keyboard.press("ArrowLeft")
            frame.wait_for_function(f"window.ceVisibleEdges === {n0 - i}", timeout=30_000)
            lat.append(time.time() - t)
        print("threshold redraw latency (s):", [round(x, 3) for x in lat])
        assert frame.evaluate("window.ceLoadedAt") == loaded, "the graph document was reloaded"
        page.get_by_text(f"{n0 - 3:,}", exact=True).first.wait_for(timeout=30_000)  # Python's stats agree
        _inspect_by_click(page, frame)
        _shot(page, "circuit")

        page.get_by_role("link", name="Compare").click()
        cmp = _graph_frame(page, "compare graph")
        assert "shared" in cmp.locator("#ce-legend").inner_text()
        page.get_by_text("Overlap vs chance").wait_for(timeout=60_000)
        page.get_by_text("Evaluation matrix").wait_for(timeout=60_000)
        assert cmp.evaluate("window.ceVisibleEdges") > 0
        _compare_toggles(page, cmp)
        _shot(page, "compare")
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()


def test_reload_reattaches_to_a_running_prune(server):
    """A reload loses the Streamlit session; the run goes on in the server, and the page finds it again
    (progress, Cancel, live curves) through the ?run= in its URL."""
    url, _ = server
    with sync_playwright() as p:
        browser, page = _open_prune_page(p, url)
        page.get_by_label("Steps", exact=True).fill("20000")
        page.get_by_role("button", name="Prune").click()
        page.get_by_text("in the background").wait_for(timeout=120_000)
        page.wait_for_url("**?run=*", timeout=30_000)
        page.get_by_text("Step ", exact=False).first.wait_for(timeout=60_000)
        page.reload()
        page.get_by_text("in the background").wait_for(timeout=120_000)
        page.locator(".vega-embed").first.wait_for(timeout=60_000)            # the live curves are back
        _shot(page, "reattached")
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("stopped early").wait_for(timeout=120_000)
        # the button streams in after the outcome line of the same script run: wait for it, do not count at once
        page.get_by_role("button", name="Save this result to the library").wait_for(timeout=30_000)
        assert page.get_by_role("button", name="Save this result to the library").count() == 1
        page.get_by_text("Runs in this library (1)").click()
        page.locator('td:has-text("cancelled")').first.wait_for(state="attached", timeout=30_000)  # the grid's cell
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()


def test_experiment_prunes_both_styles_and_overlaps(server):
    """The paper's flow in the browser: 'Prune both' on the Experiment page with the faithful defaults (the
    embedded IOI model's pair, ioi vs ioi_t1, a budget search each), then both circuits and their intersection in
    one graph, the overlap against chance, the cross-evaluation and the verdict; after a reload the two saved
    circuits open from the library."""
    url, _ = server
    with sync_playwright() as p:
        browser, page = _open_prune_page(p, url)
        page.get_by_role("link", name="Experiment").click()
        page.get_by_role("button", name="Prune both").click()
        page.get_by_text("Saved to the library as").wait_for(timeout=400_000)
        frame = _graph_frame(page, "experiment graph")
        legend = frame.locator("#ce-legend").inner_text()
        assert "shared" in legend, legend
        shared = int(page.locator('[data-testid="stMetric"]:has-text("Shared edges") [data-testid="stMetricValue"]')
                     .inner_text())
        page.get_by_text(re.compile("finding (holds|does not hold)")).first.wait_for(timeout=120_000)
        page.get_by_text("Each circuit on both styles (test split)").wait_for(timeout=10_000)
        assert page.locator('[data-testid="stMetric"]:has-text("p-value")').count() == 1
        _shot(page, "experiment")
        page.reload()   # the session is gone; the circuits are in the library
        page.get_by_text("Use circuits from the library").click()
        page.get_by_text(re.compile("finding (holds|does not hold)")).first.wait_for(timeout=120_000)
        again = page.locator('[data-testid="stMetric"]:has-text("Shared edges") [data-testid="stMetricValue"]')
        assert int(again.inner_text()) == shared
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()


def _click_node(page, frame, node: str) -> None:
    """Click `node` where vis-network draws it (canvas coordinates -> page coordinates)."""
    at = frame.evaluate(f"ceNetwork.canvasToDOM(ceNetwork.getPositions(['{node}'])['{node}'])")
    canvas = frame.evaluate("(() => { const r = document.getElementById('mynetwork').getBoundingClientRect();"
                            " return [r.x, r.y]; })()")
    box = frame.frame_element().bounding_box()
    page.mouse.click(box["x"] + canvas[0] + at["x"], box["y"] + canvas[1] + at["y"])


def _inspect_by_click(page, frame) -> None:
    """A click on a node selects it in the graph and in the node selectbox, and the inspector lists its edges."""
    node = next(n for n in frame.evaluate("window.ceVisibleNodes") if n not in ("input", "logits"))
    from explorer.layout import node_title

    loaded = frame.evaluate("window.ceLoadedAt")
    _click_node(page, frame, node)
    frame.wait_for_function(f"window.ceSelected === {node!r}", timeout=10_000)
    page.get_by_text(node_title(node), exact=True).wait_for(timeout=30_000)  # Python's selection followed the click
    page.get_by_text("Incoming (").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Focus", exact=True).click()
    caption = page.get_by_text("Focused on ").first
    caption.wait_for(timeout=30_000)
    n = int(re.search(r": (\d+) node", caption.inner_text()).group(1))  # Python's neighbourhood size
    frame.wait_for_function(f"window.ceVisibleNodes.length === {n}", timeout=30_000)
    page.get_by_role("button", name="Show the whole graph").click()
    frame.wait_for_function("window.ceVisibleNodes.includes('input')", timeout=30_000)
    assert frame.evaluate("window.ceLoadedAt") == loaded, "selecting a node reloaded the graph"


def _compare_toggles(page, cmp) -> None:
    """Unticking a group hides exactly its edges (the counts in the labels are Python's)."""
    boxes = page.locator('[data-testid="stCheckbox"]')
    counts = [int(re.search(r"\((\d[\d,]*)\)$", t.strip()).group(1).replace(",", ""))
              for t in boxes.all_inner_texts() if re.search(r"\(\d[\d,]*\)$", t.strip())]
    assert cmp.evaluate("window.ceVisibleEdges") == sum(counts)
    page.get_by_text("shared (", exact=False).first.click()
    cmp.wait_for_function(f"window.ceVisibleEdges === {sum(counts) - counts[0]}", timeout=30_000)
    page.get_by_text("shared (", exact=False).first.click()
    cmp.wait_for_function(f"window.ceVisibleEdges === {sum(counts)}", timeout=30_000)
