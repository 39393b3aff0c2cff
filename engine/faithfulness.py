"""MIB circuit-localisation metrics: faithfulness at fixed circuit sizes, CPR, CMD, and the random baseline.

Mechanistic Interpretability Benchmark (Mueller et al. 2025, https://arxiv.org/abs/2504.13151), circuit track:
for a circuit C of the k highest-scoring edges, f(C) = (m(C) - m(empty)) / (m(full) - m(empty)), with m the
task metric averaged over examples; m(empty) is the corrupted run (every edge ablated). Sizes are shares of
all edges (MIB: 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100%). CPR is the area under f over the sizes
and CMD the area under |1 - f| (trapezoids on the linear size axis, as MIB's code does): CPR higher is
better, CMD lower is better (0 = every size reproduces the model). Each size's circuit keeps
max(1, int(share * n_edges)) edges, ranked by score (ties by edge order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .circuit import Circuit
from .methods.batched import evaluate_keeps
from .methods.common import batches, corrupted, kl_to_full, metric_name, scoring_data, task_metric
from .methods.random_scores import random_scores
from .model import MaskedTransformer
from .tasks.base import Task

MIB_SIZES: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Circuit sizes (shares of edges) of the MIB circuit-localisation track."""


@dataclass(frozen=True)
class Curve:
    """Faithfulness of one edge ranking at each size. Lists are aligned with `sizes`."""

    name: str
    sizes: tuple[float, ...]
    n_edges: tuple[int, ...]
    faithfulness: tuple[float, ...]   # f(C) per size
    kl: tuple[float, ...]             # KL(full || C) per size (nats; squared error for numeric tasks)
    cpr: float                        # area under f (higher is better)
    cmd: float                        # area under |1 - f| (lower is better)
    metric: str
    m_full: float
    m_empty: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RandomBaseline:
    """Faithfulness of random circuits of the same sizes: mean and std over `draws` rankings."""

    sizes: tuple[float, ...]
    n_edges: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cpr_mean: float
    cpr_std: float
    cmd_mean: float
    cmd_std: float
    draws: int

    def to_dict(self) -> dict:
        return asdict(self)


