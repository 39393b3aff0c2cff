"""Screenshot every page of the app as a user sees it, once each page has finished rendering.

    python scripts/shoot_pages.py shots/            # starts the app on a free port, then stops it
    python scripts/shoot_pages.py shots/ --url http://localhost:8501   # an app that is already running

The pages and their url paths are read from app.py's `st.Page(...)` list: a page's path is its file name without
`.py`, and the default page is served at `/` (its own path answers "Page not found"). Each page is opened in
headless Debian chromium via Playwright (never `playwright install`); once Streamlit's "Running..." status widget
has stayed away for a moment, no spinner, skeleton or hourglass (an evaluation still running) is left and every
graph iframe has drawn its graph, the script saves a full-page PNG and lists the exceptions, error boxes, failed
requests and browser console errors it saw. Exits 1 if any page showed an exception. Then open every PNG and look.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.app_server import free_port, launch  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# On a deep link (/circuit) Streamlit's frontend first probes <path>/_stcore/health and host-config, which 404,
# then finds the server at the root: expected, not a problem of the page.
_PROBE = re.compile(r"/[^/]+/_stcore/(health|host-config)$")
# The app marks work still running on a worker thread (evaluations) with :material/hourglass_top:.
HOURGLASS = '[aria-label="hourglass_top icon"]'
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]'


def app_pages(app: Path = ROOT / "app.py") -> list[tuple[str, str, str]]:
    """(title, file stem, url path) of every `st.Page(...)` in app.py, in order; the default page is at `/`
    (Streamlit answers its file-name path with "Page not found")."""
    out = []
    for node in ast.walk(ast.parse(app.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page" and node.args:
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            stem = Path(node.args[0].value).stem
            out.append((kw.get("title") or stem, stem, "" if kw.get("default") else kw.get("url_path") or stem))
    return out


def start_app(tmp: Path) -> tuple[subprocess.Popen, str]:
    """The app on a free port, with an empty circuit library in `tmp` (the user's library is left alone)."""
    port = free_port()
    env = {**os.environ, "CIRCUIT_LIBRARY": str(tmp / "library")}
    proc = launch(ROOT, port, env, open(tmp / "server.log", "w"))
    for _ in range(1200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, f"http://localhost:{port}"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"the app did not start; see {tmp / 'server.log'}")


def settle(page, timeout_s: float, quiet_s: float = 2.0) -> bool:  # noqa: ANN001 - playwright Page
    """Wait until nothing is running for `quiet_s` and every graph iframe has drawn; False on timeout."""
    end, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < end:
        busy = page.locator(f"{BUSY}, {HOURGLASS}").count() > 0 or not graphs_drawn(page)
        now = time.monotonic()
        quiet_since = None if busy else (quiet_since or now)
        if quiet_since is not None and now - quiet_since >= quiet_s:
            return True
        time.sleep(0.2)
    return False


def graphs_drawn(page) -> bool:  # noqa: ANN001
    """Every iframe has loaded; a circuit graph (pyvis) also reports its visible edge count."""
    for frame in page.frames[1:]:
        try:
            if frame.evaluate("document.readyState") != "complete":
                return False
            if frame.evaluate("typeof network !== 'undefined' && window.ceVisibleEdges === undefined"):
                return False
        except Exception:  # detached while the page reruns: look again next time
            return False
    return True


def full_height(page) -> int:  # noqa: ANN001
    """Height of the page's content: Streamlit scrolls inside its main block, so a full-page screenshot of the
    window alone would cut the page at the viewport."""
    return int(page.evaluate("""Math.max(document.body.scrollHeight,
        ...Array.from(document.querySelectorAll('[data-testid="stMain"], [data-testid="stMain"] *'))
            .filter(e => e.scrollHeight > e.clientHeight + 1)
            .map(e => e.scrollHeight + e.getBoundingClientRect().top))"""))


def problems(page) -> list[str]:  # noqa: ANN001
    found = [f"exception: {b.inner_text()[:300]}" for b in page.locator('[data-testid="stException"]').all()]
    for box in page.locator('[data-testid="stAlertContentError"]').all():
        found.append(f"error box: {box.inner_text()[:300]}")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the PNGs")
    ap.add_argument("--url", help="an app that is already running (default: start one)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each page to settle")
    ap.add_argument("--width", type=int, default=1500)
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="app_shoot_"))
    proc, url = (None, args.url.rstrip("/")) if args.url else start_app(tmp)
    report, failed = [], False
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 1000})
            console: list[str] = []
            # failed loads are listed with their url by the two handlers below, so their console lines are skipped
            page.on("console", lambda m: console.append(m.text[:200])
                    if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
            page.on("pageerror", lambda e: console.append(f"page error: {str(e)[:200]}"))
            page.on("requestfailed", lambda r: console.append(f"request failed: {r.url[:150]} ({r.failure})"))
            page.on("response", lambda r: console.append(f"HTTP {r.status}: {r.url[:150]}")
                    if r.status >= 400 and not _PROBE.search(r.url) else None)
            for title, stem, path in app_pages():
                console.clear()
                t0 = time.monotonic()
                page.goto(f"{url}/{path}", timeout=120_000)
                page.get_by_role("heading").first.wait_for(timeout=int(args.timeout * 1000))
                settled = settle(page, args.timeout)
                png = args.out / f"{stem}.png"
                height = max(1000, min(full_height(page) + 120, 16_000))
                page.set_viewport_size({"width": args.width, "height": height})
                settle(page, 30.0, quiet_s=1.0)  # the layout follows the new height
                page.screenshot(path=str(png), full_page=True)
                page.set_viewport_size({"width": args.width, "height": 1000})
                seen = problems(page)
                failed |= any(s.startswith("exception") for s in seen)
                report.append(f"{title} (/{path}): {png} · {time.monotonic() - t0:.1f} s"
                              + ("" if settled else " · still busy at the timeout"))
                report += [f"    {s}" for s in seen] + [f"    console: {c}" for c in console]
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)  # the server log and the empty library it used
    print("\n".join(report))
    print("exceptions shown: " + ("yes (see above)" if failed else "none"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
