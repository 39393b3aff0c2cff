"""Edge Pruning runs: sparsity reached, callbacks stop, checkpoints resume, seeds repeat."""

import pytest
import torch

from engine import Circuit, PruneConfig, evaluate, prune


def test_prune_reaches_target_and_returns_circuit(tiny_model, tiny_task):
    cfg = PruneConfig(n_steps=200, batch_size=8, edge_sparsity=0.7, warmup_steps=150, seed=1)
    circuit, log = prune(tiny_model, tiny_task, cfg)
    assert len(log.steps) == 200 and not log.stopped_early
    assert abs(log.steps[-1].edge_sparsity - 0.7) < 0.1
    assert abs(circuit.sparsity - 0.7) < 0.1
    assert circuit.meta["method"] == "edge-pruning" and "prune_config" in circuit.meta
    assert torch.isfinite(circuit.scores).all()
    expected_kept = (1 - log.steps[-1].edge_sparsity) * tiny_model.graph.n_edges   # the authors' discretisation
    assert abs(circuit.n_edges - expected_kept) <= 1
    # the gates learned something: the circuit beats every random circuit of its size on the train split
    from engine.methods.random_scores import random_scores
    g, n = tiny_model.graph, circuit.n_edges
    kl = evaluate(tiny_model, tiny_task, circuit, split="train").kl
    chance = [evaluate(tiny_model, tiny_task, Circuit(g, random_scores(tiny_model, s), g.real_edges.clone()).top_n(n),
                       split="train").kl for s in range(5)]
    assert kl < min(chance), (kl, chance)


def test_same_seed_same_circuit(tiny_model, tiny_task):
    cfg = PruneConfig(n_steps=15, batch_size=8, seed=3)
    a, _ = prune(tiny_model, tiny_task, cfg)
    b, _ = prune(tiny_model, tiny_task, cfg)
    assert torch.equal(a.scores, b.scores)


def test_callback_can_stop(tiny_model, tiny_task):
    _, log = prune(tiny_model, tiny_task, PruneConfig(n_steps=50, batch_size=8), on_step=lambda s: s.step >= 4)
    assert log.stopped_early and len(log.steps) == 5


def test_resume_from_checkpoint_matches_straight_run(tiny_model, tiny_task, tmp_path):
    short = PruneConfig(n_steps=10, batch_size=8, seed=2, warmup_steps=16)
    long = PruneConfig(n_steps=20, batch_size=8, seed=2, warmup_steps=16)
    prune(tiny_model, tiny_task, short, checkpoint_dir=tmp_path)
    resumed, log = prune(tiny_model, tiny_task, long, checkpoint_dir=tmp_path)
    straight, _ = prune(tiny_model, tiny_task, long)
    assert log.steps[0].step == 10
    torch.testing.assert_close(resumed.scores, straight.scores, atol=1e-5, rtol=0)


def test_checkpoint_of_other_settings_refused(tiny_model, tiny_task, tmp_path):
    prune(tiny_model, tiny_task, PruneConfig(n_steps=2, batch_size=8), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        prune(tiny_model, tiny_task, PruneConfig(n_steps=2, batch_size=8, edge_sparsity=0.5), checkpoint_dir=tmp_path)


def test_node_gates(tiny_model, tiny_task):
    cfg = PruneConfig(n_steps=30, batch_size=8, edge_sparsity=0.5, node_sparsity=0.3, warmup_steps=20,
                      init_log_alpha=1.0)   # near the middle, so 30 steps move the gates
    circuit, log = prune(tiny_model, tiny_task, cfg)
    assert circuit.node_scores is not None and 0.02 < log.steps[-1].node_sparsity < 0.95
    # an edge's score is its gate times its writer's node gate (test_math.py pins the forward side)
    assert (circuit.scores <= circuit.node_scores[:, None] + 1e-6).all()
    assert float((circuit.node_scores[:, None] - circuit.scores)[tiny_model.graph.real_edges].max()) < 0.5


def test_evaluate_full_and_empty_baselines(tiny_model, tiny_task):
    full = evaluate(tiny_model, tiny_task, Circuit.full(tiny_model.graph))
    empty = evaluate(tiny_model, tiny_task, Circuit.empty(tiny_model.graph))
    assert abs(full.kl) < 1e-6 and full.metric == pytest.approx(full.full_metric, abs=1e-5)
    assert empty.kl > 0


@pytest.mark.parametrize("bad", [dict(n_steps=0), dict(batch_size=0), dict(edge_sparsity=2.0), dict(lr_gates=-1),
                                 dict(ablation="nope"), dict(node_sparsity=-0.5), dict(warmup_steps=-1)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        PruneConfig(**bad)
