"""Background runs (pruning) in server threads that outlive the page: progress in a run record, cancel, result (pure).

The page never talks to a worker for its progress: it reads the run record (explorer/runs.py), which the worker
rewrites at most every `WRITE_EVERY_S`. The workers of this process are registered here by run id, so any page
load (a reload, another tab) can cancel them, and `settle` can tell a record whose worker is gone.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .runs import CANCEL_FILE, RunStore, process_token, step_row

log = logging.getLogger(__name__)

RunFn = Callable[[Callable[[Any], bool]], tuple[Any, Any]]
"""Takes the on_step callback and returns (circuit, log) — e.g. a closure over engine.prune."""
WRITE_EVERY_S = 1.0  # the record (with the log so far) is rewritten at most this often while a run goes on
_LIVE: dict[str, PruneJob] = {}  # run id -> the worker running it in this process
_LOCK = threading.Lock()         # guards _LIVE and a run's final record against `settle`
_PROCS: dict[str, subprocess.Popen] = {}  # run id -> the worker process this server started for it
REPO = Path(__file__).resolve().parents[1]
APP_NAMES = {"steps": "Steps", "lr_lambdas": "LR Lagrange multipliers", "warmup": "Warm-up steps"}
"""The Prune form's labels of the settings a miss message names."""


class PruneJob:
    """One pruning run in a daemon thread. The UI polls its record; the thread never touches the UI.

    Args:
        run: calls the algorithm with our on_step callback.
        n_steps: the run's planned steps (for progress and ETA).
        on_done: called in the thread with (circuit, log) when the run ends without error; saves the result
            and returns record fields (e.g. {"circuit": name}); kept as `saved`.
        label: shown in the UI.
        loss: the task's faithfulness loss ("kl", or "mse" for Tracr programs), for the curves' labels.
        store, record: where the run's record goes (None: no record, e.g. in tests of the thread alone).
    """

    def __init__(self, run: RunFn, n_steps: int, on_done: Callable[[Any, Any], Any] | None = None,
                 label: str = "", loss: str = "kl", store: RunStore | None = None, record: dict | None = None) -> None:
        self.n_steps, self.label, self.loss = n_steps, label, loss
        self.steps: list[Any] = []
        self.result: tuple[Any, Any] | None = None
        self.saved: Any = None
        self.error: str | None = None
        self.started_at = 0.0
        self.store, self.record = store, dict(record or {})
        self.run_id: str = self.record.get("id", "")
        self._run, self._on_done = run, on_done
        self._cancel = threading.Event()
        self._next_write = 0.0
        self._rows: list[dict] = []  # self.steps as record rows, converted once each
        self._thread = threading.Thread(target=self._main, name=f"prune-{label}", daemon=True)

    def start(self) -> PruneJob:
        self.started_at = time.monotonic()
        if self.run_id:
            with _LOCK:
                _LIVE[self.run_id] = self
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop after its current step (the algorithm returns what it has)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self.started_at > 0 and not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def progress(self) -> float:
        """Share of the planned steps done (for a job followed in this process, e.g. the Experiment page's)."""
        return len(self.steps) / self.n_steps if self.n_steps else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the mean pace so far; None before the first step."""
        if not self.steps:
            return None
        elapsed = getattr(self.steps[-1], "elapsed_s", time.monotonic() - self.started_at)
        return elapsed / len(self.steps) * max(0, self.n_steps - len(self.steps))

    def _on_step(self, entry: Any) -> bool:
        self.steps.append(entry)
        if self.store is not None and time.monotonic() >= self._next_write:
            self._next_write = time.monotonic() + WRITE_EVERY_S
            if self.store.cancel_asked(self.run_id):  # Cancel pressed in another server process
                self._cancel.set()
            self._write("running")
        return self._cancel.is_set()

    def _write(self, state: str, **fields: Any) -> None:
        last = self.steps[-1] if self.steps else None
        self._rows.extend(step_row(s) for s in self.steps[len(self._rows):])
        self.record.update(fields, state=state, steps_done=getattr(last, "step", len(self.steps) - 1) + 1,
                           elapsed_s=getattr(last, "elapsed_s", 0.0), log=self._rows)
        try:
            self.store.write(self.record)
        except OSError:  # a full disk must not kill the run: the next write may succeed
            log.exception("could not write the record of run %s", self.run_id)

    def _main(self) -> None:
        try:
            self.result = self._run(self._on_step)
            if self._on_done is not None:
                self.saved = self._on_done(*self.result)  # the result is saved before anything else is written
        except Exception as e:  # shown to the user; the thread must not die silently
            log.exception("background run %s failed", self.label)
            self.error = f"{type(e).__name__}: {e}"
        if self.store is None:
            return
        fields = dict(self.saved) if isinstance(self.saved, dict) else {}
        plog = self.result[1] if self.result else None
        fields["warnings"] = list(getattr(plog, "warnings", []))
        fields["error"] = self.error or fields.get("error")
        stopped = bool(getattr(plog, "stopped_early", False)) and self.cancelled
        state = "failed" if fields["error"] else "cancelled" if stopped else "finished"
        with _LOCK:
            self._write(state, **fields)
            _LIVE.pop(self.run_id, None)


def live(run_id: str) -> PruneJob | None:
    """This process's worker of `run_id`, while it runs."""
    with _LOCK:
        return _LIVE.get(run_id)


