"""MIB faithfulness, CPR/CMD, the random baseline, score JSON export, the comparison table, Tracr recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.circuit import Circuit
from engine.evaluate import evaluate
from engine.compare import compare_methods, default_runs, format_table, sizes_from_sparsities
from engine.faithfulness import MIB_SIZES, area, curve, edge_counts, random_baseline
from engine.methods import METHODS, make_config
from engine.methods.export import load_scores_json, save_scores_json, scores_to_json
from engine.tasks.base import Task


pytestmark = pytest.mark.usefixtures("one_thread")


def test_area_is_mib_trapezoid() -> None:
    assert area([0.0, 0.5, 1.0], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert area([0.1, 0.2], [0.0, 1.0]) == pytest.approx(0.05)
    assert edge_counts(1000, MIB_SIZES) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    with pytest.raises(ValueError, match="sizes"):
        edge_counts(10, [0.0, 0.5])


def _by_evaluate(model, task: Task, scores: torch.Tensor, k: int) -> tuple[float, float]:  # noqa: ANN001
    """f(C) = (m(C) - m(empty)) / (m(full) - m(empty)) and KL of the top-k circuit, through evaluate() (its own
    batching and forward path, not faithfulness._measure)."""
    g = model.graph
    circuit = Circuit(g, scores, g.real_edges.clone(), None, {}).top_n(k)
    got, empty = evaluate(model, task, circuit), evaluate(model, task, Circuit.empty(g))
    return (got.metric - empty.metric) / (got.full_metric - empty.metric), got.kl


def test_curve_matches_evaluate_at_every_size(tiny_model, echo_task: Task) -> None:  # noqa: ANN001
    g = tiny_model.graph
    scores = torch.rand(g.real_edges.shape, generator=torch.Generator().manual_seed(13)) * g.real_edges
    circuit = Circuit(g, scores, g.real_edges.clone(), None, {})
    c = curve(tiny_model, echo_task, circuit, sizes=(0.1, 0.5, 1.0))
    assert c.n_edges == (g.n_edges // 10, g.n_edges // 2, g.n_edges)
    for i, (k, near) in enumerate(zip(c.n_edges, c.evaluated_edges)):   # the size's edges, as MIB scores them
        f, kl = _by_evaluate(tiny_model, echo_task, scores, k)
        assert c.faithfulness[i] == pytest.approx(f, rel=1e-4, abs=1e-6) and c.kl[i] == pytest.approx(kl, rel=1e-4, abs=1e-6)
        # and the fewest top edges with a path, where the size has none
        assert c.nearest[i] == pytest.approx(_by_evaluate(tiny_model, echo_task, scores, near)[0], rel=1e-4, abs=1e-6)
    assert len(set(round(x, 4) for x in c.faithfulness)) == 3    # the sizes differ, so must their values
    f = c.faithfulness   # trapezoids on the linear size axis, by hand
    assert c.cpr == pytest.approx(0.4 * (f[0] + f[1]) / 2 + 0.5 * (f[1] + f[2]) / 2)
    assert c.cmd == pytest.approx(0.4 * (abs(1 - f[0]) + abs(1 - f[1])) / 2 + 0.5 * (abs(1 - f[1]) + abs(1 - f[2])) / 2)


def test_random_baseline_is_the_mean_of_random_circuits(tiny_model, echo_task: Task) -> None:  # noqa: ANN001
    from engine.methods.random_scores import random_scores
    rb = random_baseline(tiny_model, echo_task, sizes=(0.2, 0.5, 1.0), draws=4, seed=3)
    assert rb.draws == 4 and len(rb.mean) == 3 and rb.std[-1] == pytest.approx(0.0, abs=1e-6)
    for i, k in enumerate(rb.n_edges[:2]):
        fs = torch.tensor([_by_evaluate(tiny_model, echo_task, random_scores(tiny_model, 3 + d), k)[0]
                           for d in range(4)], dtype=torch.float64)
        assert rb.mean[i] == pytest.approx(float(fs.mean()), rel=1e-4, abs=1e-6)
        assert rb.std[i] == pytest.approx(float(fs.std()), rel=1e-3, abs=1e-6) and rb.std[i] > 0


def test_faithfulness_is_na_when_full_equals_empty(tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    """Identical corruption (exactly equal), and the random model on tiny_task (at chance: equal within noise):
    f, CPR and CMD are None with the reason, the KL is still measured; the comparison table shows KL and n/a."""
    d = tiny_task.split("test")
    same = Task("same", "logit_diff", {"test": type(d)(d.clean, d.clean, d.lengths, d.positions, d.answers, d.good,
                                                       d.bad)})
    for task in (same, tiny_task):
        c = curve(tiny_model, task, Circuit.full(tiny_model.graph), sizes=(0.5, 1.0))
        assert c.faithfulness == (None, None) and c.cpr is None and c.cmd is None, task.name
        assert "within noise" in c.undefined and c.kl[-1] == pytest.approx(0.0, abs=1e-5)
        rb = random_baseline(tiny_model, task, sizes=(0.5, 1.0), draws=2)
        assert rb.mean == (None, None) and rb.cpr_mean is None and rb.undefined and len(rb.kl_mean) == 2
    cmp = compare_methods(tiny_model, tiny_task, default_runs(("random",), random={"sparsity": 0.5}),
                          sizes=(0.5, 1.0), random_draws=2)
    table = format_table(cmp)
    assert "KL(full || C)" in table and "n/a" in table and "within noise" in table and "faithfulness f" not in table


def test_no_path_sizes_score_zero_and_report_the_nearest_size_with_one(tiny_model, echo_task: Task) -> None:  # noqa: ANN001
    """The best-scored edge alone has no path: that size scores as the empty circuit (f = 0, as MIB: that value is
    in CPR), is flagged, and the fewest top edges that have a path (found here by counting up, one edge at a time)
    are measured too. Planted bug caught: CPR taking the nearest connected cut's f at the size (the old rule)."""
    g = tiny_model.graph
    scores = torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(3)) * g.real_edges
    scores[g.src_index("a0.h0"), g.mlp_dst_index(0)] = 2.0   # a0.h0 -> m0 alone has no path to logits
    scores[g.src_index("input"), g.dst_index("logits")] = 1.9  # the direct path next: the nearest cut computes something
    ranked = Circuit(g, scores, g.real_edges)
    k = next(k for k in range(1, g.n_edges + 1) if ranked.top_n(k).has_path())
    c = curve(tiny_model, echo_task, ranked, sizes=(1 / g.n_edges, 1.0))
    assert c.path == (False, True) and c.evaluated_edges == (k, g.n_edges) and k > 1
    assert c.faithfulness[0] == pytest.approx(0.0, abs=1e-6) and c.kl[0] > 0
    at_k = curve(tiny_model, echo_task, ranked, sizes=(k / g.n_edges, 1.0)).faithfulness[0]
    assert c.nearest[0] == pytest.approx(at_k, abs=1e-6) and abs(at_k) > 1e-3   # a value that differs from 0
    assert c.cpr == pytest.approx((1 - 1 / g.n_edges) * (0.0 + 1.0) / 2, abs=1e-5)   # trapezoid from f = 0 to f(full)


