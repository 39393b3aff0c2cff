"""Circuit Explorer engine: edge-masked transformers, Edge Pruning, circuits as files."""

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
from .weights import CONVERTERS, build, embedded_models, load_model

__all__ = [
    "CONVERTERS", "Circuit", "CorruptCache", "DataError", "EdgeGraph", "EvalResult", "Example", "HardConcreteGates",
    "MaskedTransformer", "ModelConfig", "PruneConfig", "PruneLog", "StepLog", "TASKS", "Task", "TaskData", "build",
    "count_edges", "embedded_models", "estimate_memory", "evaluate", "evaluate_many", "faithfulness_curve",
    "from_tracr", "get_task", "load_jsonl_task", "load_model", "load_tracr", "predict", "prune", "read_jsonl",
    "resolve_device", "seed_everything", "tokenize", "write_jsonl",
]
