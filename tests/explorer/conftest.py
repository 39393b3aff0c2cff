"""Small circuits over real EdgeGraphs (no model needed) for the pure explorer tests."""

from __future__ import annotations

import pytest
import torch

from engine import Circuit, EdgeGraph


def make_circuit(n_layers: int = 3, n_heads: int = 2, keep: int = 20, seed: int = 0, **meta: str) -> Circuit:
    g = EdgeGraph(n_layers, n_heads)
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(g.n_src, g.n_dst, generator=gen) * g.real_edges
    return Circuit(g, scores, torch.zeros_like(g.real_edges), meta={"name": f"c{seed}", **meta}).top_n(keep)


@pytest.fixture()
def circuit() -> Circuit:
    return make_circuit()
