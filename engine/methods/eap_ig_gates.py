"""eap-ig-gates: integrated gradients of the task metric along the edge gates, from the corrupted (keep = 0)
to the clean model. Our own variant, NOT the field's EAP-IG (that one is `eap-ig`, engine/methods/eap_ig.py).

The field's EAP-IG (Hanna, Pezzelle & Belinkov 2024, https://arxiv.org/abs/2403.17806) interpolates the input
embeddings and multiplies the averaged gradient at each reader by each writer's fixed activation difference.
Here the straight path is in gate space instead: keep(alpha) = alpha on every edge, alpha from 0 (every reader sees the corrupted run) to 1
(the clean model). The attribution of edge e is

    IG_e = integral_0^1 dM/dkeep_e (alpha * 1) d alpha   (midpoint rule with `steps` points),

which satisfies completeness: sum_e IG_e = M(full) - M(empty) up to the quadrature error. Unlike the input
path, every writer's output moves along the path too, so IG_e accounts for what e does through later edges
partly switched off. Sign convention as EAP (`signed` = contribution, positive pushes the metric up);
ranking by |IG_e|. With metric="kl" the path starts away from the full model, so the gradient is non-zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..circuit import Circuit
from ..model import MaskedTransformer
from ..tasks.base import Task
from .common import Progress, StepCallback, make_circuit, select_top, signed_json
from .eap import gate_gradient
from .eap_ig import EAPIGConfig


DEFINITION = ("eap-ig-gates (this project's variant, not the field's EAP-IG): integrated gradients along every edge "
              "gate moved together from 0 (corrupted) to 1 (clean), midpoint rule; complete")


def eap_ig_gates_scores(model: MaskedTransformer, task: Task, cfg: EAPIGConfig,
                  on_step: StepCallback | None = None) -> Tensor:
    """Signed integrated-gradient contributions, float [n_src, n_dst] (0 off the real edges)."""
    progress = Progress("eap-ig-gates", cfg.steps, on_step)
    total = torch.zeros(model.graph.n_src, model.graph.n_dst)
    for k in range(cfg.steps):
        alpha = (k + 0.5) / cfg.steps
        total += gate_gradient(model, task, cfg.eap(), alpha=alpha)
        progress(k + 1, alpha=alpha)
    return total / cfg.steps


def run_eap_ig_gates(model: MaskedTransformer, task: Task, cfg: EAPIGConfig,
               on_step: StepCallback | None = None) -> Circuit:
    """eap-ig-gates circuit: scores = |IG_e|, the top (1 - sparsity) edges kept.

    Raises:
        ValueError: every attribution is zero, NaN, or the selection leaves no path.
    """
    signed = eap_ig_gates_scores(model, task, cfg, on_step)
    if not bool(signed.abs().gt(0).any()):
        raise ValueError("eap-ig-gates: every attribution is zero; the corrupted prompts do not change the metric "
                         "(check the task's corruption or its good/bad tokens)")
    keep = select_top(model, signed.abs(), cfg.sparsity, "eap-ig-gates")
    return make_circuit(model, signed.abs(), keep, "eap-ig-gates", task, cfg,
                        {"signed_scores": signed_json(model, signed),
                         "definition": DEFINITION,
                         "score_meaning": "|IG_e| along keep = alpha, alpha in (0, 1); signed = IG_e, "
                                          "sum of signed = M(full) - M(empty)"})
