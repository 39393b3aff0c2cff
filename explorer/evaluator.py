"""Evaluations on a worker thread, newest request first, results cached by key (pure; no UI).

Moving a threshold must not wait for a model forward: pages ask for a result, show it when it is
there, and poll otherwise. Only the few most recent unstarted requests are kept (slider drags
produce many that nobody will look at).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)


class Evaluator:
    """A single worker thread over a LIFO of pending jobs with a bounded result cache.

    Args:
        keep_pending: unstarted requests kept (older ones are dropped and asked for again if needed).
        max_results: results kept (least recently used dropped first).
    """

    def __init__(self, keep_pending: int = 4, max_results: int = 512) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: OrderedDict[Hashable, Callable[[], Any]] = OrderedDict()
        self._results: OrderedDict[Hashable, tuple[str, Any]] = OrderedDict()
        self._keep, self._max = keep_pending, max_results
        self._thread: threading.Thread | None = None

    def request(self, key: Hashable, fn: Callable[[], Any]) -> tuple[str, Any]:
        """("done", result), ("error", message) or ("pending", None); schedules `fn` when needed."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
            self._pending[key] = fn
            self._pending.move_to_end(key)
            while len(self._pending) > self._keep:
                self._pending.popitem(last=False)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="explorer-evaluator", daemon=True)
                self._thread.start()
            self._wake.notify()
        return "pending", None

    def peek(self, key: Hashable) -> tuple[str, Any]:
        with self._lock:
            return self._results.get(key, ("pending" if key in self._pending else "missing", None))

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._wake.wait()
                key, fn = self._pending.popitem(last=True)  # newest first
            try:
                out: tuple[str, Any] = ("done", fn())
            except Exception as e:  # reported to the page that asked
                log.exception("evaluation %r failed", key)
                out = ("error", f"{type(e).__name__}: {e}")
            with self._lock:
                self._results[key] = out
                while len(self._results) > self._max:
                    self._results.popitem(last=False)
