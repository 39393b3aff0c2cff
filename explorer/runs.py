"""Run records of a circuit library: `<library>/runs/<run-id>/run.json` per pruning run, written atomically (pure).

A record is a JSON object:
    id, label           "20261202-034512-a1b2"; "tiny-ioi · target 0.95 · 03:45:12 #a1b2" (told apart at a glance)
    state               running | finished | cancelled | failed | interrupted (a server stopped while it ran)
    model, task, data   what was pruned (data: the uploaded file's name, or "" for a built-in task)
    settings, seed      the PruneConfig as a dict, and its seed
    n_steps, steps_done, elapsed_s, started, updated (local time "YYYY-MM-DD HH:MM:SS"), loss ("kl" / "mse")
    log                 the steps so far: rows of engine.StepLog fields (floats to 6 significant digits)
    warnings            the engine's warnings about the result
    circuit             the library entry the run produced (None until saved)
    circuit_file        a result kept in the run's folder instead (a cancelled run, or the library was unwritable)
    n_edges, total_edges, reached_sparsity, target_sparsity, miss (what to change when the target was missed)
    error               why the run failed, or None
    process             "host:pid:start-time" of the server process whose thread runs it
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

RUNS_DIR = "runs"
STATES = ("running", "finished", "cancelled", "failed", "interrupted")
MAX_POINTS = 240
"""Points per curve in the live view: a plotly line of 1,000 steps costs the browser ~5x one of 240, and a
chart 700 px wide cannot show more."""
_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
CANCEL_FILE = "cancel"  # created in the run's folder to ask a worker in another server process to stop
_CACHE: dict[str, tuple[tuple[int, int], dict]] = {}  # run.json path -> ((mtime_ns, size), parsed record)


def new_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def valid_id(run_id: object) -> bool:
    """Only ids of our own form name a folder (an id from the URL is user input)."""
    return isinstance(run_id, str) and bool(_ID.match(run_id))


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not taken for ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def process_alive(token: str) -> bool:
    """Whether the server process named by `token` still runs (a process on another host counts as alive)."""
    host, _, rest = str(token).partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return _start_time(pid) == started


def step_row(step: Any) -> dict:
    """A StepLog as a small JSON row."""
    fields = step.__dict__ if hasattr(step, "__dict__") else dict(step)
    return {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in fields.items()}


def thin(rows: Sequence[Any], max_points: int = MAX_POINTS) -> list[Any]:
    """At most `max_points` rows, evenly spaced, always the first and the last."""
    n = len(rows)
    if n <= max_points:
        return list(rows)
    idx = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    return [rows[i] for i in idx]


class RunStore:
    """The run records next to a circuit library.

    Args:
        library_folder: the library's folder; records live in its `runs/` subfolder.
    """

    def __init__(self, library_folder: str | Path) -> None:
        self.folder = Path(library_folder) / RUNS_DIR

    def run_dir(self, run_id: str) -> Path:
        if not valid_id(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.folder / run_id

    def create(self, record: dict) -> dict:
        """Give `record` a fresh id (its folder made exclusively), write it, and return it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            run_id = new_id()
            try:
                (self.folder / run_id).mkdir()
            except FileExistsError:
                continue
            record = {"id": run_id, "process": process_token(), "started": now(), **record}
            self.write(record)
            return record
        raise OSError(f"could not make a new run folder in {self.folder}")

    def write(self, record: dict) -> None:
        """Replace the record on disk whole (a reader never sees half a file)."""
        path = self.run_dir(record["id"]) / "run.json"
        tmp = path.with_name(f".run.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**record, "updated": now()}, default=str))
        os.replace(tmp, path)

    def read(self, run_id: str) -> dict | None:
        """The record (cached until the file changes; do not modify it), or None when there is none."""
        try:
            path = self.run_dir(run_id) / "run.json"
            st = path.stat()
        except (ValueError, OSError):
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = _CACHE.get(str(path))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(record, dict) or record.get("id") != run_id:
            return None
        _CACHE[str(path)] = (stamp, record)
        return record

    def all(self) -> list[dict]:
        """Every record, newest first."""
        if not self.folder.is_dir():
            return []
        ids = sorted((p.name for p in self.folder.iterdir() if valid_id(p.name)), reverse=True)
        return [r for r in (self.read(i) for i in ids) if r is not None]

    def settle(self, live: Container[str]) -> list[str]:
        """Mark as interrupted every running record whose worker is gone: not in `live` (this process's
        workers) and started by this process or by one that no longer runs. The caller holds the lock that
        guards `live`, so a worker cannot finish in between. Returns the ids marked."""
        mine, marked = process_token(), []
        for record in self.all():
            if record.get("state") != "running" or record["id"] in live:
                continue
            if record.get("process") == mine or not process_alive(str(record.get("process", ""))):
                try:  # read afresh: a worker process may have written its final state just before it ended
                    record = json.loads((self.run_dir(record["id"]) / "run.json").read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                if record.get("state") != "running":
                    continue
                self.write({**record, "state": "interrupted", "error": "its process stopped after step "
                            f"{record.get('steps_done', 0)} of {record.get('n_steps', '?')}"})
                marked.append(record["id"])
        return marked

    def ask_cancel(self, run_id: str) -> None:
        (self.run_dir(run_id) / CANCEL_FILE).touch()

    def cancel_asked(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / CANCEL_FILE).exists()
