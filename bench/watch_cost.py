"""What watching a run costs it: a default IOI prune with the Prune page open in a browser vs with nobody watching.

    python bench/watch_cost.py [--repeats 2] [--steps 1000] [--root DIR [DIR ...]]

Starts `streamlit run app.py` (a fresh server on a free port, an empty circuit library, OMP_NUM_THREADS=1),
opens the Prune page in headless Debian chromium via Playwright (never `playwright install`) and starts a prune of
the embedded IOI model with the form's defaults (`--steps` changes only the step count). Then either

* watched: the page stays on the Prune page, drawing progress and live curves, until the run has saved, or
* unwatched: the tab goes to about:blank right after the start (a closed tab), and the bench waits for the save.

The run's time is the engine's own (`prune_log.elapsed_s` in the library's sidecar: first step to last), so the
server's start and the model's load are not counted. Per run it also measures the server process's CPU seconds
and the browser page's main-thread busy seconds (Chrome DevTools `Performance.getMetrics` TaskDuration) while the
run lasted, and how often the page redrew its curves (plotly `afterplot` events). Modes alternate, so both share
the (noisy) load. `--root A B` times several checkouts (e.g. an older commit from `git archive`). Prints each run,
then a table of medians with the watched/unwatched ratio and the machine's load.
"""

from __future__ import annotations

import argparse
import json
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

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
COUNT_REDRAWS = """() => { window.ceRedraws = window.ceRedraws || 0;
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    if (!gd.ceHooked && gd.on) { gd.on('plotly_afterplot', () => { window.ceRedraws += 1; }); gd.ceHooked = true; }
  } return window.ceRedraws; }"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _busy(cdp) -> float:  # noqa: ANN001
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")


def _saved(library: Path) -> dict | None:
    for side in library.glob("*.json"):
        try:
            data = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being written
        if "prune_log" in data:
            return data
    return None


def one_run(browser, root: Path, tmp: Path, watched: bool, steps: int, timeout_s: float) -> dict:  # noqa: ANN001
    library = tmp / f"library-{time.monotonic_ns()}"
    port = free_port()
    env = {**os.environ, "CIRCUIT_LIBRARY": str(library), "OMP_NUM_THREADS": "1"}
    proc = launch(root, port, env, open(tmp / f"server-{port}.log", "w"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    try:
        for _ in range(240):  # the server listens after a few seconds
            try:
                page.goto(f"http://localhost:{port}")
                break
            except Exception:
                time.sleep(0.5)
        page.get_by_text(" edges · ", exact=False).first.wait_for(timeout=timeout_s * 1000)  # the model is loaded
        if steps:
            page.get_by_label("Steps", exact=True).fill(str(steps))
        page.wait_for_timeout(1500)   # the form's rerun settles
        cpu0, busy0, load0, t0 = cpu_seconds(proc.pid), _busy(cdp), os.getloadavg()[0], time.monotonic()
        page.get_by_role("button", name="Prune", exact=True).click()
        page.get_by_text("in the background").first.wait_for(timeout=timeout_s * 1000)
        if not watched:
            page.goto("about:blank")
        redraws, side = 0, None
        while side is None:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"the run did not finish in {timeout_s:.0f} s (see {tmp})")
            if watched:
                redraws = page.evaluate(COUNT_REDRAWS)
            time.sleep(0.5)
            side = _saved(library)
        busy = _busy(cdp) - busy0
        out = {"run_s": side["prune_log"]["elapsed_s"], "steps": len(side["prune_log"]["steps"]),
               "server_cpu_s": cpu_seconds(proc.pid) - cpu0, "browser_s": busy, "redraws": redraws,
               "wall_s": time.monotonic() - t0, "load": (load0 + os.getloadavg()[0]) / 2}
    finally:
        page.close()
        stop(proc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="runs per mode (and checkout), alternating")
    ap.add_argument("--steps", type=int, default=0, help="steps per run (default: the form's, 1000)")
    ap.add_argument("--root", type=Path, nargs="+", default=[ROOT], help="checkouts whose app.py is timed")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for a run")
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    roots = [r.resolve() for r in args.root]
    rows: dict[tuple[Path, bool], list[dict]] = {(r, w): [] for r in roots for w in (True, False)}
    with tempfile.TemporaryDirectory(prefix="watch_cost_") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for i in range(args.repeats):
            for root in roots:
                for watched in ((True, False) if i % 2 == 0 else (False, True)):
                    r = one_run(browser, root, Path(tmp), watched, args.steps, args.timeout)
                    rows[(root, watched)].append(r)
                    print(f"{root.name} {'watched' if watched else 'unwatched'}: " +
                          "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                          flush=True)
        browser.close()
    print("\n| checkout | mode | run s (engine) | steps/s | server CPU s | browser busy s | redraws | load |")
    print("|---|---|---|---|---|---|---|---|")
    for (root, watched), rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        each = " / ".join(f"{r['run_s']:.1f}" for r in rs)
        print(f"| {root.name} | {'watched' if watched else 'unwatched'} | {med['run_s']:.1f} ({each}) | "
              f"{med['steps'] / med['run_s']:.2f} | "
              f"{med['server_cpu_s']:.1f} | {med['browser_s']:.1f} | {med['redraws']:.0f} | {med['load']:.2f} |")
    for root in roots:
        w, u = (statistics.median(r["run_s"] for r in rows[(root, m)]) for m in (True, False))
        print(f"\n{root}: watched / unwatched run time = {w / u:.3f} ({(w / u - 1):+.1%})")
    print(f"load average now {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min), {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
