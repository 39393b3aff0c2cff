"""What watching a run costs it: a default IOI prune's steps per second with the Prune page open vs with nobody watching.

    python bench/watch_cost.py [--phases 6] [--phase-s 20] [--steps 1000] [--run-in process thread]

Starts `streamlit run app.py` (a fresh server on a free port, an empty circuit library, OMP_NUM_THREADS=1),
opens the Prune page in headless Debian chromium via Playwright (never `playwright install`) and starts a prune of
the embedded IOI model with the form's defaults. While it runs, phases of `--phase-s` seconds alternate:

* watched: the tab shows the Prune page (progress, ETA and live curves redrawn as the record changes);
* unwatched: the tab is on about:blank (a closed tab); the run goes on in the server.

Each phase's rate is steps over the engine's own seconds, both read from the run's record (explorer/runs.py), so
the two modes share the machine's (noisy) load phase by phase. Per phase it also measures the server process's CPU
seconds and the browser page's main-thread busy seconds (Chrome DevTools `Performance.getMetrics` TaskDuration).
`--run-in thread` sets CIRCUIT_EXPLORER_RUN_IN=thread: the run in a server thread, as every run was before the
worker processes. Prints each phase, then per mode the median rates, watched / unwatched, and the machine's load.
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _busy(cdp) -> float:  # noqa: ANN001
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")


def _record(library: Path) -> dict:
    for path in (library / "runs").glob("*/run.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    return {}


def _worker_cpu(record: dict) -> float:
    """CPU seconds of the run's worker process (0 when the run is a thread of the server)."""
    try:
        return cpu_seconds(int(str(record.get("process", "")).split(":")[1]))
    except (OSError, ValueError, IndexError):
        return 0.0


def measure(browser, run_in: str, args: argparse.Namespace, tmp: Path) -> list[dict]:  # noqa: ANN001
    library = tmp / f"library-{run_in}"
    port = free_port()
    env = {**os.environ, "CIRCUIT_LIBRARY": str(library), "OMP_NUM_THREADS": "1", "CIRCUIT_EXPLORER_RUN_IN": run_in}
    proc = launch(ROOT, port, env, open(tmp / f"server-{run_in}.log", "w"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    phases = []
    try:
        for _ in range(240):  # the server listens after a few seconds
            try:
                page.goto(f"http://localhost:{port}")
                break
            except Exception:
                time.sleep(0.5)
        page.get_by_text(" edges · ", exact=False).first.wait_for(timeout=600_000)  # the model is loaded
        if args.steps:
            page.get_by_label("Steps", exact=True).fill(str(args.steps))
            page.wait_for_timeout(1500)
        page.get_by_role("button", name="Prune", exact=True).click()
        page.get_by_text("in the background").first.wait_for(timeout=600_000)
        url = page.url  # ?run=<id>: where a watcher comes back to
        while not _record(library).get("steps_done"):
            time.sleep(0.5)
        for i in range(args.phases):
            watched = i % 2 == 0
            page.goto(url if watched else "about:blank")
            time.sleep(2)  # the page has drawn (or the tab is gone)
            r0, c0, b0, w0 = _record(library), cpu_seconds(proc.pid), _busy(cdp), None
            w0 = _worker_cpu(r0)
            time.sleep(args.phase_s)
            r1 = _record(library)
            if r1.get("state") != "running":
                print("the run ended: fewer phases than asked (raise --steps)")
                break
            steps, secs = r1["steps_done"] - r0["steps_done"], r1["elapsed_s"] - r0["elapsed_s"]
            phases.append({"watched": watched, "steps_per_s": steps / secs if secs > 0 else 0.0,
                           "server_cpu_s": cpu_seconds(proc.pid) - c0, "worker_cpu_s": _worker_cpu(r1) - w0,
                           "browser_s": _busy(cdp) - b0, "load": os.getloadavg()[0]})
            print(f"{run_in} phase {i + 1} {'watched' if watched else 'unwatched'}: " +
                  "  ".join(f"{k} {v:.2f}" for k, v in phases[-1].items() if k != "watched"), flush=True)
        page.goto(url)
        if _record(library).get("state") == "running":  # a run that ended by itself has no Cancel
            page.get_by_role("button", name="Cancel").click()
            time.sleep(3)
    finally:
        page.close()
        stop(proc)
    return phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", type=int, default=6, help="alternating phases, watched first")
    ap.add_argument("--phase-s", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=0, help="the run's steps (default: the form's, 1000)")
    ap.add_argument("--run-in", nargs="+", default=["process"], choices=["process", "thread"])
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    results = {}
    with tempfile.TemporaryDirectory(prefix="watch_cost_") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for run_in in args.run_in:
            results[run_in] = measure(browser, run_in, args, Path(tmp))
        browser.close()
    print("\n| run in | mode | steps/s (median; each phase) | server CPU s | worker CPU s | browser busy s | load |")
    print("|---|---|---|---|---|---|---|")
    for run_in, phases in results.items():
        for watched in (True, False):
            ps = [p for p in phases if p["watched"] == watched]
            if not ps:
                continue
            med = {k: statistics.median(p[k] for p in ps) for k in ps[0] if k != "watched"}
            each = " / ".join(f"{p['steps_per_s']:.2f}" for p in ps)
            print(f"| {run_in} | {'watched' if watched else 'unwatched'} | {med['steps_per_s']:.2f} ({each}) | "
                  f"{med['server_cpu_s']:.1f} | {med['worker_cpu_s']:.1f} | {med['browser_s']:.1f} | "
                  f"{med['load']:.1f} |")
    for run_in, phases in results.items():
        w = [p["steps_per_s"] for p in phases if p["watched"]]
        u = [p["steps_per_s"] for p in phases if not p["watched"]]
        if w and u:
            ratio = statistics.median(w) / statistics.median(u)
            print(f"\n{run_in}: watched / unwatched steps per second = {ratio:.3f} (watching costs {1 - ratio:+.1%})")
    print(f"load average now {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min), {os.cpu_count()} cores, "
          f"{args.phase_s:g} s phases")


if __name__ == "__main__":
    main()