def test_scores_json_round_trip(tiny_model, tiny_task: Task, tmp_path: Path) -> None:  # noqa: ANN001
    c = METHODS["eap"](tiny_model, tiny_task, make_config("eap", sparsity=0.5, n_examples=8))
    path = save_scores_json(c, tmp_path / "eap.scores.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "circuit-explorer/edge-scores" and len(data["edges"]) == tiny_model.graph.n_edges
    assert set(data["edges"]) == set(tiny_model.graph.edges())
    first = next(iter(data["edges"].values()))
    assert first["score"] == pytest.approx(abs(first["signed"]), rel=1e-5, abs=1e-9)
    back = load_scores_json(path)
    torch.testing.assert_close(back.scores, c.scores)
    assert torch.equal(back.keep, c.keep) and scores_to_json(back)["method"] == "eap"


def test_compare_table_lists_every_method(tiny_model, echo_task: Task) -> None:  # noqa: ANN001
    runs = default_runs(("eap", "random", "acdc"), eap={"n_examples": 8, "sparsity": 0.5},
                        random={"sparsity": 0.5}, acdc={"threshold": 10.0, "n_examples": 8})
    cmp = compare_methods(tiny_model, echo_task, runs, sizes=(0.1, 0.5, 1.0), random_draws=2)
    table = format_table(cmp)
    assert "eap" in table and "random x2" in table and "CPR" in table and "faithfulness f" in table
    # ACDC at a huge threshold keeps nothing: never silently empty, never "failed", scored by its ranking
    assert not cmp.errors and "lower the threshold" in cmp.notes["acdc"] and "failed" not in table
    assert [r.label for r in cmp.runs] == ["eap", "random", "acdc"]
    assert json.loads(json.dumps(cmp.to_dict()))["runs"][0]["label"] == "eap"


def test_sizes_from_sparsities() -> None:
    assert sizes_from_sparsities([0.5, 0.9]) == [pytest.approx(0.1), 0.5, 1.0]
    with pytest.raises(ValueError):
        sizes_from_sparsities([1.0])


def test_evaluate_reports_normalised_faithfulness_or_why_not(tiny_model, tiny_task: Task, echo_task: Task) -> None:  # noqa: ANN001
    from engine.evaluate import evaluate
    from engine.metrics import METRICS
    half = Circuit.full(tiny_model.graph).top_n(20)
    r = evaluate(tiny_model, echo_task, half)
    d = echo_task.split("test")
    with torch.no_grad():   # the empty circuit is the corrupted run (interchange ablation)
        empty = float(METRICS["logit_diff"](tiny_model.reference_forward(d.corrupt, d.positions)[:, 0], d.good,
                                            d.bad).mean())
    assert r.empty_metric == pytest.approx(empty, abs=1e-5) and not r.faithfulness_na
    assert r.faithfulness == pytest.approx((r.metric - empty) / (r.full_metric - empty), rel=1e-4)
    na = evaluate(tiny_model, tiny_task, half)
    assert na.faithfulness is None and "within noise" in na.faithfulness_na and na.kl >= 0
