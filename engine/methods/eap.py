"""EAP: edge attribution patching, gradient x (clean - corrupted) activation difference in one backward pass.

Syed, Rager & Conmy, "Attribution Patching Outperforms Automated Circuit Discovery" (2023),
https://arxiv.org/abs/2310.10348.

Sign, in our formulation. Reader r reads x_r = h~_r + sum_w keep[w, r] * (y_w - y~_w), so at keep = 1
(the clean model)  dM/dkeep[w, r] = (y_w - y~_w) . dM/dx_r  exactly. EAP's classical score
(y~_w - y_w) . dM/dx_r, the first-order estimate of M(edge ablated) - M(full), is therefore
-dM/dkeep[w, r]. We store the *contribution* `signed = +dM/dkeep` (positive: the edge pushes the metric
up, ablating it should lower the metric) and rank by `scores = |signed|`, as EAP does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..circuit import Circuit
from ..model import MaskedTransformer
from ..tasks.base import Task
from .common import (Progress, StepCallback, batches, corrupted, kl_to_full, make_circuit, scoring_data,
                     select_top, signed_json, task_metric)


@dataclass(frozen=True)
class EAPConfig:
    """Hyper-parameters of EAP. Serialized into the Circuit's meta."""

    n_examples: int | None = 64   # examples of `split` scored (None = all)
    split: str = "train"
    batch_size: int = 16          # examples per forward/backward
    metric: Literal["task", "kl"] = "task"  # "task": the task metric; "kl": -KL(full || circuit)
    ablation: Literal["interchange", "zero", "mean"] = "interchange"
    sparsity: float = 0.9         # the returned circuit keeps the top (1 - sparsity) of edges by |score|

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.metric not in ("task", "kl"):
            raise ValueError(f"unknown metric {self.metric!r}; choose from ['kl', 'task']")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")


def gate_gradient(model: MaskedTransformer, task: Task, cfg: EAPConfig, alpha: float = 1.0) -> Tensor:
    """Mean over examples of dM/dkeep at keep = alpha on every real edge. Returns float [n_src, n_dst]."""
    data = scoring_data(task, cfg.split, cfg.n_examples)
    real = model.graph.real_edges.to(model.device)
    total = torch.zeros(real.shape, dtype=torch.float64)
    with torch.enable_grad():
        for part in batches(data, cfg.batch_size):
            keep = (real.to(model.dtype) * alpha).requires_grad_(True)
            tokens, pos = part.clean.to(model.device), part.positions.to(model.device)
            logits = model(tokens, keep, corrupted(model, part, cfg.ablation), pos)
            if cfg.metric == "kl":
                with torch.no_grad():
                    ref = model.reference_forward(tokens, pos)
                value = -kl_to_full(task, ref, logits, part)
            else:
                value = task_metric(task, logits, part)
            (grad,) = torch.autograd.grad(value.sum(), keep)
            total += grad.detach().double().cpu()
    return (total / len(data)).float() * model.graph.real_edges


def eap_scores(model: MaskedTransformer, task: Task, cfg: EAPConfig) -> Tensor:
    """Signed EAP contributions dM/dkeep at the clean model, float [n_src, n_dst] (0 off the real edges)."""
    if cfg.metric == "kl":
        raise ValueError("EAP with metric='kl' is identically zero: the KL to the full model has zero gradient "
                         "at the full model. Use metric='task', or eap-ig, which integrates along the path")
    return gate_gradient(model, task, cfg, alpha=1.0)


def run_eap(model: MaskedTransformer, task: Task, cfg: EAPConfig, on_step: StepCallback | None = None) -> Circuit:
    """EAP circuit: scores = |dM/dkeep| at keep = 1, the top (1 - sparsity) edges kept.

    Raises:
        ValueError: all scores are zero (the corruption does not move the metric), NaN, or no path remains.
    """
    progress = Progress("eap", 1, on_step)
    signed = eap_scores(model, task, cfg)
    if not bool(signed.abs().gt(0).any()):
        raise ValueError("eap: every attribution is zero; the corrupted prompts do not change the task metric "
                         "(check the task's corruption or its good/bad tokens)")
    scores = signed.abs()
    progress(1, max_score=float(scores.max()))
    keep = select_top(model, scores, cfg.sparsity, "eap")
    return make_circuit(model, scores, keep, "eap", task, cfg,
                        {"signed_scores": signed_json(model, signed),
                         "score_meaning": "|dM/dkeep| at keep=1; signed = dM/dkeep = -(classical EAP score)"})
