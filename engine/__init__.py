"""Circuit Explorer engine: edge-masked transformers, Edge Pruning, circuits as files.

The public names below load on first use (PEP 562), so `import engine` and its torch-free modules
(`engine.config`, `engine.assets`) cost milliseconds: the app draws its first page while torch (~3-5 s to
import on a busy machine) is still unloaded. `engine.X` and `from engine import X` work as with eager imports.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the exports, for readers and type checkers; _EXPORTS must list the same (tested)
    from .assets import embedded_models, tracr_models
    from .circuit import Circuit
    from .config import ModelConfig, PruneConfig
    from .evaluate import EvalResult, evaluate, evaluate_many, faithfulness_curve, predict
    from .graph import EdgeGraph, count_edges
    from .masks import HardConcreteGates
    from .memory import estimate as estimate_memory
    from .model import CorruptCache, MaskedTransformer
    from .prune import PruneLog, StepLog, prune
    from .runtime import resolve_device, seed_everything
    from .tasks import TASKS, get_task
    from .tasks.base import DataError, Example, Task, TaskData, tokenize
    from .tasks.jsonl import load_jsonl_task, read_jsonl, write_jsonl
    from .tracr import from_tracr, load_tracr
    from .weights import CONVERTERS, build, load_model

_EXPORTS: dict[str, tuple[str, str]] = {  # public name -> (module, attribute)
    "embedded_models": (".assets", "embedded_models"), "tracr_models": (".assets", "tracr_models"),
    "Circuit": (".circuit", "Circuit"),
    "ModelConfig": (".config", "ModelConfig"), "PruneConfig": (".config", "PruneConfig"),
    **{n: (".evaluate", n) for n in ("EvalResult", "evaluate", "evaluate_many", "faithfulness_curve", "predict")},
    "EdgeGraph": (".graph", "EdgeGraph"), "count_edges": (".graph", "count_edges"),
    "HardConcreteGates": (".masks", "HardConcreteGates"),
    "estimate_memory": (".memory", "estimate"),
    "CorruptCache": (".model", "CorruptCache"), "MaskedTransformer": (".model", "MaskedTransformer"),
    **{n: (".prune", n) for n in ("PruneLog", "StepLog", "prune")},
    "resolve_device": (".runtime", "resolve_device"), "seed_everything": (".runtime", "seed_everything"),
    "TASKS": (".tasks", "TASKS"), "get_task": (".tasks", "get_task"),
    **{n: (".tasks.base", n) for n in ("DataError", "Example", "Task", "TaskData", "tokenize")},
    **{n: (".tasks.jsonl", n) for n in ("load_jsonl_task", "read_jsonl", "write_jsonl")},
    "from_tracr": (".tracr", "from_tracr"), "load_tracr": (".tracr", "load_tracr"),
    **{n: (".weights", n) for n in ("CONVERTERS", "build", "load_model")},
}
__all__ = sorted(_EXPORTS)


class _LazyPackage(types.ModuleType):
    """The engine package object: resolves exports (and submodules) on first access, then keeps them."""

    def __getattr__(self, name: str) -> Any:
        if name in _EXPORTS:
            module, attr = _EXPORTS[name]
            value = getattr(importlib.import_module(module, __name__), attr)
            super().__setattr__(name, value)
            return value
        try:  # `engine.tracr.X` after a bare `import engine`, as with eager imports
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        # After loading a submodule the import system binds it on its package; `prune` and `evaluate` are
        # both a submodule and an exported function, and the function must stay `engine.prune`.
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_EXPORTS))


sys.modules[__name__].__class__ = _LazyPackage
