"""Threshold redraw latency of the Circuit graph in a real browser: in-place (bridge) vs re-rendered iframe.

    python bench/graph_redraw.py [--graph 2x12] [--presses 12]

Starts a minimal Streamlit page over `explorer` (no model: a random circuit on an L x H graph), presses
the slider's arrow key and times key press -> the graph showing the new edge count, for both ways of
updating: "bridge" posts the new threshold to the loaded graph (what the app does), "reload" renders a
new graph document per threshold (the straightforward st.iframe approach). Needs Debian chromium and
Playwright's Python package. Prints a table; both modes are measured in the same run, alternating.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = '''
import sys
sys.path.insert(0, {root!r})
import streamlit as st
import torch
from engine import Circuit, EdgeGraph
from explorer import circuit_widgets, graph_view, pyvis_html

@st.cache_resource
def circuit():
    g = EdgeGraph({layers}, {heads})
    scores = torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(0)) * g.real_edges
    return Circuit(g, scores, torch.zeros_like(g.real_edges)).top_n(g.n_edges // 2)

c = circuit()
mode = st.query_params.get("mode", "bridge")
if mode == "bridge":  # the app's own control: the graph follows the slider in the page, Python's stats after
    sel, view = circuit_widgets.threshold_control(c)
    n = sel.n_edges
else:
    n = st.slider("Edges kept", 0, c.graph.n_edges, c.n_edges)
    sel, view = graph_view.select(c, "edges", n)
st.metric("Edges", sel.n_edges)
if mode == "bridge":
    circuit_widgets.live_graph(c, view, sel.n_edges, "bench")  # (the first of two runs keys the slider per circuit)
else:
    html = pyvis_html.render(graph_view.to_nx(c, include="all"), graph_id=f"reload-{{n}}", state=view)
    st.iframe(html, height=670, alt=f"circuit graph reload-{{n}}")
'''
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _frame(page, expected: int, timeout: float = 30.0):
    """The graph frame showing `expected` edges (for "reload" it is a new frame)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for f in page.frames[1:]:
            try:
                if f.evaluate("window.ceVisibleEdges") == expected:
                    return f
            except Exception:  # detached or still loading
                pass
        time.sleep(0.005)
    raise TimeoutError(f"no graph showed {expected} edges")


def measure(page, url: str, mode: str, presses: int, n0: int) -> list[float]:
    """Seconds from the key press to the graph showing the new edge set, both read from the browser's clock
    (the page's keydown and the graph's own record of when its shown edges changed), so the harness's polling
    does not count."""
    page.goto(f"{url}/?mode={mode}")
    page.wait_for_selector('iframe[title^="circuit graph"]', timeout=120_000)
    slider = page.get_by_role("slider").first
    _frame(page, n0, 60)
    time.sleep(2)
    slider.focus()
    page.evaluate("document.addEventListener('keydown', () => { window.__keyAt = Date.now(); }, true)")
    out = []
    for i in range(1, presses + 1):
        page.keyboard.press("ArrowLeft")
        frame = _frame(page, n0 - i)
        out.append((frame.evaluate("window.ceChangedAt") - page.evaluate("window.__keyAt")) / 1000)
        time.sleep(0.6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", default="2x12", help="layers x heads (2x12 = ioi-2l's 606 edges; 6x6 = 2,188)")
    ap.add_argument("--presses", type=int, default=12)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("needs chromium on PATH (apt-get install chromium)")
    layers, heads = (int(x) for x in args.graph.split("x"))
    sys.path.insert(0, str(ROOT))
    from engine import EdgeGraph

    n0 = EdgeGraph(layers, heads).n_edges // 2
    load0 = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        app = Path(tmp) / "bench_app.py"
        app.write_text(APP.format(root=str(ROOT), layers=layers, heads=heads))
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
                                 "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                res: dict[str, list[float]] = {"bridge": [], "reload": []}
                for _ in range(2):  # alternate, so both see the same machine load
                    for mode in res:
                        res[mode] += measure(page, f"http://localhost:{port}", mode, args.presses // 2, n0)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"graph {args.graph}: {EdgeGraph(layers, heads).n_edges} edges, half shown; key press -> new graph shown; "
          f"load average {load0} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores")
    print(f"{'mode':8s} {'median s':>9s} {'p90 s':>7s} {'min s':>7s}")
    for mode, xs in res.items():
        xs = sorted(xs)
        print(f"{mode:8s} {statistics.median(xs):9.3f} {xs[int(0.9 * (len(xs) - 1))]:7.3f} {xs[0]:7.3f}")
    print(f"ratio reload/bridge (median): {statistics.median(res['reload']) / statistics.median(res['bridge']):.1f}x")


if __name__ == "__main__":
    main()
