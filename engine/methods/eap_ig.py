"""EAP-IG: integrated gradients of the task metric along the gates, from the corrupted (keep = 0) to the clean model.

Hanna, Pezzelle & Belinkov, "Have Faith in Faithfulness" (2024), https://arxiv.org/abs/2403.17806.

Path (our choice). EAP-IG interpolates the *input embeddings* between corrupted and clean and multiplies the
averaged gradient at each reader by the activation difference. In our formulation the natural straight path
is in gate space: keep(alpha) = alpha on every edge, alpha from 0 (every reader sees the corrupted run) to 1
(the clean model). The attribution of edge e is

    IG_e = integral_0^1 dM/dkeep_e (alpha * 1) d alpha   (midpoint rule with `steps` points),

which satisfies completeness: sum_e IG_e = M(full) - M(empty) up to the quadrature error. Unlike the input
path, every writer's output moves along the path too, so IG_e accounts for what e does through later edges
partly switched off. Sign convention as EAP (`signed` = contribution, positive pushes the metric up);
ranking by |IG_e|. With metric="kl" the path starts away from the full model, so the gradient is non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..circuit import Circuit
from ..model import MaskedTransformer
from ..tasks.base import Task
from .common import Progress, StepCallback, make_circuit, select_top, signed_json
from .eap import EAPConfig, gate_gradient


@dataclass(frozen=True)
class EAPIGConfig:
    """Hyper-parameters of EAP-IG. Serialized into the Circuit's meta."""

    steps: int = 5                # quadrature points along the path (the EAP-IG paper uses 5)
    n_examples: int | None = 64   # examples of `split` scored (None = all)
    split: str = "train"
    batch_size: int = 16
    metric: Literal["task", "kl"] = "task"  # "task": the task metric; "kl": -KL(full || circuit)
    ablation: Literal["interchange", "zero", "mean"] = "interchange"
    sparsity: float = 0.9         # the returned circuit keeps the top (1 - sparsity) of edges by |score|

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        EAPConfig(self.n_examples, self.split, self.batch_size, self.metric, self.ablation, self.sparsity)

    def eap(self) -> EAPConfig:
        return EAPConfig(self.n_examples, self.split, self.batch_size, self.metric, self.ablation, self.sparsity)


def eap_ig_scores(model: MaskedTransformer, task: Task, cfg: EAPIGConfig,
                  on_step: StepCallback | None = None) -> Tensor:
    """Signed integrated-gradient contributions, float [n_src, n_dst] (0 off the real edges)."""
    progress = Progress("eap-ig", cfg.steps, on_step)
    total = torch.zeros(model.graph.n_src, model.graph.n_dst)
    for k in range(cfg.steps):
        alpha = (k + 0.5) / cfg.steps
        total += gate_gradient(model, task, cfg.eap(), alpha=alpha)
        progress(k + 1, alpha=alpha)
    return total / cfg.steps


def run_eap_ig(model: MaskedTransformer, task: Task, cfg: EAPIGConfig,
               on_step: StepCallback | None = None) -> Circuit:
    """EAP-IG circuit: scores = |IG_e|, the top (1 - sparsity) edges kept.

    Raises:
        ValueError: every attribution is zero, NaN, or the selection leaves no path.
    """
    signed = eap_ig_scores(model, task, cfg, on_step)
    if not bool(signed.abs().gt(0).any()):
        raise ValueError("eap-ig: every attribution is zero; the corrupted prompts do not change the metric "
                         "(check the task's corruption or its good/bad tokens)")
    keep = select_top(model, signed.abs(), cfg.sparsity, "eap-ig")
    return make_circuit(model, signed.abs(), keep, "eap-ig", task, cfg,
                        {"signed_scores": signed_json(model, signed),
                         "score_meaning": "|IG_e| along keep = alpha, alpha in (0, 1); signed = IG_e, "
                                          "sum of signed = M(full) - M(empty)"})
