"""Learn page helpers: ablation choices for the interchange demo and the step-by-step stages (pure)."""

from __future__ import annotations

import torch
from torch import Tensor

from engine import EdgeGraph
from engine import masks

STAGE_TARGETS = (0.5, 0.8, 0.9, 0.95, 0.98)
STAGE_STEPS = 80


def ablation_choices(graph: EdgeGraph) -> list[str]:
    return (["nothing (the full model)", "every edge (= the corrupted run)"]
            + [f"edges out of layer {layer}'s heads and MLP" for layer in range(graph.n_layers)]
            + ["edges out of the input", "edges into the logits"])


def ablation_keep(graph: EdgeGraph, choice: str) -> Tensor:
    """keep [n_src, n_dst] for a choice from ablation_choices: 1 = the edge reads the clean run."""
    keep = graph.real_edges.float()
    if choice.startswith("nothing"):
        return keep
    if choice.startswith("every"):
        return torch.zeros_like(keep)
    if choice.startswith("edges out of layer"):
        layer = int(choice.split("layer ")[1].split("'")[0])
        rows = [graph.src_index(f"a{layer}.h{h}") for h in range(graph.n_heads)] + [graph.src_index(f"m{layer}")]
        keep[rows] = 0.0
    elif choice == "edges out of the input":
        keep[: len(graph.input_nodes)] = 0.0
    elif choice == "edges into the logits":
        keep[:, -1] = 0.0
    else:
        raise ValueError(f"unknown ablation {choice!r}; choose from {ablation_choices(graph)}")
    return keep


def gate_stats(log_alpha: float, beta: float) -> tuple[float, float]:
    """(P(z > 0), the deterministic evaluation score) of one gate."""
    la = torch.tensor(float(log_alpha))
    return float(masks.expected_l0(la, beta)), float(masks.deterministic(la))
