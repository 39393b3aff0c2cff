"""Attribution methods on the tiny model: EAP = finite differences, IG completeness, exact batched ACDC, registry."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from engine.circuit import Circuit
from engine.methods import METHODS, get_method, make_config
from engine.methods.acdc import ACDCConfig, acdc_search
from engine.methods.batched import batched_logits
from engine.methods.common import corrupted, kl_to_full, scoring_data
from engine.methods.eap import EAPConfig, eap_scores
from engine.methods.eap_ig import EAPIGConfig
from engine.methods.eap_ig_gates import eap_ig_gates_scores
from engine.methods.warmstart import init_log_alpha_from_scores
from engine.tasks.base import Task


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model64(tiny_model):  # noqa: ANN001, ANN201
    """The tiny model in float64, so finite differences and exact ties are meaningful (a copy: fixtures are shared)."""
    return copy.deepcopy(tiny_model).double()


def _metric(model, task: Task, keep: torch.Tensor) -> float:  # noqa: ANN001
    """The logit difference in float64 (the engine's metrics compute in float32)."""
    data = scoring_data(task, "train", None)
    logits = model(data.clean, keep, corrupted(model, data, "interchange"), data.positions)[:, 0]
    return float((logits.gather(1, data.good) - logits.gather(1, data.bad)).mean())


def test_eap_equals_finite_differences(model64, tiny_task: Task) -> None:  # noqa: ANN001
    signed = eap_scores(model64, tiny_task, EAPConfig(n_examples=None, batch_size=7))
    g, data, h = model64.graph, scoring_data(tiny_task, "train", None), 1e-4
    edges = g.real_edges.nonzero().tolist()
    keeps = g.real_edges.double().repeat(2 * len(edges), 1, 1)
    for c, (i, j) in enumerate(edges):
        keeps[2 * c, i, j], keeps[2 * c + 1, i, j] = 1 + h, 1 - h
    logits = batched_logits(model64, data.clean, keeps, corrupted(model64, data, "interchange"), data.positions)
    ld = (logits[:, :, 0].gather(2, data.good.expand(len(keeps), -1, -1))
          - logits[:, :, 0].gather(2, data.bad.expand(len(keeps), -1, -1))).mean((1, 2))   # float64 logit diff
    for c, (i, j) in enumerate(edges):
        fd = float(ld[2 * c] - ld[2 * c + 1]) / (2 * h)
        assert signed[i, j] == pytest.approx(fd, rel=1e-4, abs=1e-6), g.edge_id(i, j)
    assert float(signed[~g.real_edges].abs().sum()) == 0.0


def test_eap_ig_gates_is_complete(model64, tiny_task: Task) -> None:  # noqa: ANN001
    """Sum of integrated gradients along the gate path = M(full) - M(empty)."""
    ig = eap_ig_gates_scores(model64, tiny_task, EAPIGConfig(steps=8, n_examples=None, batch_size=24))
    real = model64.graph.real_edges.double()
    gap = _metric(model64, tiny_task, real) - _metric(model64, tiny_task, torch.zeros_like(real))
    assert float(ig.sum()) == pytest.approx(gap, rel=1e-2)


def test_eap_kl_is_refused(tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="zero gradient"):
        eap_scores(tiny_model, tiny_task, EAPConfig(metric="kl"))


def test_batched_forward_matches_model(tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    data = scoring_data(tiny_task, "test", 5)
    cache = corrupted(tiny_model, data, "interchange")
    g = tiny_model.graph
    keeps = torch.rand(4, g.n_src, g.n_dst, generator=torch.Generator().manual_seed(1)) * g.real_edges
    out = batched_logits(tiny_model, data.clean, keeps, cache, data.positions)
    for c in range(4):
        torch.testing.assert_close(out[c], tiny_model(data.clean, keeps[c], cache, data.positions))


def _sequential_acdc(model, task: Task, tau: float) -> torch.Tensor:  # noqa: ANN001
    """The textbook algorithm, one model forward per candidate edge."""
    g, data = model.graph, scoring_data(task, "train", 8)
    cache = corrupted(model, data, "interchange")
    ref = model.reference_forward(data.clean, data.positions)
    kl = lambda k: float(kl_to_full(task, ref, model(data.clean, k.double(), cache, data.positions), data).mean())  # noqa: E731
    keep = g.real_edges.clone()
    cur = kl(keep)
    for r in reversed(range(g.n_dst)):
        for w in reversed(range(g.n_src)):
            if keep[w, r]:
                keep[w, r] = False
                new = kl(keep)
                if new - cur <= tau:
                    cur = new
                else:
                    keep[w, r] = True
    return keep


def test_batched_acdc_equals_sequential(model64, tiny_task: Task, tau: float = 0.01) -> None:  # noqa: ANN001
    keep, scores, _ = acdc_search(model64, tiny_task, ACDCConfig(threshold=tau, n_examples=8, max_chunk=8))
    expected = _sequential_acdc(model64, tiny_task, tau)
    assert torch.equal(keep & _alive(model64, keep), expected & _alive(model64, expected))
    assert torch.equal(keep, (scores > tau) & keep)


def _alive(model, keep: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Edges on a kept input->logits path (the shortcut for dead nodes only drops edges off every path)."""
    return Circuit(model.graph, keep.float(), keep).prune_dangling().keep


def test_acdc_threshold_zero_keeps_every_edge_that_matters(model64, tiny_task: Task) -> None:  # noqa: ANN001
    dead = copy.deepcopy(model64)
    with torch.no_grad():
        dead.blocks[1].W_O[0].zero_()           # head a1.h0 now writes exactly zero
    keep, _, stats = acdc_search(dead, tiny_task, ACDCConfig(threshold=0.0, n_examples=8))
    g = dead.graph
    removed = set(g.edges(g.real_edges & ~keep))
    touching = {e for e in g.edges() if e.startswith("a1.h0->") or "->a1.h0<" in e}
    assert touching <= removed                 # exactly no effect: removed
    data = scoring_data(tiny_task, "train", 8)
    cache = corrupted(dead, data, "interchange")
    ref = dead.reference_forward(data.clean, data.positions)
    for e in removed - touching:               # the others removed are below float32 KL resolution
        alone = g.real_edges.double()
        alone[g.edge_index(e)] = 0.0
        assert float(kl_to_full(tiny_task, ref, dead(data.clean, alone, cache, data.positions), data).mean()) < 1e-7, e
    assert len(removed - touching) < len(touching) and stats["kl"] < 1e-7


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_returns_a_valid_circuit(name: str, tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    opts = {"edge-pruning": dict(n_steps=8, edge_sparsity=0.3, batch_size=8),
            "eap-ig": dict(sparsity=0.5, steps=2, n_examples=8), "eap-ig-gates": dict(sparsity=0.5, steps=2, n_examples=8),
            "eap-ig-activations": dict(sparsity=0.5, steps=2, n_examples=8), "eap": dict(sparsity=0.5, n_examples=8), "acdc": dict(threshold=0.001), "random": dict(sparsity=0.2)}
    events = []
    circuit = METHODS[name](tiny_model, tiny_task, make_config(name, **opts[name]), events.append)
    assert isinstance(circuit, Circuit) and circuit.graph.same_as(tiny_model.graph)
    assert torch.isfinite(circuit.scores).all() and circuit.n_edges > 0 and circuit.has_path()
    assert circuit.meta["method"] == name and json.loads(circuit.meta.get("config", "{}")) is not None
    assert events and events[-1]["method"] == name and events[-1]["step"] == events[-1]["total"]


def test_unknown_method_and_option_list_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="eap-ig"):
        get_method("eap_ig_typo")
    with pytest.raises(ValueError, match="steps"):
        make_config("eap-ig", stpes=3)
    with pytest.raises(TypeError, match="EAPConfig"):
        METHODS["eap"](None, None, ACDCConfig())  # type: ignore[arg-type]


def test_unchanged_metric_raises_not_empty(tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    data = tiny_task.split("train")
    same = type(data)(data.clean, data.clean, data.lengths, data.positions, data.answers, data.good, data.bad)
    flat = Task("same", "logit_diff", {"train": same, "validation": same, "test": same})
    with pytest.raises(ValueError, match="do not change"):
        METHODS["eap"](tiny_model, flat, EAPConfig(n_examples=8))


def test_warm_start_logits_follow_rank() -> None:
    real = torch.ones(10, 10, dtype=torch.bool).tril()
    scores = torch.rand(10, 10, generator=torch.Generator().manual_seed(0))
    la = init_log_alpha_from_scores(scores, real, keep_share=0.1, softness=0.02)
    vals, ranked = la[real], scores[real]
    assert (vals[ranked.argsort()].diff() >= 0).all()
    assert int((vals > 0).sum()) == pytest.approx(0.1 * real.sum(), abs=1)
    assert not math.isnan(float(la.sum()))


def test_edge_pruning_never_returns_an_empty_circuit(tiny_model, tiny_task: Task) -> None:  # noqa: ANN001
    cfg = make_config("edge-pruning", n_steps=30, edge_sparsity=1.2, warmup_steps=0, batch_size=8,
                      lr_gates=0.8, lr_lambdas=0.8)  # fast enough to empty the tiny graph in 30 steps
    with pytest.raises(ValueError, match="no path from the input to the logits"):
        METHODS["edge-pruning"](tiny_model, tiny_task, cfg)
