"""ACDC: greedy edge removal in reverse topological order, keeping an edge only when removing it costs KL.

Conmy, Mavor-Parker, Lynch, Heimersheim & Garriga-Alonso, "Towards Automated Circuit Discovery for
Mechanistic Interpretability" (NeurIPS 2023), https://arxiv.org/abs/2304.14997.

Readers are visited from `logits` back to the first layer; for each reader its incoming edges (latest
writer first) are tried one at a time: with H the current circuit, the edge is removed when
KL(full || H - e) - KL(full || H) <= threshold. (ACDC uses `<`; `<=` makes threshold 0 drop exactly the
edges with no effect.) An edge's score is that KL change when it was tried, so the circuit is the edges
with score > threshold; edges into a node none of whose outputs survived have no effect and score 0.

Exact, but batched: a pass evaluates the prefix removals H - {e1}, H - {e1, e2}, ... of a reader's next
candidates side by side (engine/methods/batched.py, corrupted cache and full-model logits computed once).
Decisions are taken in order and the pass stops at the first kept edge, so the result is the sequential
algorithm's; since most edges are removed, few evaluations are wasted. The pass length adapts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..circuit import Circuit, reader_owners
from ..model import MaskedTransformer
from ..tasks.base import Task
from .batched import evaluate_keeps
from .common import NoPathError, Progress, StepCallback, corrupted, kl_to_full, make_circuit, scoring_data


@dataclass(frozen=True)
class ACDCConfig:
    """Hyper-parameters of ACDC. Serialized into the Circuit's meta."""

    threshold: float = 0.01       # tau, nats: remove an edge when removing it raises the KL by at most tau
    n_examples: int | None = 32   # examples of `split` the KL is measured on (None = all)
    split: str = "train"
    ablation: Literal["interchange", "zero", "mean"] = "interchange"
    max_chunk: int = 32           # most candidate removals evaluated in one batched pass
    budget_mb: float = 256        # activation memory of one batched pass

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if self.max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {self.max_chunk}")


@dataclass
class _State:
    """The running greedy search (internal, mutated in place by the sweep)."""

    keep: Tensor       # bool [n_src, n_dst], the current circuit H
    scores: Tensor     # float [n_src, n_dst], KL change when each edge was tried
    kl: float          # KL(full || H)
    evals: int = 0     # gate settings evaluated


def _sweep(state: _State, reader: int, parents: list[int], kl_of, cfg: ACDCConfig) -> None:  # noqa: ANN001
    """Try removing each parent edge of `reader` in order, in batched prefix passes."""
    i, chunk = 0, 1
    while i < len(parents):
        cand = parents[i:i + chunk]
        keeps = state.keep.float().unsqueeze(0).repeat(len(cand), 1, 1)
        for c, w in enumerate(cand):
            keeps[c:, w, reader] = 0.0   # setting c removes candidates 0..c
        kls = kl_of(keeps).tolist()
        state.evals += len(cand)
        accepted = 0
        for c, w in enumerate(cand):
            delta = kls[c] - state.kl
            state.scores[w, reader] = delta
            if delta > cfg.threshold:
                break
            state.keep[w, reader] = False
            state.kl, accepted = kls[c], accepted + 1
        all_in = accepted == len(cand)
        i += accepted + (0 if all_in else 1)
        chunk = min(cfg.max_chunk, 2 * chunk) if all_in else max(1, chunk // 2)


def acdc_search(model: MaskedTransformer, task: Task, cfg: ACDCConfig,
                on_step: StepCallback | None = None) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The greedy search. Returns (keep bool, scores float [n_src, n_dst], stats)."""
    g = model.graph
    data = scoring_data(task, cfg.split, cfg.n_examples)
    cache = corrupted(model, data, cfg.ablation)
    with torch.no_grad():
        ref = model.reference_forward(data.clean, data.positions)
    kl_of = lambda keeps: evaluate_keeps(  # noqa: E731
        model, data, keeps, cache, lambda lg: kl_to_full(task, ref, lg, data), cfg.budget_mb).mean(1).double().cpu()
    state = _State(g.real_edges.clone(), torch.zeros(g.n_src, g.n_dst), float(kl_of(g.real_edges[None].float())[0]))
    owners, progress = reader_owners(g), Progress("acdc", g.n_dst, on_step)
    for step, reader in enumerate(reversed(range(g.n_dst))):
        parents = [w for w in reversed(range(g.n_src)) if state.keep[w, reader]]
        if owners[reader] and not state.keep[owners[reader]].any():
            state.keep[:, reader] = False   # the node's outputs were all removed: these edges do nothing
        elif parents:
            _sweep(state, reader, parents, kl_of, cfg)
        progress(step + 1, reader=g.dst_names[reader], edges=int(state.keep.sum()), kl=state.kl)
    return state.keep, state.scores, {"kl": state.kl, "evaluations": float(state.evals)}


def run_acdc(model: MaskedTransformer, task: Task, cfg: ACDCConfig, on_step: StepCallback | None = None) -> Circuit:
    """ACDC circuit: the greedy search's edges; scores = KL change when each edge was tried.

    Raises:
        ValueError: the threshold removes every path from the input to logits (the message says to lower it).
    """
    keep, scores, stats = acdc_search(model, task, cfg, on_step)
    if not keep.any():
        raise NoPathError(f"acdc: threshold {cfg.threshold} removed every edge; lower the threshold",
                          Circuit(model.graph, scores.detach().float().cpu().masked_fill(~model.graph.real_edges, 0.0),
                                  keep.bool().cpu(), None, {"method": "acdc", "model": model.name, "task": task.name}))
    return make_circuit(model, scores, keep, "acdc", task, cfg,
                        {"acdc_kl": f"{stats['kl']:.6g}", "acdc_evaluations": str(int(stats["evaluations"])),
                         "score_meaning": "KL(full||H-e) - KL(full||H) when e was tried; kept iff > threshold"})
