"""Circuit-discovery methods behind one registry: METHODS[name](model, task, cfg, on_step) -> Circuit.

Every method scores every edge of the same EdgeGraph (higher = more important) and returns a Circuit,
so thresholding, comparison and export work unchanged. None returns NaN scores or a silently empty
circuit: they raise ValueError saying what to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ..circuit import Circuit
from ..model import MaskedTransformer
from ..tasks.base import Task
from .acdc import ACDCConfig, run_acdc
from .common import StepCallback
from .eap import EAPConfig, eap_scores, run_eap
from .eap_ig import EAPIGConfig, eap_ig_scores, run_eap_ig, run_eap_ig_activations
from .eap_ig_gates import eap_ig_gates_scores, run_eap_ig_gates
from .random_scores import RandomConfig, run_random
from .warmstart import EdgePruningConfig, init_log_alpha_from_scores, run_edge_pruning


@dataclass(frozen=True)
class Method:
    """A registered method: its function, its config class and a one-line description."""

    run: Callable[[MaskedTransformer, Task, Any, StepCallback | None], Circuit]
    config: type
    description: str

    def __call__(self, model: MaskedTransformer, task: Task, cfg: Any = None,
                 on_step: StepCallback | None = None) -> Circuit:
        """Run with `cfg` (an instance of `self.config`; None = its defaults)."""
        cfg = self.config() if cfg is None else cfg
        if not isinstance(cfg, self.config):
            raise TypeError(f"expected {self.config.__name__}, got {type(cfg).__name__}; build one with make_config")
        return self.run(model, task, cfg, on_step)


METHODS: dict[str, Method] = {
    "edge-pruning": Method(run_edge_pruning, EdgePruningConfig,
                           "Edge Pruning: learned hard-concrete edge gates (Bhaskar et al. 2024); init='eap' warm-starts"),
    "eap": Method(run_eap, EAPConfig, "Edge attribution patching: |gradient x activation difference|, one backward"),
    "eap-ig": Method(run_eap_ig, EAPIGConfig, "EAP-IG as Hanna et al. 2024 / the EAP-IG library / MIB: input embeddings "
                     "interpolated (alpha = k/m, k = 0..m-1), mean reader gradient x fixed writer difference"),
    "eap-ig-activations": Method(run_eap_ig_activations, EAPIGConfig,
                                 "EAP-IG over activations (the EAP-IG library's option): each writer group's output "
                                 "interpolated in turn (alpha = k/m, k = 1..m)"),
    "eap-ig-gates": Method(run_eap_ig_gates, EAPIGConfig, "Our variant, not the field's EAP-IG: integrated gradients "
                           "along every edge gate moved together from corrupted to clean (complete)"),
    "acdc": Method(run_acdc, ACDCConfig, "ACDC: greedy removal by KL change, reverse topological order"),
    "random": Method(run_random, RandomConfig, "Random edge scores: the chance baseline"),
}
"""Method name -> Method. Names are the ids used by the CLI, files (meta 'method') and the app."""


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


def make_config(name: str, **options: Any) -> Any:
    """The config of method `name` with `options` overriding its defaults (unknown options raise, listing valid ones).

    For edge-pruning, options that are PruneConfig fields (n_steps, edge_sparsity, ...) go to its `prune` part.
    """
    cls = get_method(name).config
    own = {f.name for f in fields(cls)}
    if cls is EdgePruningConfig:
        from ..config import PruneConfig
        inner = {f.name for f in fields(PruneConfig)}
        bad = sorted(set(options) - own - inner)
        if bad:
            raise ValueError(f"unknown option(s) {bad} for {name}; valid: {sorted((own | inner) - {'prune'})}")
        prune_opts = {k: v for k, v in options.items() if k in inner}
        return cls(prune=PruneConfig(**prune_opts), **{k: v for k, v in options.items() if k in own - {"prune"}})
    bad = sorted(set(options) - own)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for {name}; valid: {sorted(own)}")
    return cls(**options)


__all__ = ["METHODS", "Method", "get_method", "make_config", "ACDCConfig", "EAPConfig", "EAPIGConfig",
           "EdgePruningConfig", "RandomConfig", "eap_scores", "eap_ig_scores", "eap_ig_gates_scores",
           "init_log_alpha_from_scores"]
