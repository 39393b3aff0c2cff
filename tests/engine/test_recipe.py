"""The Edge Pruning authors' recipe (`--recipe authors`, PruneConfig.authors()) and our defaults side by side."""

from __future__ import annotations

import pytest
import torch

from engine.config import PruneConfig
from engine.graph import EdgeGraph
from engine.masks import HardConcreteGates, deterministic, expected_l0
from engine.prune import prune
from engine.recipe import authors_readout, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def test_authors_config_is_the_released_recipe_and_defaults_stay() -> None:
    a = PruneConfig.authors()
    assert (a.recipe, a.n_steps, a.batch_size, a.lr_gates, a.lr_lambdas, a.warmup) == ("authors", 3000, 32, 0.8, 0.8, 2500)
    assert PruneConfig.authors(n_steps=300).warmup == 250
    d = PruneConfig()
    assert (d.recipe, d.n_steps, d.lr_gates, d.lr_lambdas, d.warmup) == ("default", 1000, 0.1, 1.0, 800)
    with pytest.raises(ValueError, match="KL alone"):
        PruneConfig.authors(node_sparsity=0.5)
    with pytest.raises(ValueError, match="recipe"):
        PruneConfig(recipe="paper")


def test_learning_rate_schedule_is_transformers_linear_warmup() -> None:
    from transformers import get_linear_schedule_with_warmup
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=200, num_training_steps=3000)
    for step in range(3000):
        assert lr_factor(step, 3000) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12), step
        opt.step()
        sched.step()


def _reference_readout(edges: HardConcreteGates, nodes_keep: torch.Tensor, g: EdgeGraph, target: float) -> torch.Tensor:
    """Written from the description: group reader columns by (layer, q|k|v|mlp) or logits from their names."""
    la = edges.log_alpha.detach()
    scores = deterministic(la) * g.real_edges
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(g.dst_names):
        key = name.split(".")[0] + (name[-2] if name.endswith(">") else "") if name != "logits" else "logits"
        groups.setdefault(key, []).append(j)
    for cols in groups.values():
        cells = [(i, j) for j in cols for i in range(g.n_src) if g.real_edges[i, j]]
        n_zero = round(len(cells) - sum(float(expected_l0(la[i, j])) for i, j in cells))
        for i, j in sorted(cells, key=lambda c: float(scores[c]))[:n_zero]:
            scores[i, j] = 0
    scores = scores * nodes_keep[:, None]
    n_keep = round((1 - target) * g.n_edges)
    ranked = sorted(((float(scores[i, j]), i, j) for i, j in g.real_edges.nonzero().tolist() if scores[i, j] > 0),
                    reverse=True)[:n_keep]
    keep = torch.zeros_like(g.real_edges)
    for _, i, j in ranked:
        keep[i, j] = True
    return keep


def test_authors_readout_per_tensor_then_target() -> None:
    g = EdgeGraph(2, 3, split_embeddings=True)
    edges = HardConcreteGates(g.real_edges, 0.0, 3.0, torch.Generator().manual_seed(0))
    nodes = HardConcreteGates(torch.ones(g.n_src, dtype=torch.bool), 2.0, 3.0, torch.Generator().manual_seed(1))
    node_keep = nodes.discretised()
    assert not node_keep.all()   # some writer is removed: its edges must go
    for target in (0.5, 0.8, 1.05):
        ours = authors_readout(edges, nodes, g, target)
        ref = _reference_readout(edges, node_keep, g, min(target, 0.0) if target >= 1 else target)
        if target >= 1:   # as sparse as the per-tensor zeros make it
            ref = _reference_readout(edges, node_keep, g, 0.0)
        assert torch.equal(ours, ref), target
        assert not ours[~node_keep].any()


def test_authors_recipe_runs_with_its_schedule(tiny_model, tiny_task) -> None:  # noqa: ANN001
    """At step 0 the warm-up's learning rate is 0: one authors step leaves the gates where they started
    (our default recipe moves them), and the circuit says which recipe and graph made it."""
    cfg = PruneConfig.authors(n_steps=30, batch_size=8, init_log_alpha=1.0, init_std=0.0)   # 2 warm-up steps
    circuit, log = prune(tiny_model, tiny_task, cfg, on_step=lambda s: True)   # stop after step 0
    start = float(deterministic(torch.tensor(1.0))) ** 2   # edge gate x writer gate, both at log alpha 1
    real = tiny_model.graph.real_edges
    torch.testing.assert_close(circuit.scores[real], torch.full((int(real.sum()),), start))
    moved, _ = prune(tiny_model, tiny_task, PruneConfig(n_steps=30, batch_size=8, init_log_alpha=1.0, init_std=0.0,
                                                        node_sparsity=0.1), on_step=lambda s: True)
    assert not torch.allclose(moved.scores, circuit.scores)
    assert "authors' recipe" in circuit.meta["definition"] and "one-input graph" in circuit.meta["definition"]
    assert any("split_embeddings=True" in w for w in log.warnings)


def test_authors_sparsity_is_one_minus_the_mean_sampled_gate(tiny_model, tiny_task) -> None:  # noqa: ANN001
    """At log alpha 0 the expected-L0 sparsity is 1 - sigmoid(-beta log(-gamma/zeta)) = 0.168; the sampled
    gates' mean is about 1/2 and at least the share of exact zeros."""
    seen = []
    prune(tiny_model, tiny_task, PruneConfig.authors(n_steps=30, batch_size=8, init_log_alpha=0.0, init_std=0.0),
          on_step=lambda s: seen.append(s) or True)
    s = seen[0]
    assert abs(s.edge_sparsity - float(1 - expected_l0(torch.tensor(0.0)))) > 0.1
    assert s.sampled_sparsity <= s.edge_sparsity <= 1.0 and 0.3 < s.edge_sparsity < 0.7
