"""Per-prompt edge effects and node effects, checked with engine.trace (an independent forward)."""

from __future__ import annotations

import pytest
import torch

from engine import Circuit
from engine import trace as tr
from explorer import prompt_probe


def _ld(model, pair, keep) -> float:  # noqa: ANN001
    t = tr.trace(model, pair.clean, keep, tr.trace(model, pair.corrupt))
    out = tr.logits(model, t)[pair.pos]
    return float(out[pair.answer] - out[pair.other])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A random GPT-2 with weights large enough (init 0.3, not 0.02) that edge effects are far from zero."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine.weights import load_model

    torch.manual_seed(5)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0,
                     initializer_range=0.3)
    path = tmp_path_factory.mktemp("probe_gpt2")
    GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    return load_model(str(path), device="cpu")


@pytest.fixture()
def setup(model, tiny_task):  # noqa: ANN001, ANN201
    g = model.graph
    scores = torch.rand(g.n_src, g.n_dst, generator=torch.Generator().manual_seed(1)) * g.real_edges
    circuit = Circuit(g, scores, torch.zeros_like(g.real_edges)).top_n(12)
    return model, prompt_probe.from_task(model, tiny_task, 2), circuit


def test_pair_compares_answer_with_another_token(setup) -> None:  # noqa: ANN001
    model, pair, _ = setup
    assert pair.other != pair.answer and 0 <= pair.pos < len(pair.clean)


def test_exact_edge_effects_equal_removing_each_edge(setup) -> None:  # noqa: ANN001
    model, pair, circuit = setup
    effects, how = prompt_probe.edge_effects(model, pair, circuit)
    assert how == "exact" and set(effects) == set(circuit.edges())
    assert max(abs(v) for v in effects.values()) > 0.05  # effects of a size where a wrong one shows
    keep = circuit.keep_float()
    base = _ld(model, pair, keep)
    for e, v in effects.items():
        k = keep.clone()
        k[circuit.graph.edge_index(e)] = 0.0
        assert v == pytest.approx(base - _ld(model, pair, k), abs=1e-4)


def test_attribution_is_the_gate_gradient(setup) -> None:  # noqa: ANN001
    model, pair, circuit = setup
    effects, how = prompt_probe.edge_effects(model, pair, circuit, exact_max=0)
    assert how == "attribution"
    keep, eps = circuit.keep_float().double(), 1e-3
    for e in list(effects)[:4]:  # central finite differences through the independent forward
        hi, lo = keep.clone(), keep.clone()
        hi[circuit.graph.edge_index(e)] += eps
        lo[circuit.graph.edge_index(e)] -= eps
        fd = (_ld(model, pair, hi.float()) - _ld(model, pair, lo.float())) / (2 * eps)
        assert effects[e] == pytest.approx(fd, abs=2e-3, rel=2e-2)


def test_node_views(setup) -> None:  # noqa: ANN001
    model, pair, circuit = setup
    p = prompt_probe.probe(model, pair, circuit)
    rows = prompt_probe.attention(p, 1, 0, pair)
    n = len(pair.clean)
    assert len(rows) == 2 * n * n
    for who in ("full model", "circuit"):  # each query's weights sum to one
        s = sum(r["weight"] for r in rows if r["model"] == who and r["query"].startswith(f"{n - 1}:"))
        assert s == pytest.approx(1.0, abs=1e-5)
    full, circ = prompt_probe.direct_effect(model, p, pair, "a1.h0")
    de = tr.direct_effects(model, p.full, pair.pos, pair.answer, pair.other)
    assert full == pytest.approx(de["a1.h0"])
