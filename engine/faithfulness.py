"""MIB circuit-localisation metrics: faithfulness at fixed circuit sizes, CPR, CMD, and the random baseline.

Mechanistic Interpretability Benchmark (Mueller et al. 2025, https://arxiv.org/abs/2504.13151), circuit track:
for a circuit C of the k highest-scoring edges, f(C) = (m(C) - m(empty)) / (m(full) - m(empty)), with m the
task metric averaged over examples; m(empty) is the corrupted run (every edge ablated). Sizes are shares of
all edges (MIB: 0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100%). CPR is the area under f over the sizes
and CMD the area under |1 - f| (trapezoids on the linear size axis, as MIB's code does): CPR higher is
better, CMD lower is better (0 = every size reproduces the model). Each size's circuit keeps
max(1, int(share * n_edges)) edges, ranked by score (ties by edge order).

Never garbage: when m(full) equals m(empty) within noise (|mean difference| <= 2 standard errors over the
examples, e.g. a model at chance), f divides by noise, so f, CPR and CMD are None ("n/a") with the reason in
`undefined`, and tables show the KL instead. A size whose top edges leave no input -> logits path scores as MIB
scores it (its circuit computes what the empty one does: f = 0, and that value enters CPR and CMD); it is flagged in
`path`, and the fewest top edges that have a path (`evaluated_edges`) are measured too (`nearest`), so a table can
say what the ranking gives once it connects.
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
    faithfulness: tuple[float | None, ...]   # f(C) per size; None when undefined (see `undefined`)
    kl: tuple[float, ...]             # KL(full || C) per size (nats; squared error for numeric tasks)
    cpr: float | None                 # area under f (higher is better); None when undefined
    cmd: float | None                 # area under |1 - f| (lower is better); None when undefined
    metric: str
    m_full: float
    m_empty: float
    undefined: str = ""               # why f, CPR and CMD are n/a ("" = defined)
    path: tuple[bool, ...] = ()       # whether the size's top edges have an input -> logits path
    evaluated_edges: tuple[int, ...] = ()  # n_edges where there is a path, else the fewest top edges with one
    nearest: tuple[float | None, ...] = ()  # f at evaluated_edges (= faithfulness where the size has a path)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RandomBaseline:
    """Faithfulness of random circuits of the same sizes: mean and std over `draws` rankings."""

    sizes: tuple[float, ...]
    n_edges: tuple[int, ...]
    mean: tuple[float | None, ...]    # None (n/a) when `undefined`, as every f below
    std: tuple[float | None, ...]
    cpr_mean: float | None
    cpr_std: float | None
    cmd_mean: float | None
    cmd_std: float | None
    draws: int
    kl_mean: tuple[float, ...] = ()   # mean KL per size (what tables show when f is undefined)
    undefined: str = ""

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
             ablation: str, batch_size: int = 32) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean task metric and loss per gate setting [C], and the per-example metric of full and empty [n]."""
    data = scoring_data(task, split, n_examples)
    sums, full, empty = torch.zeros(2, keeps.shape[0], dtype=torch.float64), [], []
    for part in batches(data, batch_size):
        cache = corrupted(model, part, ablation)
        ref = model.reference_forward(part.clean, part.positions)
        keep_all = torch.stack([torch.zeros_like(keeps[0]), model.graph.real_edges]).float()
        settings = torch.cat([keep_all, keeps.float()])
        out = evaluate_keeps(model, part, settings, cache,
                             lambda lg: torch.stack([task_metric(task, lg, part), kl_to_full(task, ref, lg, part)]))
        out = out.double().cpu()                # [C + 2, 2, B]
        empty.append(out[0, 0])
        full.append(out[1, 0])
        sums += out[2:].sum(-1).T
    return sums[0] / len(data), sums[1] / len(data), torch.cat(full), torch.cat(empty)


NOISE_Z = 2.0
"""f is undefined when |m(full) - m(empty)| is within this many standard errors of the per-example difference."""


def undefined_reason(metric: str, full: Tensor, empty: Tensor) -> str:
    """Why normalised faithfulness (f, CPR, CMD) is undefined on these examples, or "" when it is defined.
    full, empty: the per-example task metric of the full model and of the empty circuit."""
    diff = (full - empty).double()
    gap, n = float(diff.mean()), len(diff)
    se = float(diff.std() / math.sqrt(n)) if n > 1 else 0.0
    m_full, m_empty = float(full.double().mean()), float(empty.double().mean())
    if math.isfinite(gap) and abs(gap) > 1e-6 * max(1.0, abs(m_full)) and abs(gap) > NOISE_Z * se:
        return ""
    return (f"normalised faithfulness, CPR and CMD are n/a: the full model's {metric} ({m_full:.4g}) equals the empty "
            f"circuit's ({m_empty:.4g}) within noise (difference {gap:.2g}, standard error {se:.2g} over {n} "
            f"examples), as for a model at chance, so f = (m(C) - m(empty)) / (m(full) - m(empty)) would divide by "
            "noise; KL is shown instead")


