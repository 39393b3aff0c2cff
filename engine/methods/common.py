"""Shared pieces of the attribution methods: scoring data, the differentiable task metric, Circuit assembly."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from ..circuit import Circuit
from ..metrics import METRICS
from ..model import CorruptCache, MaskedTransformer
from ..prune import output_loss
from ..tasks.base import Task, TaskData

StepCallback = Callable[[dict[str, Any]], None]
"""Progress callback of every method: receives {"method", "step", "total", ...}; never required."""


def scoring_data(task: Task, split: str, n_examples: int | None) -> TaskData:
    """The first `n_examples` of `split` (all when None), trimmed to their longest example."""
    data = task.split(split)
    n = len(data) if n_examples is None else min(n_examples, len(data))
    if n < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    return data.select(list(range(n)))


def batches(data: TaskData, batch_size: int) -> Iterator[TaskData]:
    for start in range(0, len(data), batch_size):
        yield data.select(list(range(start, min(start + batch_size, len(data)))))


def metric_name(task: Task) -> str:
    """The continuous metric scored for `task`. Its own metric, except: accuracy (a step function, no
    gradient) becomes the answer's log-probability, or for read-out models trained with squared error
    (`task.loss == "mse"`, e.g. Tracr) the answer's output value; other squared-error tasks (numeric
    outputs) use the first output averaged over the scored positions."""
    if task.metric == "accuracy":
        return "answer_value" if task.loss == "mse" else "answer_logprob"
    return "output_mean" if task.loss == "mse" else task.metric


def _answer_mean(values: Tensor, data: TaskData) -> Tensor:
    """values [B, K, V] -> the answer's entry averaged over the valid positions, [B]."""
    answers = data.answers.to(values.device)
    got = values.gather(-1, answers.clamp(min=0)[..., None])[..., 0]
    v = (answers >= 0).to(got)
    return (got * v).sum(-1) / v.sum(-1).clamp(min=1)


def task_metric(task: Task, logits: Tensor, data: TaskData) -> Tensor:
    """Per-example continuous task metric (higher = the model does the task better). logits [B, K, V] -> [B]."""
    name = metric_name(task)
    if name == "output_mean":
        v = (data.positions >= 0).to(logits.device, torch.float32)
        return (logits[..., 0].float() * v).sum(-1) / v.sum(-1).clamp(min=1)
    if name == "answer_value":
        return _answer_mean(logits.float(), data)
    if name == "answer_logprob":
        return _answer_mean(torch.log_softmax(logits.float(), dim=-1), data)
    return METRICS[name](logits[:, 0], data.good.to(logits.device), data.bad.to(logits.device))


def kl_to_full(task: Task, ref_logits: Tensor, logits: Tensor, data: TaskData) -> Tensor:
    """The task's faithfulness loss per example: KL(full || circuit) in nats averaged over the answer
    positions, or squared error for numeric tasks (`task.loss == "mse"`), as Edge Pruning trains. -> [B]."""
    return output_loss(task.loss, ref_logits, logits, (data.positions >= 0).to(logits.device))


def corrupted(model: MaskedTransformer, data: TaskData, ablation: str) -> CorruptCache:
    """The ablated side of every edge; mean ablation averages the clean batch, as Edge Pruning does."""
    source = data.clean if ablation == "mean" else data.corrupt
    return model.corrupt_cache(source.to(model.device), ablation)


def check_finite(scores: Tensor, method: str) -> None:
    """Raise instead of ever returning NaN/inf scores."""
    if not torch.isfinite(scores).all():
        raise ValueError(f"{method}: attribution produced NaN or infinite scores (the metric diverged); "
                         "check the task's good/bad tokens, use fewer interpolation steps or float32")


class NoPathError(ValueError):
    """A method's own selection leaves no input -> logits path. `circuit` still holds its scores (a ranking
    that larger sizes can use, as compare-methods does)."""

    def __init__(self, message: str, circuit: Circuit) -> None:
        super().__init__(message)
        self.circuit = circuit


def make_circuit(model: MaskedTransformer, scores: Tensor, keep: Tensor, method: str, task: Task,
                 cfg: Any, extra: dict[str, str] | None = None) -> Circuit:
    """A Circuit with provenance metadata; raises NoPathError when the selection leaves no input -> logits path."""
    g = model.graph
    scores = scores.detach().float().cpu().masked_fill(~g.real_edges, 0.0)
    check_finite(scores, method)
    meta = {"method": method, "model": model.name, "config_hash": model.cfg.hash(),
            "architecture": model.cfg.architecture, "task": task.name,
            "config": json.dumps(asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(cfg)),
            **(extra or {})}
    circuit = Circuit(g, scores, keep.bool().cpu() & g.real_edges, None, meta)
    if not circuit.has_path():
        raise NoPathError(f"{method}: the selected {circuit.n_edges} edges leave no path from the input to logits; "
                         "keep more edges (lower sparsity / smaller threshold)", circuit)
    return circuit


def select_top(model: MaskedTransformer, scores: Tensor, sparsity: float, method: str) -> Tensor:
    """bool [n_src, n_dst]: the round((1 - sparsity) * n_edges) highest-scoring real edges (at least one)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{method}: sparsity must be in [0, 1), got {sparsity}")
    g = model.graph
    n = max(1, round((1.0 - sparsity) * g.n_edges))
    ranked = scores.detach().cpu().float().masked_fill(~g.real_edges, float("-inf")).flatten()
    keep = torch.zeros(ranked.numel(), dtype=torch.bool)
    keep[torch.sort(ranked, descending=True, stable=True).indices[:n]] = True
    return keep.view(g.n_src, g.n_dst)


def signed_json(model: MaskedTransformer, signed: Tensor) -> str:
    """Signed attributions of the real edges, in `graph.edges()` order, as a compact JSON list."""
    vals = signed.detach().float().cpu()[model.graph.real_edges].tolist()
    return json.dumps([float(f"{v:.6g}") for v in vals])


@dataclass(frozen=True)
class Progress:
    """Adapter that calls `on_step` (when given) with a uniform payload."""

    method: str
    total: int
    on_step: StepCallback | None = None

    def __call__(self, step: int, **info: Any) -> None:
        if self.on_step is not None:
            self.on_step({"method": self.method, "step": step, "total": self.total, **info})
