"""The Circuit page on the full GPT-2-small graph (32,491 edges) in a real browser: time to open, slider redraws.

    python bench/big_graph.py [--presses 6]

Makes a random GPT-2-small-shape checkpoint (12 layers x 12 heads, d_model 48 to stay small) with
transformers' save_pretrained and a circuit over it with random scores (its saved cut: 1,500 edges), starts
the app on them (`streamlit run app.py`, Debian chromium via Playwright), and prints: seconds from opening
/circuit to the graph showing its edges; then per slider key press (edge count mode) the seconds to the graph's
update, at 1,500 edges shown and at 20,000 selected (where the page draws the best 2,000 and says how many
are hidden). Prints the machine's load average with the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.app_server import free_port, launch, stop  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def make_assets(tmp: Path) -> tuple[Path, Path]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine import Circuit, load_model

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=12, n_head=12, n_embd=48, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
    model_dir = tmp / "gpt2-small-shape"
    GPT2LMHeadModel(cfg).eval().save_pretrained(model_dir)
    model = load_model(str(model_dir), device="cpu")
    g = model.graph
    scores = torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(1)) * g.real_edges
    meta = {"model": "gpt2-small-shape", "config_hash": model.cfg.hash(), "task": "ioi", "name": "random-32k"}
    lib = tmp / "library"
    lib.mkdir()
    Circuit(g, scores, torch.zeros_like(g.real_edges), meta=meta).top_n(1500).save(lib / "random-32k.safetensors")
    return model_dir, lib


def _graph(page):
    for f in page.frames[1:]:
        try:
            if f.evaluate("typeof window.ceVisibleEdges") == "number":
                return f
        except Exception:  # detached or still loading
            pass
    return None


def _wait(page, cond, timeout: float = 60.0, what: str = "the graph did not update"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        f = _graph(page)
        try:
            if f is not None and cond(f):
                return f
        except Exception:  # the frame was replaced while we asked
            pass
        time.sleep(0.01)
    page.screenshot(path="big_graph_timeout.png", full_page=True)
    f = _graph(page)
    what += f"; graph frame: {None if f is None else f.evaluate('[window.ceVisibleEdges, window.ceAppliedAt]')}"
    raise TimeoutError(f"{what} (screenshot: big_graph_timeout.png)")


def presses(page, n: int, key: str) -> list[float]:
    """Seconds from each key press (the page's keydown) to the graph's first update after it (the graph's log),
    both on the browser's clock, so the harness's polling of a busy page does not count."""
    page.evaluate("document.addEventListener('keydown', () => { window.__keyAt = Date.now(); }, true)")
    out = []
    for _ in range(n):
        page.keyboard.press(key)
        key_at = page.evaluate("window.__keyAt")
        f = _wait(page, lambda f: f.evaluate(f"(window.ceApplies || []).some(t => t >= {key_at})"))
        out.append((f.evaluate(f"Math.min(...window.ceApplies.filter(t => t >= {key_at}))") - key_at) / 1000)
        time.sleep(1.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=6)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("needs chromium on PATH (apt-get install chromium)")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, lib = make_assets(Path(tmp))
        env = {**os.environ, "CIRCUIT_EXPLORER_MODELS": f"gpt2-small-shape={model_dir}", "CIRCUIT_LIBRARY": str(lib),
               "CIRCUIT_EXAMPLES": str(Path(tmp) / "none"), "OMP_NUM_THREADS": "1"}
        port = free_port()
        proc = launch(ROOT, port, env, open(Path(tmp) / "server.log", "w"))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                for _ in range(120):
                    try:
                        page.goto(f"http://localhost:{port}/")
                        break
                    except Exception:
                        time.sleep(0.5)
                page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=120_000)
                time.sleep(3)
                t = time.perf_counter()
                page.goto(f"http://localhost:{port}/circuit")  # a fresh page load: Streamlit's front end included
                page.wait_for_selector('iframe[title^="circuit graph"]', timeout=120_000)
                _wait(page, lambda f: f.evaluate("window.ceVisibleEdges") == 1500, 120, "the graph did not open")
                opened = time.perf_counter() - t
                slider = page.get_by_role("slider").first
                slider.focus()
                small = presses(page, args.presses, "ArrowLeft")
                page.get_by_label("Edges kept").first.focus()
                slider.press("End")  # every edge selected: the page draws the best 2,000
                _wait(page, lambda f: f.evaluate("window.ceVisibleEdges") == 2000, 60, "2,000 edges not drawn")
                page.get_by_text("are hidden").first.wait_for(timeout=60_000)
                big = presses(page, args.presses, "ArrowLeft")
                browser.close()
        finally:
            stop(proc)
    print(f"GPT-2-small-shape graph, 32,491 edges; load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print(f"{'what':44s} {'median s':>9s} {'max s':>7s}")
    print(f"{'load /circuit -> graph drawn':44s} {opened:9.2f} {opened:7.2f}")
    print(f"{'slider step, 1,500 edges shown':44s} {statistics.median(small):9.3f} {max(small):7.3f}")
    print(f"{'slider step, 32,4xx selected, 2,000 drawn':44s} {statistics.median(big):9.3f} {max(big):7.3f}")


if __name__ == "__main__":
    main()
