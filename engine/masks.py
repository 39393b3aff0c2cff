"""Hard-concrete L0 gates over edges (and writer nodes): sampling, deterministic values, expected L0."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Hard-concrete L0 gates: Louizos, Welling & Kingma (2018), https://arxiv.org/abs/1712.01312
HC_GAMMA, HC_ZETA, HC_BETA = -0.1, 1.1, 2 / 3   # stretch interval (GAMMA, ZETA), temperature BETA
HC_EPS = 1e-6                                  # u ~ U(eps, 1 - eps) keeps the logit finite
DETERMINISTIC_SCALE = 0.8 / HC_BETA           # the authors' evaluation gate: sigmoid(1.2 * log_alpha)


def sample(log_alpha: Tensor, beta: float = HC_BETA, generator: torch.Generator | None = None) -> Tensor:
    """z in [0, 1], exactly 0 or 1 with non-zero probability; differentiable in log_alpha."""
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    u = u.clamp(HC_EPS, 1 - HC_EPS)
    s = torch.sigmoid((u.log() - torch.log1p(-u) + log_alpha) / beta)
    return (s * (HC_ZETA - HC_GAMMA) + HC_GAMMA).clamp(0.0, 1.0)


def deterministic(log_alpha: Tensor) -> Tensor:
    """The evaluation gate (the score of an edge): sigmoid(1.2 * log_alpha), monotone in log_alpha."""
    return torch.sigmoid(DETERMINISTIC_SCALE * log_alpha)


def expected_l0(log_alpha: Tensor, beta: float = HC_BETA) -> Tensor:
    """P(z > 0) per gate; its sum is the expected number of kept gates (differentiable)."""
    return torch.sigmoid(log_alpha - beta * math.log(-HC_GAMMA / HC_ZETA))


class HardConcreteGates(nn.Module):
    """One learnable gate logit per entry of `real` (edges [n_src, n_dst] or nodes [n_src]).

    Entries outside `real` are never used: their gates are forced to 0 and they do not count.
    """

    def __init__(self, real: Tensor, init_log_alpha: float = 10.0, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        noise = torch.randn(real.shape, generator=generator) * init_std
        self.log_alpha = nn.Parameter(noise + init_log_alpha)
        self.register_buffer("real", real.bool().clone(), persistent=False)

    @property
    def n_real(self) -> int:
        return int(self.real.sum())

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return sample(self.log_alpha, generator=generator) * self.real

    def deterministic(self) -> Tensor:
        return deterministic(self.log_alpha) * self.real

    def expected_l0(self) -> Tensor:
        """Expected number of kept gates among the real ones (scalar, differentiable)."""
        return (expected_l0(self.log_alpha) * self.real).sum()

    def expected_sparsity(self) -> Tensor:
        return 1.0 - self.expected_l0() / max(self.n_real, 1)

    def discretised(self) -> Tensor:
        """The authors' binary gates: the expected number of zeros, from L0, zeroes the smallest scores."""
        scores = deterministic(self.log_alpha.detach()).masked_fill(~self.real, float("-inf")).flatten()
        n_keep = int(round(float(self.expected_l0().detach())))
        keep = torch.zeros_like(scores, dtype=torch.bool)
        keep[torch.sort(scores, descending=True, stable=True).indices[:n_keep]] = True
        return keep.view_as(self.real) & self.real
