"""The Edge Pruning authors' recipe (Bhaskar et al. 2024, their released code), next to ours.

`PruneConfig(recipe="authors")` (or `PruneConfig.authors()`) switches `engine.prune` to what the released
code does; everything here is used only then:
  * the sparsity in the Lagrangian is 1 - the mean of this step's sampled, clipped edge gates (ours: the
    expected L0 of the gate logits);
  * AdamW, weight decay 0.01, on gates and multipliers; learning rate 0.8 for both with a linear warm-up over
    the first 200 of 3,000 steps (the same share of a
    shorter run), then a linear decay to 0; gradient-norm clipping at 1.0 (all parameters);
  * writer-node gates trained by the KL alone (no node-sparsity term); at read-out edges out of a removed
    writer are dropped;
  * read-out per gate tensor (every layer's q, k, v and MLP readers and the logits: the expected number of
    zero gates, from L0, zeroes that many of the tensor's smallest scores), then a threshold on what is left
    to the target sparsity;
  * the graph with separate token and position writers: load the model with `split_embeddings=True`
    (`--graph split`; the CLI's `--recipe authors` picks it unless `--graph` says otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .graph import EdgeGraph
from .masks import HardConcreteGates, deterministic, expected_l0

WEIGHT_DECAY = 0.01
LR_WARMUP = 200 / 3000  # share of the steps with a linear learning-rate warm-up (the authors: 200 of 3,000)
GRAD_CLIP = 1.0       # max global gradient norm


def lr_factor(step: int, n_steps: int, warmup: int | None = None) -> float:
    """Linear warm-up from 0 over `warmup` steps (default: LR_WARMUP of the run, 200 of 3,000), then linear
    decay to 0 at `n_steps` (transformers' get_linear_schedule_with_warmup, which the authors' Trainer uses)."""
    warmup = min(round(LR_WARMUP * n_steps) if warmup is None else warmup, max(n_steps - 1, 0))
    if step < warmup:
        return step / warmup
    return max(0.0, (n_steps - step) / max(1, n_steps - warmup))


def sampled_sparsity(z: Tensor, real: Tensor) -> Tensor:
    """1 - mean of the sampled, clipped gates over the real entries (differentiable through z)."""
    return 1.0 - (z * real).sum() / real.sum().clamp(min=1)


def gate_tensors(graph: EdgeGraph) -> list[Tensor]:
    """Bool [n_src, n_dst] masks of the authors' gate tensors: per layer its q, k, v and MLP readers, and logits."""
    out = []
    for layer in range(graph.n_layers):
        cols = graph.attn_dst_slice(layer)
        h, kv = graph.n_heads, graph.kv_heads
        for lo, hi in ((0, h), (h, h + kv), (h + kv, h + 2 * kv)):
            out.append(_cols(graph, range(cols.start + lo, cols.start + hi)))
        out.append(_cols(graph, [graph.mlp_dst_index(layer)]))
    out.append(_cols(graph, [graph.n_dst - 1]))
    return out


def _cols(graph: EdgeGraph, cols) -> Tensor:  # noqa: ANN001
    m = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.bool)
    m[:, list(cols)] = True
    return m & graph.real_edges


def per_tensor_zeroed(edges: HardConcreteGates, graph: EdgeGraph) -> Tensor:
    """Deterministic scores with, in every gate tensor, its expected number of zeros (from L0) set to 0."""
    la = edges.log_alpha.detach().cpu()
    scores = deterministic(la) * graph.real_edges
    l0 = expected_l0(la)
    for mask in gate_tensors(graph):
        n_zero = int(round(float(mask.sum()) - float(l0[mask].sum())))
        if n_zero > 0:
            idx = mask.flatten().nonzero()[:, 0]
            order = torch.sort(scores.flatten()[idx], stable=True).indices[:n_zero]
            scores.view(-1)[idx[order]] = 0.0
    return scores


def authors_readout(edges: HardConcreteGates, nodes: HardConcreteGates | None, graph: EdgeGraph,
                    target: float) -> Tensor:
    """The authors' binary circuit: per-tensor zeros, edges of removed writers dropped, then the highest
    remaining scores down to the target sparsity (a target >= 1 keeps every edge left non-zero)."""
    scores = per_tensor_zeroed(edges, graph)
    if nodes is not None:
        scores = scores * nodes.discretised().cpu()[:, None]
    alive = scores > 0
    if target >= 1.0:
        return alive
    n_keep = round((1.0 - target) * graph.n_edges)
    if int(alive.sum()) <= n_keep:
        return alive
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[torch.sort(scores.flatten(), descending=True, stable=True).indices[:n_keep]] = True
    return keep.view_as(scores) & alive


def definition(name: str, graph: EdgeGraph) -> str:
    """One line naming the method, the recipe and the graph, for a circuit's meta["definition"]."""
    which = ("the authors' recipe (released code: sampled-gate sparsity, AdamW 0.8 with warm-up/decay, clipping, "
             "per-tensor read-out)" if name == "authors" else "this project's default recipe (expected-L0 sparsity, "
             "Adam, authors' discretisation)")
    g = "split token/position graph" if graph.split_embeddings else "one-input graph"
    return f"edge-pruning = Edge Pruning (Bhaskar et al. 2024), {which}, {g}"
