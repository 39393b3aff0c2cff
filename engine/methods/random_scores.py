"""Random baseline: uniform random edge scores, so every method can be compared with chance."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..circuit import Circuit
from ..model import MaskedTransformer
from ..tasks.base import Task
from .common import Progress, StepCallback, make_circuit, select_top


@dataclass(frozen=True)
class RandomConfig:
    """A seeded random ranking of the edges."""

    seed: int = 0
    sparsity: float = 0.5         # the returned circuit keeps the top (1 - sparsity) of edges

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")


def random_scores(model: MaskedTransformer, seed: int) -> torch.Tensor:
    """Uniform (0, 1) scores on the real edges, 0 elsewhere. float [n_src, n_dst]."""
    gen = torch.Generator().manual_seed(seed)
    real = model.graph.real_edges
    return torch.rand(real.shape, generator=gen) * real


def run_random(model: MaskedTransformer, task: Task, cfg: RandomConfig, on_step: StepCallback | None = None) -> Circuit:
    """A random circuit of the configured size (the baseline every method should beat).

    Raises:
        ValueError: the random selection leaves no path from the input to logits (keep more edges).
    """
    scores = random_scores(model, cfg.seed)
    Progress("random", 1, on_step)(1)
    return make_circuit(model, scores, select_top(model, scores, cfg.sparsity, "random"), "random", task, cfg,
                        {"score_meaning": "uniform random, seeded"})
