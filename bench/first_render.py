"""Seconds from `streamlit run app.py` to the first page's title and form in a real browser.

    python bench/first_render.py [--runs 3] [--root DIR [DIR ...]]

Each run starts `streamlit run app.py --server.headless true` on a free port (a fresh process, so nothing is
cached), opens it in headless Debian chromium via Playwright (never `playwright install`) and times, from the
moment the process was started: (a) the Prune page's title visible, (b) its form visible (the Prune button),
(c) the page complete (the model loaded: its edge count shown); and when the server started listening. The
browser is launched before the server, so its own start-up is not counted. Prints each run, the medians, the
machine load (os.getloadavg()) and the device. `--root A B` times several checkouts (e.g. a `git worktree` of an
older commit), alternating runs between them so they share the same (noisy) load.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.app_server import free_port, launch, stop  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TITLE = "Prune: find a circuit"
MILESTONES = ("listening", "title", "form", "complete")


def start_app(root: Path, port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return launch(root, port, {**os.environ, **env}, open(log_path, "w"))


def one_run(browser, root: Path, tmp: Path, timeout_s: float) -> dict[str, float]:
    """Times of the milestones (seconds after the server process was started) for one fresh server."""
    port, out = free_port(), {}
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    env = {"CIRCUIT_LIBRARY": str(tmp / "library")}  # an empty library: nothing of the user's is read or written
    t0 = time.monotonic()
    proc = start_app(root, port, env, tmp / f"server-{port}.log")
    try:
        deadline = t0 + timeout_s
        while True:  # the browser connects as soon as the server listens
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise TimeoutError(f"the server did not listen in {timeout_s:.0f} s (see {tmp})") from None
                time.sleep(0.02)
        out["listening"] = time.monotonic() - t0
        page.goto(f"http://localhost:{port}", wait_until="commit")
        ms = int(timeout_s * 1000)
        page.get_by_role("heading", name=TITLE).wait_for(timeout=ms)
        out["title"] = time.monotonic() - t0
        page.get_by_role("button", name="Prune", exact=True).wait_for(timeout=ms)
        out["form"] = time.monotonic() - t0
        page.get_by_text(" edges · ", exact=False).first.wait_for(timeout=ms)
        out["complete"] = time.monotonic() - t0
    finally:
        page.close()
        stop(proc)
    return out


def device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                                        capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores" + (f"; GPU {gpu}" if gpu else "; no GPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--root", type=Path, nargs="+", default=[ROOT], help="checkouts whose app.py is timed")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each milestone")
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    roots = [r.resolve() for r in args.root]
    rows: dict[Path, list] = {r: [] for r in roots}
    with tempfile.TemporaryDirectory(prefix="app_first_render_") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for i in range(args.runs):
            for root in roots:
                load_before = os.getloadavg()[0]
                times = one_run(browser, root, Path(tmp), args.timeout)
                rows[root].append((times, load_before, os.getloadavg()[0]))
                print(f"run {i + 1} {root}: " + "  ".join(f"{k} {times[k]:.2f} s" for k in MILESTONES)
                      + f"  (load {load_before:.2f} -> {rows[root][-1][2]:.2f})", flush=True)
        browser.close()
    labels = {"listening": "server listening", "title": "(a) title visible", "form": "(b) form visible",
              "complete": "(c) model loaded"}
    for root, runs in rows.items():
        print(f"\n`streamlit run app.py` in {root}: seconds after process start, {args.runs} runs\n")
        print("| milestone | median | runs |\n|---|---|---|")
        for k in MILESTONES:
            vals = [r[0][k] for r in runs]
            print(f"| {labels[k]} | {statistics.median(vals):.2f} | {' / '.join(f'{v:.2f}' for v in vals)} |")
        print(f"\nload average (1 min) before/after each run: {', '.join(f'{a:.2f}/{b:.2f}' for _, a, b in runs)}")
    print(f"\nload average now {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min); device: {device()}")


if __name__ == "__main__":
    main()
