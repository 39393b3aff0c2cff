""".ci/run fails, not skips, when CI=true and the browser test cannot run (no chromium); elsewhere it warns."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """.ci/run with a PATH that has no chromium, an apt-get that fails, and pip / python that only log."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name, code in [("apt-get", 1), ("pip", 0), ("python", 0)]:
        (bin_ / name).write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\nexit {code}\n")
        (bin_ / name).chmod(0o755)
    (bin_ / "dirname").symlink_to(shutil.which("dirname"))
    env = {"PATH": str(bin_), "HOME": str(tmp_path)} | ({"CI": ci} if ci else {})
    return subprocess.run([shutil.which("bash"), str(ROOT / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_ci_without_chromium_fails(tmp_path: Path) -> None:
    r = _run(tmp_path, "true")
    assert r.returncode == 1 and "chromium is not installed" in r.stderr
    assert "python" not in (tmp_path / "calls.log").read_text()   # the suite never ran to skip it


def test_without_ci_it_warns_and_runs_the_suite(tmp_path: Path) -> None:
    r = _run(tmp_path, None)
    assert r.returncode == 0 and "will be skipped" in r.stderr
    assert "python -m pytest -q" in (tmp_path / "calls.log").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