def _with_paths(scores: Tensor, graph, counts: Sequence[int]) -> tuple[list[bool], list[int]]:  # noqa: ANN001
    """Per count: whether its top edges have a path, and the edges to measure (the fewest with a path if not)."""
    real = graph.real_edges

    def has_path(k: int) -> bool:
        return Circuit(graph, scores.float().masked_fill(~real, 0.0), top_keeps(scores, real, [k])[0]).has_path()

    paths, evaluated = [], []
    for k in counts:
        ok = has_path(k)
        lo, hi = k, graph.n_edges        # top-k sets are nested: path existence is monotone in k
        if not ok and has_path(hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if has_path(mid) else (mid, hi)
        paths.append(ok)
        evaluated.append(k if ok else hi)
    return paths, evaluated


def curve(model: MaskedTransformer, task: Task, circuit: Circuit, sizes: Sequence[float] = MIB_SIZES,
          split: str = "test", n_examples: int | None = None, ablation: str = "interchange") -> Curve:
    """Faithfulness of `circuit`'s edge ranking at every size, with CPR and CMD (None, with the reason in
    `undefined`, when the full model scores the same as the empty circuit within noise).

    Raises:
        ValueError: bad sizes, or a circuit from another graph.
    """
    if not circuit.graph.same_as(model.graph):
        raise ValueError(f"circuit graph {circuit.graph.to_dict()} does not match the model's {model.graph.to_dict()}")
    counts = edge_counts(model.graph.n_edges, sizes)
    paths, evaluated = _with_paths(circuit.scores, model.graph, counts)
    extra = [k for k, ok in zip(evaluated, paths) if not ok]   # the nearest connected cuts, measured alongside
    keeps = top_keeps(circuit.scores, model.graph.real_edges, counts + extra)
    metric, loss, full, empty = _measure(model, task, keeps, split, n_examples, ablation)
    m_full, m_empty = float(full.mean()), float(empty.mean())
    why = undefined_reason(metric_name(task), full, empty)
    own = nearest = (None,) * len(sizes)
    if not why:
        f = [(float(m) - m_empty) / (m_full - m_empty) for m in metric]
        own, connected = tuple(f[:len(counts)]), iter(f[len(counts):])
        nearest = tuple(v if ok else next(connected) for v, ok in zip(own, paths))
    return Curve(circuit.meta.get("method", "circuit"), tuple(sizes), tuple(counts), own,
                 tuple(float(x) for x in loss[:len(counts)]),
                 None if why else area(sizes, own), None if why else area(sizes, [abs(1 - x) for x in own]),
                 metric_name(task), m_full, m_empty, why, tuple(paths), tuple(evaluated), nearest)


def curve_of_keeps(model: MaskedTransformer, task: Task, keeps: Tensor, sizes: Sequence[float], name: str,
                   split: str = "test", n_examples: int | None = None, ablation: str = "interchange") -> Curve:
    """Faithfulness of one given circuit per size (`keeps`: bool [len(sizes), n_src, n_dst], e.g. a circuit
    trained for each size) instead of one ranking cut at every size; CPR and CMD as `curve`."""
    if keeps.shape[0] != len(sizes):
        raise ValueError(f"need one circuit per size: {keeps.shape[0]} circuits for {len(sizes)} sizes")
    counts = [int(k.sum()) for k in keeps]
    metric, loss, full, empty = _measure(model, task, keeps, split, n_examples, ablation)
    m_full, m_empty = float(full.mean()), float(empty.mean())
    why = undefined_reason(metric_name(task), full, empty)
    f = None if why else [(float(m) - m_empty) / (m_full - m_empty) for m in metric]
    return Curve(name, tuple(sizes), tuple(counts), tuple(f) if f else (None,) * len(sizes),
                 tuple(float(x) for x in loss), None if why else area(sizes, f),
                 None if why else area(sizes, [abs(1 - x) for x in f]), metric_name(task), m_full, m_empty, why)


def random_baseline(model: MaskedTransformer, task: Task, sizes: Sequence[float] = MIB_SIZES, draws: int = 5,
                    seed: int = 0, split: str = "test", n_examples: int | None = None,
                    ablation: str = "interchange") -> RandomBaseline:
    """Faithfulness of `draws` random rankings at every size (mean and std), and of their CPR and CMD (None with the
    reason in `undefined` when the full model scores the same as the empty circuit within noise)."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    counts = edge_counts(model.graph.n_edges, sizes)
    real = model.graph.real_edges
    keeps = torch.cat([top_keeps(random_scores(model, seed + d), real, counts) for d in range(draws)])
    metric, loss, full, empty = _measure(model, task, keeps, split, n_examples, ablation)
    kl = tuple(loss.view(draws, len(sizes)).mean(0).tolist())
    why = undefined_reason(metric_name(task), full, empty)
    if why:
        none = (None,) * len(sizes)
        return RandomBaseline(tuple(sizes), tuple(counts), none, none, None, None, None, None, draws, kl, why)
    m_full, m_empty = float(full.mean()), float(empty.mean())
    f = ((metric - m_empty) / (m_full - m_empty)).view(draws, len(sizes))
    cpr = torch.tensor([area(sizes, row.tolist()) for row in f])
    cmd = torch.tensor([area(sizes, (1 - row).abs().tolist()) for row in f])
    std = lambda t: float(t.std(0)) if draws > 1 else 0.0  # noqa: E731
    return RandomBaseline(tuple(sizes), tuple(counts), tuple(f.mean(0).tolist()),
                          tuple(f.std(0).tolist() if draws > 1 else [0.0] * len(sizes)),
                          float(cpr.mean()), std(cpr), float(cmd.mean()), std(cmd), draws, kl)
