"""Overlap between circuits and how far above chance it is (hypergeometric test, no scipy); pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.circuit import Circuit


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeom_sf(k: int, total: int, n_a: int, n_b: int) -> float:
    """P(X >= k) for X ~ Hypergeometric: draw n_b of `total` items of which n_a are marked.

    Summed in log space (log-sum-exp over the upper tail), so it stays exact for tiny p-values.
    """
    if not (0 <= n_a <= total and 0 <= n_b <= total):
        raise ValueError(f"need 0 <= n_a, n_b <= total, got {n_a}, {n_b}, {total}")
    lo, hi = max(0, n_a + n_b - total), min(n_a, n_b)
    k = max(k, lo)
    if k > hi:
        return 0.0
    denom = _log_comb(total, n_b)
    terms = [_log_comb(n_a, i) + _log_comb(total - n_a, n_b - i) - denom for i in range(k, hi + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


@dataclass(frozen=True)
class Overlap:
    """Two circuits over the same `total` real edges."""

    a: str
    b: str
    n_a: int
    n_b: int
    shared: int
    total: int

    @property
    def expected(self) -> float:
        """Shared edges expected if the two circuits were random sets of their sizes."""
        return self.n_a * self.n_b / self.total if self.total else 0.0

    @property
    def ratio(self) -> float:
        """Observed over expected overlap (the paper reports ~1,700x for Boolean Expressions)."""
        return self.shared / self.expected if self.expected > 0 else float("nan")

    @property
    def share_of_smaller(self) -> float:
        small = min(self.n_a, self.n_b)
        return self.shared / small if small else float("nan")

    @property
    def p_value(self) -> float:
        return hypergeom_sf(self.shared, self.total, self.n_a, self.n_b)


def pairwise(circuits: Mapping[str, Circuit]) -> list[Overlap]:
    """Overlap of every pair of circuits (same graph required)."""
    names = list(circuits)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ca, cb = circuits[a], circuits[b]
            if not ca.graph.same_as(cb.graph):
                raise ValueError(f"{a!r} and {b!r} come from different graphs")
            out.append(Overlap(a, b, ca.n_edges, cb.n_edges, int((ca.keep & cb.keep).sum()), ca.graph.n_edges))
    return out
