"""Evaluate circuits on a task: KL to the full model, task metric, accuracy, exact match; faithfulness curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .circuit import Circuit
from .faithfulness import undefined_reason
from .metrics import accuracy, exact_match, get_metric
from .model import MaskedTransformer
from .prune import make_batch, output_loss
from .tasks.base import Task


@dataclass(frozen=True)
class EvalResult:
    """One circuit on one split. `full_*` are the unmodified model's values on the same examples."""

    n_edges: int
    sparsity: float
    kl: float            # mean KL(model || circuit) in nats (squared error for numeric tasks)
    metric: float        # task metric of the circuit (mean over examples)
    metric_name: str
    accuracy: float
    exact_match: float
    full_metric: float
    full_accuracy: float
    n_examples: int
    empty_metric: float | None = None   # the task metric with every edge ablated (the corrupted run)
    faithfulness: float | None = None   # (metric - empty) / (full - empty); None when n/a (faithfulness_na says why)
    faithfulness_na: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _batches(n: int, size: int) -> list[Tensor]:
    return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def evaluate_many(model: MaskedTransformer, task: Task, circuits: Sequence[Circuit], split: str = "test",
                  batch_size: int = 64, ablation: str = "interchange", limit: int | None = None) -> list[EvalResult]:
    """Evaluate several circuits; corrupted activations are computed once per batch and shared.

    Raises:
        ValueError: a circuit from another graph than the model's.
    """
    for c in circuits:
        if not c.graph.same_as(model.graph):
            raise ValueError(f"circuit graph {c.graph.to_dict()} does not match the model's {model.graph.to_dict()}")
    data = task.split(split)
    n = len(data) if limit is None else min(limit, len(data))
    metric = get_metric(task.metric)
    keeps = [c.keep.to(model.device, model.dtype) for c in circuits]
    sums = torch.zeros(len(circuits), 4, dtype=torch.float64)  # kl, metric, accuracy, exact match
    full = torch.zeros(2, dtype=torch.float64)
    per_full, per_empty = [], []   # per-example metric of the model and of the empty circuit
    for idx in _batches(n, batch_size):
        batch = make_batch(model, data.select(idx), ablation)
        d, first = batch.data, batch.target[:, 0]
        full += torch.stack([metric(first, d.good, d.bad).sum(), accuracy(first, d.good, d.bad).sum()]).double().cpu()
        if keeps:   # the empty circuit: the logits reader sees the ablated residual (no forward needed)
            b, p = d.clean.shape
            rows = torch.arange(b, device=model.device)[:, None]
            resid = batch.cache.resid[-1].view(b, p, -1)[rows, d.positions.to(model.device).clamp(min=0)]
            empty = model._unembed(resid)
            per_full.append(metric(first, d.good, d.bad).double().cpu())
            per_empty.append(metric(empty[:, 0], d.good, d.bad).double().cpu())
        for i, keep in enumerate(keeps):
            out = model(d.clean, keep, batch.cache, d.positions)
            row = [output_loss(task.loss, batch.target, out, batch.valid).sum(), metric(out[:, 0], d.good, d.bad).sum(),
                   accuracy(out[:, 0], d.good, d.bad).sum(), exact_match(out, d.answers).sum()]
            sums[i] += torch.stack(row).double().cpu()
    sums, full = sums / max(n, 1), full / max(n, 1)
    why, m_empty = "n/a: no examples", None
    if per_full:
        f_all, e_all = torch.cat(per_full), torch.cat(per_empty)
        why, m_empty = undefined_reason(task.metric, f_all, e_all), float(e_all.mean())

    def faith(m: float) -> float | None:
        return None if why else (m - m_empty) / (float(full[0]) - m_empty)

    return [EvalResult(c.n_edges, c.sparsity, float(s[0]), float(s[1]), task.metric, float(s[2]), float(s[3]),
                       float(full[0]), float(full[1]), n, m_empty, faith(float(s[1])), why)
            for c, s in zip(circuits, sums)]


def evaluate(model: MaskedTransformer, task: Task, circuit: Circuit, split: str = "test",
             batch_size: int = 64, ablation: str = "interchange") -> EvalResult:
    """KL to the full model, task metric, accuracy and exact match of one circuit on one split."""
    return evaluate_many(model, task, [circuit], split, batch_size, ablation)[0]


def faithfulness_curve(model: MaskedTransformer, task: Task, circuit: Circuit, sparsities: Sequence[float],
                       split: str = "validation", limit: int | None = 256) -> list[EvalResult]:
    """The circuit's scores cut at each sparsity (exact edge counts), evaluated together."""
    cuts = [circuit.with_sparsity(s) for s in sparsities]
    return evaluate_many(model, task, cuts, split, limit=limit)


@torch.no_grad()
def predict(model: MaskedTransformer, clean: Tensor, keep: Tensor | None = None, corrupt: Tensor | None = None,
            positions: Tensor | None = None, k: int = 5) -> tuple[Tensor, Tensor]:
    """Top-k next tokens and probabilities at `positions` (default: each row's last token).

    clean, corrupt: long [batch, pos]; keep: [n_src, n_dst] or None for the full model.
    Returns (probs [batch, k], ids [batch, k]).
    """
    if positions is None:
        positions = torch.full((clean.shape[0], 1), clean.shape[1] - 1, dtype=torch.long)
    positions = positions.to(model.device)
    if keep is None:
        logits = model.reference_forward(clean, positions)
    else:
        if corrupt is None:
            raise ValueError("a circuit's prediction needs corrupted prompts (aligned with the clean ones)")
        logits = model(clean.to(model.device), keep.to(model.device, model.dtype),
                       model.corrupt_cache(corrupt.to(model.device)), positions)
    probs = torch.softmax(logits[:, 0].float(), dim=-1)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return top.values.cpu(), top.indices.cpu()