def cancel(store: RunStore, run_id: str) -> None:
    """Stop a run after its current step, whichever server process runs it."""
    job = live(run_id)
    if job is not None:
        job.cancel()
    else:
        store.ask_cancel(run_id)


def settle(store: RunStore) -> list[str]:
    """Mark the records whose worker is gone as interrupted (see RunStore.settle); returns their ids."""
    with _LOCK:
        for run_id, proc in list(_PROCS.items()):
            if proc.poll() is not None:  # ended (and reaped): its record says how
                _PROCS.pop(run_id)
        return store.settle(set(_LIVE))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def eta_s(record: dict) -> float | None:
    """Seconds left at the mean pace so far; None before the first step."""
    done, n = record.get("steps_done") or 0, record.get("n_steps") or 0
    if not done:
        return None
    return record.get("elapsed_s", 0.0) / done * max(0, n - done)


def budget_steps(cfg: Any, budget: Any) -> int:
    """Planned steps: the run's, plus a budget search's refines at most (engine.budget_spec.DEFAULT_SEARCH)."""
    if budget is None:
        return cfg.n_steps
    from engine.budget_spec import DEFAULT_SEARCH  # noqa: PLC0415 - torch-free

    return cfg.n_steps + DEFAULT_SEARCH.max_refines * DEFAULT_SEARCH.refine_steps


def budget_suffix(budget: Any) -> str:
    """What a saved circuit's name says of its budget: "kl0.5", "keep0.9"."""
    return f"{'kl' if budget.kind == 'kl' else 'keep'}{budget.value:g}"


def budget_label(budget: Any) -> str:
    return f"KL at most {budget.value:g}" if budget.kind == "kl" else f"keep {budget.value:.0%} of {budget.kind}"


def new_record(store: RunStore, model_name: str, task_name: str, cfg: Any, data: str = "", loss: str = "kl",
               budget: Any = None) -> dict:
    """Create the record of a run about to start: id, a label a person can tell apart, settings (and the
    faithfulness budget of a budget search, whose steps include its warm-started refines)."""
    model_stem = model_name.rstrip("/").split("/")[-1]
    stem = model_stem if task_name == model_stem else f"{model_stem}-{task_name}"  # Tracr: task named as model
    record = store.create({"state": "running", "stem": stem, "model": model_name, "task": task_name, "data": data,
                           "settings": cfg.to_dict(), "seed": cfg.seed, "n_steps": budget_steps(cfg, budget),
                           "loss": loss, "target_sparsity": cfg.edge_sparsity,
                           "budget": None if budget is None else {"kind": budget.kind, "value": budget.value}})
    run_id = record["id"]
    goal = f"target {cfg.edge_sparsity:g}" if budget is None else budget_label(budget)
    record["label"] = f"{stem} · {goal} · {run_id[9:11]}:{run_id[11:13]}:{run_id[13:15]} #{run_id[-4:]}"
    store.write(record)
    return record


