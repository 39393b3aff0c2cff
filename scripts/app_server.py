"""Start and stop the Streamlit app on a free port: shared by the browser test, bench/first_render.py and
scripts/shoot_pages.py."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(root: Path, port: int, env: dict[str, str], log: IO[str]) -> subprocess.Popen:
    """`streamlit run app.py` headless on `port`, run from `root` with exactly `env`, output to `log`."""
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    """Terminate, and kill if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def open_when_up(page, url: str, tries: int = 120) -> None:  # noqa: ANN001 - a Playwright page
    """Load `url` in `page`, retrying every 0.5 s while the server does not listen yet."""
    import time  # noqa: PLC0415

    for _ in range(tries):
        try:
            page.goto(url)
            return
        except Exception:  # connection refused until the server listens
            time.sleep(0.5)
    page.goto(url)  # the last try raises what went wrong
