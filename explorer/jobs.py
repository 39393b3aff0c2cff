"""Background runs (pruning) in a thread: progress, ETA, cooperative cancel, result or error (pure)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

log = logging.getLogger(__name__)

RunFn = Callable[[Callable[[Any], bool]], tuple[Any, Any]]
"""Takes the on_step callback and returns (circuit, log) — e.g. a closure over engine.prune."""


class PruneJob:
    """One pruning run in a daemon thread. The UI polls it; the thread never touches the UI.

    Args:
        run: calls the algorithm with our on_step callback.
        n_steps: the run's planned steps (for progress and ETA).
        on_done: called in the thread with (circuit, log) when the run ends without error
            (e.g. save to the library); its return value is kept as `saved`.
        label: shown in the UI.
        loss: the task's faithfulness loss ("kl", or "mse" for Tracr programs), for the curves' labels.
    """

    def __init__(self, run: RunFn, n_steps: int, on_done: Callable[[Any, Any], Any] | None = None,
                 label: str = "", loss: str = "kl") -> None:
        self.n_steps, self.label, self.loss = n_steps, label, loss
        self.steps: list[Any] = []
        self.result: tuple[Any, Any] | None = None
        self.saved: Any = None
        self.error: str | None = None
        self.started_at = 0.0
        self._run, self._on_done = run, on_done
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"prune-{label}", daemon=True)

    def start(self) -> PruneJob:
        self.started_at = time.monotonic()
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
        return self._cancel.is_set()

    def _main(self) -> None:
        try:
            self.result = self._run(self._on_step)
            if self._on_done is not None:
                self.saved = self._on_done(*self.result)
        except Exception as e:  # shown to the user; the thread must not die silently
            log.exception("background run %s failed", self.label)
            self.error = f"{type(e).__name__}: {e}"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def prune_job(model: Any, task: Any, cfg: Any, model_name: str, library: Any, budget: Any = None) -> PruneJob:
    """Start engine.prune (or, with a faithfulness `budget`, engine.budget.prune_to_budget) in the background;
    a finished run is saved to `library` (a cancelled one is not). `job.note` says when the circuit is unfaithful."""
    import engine  # noqa: PLC0415 - keeps this module importable without torch for its own tests
    from engine import budget as fb, budget_spec  # noqa: PLC0415

    model_stem = model_name.rstrip("/").split("/")[-1]
    stem = model_stem if task.name == model_stem else f"{model_stem}-{task.name}"  # Tracr: task named as model
    name = f"{stem}-s{cfg.edge_sparsity:g}" if budget is None else f"{stem}-{'kl' if budget.kind == 'kl' else 'keep'}{budget.value:g}"
    search = None if budget is None else replace(budget_spec.DEFAULT_SEARCH, prune=cfg)

    def run(on_step: Callable[[Any], bool]) -> tuple[Any, Any]:
        if search is None:
            result = engine.prune(model, task, cfg, on_step=on_step)
        else:
            result = fb.prune_to_budget(model, task, budget, search, on_step=on_step)
        try:
            job.note = fb.unfaithful_note(engine.evaluate(model, task, result[0], split="validation"))
        except ValueError:  # no validation examples to judge on: no note
            job.note = None
        return result

    def save(circuit: Any, log: Any) -> Any:
        if log.stopped_early and job.cancelled:
            return None  # the user stopped it: offered for saving, not saved silently
        return library.save(circuit, name, {"prune_log": json.loads(log.to_json()), "prune_config": cfg.to_dict()})

    n_steps = cfg.n_steps if search is None else cfg.n_steps + search.max_refines * search.refine_steps
    job = PruneJob(run, n_steps, save, name, getattr(task, "loss", "kl"))
    job.note, job.metric = None, getattr(task, "metric", "metric")
    return job.start()