def prune_job(model: Any, task: Any, cfg: Any, model_name: str, library: Any, data: str = "",
              record: dict | None = None, budget: Any = None) -> PruneJob:
    """Start engine.prune in a thread of this process, with a record in `library`'s runs folder (`record`: one
    made already, e.g. by the server for a worker process). A finished run is saved to the library under a name
    with the sparsity it reached; a cancelled one is kept in its run folder, offered for saving (not saved
    silently). `data`: the uploaded file's name, if the task came from one. With a faithfulness `budget`
    (engine.budget_spec.Budget) the run is engine.budget.prune_to_budget's search instead of one engine.prune."""
    from engine.shortfall import advice, floor_sparsity, target_miss  # noqa: PLC0415 - torch-free, but only here

    import engine  # noqa: PLC0415 - keeps this module importable without torch for its own tests

    store = RunStore(library.folder)
    record = record or new_record(store, model_name, task.name, cfg, data, getattr(task, "loss", "kl"), budget)
    run_id, stem = record["id"], record["stem"]
    note: dict[str, str | None] = {"text": None}

    def run(on_step: Callable[[Any], bool]) -> tuple[Any, Any]:
        from engine import budget as fb, budget_spec  # noqa: PLC0415

        if budget is None:
            result = engine.prune(model, task, cfg, on_step=on_step)
        else:
            result = fb.prune_to_budget(model, task, budget, replace(budget_spec.DEFAULT_SEARCH, prune=cfg),
                                        on_step=on_step)
        try:  # a circuit below 90% of the model's metric says so, with what to change
            note["text"] = fb.unfaithful_note(engine.evaluate(model, task, result[0], split="validation"))
        except ValueError:  # no validation examples to judge on: no note
            note["text"] = None
        return result

    def save(circuit: Any, plog: Any) -> dict:
        last = plog.steps[-1] if plog.steps else None
        miss = None if budget is not None else target_miss(cfg.edge_sparsity, circuit.n_edges, circuit.graph.n_edges)
        text = miss and advice(miss, cfg.n_steps, cfg.lr_lambdas, last.step + 1 if last else 0,
                               last and last.edge_target, APP_NAMES)
        fields = {"n_edges": circuit.n_edges, "total_edges": circuit.graph.n_edges,
                  "reached_sparsity": circuit.sparsity, "miss": text or None, "unfaithful": note["text"]}
        info = {"prune_log": json.loads(plog.to_json()), "prune_config": cfg.to_dict(), "run": run_id,
                "target_sparsity": cfg.edge_sparsity, "reached_sparsity": circuit.sparsity, "target_miss": text or None}
        if not (plog.stopped_early and job.cancelled):
            goal = "" if budget is None else f"-{budget_suffix(budget)}"
            name = f"{stem}{goal}-s{floor_sparsity(circuit.sparsity)}-{run_id[9:]}"
            try:
                return {**fields, "circuit": library.save(circuit, name, info).name}
            except Exception as e:  # the library is unwritable: keep the result in the run's folder instead
                log.exception("could not save run %s to the library", run_id)
                fields["error"] = f"could not save to the library ({type(e).__name__}: {e}); the circuit is kept " \
                                  "in the run's folder"
        circuit.save(store.run_dir(run_id) / "circuit.safetensors")
        (store.run_dir(run_id) / "circuit.json").write_text(json.dumps(info, default=str))
        return {**fields, "circuit_file": "circuit.safetensors"}

    job = PruneJob(run, record["n_steps"], save, record["label"], record["loss"], store, record)
    return job.start()


def spawn_prune(model_name: str, model_source: str, task: dict, cfg: Any, library: Any, data: bytes | None = None,
                loss: str = "kl", budget: Any = None) -> str:
    """Start a run in a worker process (explorer/run_worker.py) and return its id.

    Args:
        model_source: what engine.load_model reads (hub id or folder); a Tracr program comes in `task`.
        task: {"kind": "builtin", "name", "n", "seed"} | {"kind": "jsonl", "file"} | {"kind": "tracr", "program",
            "seed"}; a JSONL's bytes in `data`.
    """
    store = RunStore(library.folder)
    name = f"tracr-{task['program']}" if task["kind"] == "tracr" else \
        Path(task["file"]).stem if task["kind"] == "jsonl" else task["name"]
    with _LOCK:  # `settle` must not see the record before the worker's process is in it
        record = new_record(store, model_name, name, cfg, task.get("file", ""), loss, budget)
        folder = store.run_dir(record["id"])
        if data is not None:
            (folder / "data.jsonl").write_bytes(data)
        (folder / "request.json").write_text(json.dumps({"model_name": model_name, "model_source": model_source,
                                                         "task": task, "cfg": cfg.to_dict(),
                                                         "library": str(library.folder)}))
        with open(folder / "worker.log", "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "explorer.run_worker", str(folder)], cwd=REPO,
                                    stdout=out, stderr=subprocess.STDOUT)
        _PROCS[record["id"]] = proc
        store.write({**record, "process": process_token(proc.pid)})
    return record["id"]


def stop_all(timeout: float = 30) -> None:
    """Cancel every run this process started (threads and worker processes) and wait for them (tests)."""
    for job in list(_LIVE.values()):
        job.cancel()
        job.wait(timeout)
    for run_id, proc in list(_PROCS.items()):
        if proc.poll() is None:
            (Path(proc.args[-1]) / CANCEL_FILE).touch()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _PROCS.pop(run_id, None)
