"""compare-methods with a circuit per size: each size's circuit has exactly that size's edges, and its f matches an
independent evaluation (engine.evaluate, not the batched scorer)."""

import pytest

from engine import Circuit, evaluate
from engine.compare import PER_SIZE, PerSizeConfig, compare_methods, format_table
from engine.methods import make_config


def test_per_size_curve_matches_independent_evaluation(tiny_model, echo_task):
    cfg = PerSizeConfig(make_config("edge-pruning", n_steps=20, batch_size=8), steps_next=8)
    sizes = [0.05, 0.2, 1.0]
    cmp = compare_methods(tiny_model, echo_task, [("ep per size", PER_SIZE, cfg)], sizes, "test", random_draws=1)
    assert not cmp.errors, cmp.errors
    run = cmp.runs[0]
    n = tiny_model.graph.n_edges
    assert run.curve.n_edges == (max(1, int(0.05 * n)), int(0.2 * n), n)
    assert run.circuit.n_edges == run.curve.n_edges[0] and run.circuit.meta["method"] == PER_SIZE
    full, empty, small = (evaluate(tiny_model, echo_task, c) for c in
                          (Circuit.full(tiny_model.graph), Circuit.empty(tiny_model.graph), run.circuit))
    f = (small.metric - empty.metric) / (full.metric - empty.metric)
    assert run.curve.faithfulness[0] == pytest.approx(f, abs=1e-4)
    assert run.curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)
    assert "ep per size" in format_table(cmp)


def test_each_smaller_size_starts_with_that_many_gates_open(tiny_model, echo_task, monkeypatch):
    """A warm-started run starts at its own size (the larger circuit's top k open), not with every edge of the larger
    circuit open: that gap made the multipliers slam gates shut (greater-than-2l at 20%: f 0.70 instead of 1.00).
    Planted bug caught: opening prev.n_edges gates."""
    import engine.compare as compare
    seen = []
    real_prune = compare.prune

    def spy(model, task, cfg, init_log_alpha=None, **kw):
        seen.append((round((1 - cfg.edge_sparsity) * model.graph.n_edges),
                     None if init_log_alpha is None else int((init_log_alpha > 0).sum())))
        return real_prune(model, task, cfg, init_log_alpha=init_log_alpha, **kw)

    monkeypatch.setattr(compare, "prune", spy)
    cfg = PerSizeConfig(make_config("edge-pruning", n_steps=10, batch_size=8), steps_next=4)
    compare_methods(tiny_model, echo_task, [("ep per size", PER_SIZE, cfg)], [0.1, 0.3, 0.6, 1.0], "test",
                    random_draws=1)
    assert [k for k, _ in seen] == [int(s * tiny_model.graph.n_edges) for s in (0.6, 0.3, 0.1)]
    assert seen[0][1] is None and all(k == opened for k, opened in seen[1:]), seen
