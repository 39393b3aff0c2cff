"""Edge Pruning as a method: plain (every gate open) or warm-started from EAP / EAP-IG scores.

The paper (Bhaskar et al. 2024, https://arxiv.org/abs/2406.16778) names a hybrid as future work: a fast
attribution to initialise the gates, pruning to refine them. `init_log_alpha_from_scores` turns scores
into gate logits by rank: the top `init_keep` share of edges starts open, the rest closed, with a soft
ramp of width `softness` (in rank units) around the cut so the optimiser can still swap edges near it.
Because the gates start near the target, the sparsity target should not ramp up from 0 (the Lagrangian
would first pull the circuit denser); `EdgePruningConfig.prune_config()` sets warmup_steps to 0 then.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from ..circuit import Circuit
from ..config import PruneConfig
from ..model import MaskedTransformer
from ..prune import StepLog, prune
from ..tasks.base import Task
from .common import NoPathError, Progress, StepCallback
from .eap import EAPConfig, eap_scores
from .eap_ig import EAPIGConfig, eap_ig_scores
from .eap_ig_gates import eap_ig_gates_scores

INITS = ("open", "eap", "eap-ig", "eap-ig-gates")
"""Gate initialisations of Edge Pruning: the authors' all-open start, or a warm start from an attribution."""


@dataclass(frozen=True)
class EdgePruningConfig:
    """Edge Pruning with an optional attribution warm start."""

    prune: PruneConfig = field(default_factory=PruneConfig)
    init: Literal["open", "eap", "eap-ig", "eap-ig-gates"] = "open"  # "open": the authors' init (gates near log_alpha 10);
    # "eap-ig": the field's EAP-IG (input embeddings interpolated); "eap-ig-gates": our gate-path variant
    init_keep: float | None = None  # share of edges started open; None = 1 - prune.edge_sparsity (at least 1%)
    softness: float = 0.05          # rank width of the ramp between open and closed gates
    max_log_alpha: float = 6.0      # |initial gate logit| cap; 6 keeps gates saturated yet revivable
    attribution_examples: int = 64  # examples the attribution is computed on (train split)

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {sorted(INITS)}")
        if self.init_keep is not None and not 0.0 < self.init_keep <= 1.0:
            raise ValueError(f"init_keep must be in (0, 1], got {self.init_keep}")
        if self.softness <= 0 or self.max_log_alpha <= 0:
            raise ValueError("softness and max_log_alpha must be positive")

    def keep_share(self) -> float:
        return self.init_keep if self.init_keep is not None else max(0.01, 1.0 - min(self.prune.edge_sparsity, 1.0))

    def prune_config(self) -> PruneConfig:
        """The PruneConfig actually run: a warm start trains at the final target from step 0."""
        return self.prune if self.init == "open" else replace(self.prune, warmup_steps=0)


def init_log_alpha_from_scores(scores: Tensor, real: Tensor, keep_share: float, softness: float = 0.05,
                               max_log_alpha: float = 6.0) -> Tensor:
    """Gate logits from scores: rank q in [0, 1] over the real edges, log_alpha = (q - (1 - keep)) / softness,
    clamped to +-max_log_alpha. Returns float [n_src, n_dst] (edges off the graph: -max_log_alpha)."""
    vals = scores[real].float()
    q = torch.empty_like(vals)
    q[torch.sort(vals, stable=True).indices] = torch.arange(len(vals), dtype=torch.float32) / max(1, len(vals) - 1)
    out = torch.full(real.shape, -max_log_alpha)
    out[real] = ((q - (1.0 - keep_share)) / softness).clamp(-max_log_alpha, max_log_alpha)
    return out


def init_from_circuit(circuit: Circuit, keep_share: float) -> Tensor:
    """Gate logits that start a run from `circuit`: its top `keep_share` of edges open (its kept edges first, then by
    score), the others closed. Used to continue at a smaller size (per-size runs, the budget search's refines)."""
    rank = circuit.scores.float() + 2.0 * circuit.keep.float()
    return init_log_alpha_from_scores(rank, circuit.graph.real_edges, keep_share)


def warm_start(model: MaskedTransformer, task: Task, cfg: EdgePruningConfig) -> Tensor | None:
    """The initial gate logits for `cfg.init` (None for the authors' all-open start)."""
    if cfg.init == "open":
        return None
    eap_cfg = EAPConfig(n_examples=cfg.attribution_examples, ablation=cfg.prune.ablation)
    ig_cfg = EAPIGConfig(n_examples=cfg.attribution_examples, ablation=cfg.prune.ablation)
    if cfg.init == "eap":
        signed = eap_scores(model, task, eap_cfg)
    elif cfg.init == "eap-ig-gates":
        signed = eap_ig_gates_scores(model, task, ig_cfg)
    else:   # the standard EAP-IG interpolates the corrupted prompt's embeddings: other ablations use the activations one
        signed = eap_ig_scores(model, task, ig_cfg, variant="eap-ig" if cfg.prune.ablation == "interchange"
                               else "eap-ig-activations")
    return init_log_alpha_from_scores(signed.abs(), model.graph.real_edges, cfg.keep_share(), cfg.softness,
                                      cfg.max_log_alpha)


def run_edge_pruning(model: MaskedTransformer, task: Task, cfg: EdgePruningConfig,
                     on_step: StepCallback | None = None) -> Circuit:
    """Edge Pruning (engine.prune), optionally warm-started; the circuit carries the deterministic gates as scores.

    Raises:
        ValueError: the run diverged, or its circuit has no path from the input to logits (the message
            names what to change).
    """
    pcfg = cfg.prune_config()
    progress = Progress("edge-pruning", pcfg.n_steps, on_step)

    def relay(s: StepLog) -> None:
        progress(s.step + 1, kl=s.kl, edge_sparsity=s.edge_sparsity, edge_target=s.edge_target)

    circuit, plog = prune(model, task, pcfg, on_step=relay, init_log_alpha=warm_start(model, task, cfg))
    if not circuit.has_path() or circuit.n_edges == 0:
        raise NoPathError("edge-pruning: " + ("; ".join(plog.warnings) or "the circuit has no path from the input "
                                              "to logits; lower edge_sparsity or train longer"), circuit)
    return replace(circuit, meta={**circuit.meta, "init": cfg.init,
                                  "warm_start": str(cfg.init != "open"), "steps_run": str(len(plog.steps))})