def area(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area of values over sizes (MIB's rule)."""
    return float(sum((sizes[i + 1] - sizes[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(sizes) - 1)))


def edge_counts(n_edges: int, sizes: Sequence[float]) -> list[int]:
    """Edges kept at each size: max(1, int(share * n_edges)); shares must lie in (0, 1]."""
    bad = [s for s in sizes if not 0.0 < s <= 1.0]
    if bad or not sizes:
        raise ValueError(f"sizes must be shares of edges in (0, 1], got {list(sizes)}")
    return [max(1, int(s * n_edges)) for s in sizes]


def top_keeps(scores: Tensor, real: Tensor, counts: Sequence[int]) -> Tensor:
    """bool [len(counts), n_src, n_dst]: the top-k real edges by score for each k (ties by edge order)."""
    order = torch.sort(scores.float().masked_fill(~real, float("-inf")).flatten(), descending=True, stable=True).indices
    keeps = torch.zeros(len(counts), real.numel(), dtype=torch.bool)
    for c, k in enumerate(counts):
        keeps[c, order[:k]] = True
    return keeps.view(len(counts), *real.shape)


@torch.no_grad()
def _measure(model: MaskedTransformer, task: Task, keeps: Tensor, split: str, n_examples: int | None,
             ablation: str, batch_size: int = 32) -> tuple[Tensor, Tensor, float, float]:
    """Mean task metric and loss per gate setting [C], and m(full), m(empty)."""
    data = scoring_data(task, split, n_examples)
    sums, full, empty = torch.zeros(2, keeps.shape[0], dtype=torch.float64), 0.0, 0.0
    for part in batches(data, batch_size):
        cache = corrupted(model, part, ablation)
        ref = model.reference_forward(part.clean, part.positions)
        keep_all = torch.stack([torch.zeros_like(keeps[0]), model.graph.real_edges]).float()
        settings = torch.cat([keep_all, keeps.float()])
        out = evaluate_keeps(model, part, settings, cache,
                             lambda lg: torch.stack([task_metric(task, lg, part), kl_to_full(task, ref, lg, part)]))
        out = out.double().cpu().sum(-1)        # [C + 2, 2]
        empty, full = empty + float(out[0, 0]), full + float(out[1, 0])
        sums += out[2:].T
    n = len(data)
    return sums[0] / n, sums[1] / n, full / n, empty / n


def _check_gap(task: Task, m_full: float, m_empty: float) -> None:
    if not math.isfinite(m_full - m_empty) or abs(m_full - m_empty) <= 1e-6 * max(1.0, abs(m_full)):
        raise ValueError(f"faithfulness is undefined on task {task.name!r}: the corrupted run scores the same as the "
                         f"model ({metric_name(task)} {m_full:.4g} vs {m_empty:.4g}); use a corruption that changes "
                         "the answer")


def curve(model: MaskedTransformer, task: Task, circuit: Circuit, sizes: Sequence[float] = MIB_SIZES,
          split: str = "test", n_examples: int | None = None, ablation: str = "interchange") -> Curve:
    """Faithfulness of `circuit`'s edge ranking at every size, with CPR and CMD.

    Raises:
        ValueError: bad sizes, a circuit from another graph, or a corruption that leaves the metric unchanged.
    """
    if not circuit.graph.same_as(model.graph):
        raise ValueError(f"circuit graph {circuit.graph.to_dict()} does not match the model's {model.graph.to_dict()}")
    counts = edge_counts(model.graph.n_edges, sizes)
    keeps = top_keeps(circuit.scores, model.graph.real_edges, counts)
    metric, loss, m_full, m_empty = _measure(model, task, keeps, split, n_examples, ablation)
    _check_gap(task, m_full, m_empty)
    f = [(float(m) - m_empty) / (m_full - m_empty) for m in metric]
    return Curve(circuit.meta.get("method", "circuit"), tuple(sizes), tuple(counts), tuple(f),
                 tuple(float(x) for x in loss), area(sizes, f), area(sizes, [abs(1 - x) for x in f]),
                 metric_name(task), m_full, m_empty)


def curve_of_keeps(model: MaskedTransformer, task: Task, keeps: Tensor, sizes: Sequence[float], name: str,
                   split: str = "test", n_examples: int | None = None, ablation: str = "interchange") -> Curve:
    """Faithfulness of one given circuit per size (`keeps`: bool [len(sizes), n_src, n_dst], e.g. a circuit
    trained for each size) instead of one ranking cut at every size; CPR and CMD as `curve`."""
    if keeps.shape[0] != len(sizes):
        raise ValueError(f"need one circuit per size: {keeps.shape[0]} circuits for {len(sizes)} sizes")
    counts = [int(k.sum()) for k in keeps]
    metric, loss, m_full, m_empty = _measure(model, task, keeps, split, n_examples, ablation)
    _check_gap(task, m_full, m_empty)
    f = [(float(m) - m_empty) / (m_full - m_empty) for m in metric]
    return Curve(name, tuple(sizes), tuple(counts), tuple(f), tuple(float(x) for x in loss), area(sizes, f),
                 area(sizes, [abs(1 - x) for x in f]), metric_name(task), m_full, m_empty)


def random_baseline(model: MaskedTransformer, task: Task, sizes: Sequence[float] = MIB_SIZES, draws: int = 5,
                    seed: int = 0, split: str = "test", n_examples: int | None = None,
                    ablation: str = "interchange") -> RandomBaseline:
    """Faithfulness of `draws` random rankings at every size (mean and std), and of their CPR and CMD."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    counts = edge_counts(model.graph.n_edges, sizes)
    real = model.graph.real_edges
    keeps = torch.cat([top_keeps(random_scores(model, seed + d), real, counts) for d in range(draws)])
    metric, _, m_full, m_empty = _measure(model, task, keeps, split, n_examples, ablation)
    _check_gap(task, m_full, m_empty)
    f = ((metric - m_empty) / (m_full - m_empty)).view(draws, len(sizes))
    cpr = torch.tensor([area(sizes, row.tolist()) for row in f])
    cmd = torch.tensor([area(sizes, (1 - row).abs().tolist()) for row in f])
    std = lambda t: float(t.std(0)) if draws > 1 else 0.0  # noqa: E731
    return RandomBaseline(tuple(sizes), tuple(counts), tuple(f.mean(0).tolist()),
                          tuple(f.std(0).tolist() if draws > 1 else [0.0] * len(sizes)),
                          float(cpr.mean()), std(cpr), float(cmd.mean()), std(cmd), draws)
